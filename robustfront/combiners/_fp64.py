"""fp64 reductions and the α·g_a + β·g_c mix shared by the gradient-surgery combiners."""
from __future__ import annotations

import torch
from torch import Tensor

_CHUNK = 1 << 22  # elements cast to fp64 at a time: bounds the temporary to 32 MB


def dot64(a: Tensor, c: Tensor) -> Tensor:
    a, c = a.reshape(-1), c.reshape(-1)
    if a.numel() <= _CHUNK:
        return torch.dot(a.double(), c.double())
    return torch.stack([torch.dot(x.double(), y.double()) for x, y in zip(a.split(_CHUNK), c.split(_CHUNK))]).sum()


def norms_dot64(g_clean: list[Tensor], g_adv: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-tensor |g_c|, |g_a|, <g_a, g_c> as fp64 vectors (one entry per tensor)."""
    if len(g_clean) != len(g_adv) or not g_clean:
        raise ValueError(f"need two equally long, non-empty gradient lists; got {len(g_clean)} and {len(g_adv)}")
    # _foreach_norm with dtype=float64 casts each element before squaring (fused on CUDA)
    nc = torch.stack(torch._foreach_norm(g_clean, 2, dtype=torch.float64))
    na = torch.stack(torch._foreach_norm(g_adv, 2, dtype=torch.float64))
    ac = torch.stack([dot64(a, c) for a, c in zip(g_adv, g_clean)])
    return nc, na, ac


def mix(g_adv: list[Tensor], g_clean: list[Tensor], alpha: Tensor, beta: Tensor) -> list[Tensor]:
    """[α_i·g_a,i + β_i·g_c,i]; α, β are fp64 scalars or one entry per tensor.
    α = 0, β = 1 reproduces g_c bit for bit."""
    n = len(g_adv)
    dtypes = {g.dtype for g in g_adv} | {g.dtype for g in g_clean}
    if len(dtypes) == 1:  # cast the coefficients once, not per tensor
        dt = dtypes.pop()
        alpha, beta = alpha.to(dt).expand(n).unbind(), beta.to(dt).expand(n).unbind()
    else:
        alpha = [x.to(g.dtype) for x, g in zip(alpha.expand(n).unbind(), g_adv)]
        beta = [x.to(g.dtype) for x, g in zip(beta.expand(n).unbind(), g_clean)]
    out = torch._foreach_mul(g_adv, alpha)
    torch._foreach_addcmul_(out, g_clean, beta)
    return out
