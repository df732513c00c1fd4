"""What `robustfront eval` / `analyze` evaluate (robustfront checkpoints or foreign weights), and
where `eval` keeps its resumable state when --out names the result file: FILE.state/ beside it
(after --state DIR and before the run folder's eval-state/; `eval.run` documents the rest).
"""
from __future__ import annotations

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
    flags = vars(args)
    given = [f for f in ("checkpoint", "weights") if flags[f]]
    foreign = [f for f in FOREIGN_FLAGS if flags[f] is not None]
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
                         "--model-file module.py:factory)" + (", or --merge STATE_DIR" if "merge" in flags
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


def state_beside_out(out: str | None) -> str | None:
    """FILE.state beside --out FILE.json (FILE.state for a name without suffix), or None."""
    if not out:
        return None
    p = Path(out)
    return str(p.with_suffix(".state") if p.suffix else p.with_name(p.name + ".state"))


__all__ = ["source_parent", "sources", "state_beside_out"]
