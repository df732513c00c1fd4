"""What `robustfront eval` / `analyze` evaluate (robustfront checkpoints or foreign weights), where a
long evaluation keeps its resumable state, and how the points are split over processes.

State folder (what makes `eval` resumable), first that applies:

    --state DIR                 DIR
    --out FILE.json             FILE.state/ beside it
    a robustfront checkpoint    RUN/eval-state/<12 hex digits naming the request>/ in its run folder
    otherwise                   none (the run says so); --no-state turns it off in every case

Several checkpoints in one command get one sub-folder each (model-0, model-1, ...) under an
explicit or --out-derived folder. A re-run of the same command continues where the last one
stopped; a different request on the same folder is refused in one line naming the setting.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..validation import check_int, invalid

FOREIGN_FLAGS = ("model", "model_file", "input_mean", "input_std", "num_classes")


def source_parent(parser) -> None:
    """The flags naming what is evaluated (on the parent parser shared by eval and analyze)."""
    from ..models import list_models
    parser.add_argument("--checkpoint", nargs="+", metavar="FILE", help="one or more robustfront checkpoints (.pt)")
    parser.add_argument("--weights", nargs="+", metavar="FILE", help="weights trained elsewhere (.pt/.pth/"
                        ".safetensors; state_dict/model/net wrappers and module./model. prefixes handled), for "
                        "--model or --model-file; several files give mean ± std")
    parser.add_argument("--model", metavar="NAME", help=f"architecture of --weights: {', '.join(list_models())} "
                        "(kuangliu ResNet/PreActResNet and TRADES/RobustBench WideResNet key layouts)")
    parser.add_argument("--model-file", metavar="FILE.py:FACTORY", help="any other architecture: the nn.Module "
                        "FACTORY() in FILE.py returns (your own code: it is imported and run)")
    parser.add_argument("--input-mean", metavar="M", help="per-channel mean the weights were trained with, e.g. "
                        "0.4914,0.4822,0.4465 or cifar10/imagenet (default: the file's own buffers, else none)")
    parser.add_argument("--input-std", metavar="S", help="per-channel std, as --input-mean (default: none, i.e. "
                        "identity, what TRADES/MART/AWP-style code trains with)")
    parser.add_argument("--num-classes", type=int, metavar="K", help="classes of --weights (checked against the "
                        "file's classifier; passed to a --model-file factory taking num_classes)")


def sources(args, *, merge: bool = False) -> list[dict]:
    """Keyword arguments of `load_for_eval` for each model to evaluate; one line for a bad combination."""
    given = [f for f in ("checkpoint", "weights") if getattr(args, f)]
    foreign = [f for f in FOREIGN_FLAGS if getattr(args, f) is not None]
    if merge:
        if given or foreign:
            raise invalid("--merge", args.merge, "state folders alone (the models were loaded by the runs that "
                          f"wrote them), without --{given[0] if given else foreign[0].replace('_', '-')}",
                          "combined with a model")
        return []
    if len(given) > 1:
        raise ValueError("--checkpoint and --weights: give one of them; allowed: robustfront checkpoints, or "
                         "foreign weights with --model/--model-file")
    if args.checkpoint:
        if foreign:
            raise ValueError(f"--{foreign[0].replace('_', '-')} describes foreign weights; allowed: with --weights "
                             f"(a robustfront checkpoint carries its architecture and normalisation)")
        return [{"checkpoint": ck} for ck in args.checkpoint]
    if args.model is not None and args.model_file is not None:
        raise ValueError("--model and --model-file: give one of them; allowed: a robustfront architecture name or "
                         "module.py:factory")
    if args.model is None and args.model_file is None:
        if args.weights:
            raise ValueError("--weights needs its architecture; allowed: --model NAME or --model-file "
                             "module.py:factory")
        raise ValueError("nothing to evaluate; allowed: --checkpoint FILE, --weights FILE with --model NAME (or "
                         "--model-file module.py:factory)" + (", or --merge STATE_DIR" if hasattr(args, "merge")
                                                               else ""))
    if not args.data:
        raise ValueError("--data is required with foreign weights (nothing in the file names its data set); "
                         "allowed: --data cifar10, cifar100, a folder or an archive")
    if args.num_classes is not None:
        check_int("num_classes", args.num_classes, 2)
    from ..models.normalize import parse_stats
    common = {"model": args.model, "model_file": args.model_file, "num_classes": args.num_classes,
              "input_mean": parse_stats(args.input_mean, "input_mean"),
              "input_std": parse_stats(args.input_std, "input_std")}
    return [{"weights": w, **common} for w in (args.weights or [None])]


def world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise invalid("WORLD_SIZE", os.environ["WORLD_SIZE"], "an integer (set by torchrun)") from None


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def shard_of(args, n_sources: int):
    """None, (i, N) from --shard, or "env" under torchrun (each rank a shard, gathered over gloo)."""
    from ..eval.shards import parse_shard
    launched = world_size() > 1
    if args.shard is not None and launched:
        raise ValueError(f"--shard {args.shard} under torchrun (WORLD_SIZE={world_size()}): both split the points; "
                         f"allowed: one of them")
    shard = parse_shard(args.shard) if args.shard is not None else ("env" if launched else None)
    if shard is not None:
        what = f"--shard {args.shard}" if args.shard is not None else f"torchrun (WORLD_SIZE={world_size()})"
        if n_sources > 1:
            raise ValueError(f"{what} splits the points of one model; allowed: one --checkpoint or --weights file")
        if args.sanity:
            raise ValueError(f"--sanity runs its checks on all points in one process; allowed: without {what} "
                             f"(run it on the merged model once)")
    return shard


def _request_key(args, src: dict) -> str:
    """12 hex digits naming the evaluation request (for a default state folder inside a run)."""
    keys = ("attacks", "eps", "norm", "n", "seed", "split", "data", "data_root", "resize", "chunk_size",
            "aa_budget", "batch_size")
    text = json.dumps({"source": str(Path(src.get("checkpoint") or src.get("weights") or "").name),
                       **{k: getattr(args, k, None) for k in keys}}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def state_folder(args, i: int, src: dict, n_sources: int) -> tuple[Path | None, str]:
    """(folder or None, how it was chosen) for source number i; see the module docstring."""
    if args.no_state:
        if args.state:
            raise ValueError("--state and --no-state: give one of them")
        return None, "--no-state"
    sub = (lambda p: p / f"model-{i}" if n_sources > 1 else p)
    if args.state:
        return sub(Path(args.state)), "--state"
    if args.out:
        out = Path(args.out)
        return sub(out.with_suffix(".state") if out.suffix else out.with_name(out.name + ".state")), "beside --out"
    ck = Path(src["checkpoint"]) if src.get("checkpoint") else None
    if ck is not None and ck.parent.name == "checkpoints" and (ck.parent.parent / "config.yaml").is_file():
        return ck.parent.parent / "eval-state" / _request_key(args, src), "in the run folder"
    return None, "none (give --out or --state to make the run resumable)"


def parse_chunk(text):
    if text is None or text == "all":
        return text
    try:
        return check_int("chunk_size", int(text), 1)
    except ValueError:
        raise invalid("chunk_size", text, "an integer >= 1, or all (one chunk: the official runner's batching)") \
            from None


def parse_budgets(text) -> dict | None:
    """--aa-budget n_iter=10,n_queries=100 -> {"n_iter": 10, "n_queries": 100}."""
    if text is None:
        return None
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, eq, value = part.partition("=")
        try:
            out[key.strip()] = int(value) if eq else None
        except ValueError:
            out[key.strip()] = None
        if out[key.strip()] is None:
            raise invalid("aa_budget", text, "key=integer pairs, e.g. n_iter=10,n_queries=100")
    if not out:
        raise invalid("aa_budget", text, "key=integer pairs, e.g. n_iter=10,n_queries=100")
    return out


__all__ = ["parse_budgets", "parse_chunk", "rank", "shard_of", "source_parent", "sources", "state_folder",
           "world_size"]
