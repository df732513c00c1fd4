"""Accuracy under an (optional) attack, batched, without touching parameter gradients; Mean, NRR,
and mean ± std over several checkpoints."""
from __future__ import annotations

import math

import torch


def correct_mask(model, x, y, attack=None, batch_size: int = 500) -> torch.Tensor:
    """Per-sample bool: is the (attacked) input classified correctly? Model should be in eval mode."""
    out = []
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if attack is not None:
            xb = attack(model, xb, yb)
        with torch.no_grad():
            out.append(model(xb).argmax(1) == yb)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=y.device)


def auto_batch_size(model, x, *, cpu: int = 500, budget: float = 0.5, cap: int = 4096, probe: int = 32) -> int:
    """Evaluation batch size for x's device. CPU: `cpu` (larger batches gain nothing there).
    CUDA: as many images as fit in `budget` of the free memory with one forward and input-gradient
    pass (what every attack step needs), measured on a probe batch; a multiple of `probe` in
    [probe, cap]. A probe that runs out of memory is halved and retried, down to one image (the
    cap then is the probe that fitted)."""
    if x.device.type != "cuda":
        return cpu
    from ..models.modes import eval_mode
    while True:  # a probe that does not fit is halved (a model too large for 32 images at once)
        try:
            per_image = _probe_bytes(model, x[:probe], eval_mode)
            break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if probe == 1:
                raise
            probe = cap = probe // 2   # what fits is less than the probe that failed
    free, _ = torch.cuda.mem_get_info(x.device)
    return int(max(probe, min(cap, int(budget * free / per_image) // probe * probe)))


def _probe_bytes(model, x, eval_mode) -> int:
    """Peak bytes per image of one forward + input-gradient pass over x (CUDA)."""
    xb = x.detach().float().clone().requires_grad_(True)
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    with eval_mode(model), torch.enable_grad():
        torch.autograd.grad(model(xb).float().logsumexp(1).sum(), xb)
    return max(1, (torch.cuda.max_memory_allocated(x.device) - base) // len(xb))


def accuracy(model, x, y, attack=None, batch_size: int = 500) -> float:
    # sync: one read per call
    return correct_mask(model, x, y, attack, batch_size).float().mean().item()


def mean_nrr(sa: float, ra: float) -> tuple[float, float]:
    """Mean = (SA + RA)/2 and NRR = 2·SA·RA/(SA + RA), the harmonic mean (0 when SA + RA = 0)."""
    return (sa + ra) / 2, (2 * sa * ra / (sa + ra) if sa + ra > 0 else 0.0)


def _mean_std(values: list[float]) -> dict:
    m = sum(values) / len(values)
    # sample std (ddof = 1), as papers report over seeds; 0 for a single value
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": m, "std": s, "values": values}


def aggregate(results: list[dict]) -> dict:
    """Mean ± std (sample std) of clean, per-attack, worst-case, Mean and NRR over single-ε results.

    Results with an ε sweep are aggregated per ε: {"eps": [...], "sweep": [aggregate per ε]}.
    """
    if not results:
        raise ValueError("aggregate() needs at least one result")
    if "sweep" in results[0]:
        return {"eps": results[0]["eps"],
                "sweep": [aggregate([r["sweep"][i] for r in results]) for i in range(len(results[0]["eps"]))]}
    out = {k: _mean_std([r[k] for r in results]) for k in ("clean_acc", "worst_case_acc", "mean", "nrr")}
    out["robust_acc"] = {a: _mean_std([r["robust_acc"][a] for r in results]) for a in results[0]["robust_acc"]}
    out.update(n_checkpoints=len(results), eps=results[0]["eps"], ra_source=results[0].get("ra_source"))
    return out
