"""robustfront command line: quickstart | train | eval | report | analyze | bench | theorem1 | data info."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

import yaml

from .train.config import TrainConfig, parse_number


def _kv(text: str) -> tuple[str, object]:
    """KEY=VALUE with the value parsed as YAML (numbers, booleans, lists); 8/255 stays a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    k, v = text.split("=", 1)
    return k.strip(), yaml.safe_load(v)


def _fraction(text: str) -> str:
    try:
        parse_number(text, "value")  # validate now, keep the fraction's spelling for config.yaml
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; allowed: a number or a fraction like 8/255") from None
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad value gives one line (no usage dump): what was wrong and what is allowed."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (defaults None so only given flags override the config file)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = str(hints[f.name])
        if f.name in ("opts", "model_args"):
            name = "--opt" if f.name == "opts" else "--model-arg"
            p.add_argument(name, dest=f.name, action="append", type=_kv, metavar="KEY=VALUE",
                           help=f"{f.name} entry (repeatable)")
        elif f.name == "milestones":
            p.add_argument(flag, type=lambda s: [float(v) for v in s.split(",")], metavar="M1,M2",
                           help="LR decay points: fractions of the run (<1) or epochs")
        elif "bool" in hint:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif "int" in hint and "float" not in hint:
            p.add_argument(flag, type=int)
        elif f.name in ("eps", "alpha", "lr", "momentum", "weight_decay", "lr_decay", "warmup"):
            p.add_argument(flag, type=_fraction, metavar="X")
        else:
            p.add_argument(flag)
    p.add_argument("--config", help="YAML file of TrainConfig keys; flags override it")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoints/last.pt exactly")


def config_from_args(args) -> TrainConfig:
    if args.config:
        cfg = TrainConfig.from_yaml(args.config)
    elif args.resume and args.out and (Path(args.out) / "config.yaml").is_file():
        cfg = TrainConfig.from_yaml(str(Path(args.out) / "config.yaml"))
    else:
        cfg = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is None:
            continue
        if f.name in ("opts", "model_args"):
            v = {**getattr(cfg, f.name), **dict(v)}
        elif f.name in ("alpha", "eps", "lr", "momentum", "weight_decay", "lr_decay", "warmup"):
            v = v if "/" in v else float(v)
        setattr(cfg, f.name, v)
    return cfg


def cmd_train(args) -> int:
    from .train import train
    cfg = config_from_args(args)
    if cfg.out is None:
        raise ValueError("--out is required: the folder for config.yaml, metrics.jsonl and checkpoints/")
    metrics = train(cfg, resume=args.resume)
    print(json.dumps(metrics))
    return 0


def cmd_eval(args) -> int:
    from .eval import aggregate, auto_batch_size, check_attack_name, evaluate, format_sanity, sanity_check
    from .train.loop import resolve_device

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    for a in attacks:
        check_attack_name(a)
    eps_strs = [e.strip() for e in args.eps.split(",") if e.strip()]
    eps_list = [parse_number(e, "eps") for e in eps_strs]
    device = resolve_device(args.device)
    err = lambda m: print(m, file=sys.stderr, flush=True)  # progress goes to stderr, the JSON to stdout
    _pm = lambda d: f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f}%"
    results = []
    for ck in args.checkpoint:
        cfg, model, data, ds, xt, yt = _checkpoint_data(ck, args, device)
        bs = args.batch_size or auto_batch_size(model, xt)
        err(f"evaluating {ck} on {data} ({args.split}, n={len(yt)}, seed={args.seed}), {args.norm} eps={args.eps}")
        res = evaluate(model, xt, yt, attacks, eps=eps_list if len(eps_list) > 1 else eps_list[0], norm=args.norm,
                       seed=args.seed, batch_size=bs, bounds=ds.bounds, log=err)
        res.update({"checkpoint": str(ck), "data": data, "split": args.split,
                    "eps_str": eps_strs if len(eps_strs) > 1 else eps_strs[0],
                    "model": cfg.get("model"), "method": cfg.get("method"), "train_seed": cfg.get("seed"),
                    "batch_size": bs})
        if args.sanity:
            # at the largest ε of a sweep: the one where masking shows most
            i = max(range(len(eps_list)), key=eps_list.__getitem__)
            res["sanity"] = sanity_check(model, xt, yt, eps=eps_list[i], norm=args.norm, seed=args.seed,
                                         batch_size=bs, bounds=ds.bounds)
            res["sanity"]["eps_str"] = eps_strs[i]
            for line in format_sanity(res["sanity"]):
                err(line)
        results.append(res)
    if len(results) == 1:
        out = results[0]
    else:
        out = {"checkpoints": results, "aggregate": aggregate(results), "n": results[0]["n"], "norm": args.norm,
               "seed": args.seed, "data": results[0]["data"], "eps_str": results[0]["eps_str"]}
        agg = out["aggregate"]
        for a in (agg["sweep"] if "sweep" in agg else [agg]):
            err(f"eps={a['eps']:.5g} over {len(results)} checkpoints: clean {_pm(a['clean_acc'])}, " + ", ".join(
                f"{k} {_pm(v)}" for k, v in a["robust_acc"].items()) + f", worst {_pm(a['worst_case_acc'])}")
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def cmd_report(args) -> int:
    from .report import report
    files = report(args.run_dirs, args.out)
    for f in files:
        print(f)
    return 0


def _checkpoint_data(ck, args, device):
    """(training config, model in eval mode, data name, Dataset, x, y) for one checkpoint: x, y are
    the --split images (a seeded --n subset), as float tensors on `device`."""
    import torch

    from .data import load_dataset
    from .models import load_model
    from .train.checkpoint import load
    state = load(ck, device)
    model = load_model(state, device=device)
    cfg = state.get("config", {})
    data = args.data or cfg.get("data")
    if data is None:
        raise ValueError("--data is required: the checkpoint does not name its data set")
    # the training run's data settings: its input size, and its seed and size for the val split
    # (another seed would carve a "val" split holding training images)
    ds = load_dataset(data, root=args.data_root or cfg.get("data_root"), seed=cfg.get("seed", 0),
                      val_size=cfg.get("val_size"), resize=args.resize or cfg.get("resize"))
    x, y = (ds.x_test, ds.y_test) if args.split == "test" else (ds.x_val, ds.y_val)
    x, y = _subset(x, y, args.n, args.seed)
    xt = torch.as_tensor(x, device=device)
    xt = xt.float().div(255) if xt.dtype == torch.uint8 else xt.float()
    return cfg, model, data, ds, xt, torch.as_tensor(y, device=device)


def cmd_analyze(args) -> int:
    import torch

    from .analysis.figures import boundary_figure, landscape_figure
    from .attacks import PGD
    from .train.loop import resolve_device
    device = resolve_device(args.device)
    models, x, y, data = {}, None, None, set()
    for ck in args.checkpoint:
        cfg, model, name, ds, xt, yt = _checkpoint_data(ck, args, device)
        if x is not None and (xt.shape != x.shape or not torch.equal(xt, x)):
            raise ValueError(f"{ck} was trained on other data ({name}); allowed: checkpoints of one data set")
        x, y = xt, yt
        data.add(name)
        label = cfg.get("method") or Path(ck).stem
        models[label if label not in models else f"{label} ({ck})"] = model
    where = f"{data.pop()} {args.split}"
    if args.kind == "landscape":
        eps = parse_number(args.eps, "eps")
        attack = PGD(eps, alpha=eps / 4, steps=10, bounds=ds.bounds) if eps > 0 else None
        label = where + (f", PGD-10 L-inf eps={args.eps}" if attack else ", clean")
        res = landscape_figure(models, x, y, args.out, seed=args.seed, attack=attack, label=label)
    else:
        res = boundary_figure(models, x, args.out, directions=args.directions, max_steps=args.max_steps,
                              seed=args.seed, clamp=ds.bounds is not None, label=where)
    print(json.dumps({k: v for k, v in res.items() if k in ("kind", "n", "files")}))
    return 0


def _subset(x, y, n, seed):
    """A seeded random subset: files come sorted by class, so never take the first n."""
    import numpy as np
    if n is None or n >= len(y):
        return x, y
    if n < 1:
        raise ValueError(f"--n={n} must be >= 1")
    idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[idx], y[idx]


def cmd_quickstart(args) -> int:
    from .quickstart import quickstart
    quickstart(args.out, epochs=args.epochs, device=args.device, n_eval=args.n)
    return 0


def cmd_theorem1(args) -> int:
    from .analysis import main_theorem1
    kw = {"seed": args.seed}
    if args.dims:
        kw["dims"] = tuple(int(d) for d in args.dims.split(","))
    main_theorem1(args.out, **kw)
    return 0


def cmd_data_info(args) -> int:
    from .data import dataset_info
    print(json.dumps(dataset_info(args.data, root=args.data_root, resize=args.resize)))
    return 0


def cmd_bench(args) -> int:
    from .bench import format_table, run_bench
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
    report = run_bench(quick=args.quick, data=args.data, device=args.device, model=args.model,
                       batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                       attack_steps=args.attack_steps, methods=methods, threads=args.threads, variants=variants,
                       compile=args.compile, ref_workers=args.ref_workers, isolate=not args.no_isolate,
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robustfront", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model with a named method")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    def _fractions(text: str) -> str:
        """One number or fraction, or a comma-separated list of them (an ε sweep)."""
        for part in text.split(","):
            _fraction(part.strip())
        return text

    p = sub.add_parser("eval", help="clean and robust accuracy of one or more checkpoints")
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="one or more checkpoints (several: per-checkpoint results and mean ± std)")
    p.add_argument("--data", help="data set (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", help="default: the training run's")
    p.add_argument("--resize", type=int, help="image side (default: the training run's)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="val: the training run's held-out split (same seed and size)")
    p.add_argument("--attacks", default="pgd20,autoattack",
                   help="comma-separated attack names: fgsm, pgdK, pgdKxR, mifgsm, cw, cw0, spsa, apgd-ce, apgd-dlr, "
                        "apgd-t, fab, fab-t, square, autoattack, autoattack-plus")
    p.add_argument("--eps", default="8/255", type=_fractions, help="budget, or a comma-separated sweep 2/255,4/255")
    p.add_argument("--norm", choices=("Linf", "L2", "L1"), default="Linf")
    p.add_argument("--n", type=int, help="evaluate a seeded random subset of this many images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="default: chosen for the device (CPU 500; CUDA: what fits "
                                                  "in half the free memory, up to 4096)")
    p.add_argument("--device", default="auto")
    p.add_argument("--sanity", action="store_true", help="run the six gradient-masking checks (PASS/WARN)")
    p.add_argument("--out", help="write the JSON result here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("analyze", help="weight loss landscape or decision-boundary distance of checkpoints "
                                       "(AGR Fig. 5 / Fig. 4): JSON and PNG")
    p.add_argument("kind", choices=("landscape", "boundary"))
    p.add_argument("--checkpoint", required=True, nargs="+", help="one curve per checkpoint (same data set)")
    p.add_argument("--data", help="data set (default: the one the checkpoints were trained on)")
    p.add_argument("--data-root", help="default: the training run's")
    p.add_argument("--resize", type=int, help="image side (default: the training run's)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--n", type=int, default=100, help="seeded random subset of this many images (default 100)")
    p.add_argument("--eps", default="8/255", type=_fraction,
                   help="landscape: loss on PGD-10 examples at this L-inf budget (0: clean loss)")
    p.add_argument("--directions", type=int, default=1000, help="boundary: random directions per image")
    p.add_argument("--max-steps", type=int, default=64, help="boundary: steps of 1/255 before giving up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="folder for landscape|boundary .json and .png")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="Markdown/CSV tables and PNG plots from run folders")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="folder for report.md, results.csv and the plots")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("quickstart", help="train and evaluate three methods on the bundled digits data")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n", type=int, default=None, help="test images to evaluate (default: all 360)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("theorem1", help="CA-AT Theorem 1: gradient conflict vs budget on synthetic data")
    p.add_argument("--out", default="runs/theorem1")
    p.add_argument("--dims", help="comma-separated input dimensions (default 10,100)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_theorem1)

    p = sub.add_parser("bench", help="training-step images/s of each method vs a reference-style PGD-AT loop")
    p.add_argument("--quick", action="store_true", help="CPU-sized: small_cnn on random CIFAR-shaped uint8 data")
    p.add_argument("--data", help="full mode: CIFAR-10 folder or archive (quick default: random-cifar)")
    p.add_argument("--device", default="auto")
    p.add_argument("--model", help="default: small_cnn (quick), resnet18 (full)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, help="timed rounds; each times one step of every configuration "
                                             "(default: 8 quick, 30 full)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps per configuration")
    p.add_argument("--attack-steps", type=int, default=10)
    p.add_argument("--methods", default="pgd_at,trades,mart,ca_at,agr,raat")
    p.add_argument("--variants", help="our speed options: fp32, cl (channels_last), fast (bf16 + channels_last); "
                   "default fp32,fast, or fp32,cl on a CPU without native bf16 (emulated bf16 is slower than fp32)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="torch.compile our model (not the reference's)")
    p.add_argument("--ref-workers", type=int, help="reference DataLoader workers (default: 0 on CPU, 4 on CUDA)")
    p.add_argument("--no-isolate", action="store_true", help="skip the per-configuration processes that measure "
                   "peak memory (memory is then not reported)")
    p.add_argument("--json", help="write the report here")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("data", help="data set utilities")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("info", help="print split sizes, classes and image shape as JSON")
    q.add_argument("--data", required=True, help="digits, gaussian, cifar10, cifar100, or a path")
    q.add_argument("--data-root")
    q.add_argument("--resize", type=int, help="resize images to this side (needed for mixed-size sets: CUB, Dogs)")
    q.set_defaults(func=cmd_data_info)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        # one line, naming the value and what is allowed (the messages are written that way)
        print(f"robustfront: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
