"""Files that must never be half-written or unsafe to read: checkpoints, results, RNG state.

- `save_atomic` / `write_text_atomic` write to a temporary file in the target folder, fsync it
  and rename it into place, so a kill or a full disk leaves either the old file or the new one.
- `load` reads with `torch.load(weights_only=True)` (no code from the file runs) and turns every
  way a file can be bad (missing, a folder, empty, truncated, random bytes, a pickle payload, not
  a mapping) into one ValueError line naming the file.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

TMP_SUFFIX = ".tmp"


def _atomic(path: str | Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename, so a crash cannot leave an empty file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def save_atomic(obj, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    return _atomic(path, lambda f: torch.save(obj, f))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json_atomic(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def clean_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files an interrupted atomic write left in `folder`; returns them."""
    folder = Path(folder)
    left = [p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    for p in left:
        p.unlink(missing_ok=True)
    return left


def load(path: str | Path, device="cpu", *, what: str = "checkpoint") -> dict:
    """A checkpoint as a dict, read safely; one ValueError line for any bad file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {path} is a folder; allowed: a .pt/.pth file")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes); allowed: a file written by torch.save")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported" in str(e) or "global" in str(e).lower():
            raise ValueError(f"{what} {path} holds Python objects that a safe load (weights_only=True) refuses "
                             f"to run ({first[:160]}); allowed: tensors, numbers, strings, lists and dicts") from None
        raise ValueError(f"{what} {path} is not a torch checkpoint ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{what} {path} is truncated or not a torch checkpoint ({first[:160]})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what} {path} holds a {type(obj).__name__}; allowed: a dict (a state dict or "
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


__all__ = ["clean_temp_files", "load", "rng_state", "save_atomic", "set_rng_state", "write_bytes_atomic", "write_json_atomic",
           "write_text_atomic"]
