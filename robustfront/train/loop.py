"""The training loop: data on the device, objective -> gradients -> combiner -> SGD step.

One function a reader can hold in their head. Nothing reads device values back
to the host inside a step; metrics are summed on the device and read once per
epoch (the `sync` comments mark where that happens).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from ..attacks import create_attack
from ..combiners import create_combiner
from ..data import DeviceLoader, load_dataset
from ..eval.metrics import accuracy
from ..models import create_model, eval_mode
from ..objectives import create_objective
from . import checkpoint as ckpt
from .config import TrainConfig
from .ema import EMA
from .methods import METHODS, split_opts
from .schedule import Schedule
from .term_grads import TermGrads


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} is not available on this machine; allowed: cpu" )
    return torch.device(name)


def build_attack(cfg: TrainConfig, name: str, steps: int | None = None, bounds=(0.0, 1.0)):
    """The training attack `name` with the run's threat model (ε, α, steps, norm) and input box
    (`Dataset.bounds`: None for unbounded data such as the Gaussian model)."""
    if name == "none":
        return None
    if name == "fgsm" or name == "trades_kl":
        if cfg.norm != "Linf":
            raise ValueError(f"attack {name!r} is L-infinity only; norm={cfg.norm!r} is not allowed with it")
        kw = {} if name == "fgsm" else {"alpha": cfg.alpha, "steps": steps or cfg.attack_steps}
        return create_attack(name, eps=cfg.eps, bounds=bounds, **kw)
    return create_attack(name, eps=cfg.eps, alpha=cfg.alpha, steps=steps or cfg.attack_steps, norm=cfg.norm,
                         bounds=bounds)


def build_method(cfg: TrainConfig, bounds=(0.0, 1.0)):
    method = METHODS.get(cfg.method)
    obj_args, comb_args = split_opts(method, cfg.opts)
    attack = build_attack(cfg, cfg.attack or method.attack, bounds=bounds)
    objective = create_objective(method.objective, **({"attack": attack} if attack else {}), **obj_args)
    combiner = create_combiner(method.combiner, **comb_args)
    check_pairing(objective, combiner, method.objective, method.combiner)
    return objective, combiner


def check_pairing(objective, combiner, obj_name: str, comb_name: str) -> None:
    """An objective and a combiner fit when no term is lost and none is counted twice."""
    if combiner.separate and set(objective.terms) != set(combiner.terms):
        raise ValueError(f"combiner '{comb_name}' needs exactly the terms {list(combiner.terms)}; objective "
                         f"'{obj_name}' gives {list(objective.terms)}")
    if not combiner.separate and objective.terms_overlap:
        raise ValueError(f"objective '{obj_name}' with surgery=True / with_clean=True repeats the clean CE inside "
                         f"'adv'; allowed only with a gradient-surgery combiner (ca_at, agr), not '{comb_name}'")


def channel_stats(x) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of uint8 training images, for the Normalize layer inside the model."""
    t = torch.as_tensor(x[:10000]).float().div_(255).transpose(0, 1).flatten(1)
    return t.mean(1).tolist(), t.std(1).clamp_min(1e-3).tolist()


def build_model(cfg: TrainConfig, ds, device):
    kw = dict(cfg.model_args)
    if ds.x_train.dtype.name == "uint8" and "mean" not in kw:
        kw["mean"], kw["std"] = channel_stats(ds.x_train)
    shape = ds.shape
    if len(shape) == 3:
        kw.setdefault("in_channels", shape[0])
        kw.setdefault("input_size", shape[1])
    else:
        kw.setdefault("input_shape", list(shape))
    return create_model(cfg.model, num_classes=len(ds.classes), **kw).to(device)


@dataclass
class Trainer:
    """What one training step needs, built from a config (shared by `train` and `robustfront bench`).

    model: the module whose weights are trained and saved; net: what the objective calls
    (model itself, or its torch.compile wrapper, which shares the parameters).
    """
    model: torch.nn.Module
    net: torch.nn.Module
    objective: object
    combiner: object
    params: list
    opt: torch.optim.Optimizer
    loader: DeviceLoader
    nonfinite: torch.Tensor
    step: Callable


def build_optimizer(cfg: TrainConfig, params: list, device: torch.device) -> torch.optim.SGD:
    """SGD; fused_sgd=True: one fused kernel where the device has it (CUDA, CPU in torch >= 2.4),
    else the multi-tensor (foreach) path. Same update rule, fewer kernel launches."""
    kw = dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.fused_sgd:
        try:
            from torch.optim.optimizer import _get_fused_kernels_supported_devices
            fused_ok = device.type in _get_fused_kernels_supported_devices()
        except ImportError:  # older torch: fused SGD is CUDA-only
            fused_ok = device.type == "cuda"
        kw.update({"fused": True} if fused_ok else {"foreach": True})
    return torch.optim.SGD(params, **kw)


def maybe_compile(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """torch.compile(model), or the model itself with a one-line note on stderr where unsupported."""
    try:
        import torch._dynamo
        if not torch._dynamo.is_dynamo_supported():
            raise RuntimeError("torch.compile does not support this Python version")
        if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            raise RuntimeError("no C++ compiler on PATH (inductor's CPU backend needs one)")
        return torch.compile(model)
    except Exception as e:  # noqa: BLE001 - any failure means: train uncompiled
        print(f"robustfront: compile=True skipped, training eagerly: {str(e).splitlines()[0]}", file=sys.stderr)
        return model


def cpu_bf16_native() -> bool:
    """Does this CPU run bf16 matmuls/convs in hardware (avx512_bf16 or AMX)? Without it oneDNN
    emulates bf16, and bf16 autocast is slower than fp32 (10x for small_cnn PGD-AT on a 2-core AVX2 EPYC)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        try:
            with open("/proc/cpuinfo") as f:
                return any(flag in f.read() for flag in ("avx512_bf16", "amx_bf16"))
        except OSError:
            return False


def build_trainer(cfg: TrainConfig, ds, device: torch.device) -> Trainer:
    """Model, method, optimizer and device loader for a resolved config; draws torch RNG in a fixed order."""
    big = len(ds.shape) == 3 and ds.shape[-1] >= 32
    model = build_model(cfg, ds, device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    objective, combiner = build_method(cfg, ds.bounds)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(cfg, params, device)
    loader = DeviceLoader(ds.x_train, ds.y_train, cfg.batch_size, device=device, train=True,
                          crop=cfg.crop if cfg.crop is not None else (4 if big else 0),
                          flip=cfg.flip if cfg.flip is not None else big, cutout=cfg.cutout, seed=cfg.seed,
                          views=getattr(objective, "views", 1))
    net = maybe_compile(model, device) if cfg.compile else model
    if cfg.bf16 and device.type == "cpu" and not cpu_bf16_native():
        print("robustfront: bf16=True on a CPU without native bf16 (no avx512_bf16/AMX): autocast is emulated "
              "and slower than fp32", file=sys.stderr)
    nonfinite = torch.zeros((), device=device)
    step = make_step(net, params, opt, objective, combiner, nonfinite,
                     amp=cfg.bf16 and device.type, channels_last=cfg.channels_last)
    return Trainer(model, net, objective, combiner, params, opt, loader, nonfinite, step)


def make_step(net, params, opt, objective, combiner, nonfinite, *, amp=None, channels_last=False) -> Callable:
    """One training step as a closure `step(x, y, epoch) -> (total, losses, stats)`; no host sync.

    amp: a device type ("cpu", "cuda") to run the objective's forward passes under bf16 autocast
    (attacks keep δ and their loss in fp32), or None/False for fp32.
    """
    def to_format(x):
        if isinstance(x, (tuple, list)):
            return type(x)(to_format(v) for v in x)
        return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x

    term_grads = TermGrads(params, combiner.terms) if combiner.separate else None

    def step(x, y, epoch):
        x = to_format(x)
        with torch.autocast(amp, dtype=torch.bfloat16) if amp else nullcontext():
            losses, stats = objective(net, x, y)
        total = _step(getattr(net, "_orig_mod", net), params, opt, objective, combiner, losses, epoch, nonfinite,
                      term_grads)
        return total, losses, stats
    return step


def train(config: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> dict:
    """Train as `config` says; returns the last epoch's metrics.

    resume: continue from OUT/checkpoints/last.pt exactly where it stopped.
    stop_after: leave after this many epochs in this call (the run stays resumable).
    """
    cfg = config.resolved()
    if cfg.out is None:
        raise ValueError("out=None: name an output folder for the run (--out DIR)")
    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)

    ds = load_dataset(cfg.data, root=cfg.data_root, download=cfg.download, val_size=cfg.val_size,
                      resize=cfg.resize, seed=cfg.seed)
    if cfg.train_n is not None and cfg.train_n < len(ds.y_train):
        # files often come sorted by class: a subset must be a seeded random one
        keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(ds.y_train))[:cfg.train_n])
        ds.x_train, ds.y_train = ds.x_train[keep], ds.y_train[keep]
    parts = build_trainer(cfg, ds, device)
    model, objective, combiner, opt, loader = parts.model, parts.objective, parts.combiner, parts.opt, parts.loader
    sched = Schedule(cfg.schedule, cfg.lr, cfg.epochs * len(loader), len(loader), milestones=cfg.milestones,
                     decay=cfg.lr_decay, warmup=cfg.warmup, epochs=cfg.epochs)
    val_attack = build_attack(cfg, "pgd", steps=cfg.eval_steps, bounds=ds.bounds) if cfg.eps > 0 else None

    ema = EMA(model, cfg.ema, cfg.ema_start) if cfg.ema else None
    scored = ema.model if ema else model     # the weights validated and saved under "model"

    start_epoch, best = 0, -1.0
    last_path, best_path = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    if resume:
        if not last_path.is_file():
            raise ValueError(f"resume=True but {last_path} does not exist; start the run without --resume")
        state = ckpt.load(last_path, device)
        model.load_state_dict(state.get("model_raw", state["model"]))
        if ema:
            ema.model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        loader.load_state_dict(state["loader"])
        ckpt.set_rng_state(state["rng"], device)
        start_epoch, best = int(state["epoch"]), float(state["best_val_robust"])
        _truncate_jsonl(out / "metrics.jsonl", start_epoch)
        _truncate_jsonl(out / "steps.jsonl", start_epoch)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("")
        if cfg.log_every:
            (out / "steps.jsonl").write_text("")
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    writer = _tensorboard(out) if cfg.tensorboard else None

    def state_dict(epoch, best, metrics):
        s = {"model": scored.state_dict(), "model_config": model.rf_config, "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "loader": loader.state_dict(), "rng": ckpt.rng_state(device),
             "epoch": epoch + 1, "best_val_robust": best, "config": config.to_dict(), "metrics": metrics}
        if ema:
            s["model_raw"] = model.state_dict()
        return s

    metrics: dict = {}
    nonfinite, step = parts.nonfinite, parts.step
    for epoch in range(start_epoch, cfg.epochs):
        if stop_after is not None and epoch - start_epoch >= stop_after:
            break
        t0 = time.perf_counter()
        model.train()
        objective.on_epoch(epoch)
        combiner.on_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}
        step_diags: list[dict] = []
        n_seen = 0
        for i, (x, y) in enumerate(_progress(loader, cfg, epoch)):
            lr = sched.apply(opt)
            total, losses, stats = step(x, y, epoch)
            if ema:
                ema.update(model, epoch)
            _accumulate(sums, stats, total.detach() * len(y))
            n_seen += len(y)
            if cfg.log_every and (i + 1) % cfg.log_every == 0:
                step_diags.append(_log_step(out, combiner, epoch, i + 1, losses))  # sync: opted in
        metrics = {"epoch": epoch + 1, "lr": lr, "n_train": n_seen}
        # sync: one read of the epoch's device-side sums
        metrics.update({_metric_name(k): v.item() / n_seen for k, v in sums.items()})
        metrics["nonfinite_steps"] = int(nonfinite.item())
        metrics.update(_mean_dicts(step_diags + [combiner.pop_diagnostics()]))
        metrics["epoch_time_s"] = time.perf_counter() - t0
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            metrics.update(_validate(scored, ds, val_attack, cfg, device))
            robust = metrics.get("val_pgd_acc", metrics.get("val_clean_acc", 0.0))
            if robust > best:
                best = robust
                ckpt.save_atomic(state_dict(epoch, best, metrics), best_path)
        ckpt.save_atomic(state_dict(epoch, best, metrics), last_path)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if writer:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    writer.add_scalar(k, v, epoch + 1)
        if cfg.progress:
            print(_summary(metrics), flush=True)
    if writer:
        writer.close()
    return metrics


def _step(model, params, opt, objective, combiner, losses, epoch, nonfinite, term_grads=None):
    """Gradients of the terms -> one update per parameter -> guarded SGD step."""
    opt.zero_grad(set_to_none=True)
    if combiner.separate:
        grads = term_grads(losses)   # one backward per term, into preallocated flat buffers
        for p, u in zip(params, combiner.combine(grads)):
            p.grad = u
        total = objective.reported_loss(losses)
    else:
        total = combiner.total_loss(losses)
        total.backward()
    objective.after_backward(model)  # e.g. AWP takes its weight perturbation back here
    combiner.after_backward(model)
    # Policy for a NaN/Inf update: it is replaced by zeros (no host sync to skip the step;
    # momentum then carries on as after a zero gradient) and counted in `nonfinite_steps`.
    grads = [p.grad for p in params if p.grad is not None]
    finite = torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()
    nonfinite.add_(~finite)
    for g in grads:
        g.copy_(torch.where(finite, g, torch.zeros((), dtype=g.dtype, device=g.device)))
    opt.step()
    return total


def _accumulate(sums, stats, loss_sum):
    sums["loss"] = sums.get("loss", 0) + loss_sum.float()
    for k, v in stats.items():
        sums[k] = sums.get(k, 0) + v


def _metric_name(k: str) -> str:
    return {"loss": "train_loss", "clean_correct": "train_clean_acc", "adv_correct": "train_adv_acc"}.get(k, "train_" + k)


def _validate(model, ds, attack, cfg, device) -> dict:
    """Clean and PGD-k accuracy on the held-out split of the training set (eval mode, fp32), or on
    the test set with select_on="test" (the references' rule, for reproducing their numbers)."""
    xs, ys = (ds.x_test, ds.y_test) if cfg.select_on == "test" else (ds.x_val, ds.y_val)
    if len(ys) == 0:
        return {}
    idx = np.arange(len(ys))
    if cfg.eval_n and cfg.eval_n < len(idx):  # the split keeps file order (often by class): sample it
        idx = np.sort(np.random.default_rng(0).permutation(len(idx))[:cfg.eval_n])
    x = torch.as_tensor(xs[idx], device=device)
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    y = torch.as_tensor(ys[idx], device=device)
    with eval_mode(model):
        res = {"val_split": cfg.select_on, "val_clean_acc": accuracy(model, x, y)}
        if attack is not None:
            res["val_pgd_acc"] = accuracy(model, x, y, attack=attack)
    return res


def _log_step(out: Path, combiner, epoch: int, step: int, losses) -> dict:
    d = combiner.pop_diagnostics()
    rec = {"epoch": epoch + 1, "step": step, **{f"loss_{k}": v.item() for k, v in losses.items()}, **d}
    with open(out / "steps.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    return d


def _mean_dicts(dicts: list[dict]) -> dict:
    """Average diagnostics over the step records of an epoch (lists element-wise)."""
    dicts = [d for d in dicts if d]
    out = {}
    for k in dicts[0] if dicts else []:
        vals = [d[k] for d in dicts if k in d]
        out[k] = [sum(c) / len(c) for c in zip(*vals)] if isinstance(vals[0], list) else sum(vals) / len(vals)
    return out


def _truncate_jsonl(path: Path, epochs: int) -> None:
    """On resume, drop records written after the checkpoint we continue from."""
    if path.is_file():
        lines = [l for l in path.read_text().splitlines() if l.strip()]
        keep = [l for l in lines if json.loads(l)["epoch"] <= epochs]
        path.write_text("".join(l + "\n" for l in keep))


def _progress(loader, cfg, epoch):
    if not cfg.progress:
        return loader
    from tqdm import tqdm
    return tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)


def _summary(m: dict) -> str:
    keys = ("train_loss", "train_clean_acc", "train_adv_acc", "val_clean_acc", "val_pgd_acc")
    parts = [f"{k}={m[k]:.4f}" for k in keys if k in m]
    return f"epoch {m['epoch']}: " + " ".join(parts) + f" ({m['epoch_time_s']:.1f}s)"


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError("tensorboard=True needs the tensorboard package: pip install tensorboard") from e
    return SummaryWriter(str(out / "tensorboard"))
