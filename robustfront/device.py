"""Where and how tensors run: device resolution, the bf16 probe, autocast, compile, fused SGD and
the matmul precision flags. One module, so that train, eval and bench make the same choices."""
from __future__ import annotations

import os

import shutil
import sys
from contextlib import contextmanager, nullcontext

import torch

from .validation import invalid

DEVICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; a named device must exist on this machine."""
    if isinstance(name, torch.device):
        return name
    if not isinstance(name, str):
        raise invalid("device", name, DEVICES, "unknown")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and name != "mps" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise invalid("device", name, DEVICES, "unknown")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise invalid("device", name, "cpu (no CUDA device on this machine)", "not available")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise invalid("device", name, f"cuda:0 to cuda:{torch.cuda.device_count() - 1}", "not available")
    # getattr: torch builds without the MPS backend have no torch.backends.mps
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise invalid("device", name, "cpu (no MPS device on this machine)", "not available")
    return torch.device(name)


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


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` when asked (attacks keep δ and their losses in fp32), else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def warn_emulated_bf16(device: torch.device, bf16: bool) -> None:
    if bf16 and device.type == "cpu" and not cpu_bf16_native():
        print("robustfront: bf16=True on a CPU without native bf16 (no avx512_bf16/AMX): autocast is emulated "
              "and slower than fp32", file=sys.stderr)


def fused_sgd_supported(device: torch.device) -> bool:
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
        return device.type in _get_fused_kernels_supported_devices()
    except ImportError:  # older torch: fused SGD is CUDA-only
        return device.type == "cuda"


_ATTACKING = [False]


@contextmanager
def input_gradients_only():
    """Inside the block a CompiledNet's forwards take the gradient of their input only (attacks
    enter it): AOTAutograd's compiled backward computes the gradient of every input that required
    one when it was traced, so a compiled attack would compute the parameters' too and drop them."""
    old = _ATTACKING[0]
    _ATTACKING[0] = True
    try:
        yield
    finally:
        _ATTACKING[0] = old


class _DetachedParameters(torch.nn.Module):
    """The model with its parameters detached (buffers are the model's own: train-mode BatchNorm
    still updates its running statistics)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        return torch.func.functional_call(self.model, params, (x,))


def _reason(e: BaseException) -> str:
    """One line: the error and, where dynamo wrapped one, the root cause."""
    def line(x):   # dynamo's messages read "backend='inductor' raised:" then the error on the next line
        rows = [r.strip() for r in str(x).splitlines() if r.strip()] or [""]
        return f"{type(x).__name__}: " + (" ".join(rows[:2]) if rows[0].endswith(":") else rows[0])
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    return (line(e) if root is e else f"{line(e)} (cause: {line(root)})")[:500]


class CompiledNet(torch.nn.Module):
    """torch.compile(model) for training forwards, a compiled parameter-detached view for attack
    forwards (input_gradients_only), and the eager model once compiling failed: torch.compile
    compiles lazily, at the first forward (and again at a new input shape), so its errors come from
    a forward, not from torch.compile(...). The reason is kept in `fallback` and printed once. (A
    failure in the backward, which AOTAutograd compiles at the first backward, is not caught.)

    The parameters are the model's: callers keep the plain module for saving."""

    def __init__(self, model: torch.nn.Module, mode: str | None = None, backend: str | None = None):
        super().__init__()
        self.model = model
        kw = {"mode": mode, "backend": backend or "inductor"}
        # kept out of the module tree (one copy of the parameters in state_dict and modules())
        self.__dict__["_views"] = (torch.compile(model, **kw), torch.compile(_DetachedParameters(model), **kw))
        self.fallback: str | None = None

    def forward(self, x):
        if self.fallback is None:
            try:
                return self._views[_ATTACKING[0]](x)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # noqa: BLE001 - any compile failure means: run eagerly from now on
                self.fallback = _reason(e)
                print(f"robustfront: torch.compile failed at a forward, running eagerly: {self.fallback}",
                      file=sys.stderr)
        return self.model(x)


def maybe_compile(model: torch.nn.Module, device: torch.device, mode: str | None = None,
                  backend: str | None = None) -> torch.nn.Module:
    """A CompiledNet of the model, or the model itself with a one-line note on stderr where
    torch.compile is unsupported."""
    try:
        import torch._dynamo
        if not torch._dynamo.is_dynamo_supported():
            raise RuntimeError("torch.compile does not support this Python version")
        if backend in (None, "inductor") and device.type == "cpu" \
                and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            raise RuntimeError("no C++ compiler on PATH (inductor's CPU backend needs one)")
        return CompiledNet(model, mode, backend)
    except Exception as e:  # noqa: BLE001 - any failure means: run uncompiled
        print(f"robustfront: compile=True skipped, running eagerly: {str(e).splitlines()[0]}", file=sys.stderr)
        return model


def precision_flags() -> dict:
    """The matmul/conv precision switches in force (recorded with every result)."""
    flags = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    if torch.cuda.is_available():
        flags["cuda_matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        flags["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    return flags


def set_tf32(enabled: bool | None) -> None:
    """Training's choice of TF32 on CUDA (None leaves torch's defaults: cuDNN convs on, matmuls off)."""
    if enabled is not None:
        torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
        torch.backends.cudnn.allow_tf32 = bool(enabled)
        torch.set_float32_matmul_precision("high" if enabled else "highest")


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


def exact_fp32():
    """TF32 off for matmuls and cuDNN convolutions inside the block (cuDNN enables it for convs by
    default), so that evaluation is exact fp32; the previous flags come back afterwards."""
    return tf32_flags(False)


__all__ = ["CompiledNet", "autocast", "available_memory", "cpu_bf16_native", "exact_fp32", "fused_sgd_supported", "input_gradients_only",
           "tf32_flags", "maybe_compile", "precision_flags",
           "resolve_device", "set_tf32", "warn_emulated_bf16"]


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), else the machine's physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62
