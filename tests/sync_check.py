"""An aten-level check for device->host synchronisation, usable on the CPU.

`SyncCheck` is a TorchDispatchMode: it sees every aten op below autograd (the forwards, the
backward the autograd engine runs, the optimizer's kernels) and records those that make the host
wait for the device on CUDA:
  - a value read on the host: _local_scalar_dense (item(), float(), int(), bool(), tolist()),
    is_nonzero, equal (a Python bool);
  - an output size that depends on the data: nonzero (x[mask], torch.where(mask), argwhere),
    masked_select, the unique family, repeat_interleave without output_size, bincount, histc
    (min/max for its range);
  - indexing with a boolean mask (index, index_put_: a nonzero inside);
  - linalg *_ex ops with check_errors=True (the error info is read on the host);
  - a copy from a non-CPU device to the CPU (.cpu(), .numpy(), .to("cpu")).
A host read that bypasses the dispatcher (tolist()/numpy() of a CPU tensor read its memory
directly) is not seen here: tests/test_cuda.py's stand-in patches those Python methods.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

_ALWAYS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "nonzero_numpy", "argwhere",
           "masked_select", "_unique", "_unique2", "unique_dim", "unique_consecutive", "unique_dim_consecutive",
           "bincount", "histc", "allclose"}
_BOOL_INDEX = {"index", "index_put", "index_put_", "_index_put_impl", "_index_put_impl_"}
_CHECKED = {"linalg_cholesky_ex", "linalg_inv_ex", "linalg_solve_ex", "linalg_lu_factor_ex", "linalg_ldl_factor_ex"}


def _name(func) -> str:
    return func._schema.name.split("::", 1)[1]


def syncs(func, args, kwargs) -> str | None:
    """Why aten op `func` called with (args, kwargs) synchronises the host, or None."""
    name = _name(func)
    if name in _ALWAYS:
        return name
    if name == "repeat_interleave" and func._overloadname == "Tensor" and kwargs.get("output_size") is None:
        return "repeat_interleave without output_size"   # the composite forms end here, repeats first
    if name in _BOOL_INDEX:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices):
            return f"{name} with a boolean mask"
    if name in _CHECKED and kwargs.get("check_errors", args[-1] if isinstance(args[-1], bool) else False):
        return f"{name}(check_errors=True)"
    if name in ("_to_copy", "copy_"):
        src = args[1] if name == "copy_" else args[0]
        dst = args[0].device if name == "copy_" else kwargs.get("device")
        if isinstance(src, torch.Tensor) and src.device.type != "cpu" and dst is not None \
                and torch.device(dst).type == "cpu":
            return f"{name} to the CPU"
    return None


class SyncCheck(TorchDispatchMode):
    """`with SyncCheck() as s: ...`; then s.found is the list of (op, why) that would sync."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = syncs(func, args, kwargs)
        if why:
            self.found.append((str(func), why))
        return func(*args, **kwargs)
