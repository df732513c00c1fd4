"""The fp32 precision switches per benchmark configuration: TF32 off (exact fp32), on, or left at
torch's defaults (the reference loop: on CUDA cuDNN then runs convolutions in TF32)."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def tf32_flags(on: bool | None):
    """TF32 for CUDA matmuls and cuDNN convolutions on (True) or off (False) inside the block; None
    changes nothing. The previous flags come back afterwards."""
    if on is None:
        yield
        return
    old = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
           torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("high" if on else "highest")
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cuda.matmul.allow_tf32 = old[1]
        torch.backends.cudnn.allow_tf32 = old[2]


def flags_now() -> dict:
    """The switches in force (recorded per configuration)."""
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


__all__ = ["flags_now", "tf32_flags"]
