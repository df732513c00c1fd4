"""The GPU run's worker: `python gpu_stages.py` runs the stages gpu_run.py sends it.

Protocol: one JSON line per stage on stdin, {"stage", "params", "result_path"}; the worker runs it,
writes the result dict as JSON to result_path (atomically) and answers one line on stdout,
`@@done {"stage", "ok", "error", "traceback", "elapsed_s"}`. Everything else a stage prints goes to
stderr, so stdout carries the protocol alone. gpu_run.py kills the worker when a stage overruns.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import redirect_stdout
from importlib import metadata
from pathlib import Path

import torch


def log(msg: str) -> None:
    print(f"[gpu-run] {msg}", file=sys.stderr, flush=True)


# -- environment -------------------------------------------------------------------------------
def _version(dist: str):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _nvidia_smi() -> dict | None:
    if not shutil.which("nvidia-smi"):
        return None
    q = "name,driver_version,memory.total,clocks.max.sm,power.limit,pstate"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"query": q, "gpus": [line.strip() for line in out]}


def stage_env(p: dict) -> dict:
    from gpu_run import commit
    from robustfront.device import cpu_bf16_native, fused_sgd_supported, precision_flags, resolve_device
    dev = resolve_device(p["device"])
    env = {"device": str(dev), "python": sys.version.split()[0], "platform": platform.platform(),
           "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "cudnn_benchmark": torch.backends.cudnn.benchmark, "cudnn_deterministic": torch.backends.cudnn.deterministic,
           "precision_flags": precision_flags(), "fused_sgd": fused_sgd_supported(dev),
           "cpu_count": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cpu_bf16_native": cpu_bf16_native(), "torch_threads": torch.get_num_threads(),
           "packages": {d: _version(d) for d in ("torchvision", "timm", "peft", "pyautoattack", "numpy", "pillow",
                                                 "pytest", "pyyaml", "safetensors")},
           "robustfront_commit": commit(), "cache": os.environ.get("ROBUSTFRONT_CACHE"),
           "nvidia_smi": _nvidia_smi()}
    if dev.type == "cuda":
        pr = torch.cuda.get_device_properties(dev)
        env["gpu"] = {"name": pr.name, "capability": f"{pr.major}.{pr.minor}", "memory_bytes": pr.total_memory,
                      "multiprocessors": pr.multi_processor_count, "bf16": torch.cuda.is_bf16_supported()}
        try:
            env["driver_cuda"] = torch._C._cuda_getDriverVersion()   # e.g. 12080 = CUDA 12.8 driver API
        except AttributeError:
            env["driver_cuda"] = None
    return env


# -- data --------------------------------------------------------------------------------------
def write_tiny_archive(path: Path, per_class: tuple[int, int] = (8, 3), classes: int = 10) -> Path:
    """A CIFAR-shaped image-folder archive (train/<class>/*.png, test/<class>/*.png) of random 32×32
    images, for the dry run's data stage (the same extract-and-decode path as the real archive)."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for split, k in zip(("train", "test"), per_class):
            for c in range(classes):
                for i in range(k):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                    info = tarfile.TarInfo(f"tiny-cifar/{split}/class{c}/{i}.png")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)
    return path


def stage_data(p: dict) -> dict:
    from robustfront.data import load_dataset
    path = p["data"]
    if p.get("tiny_archive"):
        path = str(write_tiny_archive(Path(p["tiny_archive"])))
    t0 = time.perf_counter()
    ds = load_dataset(path, seed=0)
    return {"data": path, "name": ds.name, "train": len(ds.y_train), "val": len(ds.y_val), "test": len(ds.y_test),
            "shape": list(ds.shape), "classes": len(ds.classes), "load_s": time.perf_counter() - t0,
            "cache": os.environ.get("ROBUSTFRONT_CACHE"),
            "note": "first load extracts and decodes the archive into the cache; later loads read the cache"}


# -- bench -------------------------------------------------------------------------------------
def stage_bench(p: dict) -> dict:
    from robustfront.bench.report import format_table, run_bench
    rep = run_bench(quick=p["data"] is None, data=p["data"], device=p["device"], model=p["model"],
                    model_args=p["model_args"], batch_size=p["batch_size"], steps=p["steps"], warmup=p["warmup"],
                    attack_steps=p["attack_steps"], methods=tuple(p["methods"]), variants=tuple(p["variants"]),
                    threads=p.get("threads"), compile_mode=p.get("compile_mode"),
                    compile_backend=p.get("compile_backend"), reference=p.get("reference", True), isolate=False,
                    log=log)
    log("\n" + format_table(rep))
    return rep


def _stages() -> dict:
    from gpu_train_stages import stage_autoattack, stage_epoch, stage_schedule
    return {"env": stage_env, "data": stage_data, "bench": stage_bench, "epoch": stage_epoch,
            "schedule": stage_schedule, "autoattack": stage_autoattack}


def _free(device: str) -> None:
    import gc
    gc.collect()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Run stages as they arrive, until stdin closes."""
    from robustfront.checkpoint import write_json_atomic
    stages = _stages()
    for line in stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        t0 = time.perf_counter()
        ok, error, tb = True, None, None
        try:
            with redirect_stdout(sys.stderr):
                result = stages[job["kind"]](job["params"])
            write_json_atomic(Path(job["result_path"]), result)
        except Exception as e:  # noqa: BLE001 - the stage fails, the run goes on
            tb = traceback.format_exc()
            sys.stderr.write(tb)
            tb = tb[-6000:]   # its end: the innermost frames and the error
            ok, error = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
        finally:
            _free(job["params"].get("device", "cpu"))
        stdout.write("@@done " + json.dumps({"stage": job["stage"], "ok": ok, "error": error, "traceback": tb,
                                             "elapsed_s": time.perf_counter() - t0}) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
