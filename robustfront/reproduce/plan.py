"""`reproduce --plan`: what a selection costs before it runs. An ESTIMATE, and labelled as one.

FLOPs per image come from bench/flops.py's counter (one forward, input backward and parameter
backward, counted on the `meta` device: nothing is computed), times the method's pass structure
(`step_structure`, with the approximations below for methods it does not list), times the training
images and epochs. Evaluation counts attack iterations per image (images × steps); an iteration is
one forward and one input backward. AutoAttack (standard) is counted as APGD-CE's 100 iterations on
every image plus APGD-T (9 × 100), FAB-T (9 × 100) and Square (5 000 queries, 1/3 of an iteration
each) on the half assumed still robust after APGD-CE. GPU-hours divide by an ASSUMED sustained
throughput (THROUGHPUT, override with --throughput), not a measurement.
"""
from __future__ import annotations

import functools

# assumed sustained FLOP/s: training (TF32/bf16 convolutions at a modest utilisation) and the
# exact-fp32 evaluation. Stated in every plan; replace with bench numbers when measured.
THROUGHPUT = {"H100": {"train": 40e12, "eval": 20e12}, "H200": {"train": 45e12, "eval": 22e12}}
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "tiny-imagenet": 100_000, "digits": 1_797}
TEST_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "tiny-imagenet": 10_000, "digits": 360}
FOLDER_IMAGES = {"cub": (5_994, 5_794, 200), "dogs": (12_000, 8_580, 120)}   # train, test, classes
SHAPES = {"cifar10": (3, 32, 10), "cifar100": (3, 32, 100), "tiny-imagenet": (3, 64, 200), "digits": (1, 8, 10)}
AA_ITERS = 100 + 0.5 * (900 + 900 + 5000 / 3)
# methods step_structure does not list, as (forwards, input backwards, full backwards) with k attack steps
EXTRA = {"standard": lambda k: (1, 0, 1), "cons_at": lambda k: (2 * k + 2, 2 * k, 2),
         "avmixup": lambda k: (k + 2, k, 2), "clp": lambda k: (k + 2, k, 2)}
FAMILY = {"agr_trades": "trades", "ca_at_trades": "trades", "agr_mart": "mart", "raat_pp": "raat",
          "raat_sharp": "raat", "agr_awp": "agr", "agr_avmixup": "agr", "ca_at_clp": "ca_at", "awp": "pgd_at"}


def _data_shape(cfg: dict) -> tuple[int, int, int, int, int]:
    """(channels, side, classes, train images, test images) for a recipe's data."""
    data = str(cfg.get("data", "")).lower()
    for key, (tr, te, k) in FOLDER_IMAGES.items():
        if key in data:
            return 3, int(cfg.get("resize") or 224), k, tr, te
    c, side, k = SHAPES.get(data, (3, 32, 10))
    train = TRAIN_IMAGES.get(data, 50_000) - int(cfg.get("val_size") or 0)
    return c, int(cfg.get("resize") or side), k, train, TEST_IMAGES.get(data, 10_000)


@functools.lru_cache(maxsize=64)
def model_passes(model: str, channels: int, side: int, classes: int, args: str) -> dict:
    """FLOPs per image of one forward / input backward / full backward (meta device: nothing runs)."""
    import json

    import torch

    from ..bench.flops import pass_flops
    from ..models import create_model
    with torch.device("meta"):
        m = create_model(model, classes, in_channels=channels, input_size=side, **json.loads(args))
        x, y = torch.rand(1, channels, side, side), torch.zeros(1, dtype=torch.long)
    return pass_flops(m, x, y)


# forward FLOPs per image where the counter cannot build the model here (timm not installed): the
# published count (Swin paper, Table 1: 4.5 G multiply-adds at 224 px), backward passes taken as 1x / 2x.
KNOWN_FORWARD = {"timm:swin_tiny_patch4_window7_224": 2 * 4.5e9}


def _passes(model: str, c: int, side: int, k: int, args: dict) -> dict:
    import json
    try:
        return model_passes(model, c, side, k, json.dumps(args, sort_keys=True))
    except Exception:  # noqa: BLE001 - an optional dependency missing: fall back to a published count
        if model not in KNOWN_FORWARD:
            raise
        f = KNOWN_FORWARD[model] * (side / 224) ** 2
        return {"forward": f, "input_backward": f, "full_backward": 2 * f}


def _structure(method: str, k: int) -> tuple[int, int, int]:
    from ..bench.flops import PASSES, step_structure
    if method in EXTRA:
        return EXTRA[method](k)
    s = step_structure(FAMILY.get(method, method), k) or step_structure("pgd_at", k)
    return tuple(s[p] for p in PASSES)


def attack_iters(protocol: dict) -> float:
    """Attack iterations per image for one checkpoint under a protocol (every budget it lists)."""
    import re
    total = 0.0
    for a in protocol["attacks"]:
        name = a["attack"].replace("-", "_")
        m = re.fullmatch(r"pgd(\d+)(?:x(\d+))?", name)
        n_eps = len(a["eps"]) if isinstance(a.get("eps"), list) else 1
        if name.startswith("autoattack"):
            it = AA_ITERS
        elif m:
            it = int(m.group(1)) * int(m.group(2) or 1)
        else:
            it = a.get("steps") or {"fgsm": 1, "cw": 30, "cw0": 30, "mifgsm": 10}.get(name, 100)
        total += it * n_eps
    return total


def entry_cost(entry, protocols: list[dict], seeds: int | None = None) -> dict:
    """Runs, epochs, training FLOPs, evaluation images × attack iterations and GPU-hours of one entry."""
    cfg = entry.config
    runs = (seeds or entry.seeds) * max(1, _grid_size(entry.grid))
    c, side, k, n_train, n_test = _data_shape(cfg)
    model = cfg["model"]
    args = {kk: v for kk, v in (cfg.get("model_args") or {}).items() if kk not in ("mean", "std")}
    try:
        p = _passes(model, c, side, k, args)
    except Exception as e:  # noqa: BLE001 - e.g. timm missing: the plan says so instead of failing
        return {"id": entry.id, "runs": runs, "epochs": cfg["epochs"], "error": f"no FLOP count for {model}: {e}"}
    fwd, bx, bf = _structure(cfg["method"], int(cfg["attack_steps"]))
    per_image = fwd * p["forward"] + bx * p["input_backward"] + bf * p["full_backward"]
    train_flops = per_image * n_train * cfg["epochs"] * runs
    # the per-epoch selection check (PGD-eval_steps on its images) belongs to training
    if cfg.get("select_on") in ("val", "test"):
        n_check = cfg.get("eval_n") or (n_test if cfg["select_on"] == "test" else (cfg.get("val_size") or 1000))
        checks = -(-cfg["epochs"] // int(cfg.get("eval_every") or 1))
        train_flops += runs * checks * n_check * cfg.get("eval_steps", 10) * (p["forward"] + p["input_backward"])
    iters = sum(attack_iters(pr) for pr in protocols)
    eval_img_steps = iters * n_test * runs
    eval_flops = eval_img_steps * (p["forward"] + p["input_backward"])
    hours = {g: train_flops / t["train"] / 3600 + eval_flops / t["eval"] / 3600 for g, t in THROUGHPUT.items()}
    return {"id": entry.id, "runs": runs, "epochs": cfg["epochs"], "train_images": n_train,
            "train_flops": train_flops, "eval_images_x_steps": eval_img_steps, "eval_flops": eval_flops,
            "gpu_hours": hours}


def _grid_size(grid: dict) -> int:
    n = 1
    for v in grid.values():
        n *= len(v)
    return n


def format_plan(costs: list[dict], skipped: list) -> str:
    lines = ["ESTIMATE (not a measurement): FLOP model of robustfront/bench/flops.py / assumed sustained throughput "
             + ", ".join(f"{g} train {t['train'] / 1e12:.0f} TFLOP/s, eval fp32 {t['eval'] / 1e12:.0f} TFLOP/s"
                         for g, t in THROUGHPUT.items()),
             f"{'entry':58s} {'runs':>4s} {'epochs':>6s} {'img x attack steps':>18s} {'H100 h':>8s} {'H200 h':>8s}"]
    tot = {"runs": 0, "H100": 0.0, "H200": 0.0, "steps": 0.0}
    for c in costs:
        if "error" in c:
            lines.append(f"{c['id']:58s} {c['runs']:4d} {c['epochs']:6d}  {c['error']}")
            continue
        lines.append(f"{c['id']:58s} {c['runs']:4d} {c['epochs']:6d} {c['eval_images_x_steps']:18.3g} "
                     f"{c['gpu_hours']['H100']:8.1f} {c['gpu_hours']['H200']:8.1f}")
        tot["runs"] += c["runs"]
        tot["steps"] += c["eval_images_x_steps"]
        for g in ("H100", "H200"):
            tot[g] += c["gpu_hours"][g]
    lines.append(f"{'total (' + str(len(costs)) + ' trained entries)':58s} {tot['runs']:4d} {'':6s} "
                 f"{tot['steps']:18.3g} {tot['H100']:8.1f} {tot['H200']:8.1f}")
    for e in skipped:
        lines.append(f"not trained: {e.id} ({e.status}): {e.raw.get('reason', '')}")
    return "\n".join(lines)


__all__ = ["THROUGHPUT", "attack_iters", "entry_cost", "format_plan", "model_passes"]
