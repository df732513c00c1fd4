"""Files that must never be half-written or unsafe to read: checkpoints, results, RNG state.

- `save_atomic` / `write_text_atomic` write to a temporary file in the target folder (with the
  process umask's mode), fsync it and rename it into place, so a kill or a full disk leaves either
  the old file or the new one; `clean_temp_files` removes what a killed write left behind.
- `check_out_dir` / `check_out_file` refuse an output that cannot be written before any work;
  `save_result` never loses a finished result (the run folder's lock: state.FolderLock).
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

from .readers import read_jsonl, read_yaml  # noqa: F401  (re-exported: the readers' old home)
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
    if path.exists() and not path.is_file():  # renaming onto /dev/null (as root) would replace the device
        raise ValueError(one_line(f"{path} exists and is not a regular file; allowed: a file path"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        mask = os.umask(0o022)  # read the umask (by setting it back): mkstemp's 0600 would keep a group out
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename, so a crash cannot leave an empty file
            os.fsync(f.fileno())
        if hooks:
            _test_sleep("ROBUSTFRONT_TEST_SLOW_SAVE", f"holding {tmp} before the rename to {path.name}")
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:  # "no space left" names the file being written
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
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


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


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
    # getattr: torch builds without the MPS backend have no torch.backends.mps
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and mps is not None and mps.is_available():
        return dev
    raise invalid("device", device, allowed, "not available" if dev.type in ("cuda", "mps") else "invalid")


READERS: dict = {}  # "scheme:" -> reader(ref, device): checkpoints that are not files (models/hub.py registers hf-hub:)


def load(path: str | Path, device="cpu", *, what: str = "checkpoint") -> dict:
    """A checkpoint as a dict, read safely; one ValueError line for any bad file. A reference with a
    registered scheme ("hf-hub:ORG/NAME", registered by robustfront.models) goes to its reader."""
    if isinstance(path, str) and path.startswith("hf-hub:"):
        reader = READERS.get("hf-hub:")
        if reader is None:
            raise ValueError(f"{what} {path} is a model-hub reference; allowed: with robustfront.models imported "
                             f"(it registers the hf-hub: reader)")
        return reader(path, device)
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


# ---------------------------------------------------------------- output paths

def check_out_dir(path, what: str = "out") -> Path:
    """Refuse, before any work, a folder that cannot hold a run or results: '' (would mean the current
    folder), an existing file, a path under a file (/dev/null/x), or a place this user cannot write.
    Creates nothing; returns the Path."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise invalid(what, path, "a non-empty folder path")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ValueError(one_line(f"{what}={str(p)!r} is a file, not a folder; allowed: a folder (it is created "
                                  f"if missing)"))
    _check_creatable(p, what)
    return p


def check_out_file(path, what: str = "out") -> Path:
    """Refuse, before any work, a result file that cannot be written: '', a folder, a path under a file,
    a place this user cannot write. Creates nothing; returns the Path."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise invalid(what, path, "a non-empty file path")
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(one_line(f"{what}={str(p)!r} is a folder; allowed: a file path such as "
                                  f"{str(p / 'result.json')!r}"))
    if p.exists() and not p.is_file():
        raise ValueError(one_line(f"{what}={str(p)!r} is not a regular file (a device?); allowed: a file path"))
    _check_creatable(p.parent, what, shown_path=p)
    return p


def _check_creatable(folder: Path, what: str, shown_path: Path | None = None) -> None:
    """The nearest existing ancestor of `folder` is a folder this user may write into."""
    shown_path = shown_path or folder
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(one_line(f"{what}={str(shown_path)!r} cannot be created: {str(probe)!r} is not a folder; "
                                  f"allowed: a path under a writable folder"))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(one_line(f"{what}={str(shown_path)!r} cannot be created: {str(probe)!r} is not writable; "
                                  f"allowed: a path under a writable folder"))


def save_result(obj, path, fallback_dir) -> Path:
    """Write a JSON result atomically to `path`; if that fails after the work is done, save it as
    `fallback_dir`/<name> instead and raise one line saying where it went (the result is never lost)."""
    path = Path(path)
    try:
        return write_json_atomic(path, obj)
    except OSError as e:
        first = e
    import time
    name = Path(path.name or "result.json")  # a new name, so that no earlier result is overwritten
    fallback = Path(fallback_dir) / f"{name.stem}-{time.strftime('%Y%m%d-%H%M%S')}{name.suffix or '.json'}"
    try:
        write_json_atomic(fallback, obj)
    except OSError as e:
        raise ValueError(one_line(f"cannot write the result to {path} ({first.strerror or first}) nor to "
                                  f"{fallback} ({e.strerror or e}); allowed: a writable path")) from None
    raise ValueError(one_line(f"cannot write the result to {path} ({first.strerror or first}); it was saved to "
                              f"{fallback} instead"))


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


__all__ = ["read_jsonl", "read_yaml", "check_out_dir", "check_out_file", "clean_temp_files", "load",
           "rng_state", "save_atomic", "save_result", "set_rng_state", "write_bytes_atomic", "write_json_atomic",
           "write_text_atomic"]
