"""`robustfront quickstart | report | theorem1 | data info | bench`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..validation import check_int


def cmd_quickstart(args) -> int:
    from ..checkpoint import check_out_dir
    from ..device import resolve_device
    from .quickstart import quickstart
    for name in ("epochs", "n"):
        # getattr: argparse's namespace, the flags by name
        if getattr(args, name) is not None:
            check_int(name, getattr(args, name), 1)
    check_out_dir(args.out, "--out")        # before minutes of training
    resolve_device(args.device)
    quickstart(args.out, epochs=args.epochs, device=args.device, n_eval=args.n)
    return 0


def cmd_report(args) -> int:
    from ..fronts.report import report
    if args.card:  # a model card (cli/card.py), not the tables
        from .card import cmd_card
        return cmd_card(args)
    if not args.run_dirs:
        raise ValueError("report needs RUN_DIR...; allowed: run folders, or --card EVAL_OR_RUN for a model card")
    for f in report(args.run_dirs, args.out, html=args.html, reproduce=args.reproduce):
        print(f)
    return 0


def cmd_theorem1(args) -> int:
    from ..analysis.theorem1 import main_theorem1
    kw = {"seed": args.seed}
    if args.dims:
        try:
            kw["dims"] = tuple(int(d) for d in args.dims.split(","))
        except ValueError:
            raise ValueError(f"--dims={args.dims!r} is invalid; allowed: comma-separated integers like 10,100") from None
    main_theorem1(args.out, **kw)
    return 0


def cmd_data_info(args) -> int:
    from ..data import dataset_info
    if args.resize is not None:
        check_int("resize", args.resize, 1)
    print(json.dumps(dataset_info(args.data, root=args.data_root, resize=args.resize)))
    return 0


def cmd_bench(args) -> int:
    from ..bench import format_table, run_bench
    from ..checkpoint import write_json_atomic
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else None
    for name in ("batch_size", "steps", "attack_steps", "threads"):
        # getattr: argparse's namespace, the flags by name
        if getattr(args, name) is not None:
            check_int(name, getattr(args, name), 1)
    if args.warmup is not None:
        check_int("warmup", args.warmup, 0)
    report = run_bench(quick=args.quick, data=args.data, device=args.device, model=args.model,
                       batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                       attack_steps=args.attack_steps, methods=methods, threads=args.threads, variants=variants,
                       compile=args.compile, ref_workers=args.ref_workers, isolate=not args.no_isolate,
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        write_json_atomic(Path(args.json), report)
    print(format_table(report))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("quickstart", help="train and evaluate standard, PGD-AT, the weighted average and CA-AT on the "
                       "bundled digits data and draw their front (minutes)")
    p.add_argument("--out", default="runs/quickstart", help="folder for the runs and results.json "
                   "(default: runs/quickstart)")
    p.add_argument("--epochs", type=int, metavar="N", help="training epochs per method (default: 15)")
    p.add_argument("--n", type=int, metavar="N", help="test images to evaluate, a seeded subset (default: all 360)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("report", help="Markdown/CSV tables and PNG plots from run folders; fronts from sweep "
                       "folders; --card: a RobustBench model card")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders (config.yaml, metrics.jsonl, "
                   "eval*.json), or sweep folders (sweep.json: their points' rows and the fronts)")
    p.add_argument("--out", required=True, help="folder for report.md, results.csv and the figures (--card: the "
                   "model_info folder)")
    p.add_argument("--html", action="store_true", help="also write OUT/index.html: one self-contained page (figures "
                   "embedded, no network) with the fronts, a sortable table, each run's curves and each "
                   "evaluation's provenance and gradient-masking checks (default: off)")
    p.add_argument("--reproduce", metavar="FILE", help="reproduce.json for the HTML's paper | ours | verdict table "
                   "(default: a reproduce.json found in a RUN_DIR, else none)")
    from .card import add_card_flags
    add_card_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("theorem1", help="CA-AT Theorem 1: gradient conflict vs budget on synthetic data")
    p.add_argument("--out", default="runs/theorem1", help="output folder (default: runs/theorem1)")
    p.add_argument("--dims", help="comma-separated input dimensions (default: 10,100)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="data seed (default: 0)")
    p.set_defaults(func=cmd_theorem1)

    p = sub.add_parser("bench", help="training-step images/s of each method vs a reference-style PGD-AT loop")
    p.add_argument("--quick", action="store_true", help="CPU-sized: small_cnn on random CIFAR-shaped uint8 data")
    p.add_argument("--data", help="full mode: CIFAR-10 folder or archive (default: "
                   "none; quick: random CIFAR-shaped data)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--model", help="default: small_cnn (quick), resnet18 (full)")
    p.add_argument("--batch-size", type=int, metavar="N", help="default: 128")
    p.add_argument("--steps", type=int, metavar="N", help="timed rounds; each times one step of every "
                   "configuration (default: 8 quick, 30 full)")
    p.add_argument("--warmup", type=int, metavar="N", help="untimed warm-up steps per configuration "
                   "(default: 1 quick, 5 full)")
    p.add_argument("--attack-steps", type=int, default=10, metavar="N", help="PGD steps (default: 10)")
    p.add_argument("--methods", default="pgd_at,trades,mart,ca_at,agr,raat", help="comma-separated method names "
                   "(default: pgd_at,trades,mart,ca_at,agr,raat)")
    p.add_argument("--variants", help="comma-separated: fp32 (TF32 off), tf32, cl (channels_last), bf16, fast "
                   "(bf16 + channels_last), compiled (fast + torch.compile); the reference loop keeps torch's "
                   "defaults; default fp32,fast, or fp32,cl on a CPU without native bf16 (emulated bf16 is slower "
                   "than fp32)")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="torch.compile our model (not the reference's)")
    p.add_argument("--ref-workers", type=int, metavar="N", help="reference DataLoader workers (default: 0 on CPU, "
                   "4 on CUDA)")
    p.add_argument("--no-isolate", action="store_true", help="skip the per-configuration processes that measure "
                   "peak memory (memory is then not reported)")
    p.add_argument("--json", help="write the report here (default: none, nothing "
                   "is written)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("data", help="data set utilities")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=type(p))
    q = dsub.add_parser("info", help="print split sizes, classes and image shape as JSON")
    q.add_argument("--data", required=True, help="digits, gaussian, cifar10, cifar100, tiny-imagenet, or a path")
    q.add_argument("--data-root", help="folder of the named data sets (default: the cache folder, "
                   "$ROBUSTFRONT_CACHE or ~/.cache/robustfront)")
    q.add_argument("--resize", type=int, metavar="N", help="resize images to this side (needed for mixed-size "
                   "sets: CUB, Dogs; default: none, the stored size)")
    q.set_defaults(func=cmd_data_info)


__all__ = ["add_commands"]
