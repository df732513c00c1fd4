"""What an evaluation needs from a checkpoint: the model in eval mode and the images it is judged on.

Evaluation never imports `train`: everything here comes from the checkpoint file itself (the model
is rebuilt from its `model_config`, the data from the training config stored beside it).
"""
from __future__ import annotations

from dataclasses import dataclass
import torch

from .. import checkpoint as ckpt
from ..data import Dataset, load_dataset
from ..device import resolve_device
from ..models import load_model
from ..models.weights import check_input_fits
from ..validation import check_choice, check_int


@dataclass
class EvalInput:
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    dataset: Dataset
    data: str
    config: dict            # the training run's config ({} for a checkpoint without one)
    checkpoint: str


def load_for_eval(checkpoint, *, data: str | None = None, data_root: str | None = None, resize: int | None = None,
                  split: str = "test", n: int | None = None, seed: int = 0, device="auto", base=None) -> EvalInput:
    """The checkpoint's model (eval mode, on `device`) and the `split` images (a seeded `n`-subset).

    The data set defaults to the one the checkpoint was trained on, rebuilt with that run's data
    settings: its root, input size, and its seed and size for the held-out split (another seed would
    carve a "val" split holding training images).
    """
    check_choice("split", split, ("test", "val"))
    if n is not None:
        check_int("n", n, 1)
    dev = resolve_device(device)
    state = ckpt.load(checkpoint, dev)
    model = load_model(state, device=dev, base=base)  # base: a fine-tuning delta's moved base file
    cfg = state.get("config") or {}
    name = data or cfg.get("data")
    if name is None:
        raise ValueError(f"data=None: checkpoint {checkpoint} does not name its data set; allowed: --data NAME_OR_PATH")
    if resize is not None:
        check_int("resize", resize, 1)
    ds = load_dataset(name, root=data_root or cfg.get("data_root"), seed=cfg.get("seed", 0),
                      val_size=cfg.get("val_size"), resize=resize if resize is not None else cfg.get("resize"))
    # before any other complaint: data the model was not built for
    check_input_fits(state["model_config"], ds.shape, ds.num_classes, what=f"data {name}")
    size = len(ds.arrays(split)[1])
    if n is not None and n > size:
        raise ValueError(f"n={n} is larger than the {split} split of {name} ({size} images); allowed: 1 to {size}")
    x, y = ds.tensors(split, dev, n=n, seed=seed)
    return EvalInput(model, x, y, ds, str(name), cfg, str(checkpoint))


__all__ = ["EvalInput", "load_for_eval"]
