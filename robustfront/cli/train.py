"""`robustfront train`: one flag per TrainConfig field, generated from its declaration."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import yaml

from ..train.config import TrainConfig, read_yaml
from .flags import add_fields

DICTS = {"opts": ("--opt", "hyper-parameter of the method, e.g. gamma=0.8 or combiner.gamma=0.8 (repeatable)"),
         "model_args": ("--model-arg", "architecture option, e.g. width=16 (repeatable)")}


def key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE with the value parsed as YAML (numbers, booleans, lists); 8/255 stays a string."""
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    k, v = text.split("=", 1)
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not valid YAML") from None


def milestones(text: str) -> list[float]:
    """M1,M2,... as positive numbers (fractions of the run below 1, epochs from 1)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(v > 0 and v == v and v != float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"milestones={text!r} is invalid; allowed: comma-separated positive "
                                         f"numbers (fractions < 1 of the run, or epochs)")
    return values


def registry_names() -> dict[str, str]:
    """Allowed values of the fields that name a registered thing, read from the registries."""
    from ..attacks import names_help
    from ..combiners import COMBINERS
    from ..models import list_models
    from ..objectives import OBJECTIVES
    from ..train.methods import METHODS
    return {"model": ", ".join(list_models()), "method": ", ".join(METHODS.names()),
            "objective": ", ".join(OBJECTIVES.names()), "combiner": ", ".join(COMBINERS.names()),
            "attack": "none, " + names_help()}


def add_train_args(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults None, so only the flags given override the config file."""
    special = {name: {"flag": flag, "action": "append", "type": key_value, "metavar": "KEY=VALUE", "help": text}
               for name, (flag, text) in DICTS.items()}
    special["milestones"] = {"type": milestones, "metavar": "M1,M2"}
    add_fields(p, TrainConfig, special=special, allowed=registry_names())
    p.add_argument("--config", help="YAML file of config keys (see docs); flags override it")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoints/last.pt exactly; the config "
                   "must be the run's own (only epochs and logging may change)")
    p.add_argument("--force", action="store_true", help="overwrite a run already in OUT")
    p.add_argument("--list-opts", action="store_true", help="print the method's hyper-parameters (--opt PART.NAME: "
                   "type, the value this method uses, what it means) and exit; with --method, --objective, --wrap, ...")


def config_from_args(args) -> TrainConfig:
    """The config file (or, for --resume, the run's config.yaml), then the flags given, validated."""
    d: dict = {}
    if args.config:
        d = read_yaml(args.config)
    elif args.resume and args.out and (Path(args.out) / "config.yaml").is_file():
        d = read_yaml(Path(args.out) / "config.yaml")
    for f in dataclasses.fields(TrainConfig):
        # getattr: argparse's namespace, one flag per TrainConfig field (absent ones: not given)
        v = getattr(args, f.name, None)
        if v is None:
            continue
        if f.name in DICTS:
            base = d.get(f.name) or {}
            if not isinstance(base, dict):
                raise ValueError(f"{f.name}={base!r} in the config file is not a mapping; allowed: KEY: VALUE entries")
            v = {**base, **dict(v)}
        d[f.name] = v
    return TrainConfig.from_dict(d)


def cmd_train(args) -> int:
    from ..train import train
    from ..train.distributed import rank_from_env
    cfg = config_from_args(args)
    if args.list_opts:
        from ..train.methods import options_text
        print(options_text(cfg))
        return 0
    if cfg.out is None:
        raise ValueError("--out is required: the folder for config.yaml, metrics.jsonl and checkpoints/")
    metrics = train(cfg, resume=args.resume, force=args.force)
    if rank_from_env()[0] != 0:   # under torchrun, rank 0 speaks for the run
        return 0
    if not metrics:
        print(f"robustfront: {cfg.out} already finished all {cfg.epochs} epochs; nothing to do (raise --epochs "
              f"to continue it)", file=__import__("sys").stderr)
    print(json.dumps(metrics))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a model with a named method (all flags: robustfront train --help)",
                       description="Train a model. Every flag is a config key; --config FILE sets many at once. "
                                   "Several GPUs or processes: torchrun --nproc_per_node=N -m robustfront train ... "
                                   "(batch_size is the global batch; docs/distributed.md).")
    add_train_args(p)
    p.set_defaults(func=cmd_train)


__all__ = ["add_commands", "add_train_args", "config_from_args"]
