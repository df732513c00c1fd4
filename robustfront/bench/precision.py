"""The fp32 precision switches per benchmark configuration: TF32 off (exact fp32), on, or left at
torch's defaults (the reference loop: on CUDA cuDNN then runs convolutions in TF32)."""
from __future__ import annotations

import torch

from ..device import tf32_flags  # noqa: F401  (re-exported: the bench configurations use it)


def flags_now() -> dict:
    """The switches in force (recorded per configuration)."""
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


__all__ = ["flags_now", "tf32_flags"]
