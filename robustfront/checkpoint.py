"""Files that must never be half-written or unsafe to read: checkpoints, results, RNG state.

- `save_atomic` / `write_text_atomic` write to a temporary file in the target folder, fsync it
  and rename it into place, so a kill or a full disk leaves either the old file or the new one;
  `clean_temp_files` removes what a killed write left behind.
- `load` reads with `torch.load(weights_only=True)` (no code from the file runs) and turns every
  way a file can be bad (missing, a folder, empty, truncated, random bytes, a pickle payload, not
  a mapping) into one ValueError line naming the file.

Test hooks (read from the environment on every save_atomic, so a test can kill a subprocess at a
known point; unset in normal use). Each announces itself with one stderr line naming the file, then sleeps:
  ROBUSTFRONT_TEST_SLOW_SAVE=SECONDS        with the temporary file written, before the rename
  ROBUSTFRONT_TEST_SLOW_SAVE_AFTER=SECONDS  after the rename (e.g. between a checkpoint and the metrics line)
"""
from __future__ import annotations

import json
import os
import pickle
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from .validation import invalid, one_line

TMP_SUFFIX = ".tmp"
_BOILERPLATE = ("weights only load failed", "please file an issue", "check the documentation",
                "re-running `torch.load`", "in pytorch 2.6")


def _test_sleep(var: str, what: str) -> None:
    seconds = os.environ.get(var)
    if seconds:
        print(f"robustfront test hook: {var} {what}", file=sys.stderr, flush=True)
        time.sleep(float(seconds))


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: str | Path, write, hooks: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename, so a crash cannot leave an empty file
            os.fsync(f.fileno())
        if hooks:
            _test_sleep("ROBUSTFRONT_TEST_SLOW_SAVE", f"holding {tmp} before the rename to {path.name}")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)
    if hooks:
        _test_sleep("ROBUSTFRONT_TEST_SLOW_SAVE_AFTER", f"after writing {path}")
    return path


def save_atomic(obj, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    return _atomic(path, lambda f: torch.save(obj, f), hooks=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def clean_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files an interrupted atomic write left in `folder`; returns them.
    Call it only where no other process is writing (e.g. under the run folder's lock)."""
    folder = Path(folder)
    left = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for p in left:
        p.unlink(missing_ok=True)
    return left


def _detail(e: BaseException) -> str:
    """The informative line of a torch.load error (torch wraps it in paragraphs of advice)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            text = line.split("WeightsUnpickler error:", 1)[1].strip() or (lines[i + 1:] or [""])[0]
            break
    else:
        useful = [line for line in lines if not line.lower().startswith(_BOILERPLATE)
                  and not re.match(r"\(\d\)", line)]
        text = (useful or lines or [type(e).__name__])[0]
    text = text or type(e).__name__
    cut = text.find(". ", 40)  # miniz and friends append paragraphs of advice after the first sentence
    text = text[:cut] if len(text) > 100 and cut > 0 else text
    return text if len(text) <= 160 else text[:157] + "..."


def _map_location(device) -> torch.device:
    """Where to put the tensors: cpu, or a cuda / mps device that exists here (torch.load would fail
    later with a message about storages, or load onto the meta device and break the model)."""
    allowed = "cpu, cuda, cuda:N or mps (a device this machine has)"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise invalid("device", device, allowed) from None
    if dev.type == "cpu":
        return torch.device("cpu")  # "cpu:0" is a device torch.load cannot restore storages to
    if dev.type == "cuda" and torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count():
        return dev
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and mps is not None and mps.is_available():
        return dev
    raise invalid("device", device, allowed, "not available" if dev.type in ("cuda", "mps") else "invalid")


def load(path: str | Path, device="cpu", *, what: str = "checkpoint") -> dict:
    """A checkpoint as a dict, read safely; one ValueError line for any bad file."""
    path = Path(path)
    where = one_line(f"{what} {path}")
    if not path.exists():
        raise FileNotFoundError(f"{where} does not exist")
    if not path.is_file():
        raise ValueError(f"{where} is a folder; allowed: a .pt/.pth file")
    if path.stat().st_size == 0:
        raise ValueError(f"{where} is empty (0 bytes); allowed: a file written by torch.save")
    location = _map_location(device)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for a file we judge anyway
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _detail(e)
        if "global" in detail.lower():
            raise ValueError(f"{where} holds Python objects that a safe load (weights_only=True) refuses to run "
                             f"({detail}); allowed: tensors, numbers, strings, lists and dicts") from None
        raise ValueError(f"{where} is not a torch checkpoint ({detail}); allowed: a file written by "
                         f"torch.save") from None
    except PermissionError as e:
        raise ValueError(f"{where} cannot be read ({e.strerror}); allowed: a readable file") from None
    except MemoryError:
        raise ValueError(f"{where} is damaged: it asks for more memory than this machine has; allowed: a file "
                         f"written by torch.save") from None
    except Exception as e:  # noqa: BLE001 - every other failure while parsing the bytes is a damaged file
        raise ValueError(f"{where} is truncated or not a torch checkpoint ({_detail(e)}); allowed: a file "
                         f"written by torch.save") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where} holds a {type(obj).__name__}; allowed: a dict (a state dict or "
                         f"robustfront's {{'model': ..., 'model_config': ...}})")
    return obj


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


__all__ = ["clean_temp_files", "load", "rng_state", "save_atomic", "set_rng_state", "write_json_atomic",
           "write_text_atomic"]
