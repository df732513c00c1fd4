"""`robustfront export`: a model as plain files that code which has never seen robustfront loads.

    robustfront export runs/ca_at/checkpoints/best.pt --out release/ca_at.safetensors
    robustfront export delta.pt --merge [--base vit_b.pth] --out release/vit_lora.safetensors
    robustfront export TRADES_wrn34.pt --model wrn34_10 --out release/trades_wrn34.pt
    robustfront export runs/ca_at/checkpoints/best.pt --hub-dir release/ca_at [--eval runs/ca_at/eval.json]

The suffix of --out picks the format (.pt/.pth: torch.save of a flat {name: tensor}; .safetensors;
none: both); a .json beside it records the architecture and the normalisation. Layouts: see
models/export.py (robustfront and foreign models: normalisation inside as normalize.mean/std) and
models/peft.py export_file (fine-tuned models, --merge: LoRA folded into the weights, timm's keys,
normalisation NOT inside: the .json gives its mean/std). --hub-dir writes a Hugging Face model
repository instead (models/hub.py: model.safetensors, config.json, README.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..validation import invalid

SUFFIXES = {".pt": ("pt",), ".pth": ("pt",), ".safetensors": ("safetensors",), "": ("pt", "safetensors")}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _merged(args, state, out: Path) -> list[Path]:
    """A fine-tuning checkpoint merged (models.peft.export_file) to bare tensors, with a .json of its stats."""
    from ..checkpoint import write_json_atomic
    from ..models.peft import export_file
    if not args.merge:
        raise ValueError(f"{args.checkpoint} is a fine-tuning checkpoint (mode {state['peft'].get('mode')}): a delta "
                         f"over base weights; allowed: --merge (writes the merged model) [--base FILE]")
    files = [export_file(args.checkpoint, out.with_suffix(s), base=args.base, plain=True)
             for s in ((out.suffix,) if out.suffix else (".pt", ".safetensors"))]
    cfg = dict(state.get("model_config") or {})
    weights = state.get("delta") or state.get("model") or {}
    # the stats the model was fine-tuned with (load_pretrained may have replaced the config's defaults)
    mean, std = (weights[k].flatten().tolist() if k in weights else cfg.get(k.split(".")[1])
                 for k in ("normalize.mean", "normalize.std"))
    info = {"format": "merged fine-tuned model: bare tensors with the architecture's own (timm) keys, inputs in "
                      "[0, 1], normalisation NOT inside: apply (x - mean) / std per channel first",
            "architecture": cfg, "mean": mean, "std": std, "peft": dict(state["peft"]),
            "adapters_kept": state["peft"].get("mode") == "adapter", "files": [f.name for f in files]}
    return files + [write_json_atomic(out.with_suffix(".json"), info)]


def _hub(args) -> int:
    """--hub-dir: the checkpoint (a fine-tuning delta merged first) in the model-hub layout, with the
    run's threat model and an evaluation (--eval, else the run folder's one eval*.json)."""
    import json

    from .. import checkpoint as ckpt
    from ..models import load_model
    from ..models.hub import write_hub
    if args.out or args.model or args.model_file:
        raise ValueError("--hub-dir exports a robustfront checkpoint; allowed: without --out/--model/--model-file")
    out = ckpt.check_out_dir(args.hub_dir, "--hub-dir")
    state = ckpt.load(args.checkpoint)
    model = load_model(state, base=args.base)
    if "peft" in state:  # LoRA folded in: the plain architecture; adapters cannot be folded
        from ..models.peft import merged_checkpoint
        if state["peft"].get("mode") == "adapter":
            raise ValueError(f"{args.checkpoint} is an adapter fine-tuning checkpoint: its adapter modules are not "
                             f"part of the architecture a hub config rebuilds; allowed: --out FILE --merge")
        model = load_model(merged_checkpoint(model))
    run = Path(args.checkpoint).resolve().parent.parent
    evals = [Path(args.eval)] if args.eval else sorted(run.glob("eval*.json")) if (run / "config.yaml").is_file() \
        else []
    if len(evals) > 1:
        raise ValueError(f"run folder {run} holds {len(evals)} eval files ({', '.join(f.name for f in evals)}); "
                         f"allowed: --eval naming one")
    evaluation = None
    if evals:
        try:
            evaluation = json.loads(evals[0].read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"--eval {evals[0]} is not a readable eval JSON ({e})") from None
    for f in write_hub(model, out, evaluation=evaluation, eval_source=evals[0].name if evals else None,
                       train_config=state.get("config"), name=args.hub_name):
        print(f)
    return 0


def _check_sidecars(out: Path) -> None:
    """The files written beside --out (FILE.json; FILE.pt/.safetensors for a bare FILE) replace only an
    earlier export's: `--out RUN/eval` must not overwrite the run's eval.json."""
    import json
    names = [out.with_suffix(s) for s in (".json",) + ((".pt", ".safetensors") if not out.suffix else ())]
    sidecar = out.with_suffix(".json")
    try:
        ours = json.loads(sidecar.read_text()) if sidecar.is_file() else None
    except (OSError, ValueError):
        ours = {}
    ours = ours if isinstance(ours, dict) and "format" in ours and "files" in ours else None
    for p in names:
        if p.exists() and (ours is None or (p != sidecar and p.name not in ours["files"])):
            raise invalid("out", str(out), "a name whose .json (and, without a suffix, .pt/.safetensors) is free or "
                          "an earlier export's", f"about to overwrite {p}, which no export wrote")


def cmd_export(args) -> int:
    from .. import checkpoint as ckpt
    from ..models import load_model
    from ..models.export import export_plain
    if args.hub_dir:
        return _hub(args)
    if not args.out:
        raise ValueError("export needs --out FILE (plain weights) or --hub-dir DIR (a model-hub repository)")
    out = ckpt.check_out_file(args.out, "--out")   # '', a folder, under a file or a device: before any work
    if out.suffix not in SUFFIXES:
        raise invalid("out", args.out, "FILE.pt, FILE.pth, FILE.safetensors, or FILE without a suffix (both)",
                      f"not a weights file name ({out.suffix})")
    _check_sidecars(out)
    foreign = args.model is not None or args.model_file is not None
    if foreign:
        from ..models.foreign import describe, load_foreign
        from ..models.normalize import parse_stats
        if args.merge or args.base:
            raise ValueError("--merge/--base are for robustfront fine-tuning checkpoints; allowed: without them for "
                             "--model/--model-file weights")
        model, report = load_foreign(args.model, args.checkpoint, model_file=args.model_file,
                                     num_classes=args.num_classes,
                                     input_mean=parse_stats(args.input_mean, "input_mean"),
                                     input_std=parse_stats(args.input_std, "input_std"))
        _say(f"loaded {describe(report)}")
        files = list(export_plain(model, out, formats=SUFFIXES[out.suffix]).values())
    else:
        state = ckpt.load(args.checkpoint)
        if "peft" in state:
            files = _merged(args, state, out)
        else:
            if args.base:
                raise ValueError("--base is the base weights of a fine-tuning checkpoint; "
                                 f"{args.checkpoint} holds the whole model (allowed: without --base)")
            if args.merge:
                _say(f"{args.checkpoint} is not a fine-tuning delta: nothing to merge, exported as it is")
            files = list(export_plain(load_model(args.checkpoint), out, formats=SUFFIXES[out.suffix]).values())
    for f in files:
        print(f)
    return 0


def add_commands(sub) -> None:
    from ..models import list_models
    p = sub.add_parser("export", help="write a model as a plain state dict (.pt / .safetensors + .json) that code "
                       "without robustfront loads", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a robustfront checkpoint (training run, fine-tuning "
                   "delta) or, with --model/--model-file, weights trained elsewhere")
    p.add_argument("--hub-dir", metavar="DIR", help="write a Hugging Face model repository (model.safetensors, "
                   "config.json with architecture, arguments, normaliser, threat model and evaluation, README.md)")
    p.add_argument("--hub-name", metavar="NAME", help="--hub-dir: the model card's title (default: DIR's name)")
    p.add_argument("--eval", metavar="EVAL.json", help="--hub-dir: the evaluation to summarise (default: the run "
                   "folder's one eval*.json)")
    p.add_argument("--out", help="FILE.pt, FILE.safetensors (the format), or FILE (both); FILE.json "
                   "is written beside it")
    p.add_argument("--merge", action="store_true", help="fine-tuning checkpoint: fold LoRA into the weights and "
                   "write the whole model (adapter mode keeps its adapter modules)")
    p.add_argument("--base", metavar="FILE", help="base weights of a fine-tuning delta (default: the path it "
                   "recorded; its sha256 must match)")
    p.add_argument("--model", metavar="NAME", help=f"architecture of foreign weights: {', '.join(list_models())}")
    p.add_argument("--model-file", metavar="FILE.py:FACTORY", help="architecture of foreign weights: your factory")
    p.add_argument("--input-mean", metavar="M", help="foreign weights: per-channel mean (default: none)")
    p.add_argument("--input-std", metavar="S", help="foreign weights: per-channel std (default: none)")
    p.add_argument("--num-classes", type=int, metavar="K", help="foreign weights: classes (checked)")
    p.set_defaults(func=cmd_export)


__all__ = ["add_commands", "cmd_export"]
