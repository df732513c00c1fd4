"""What an evaluation needs: the model in eval mode and the images it is judged on, from a
robustfront checkpoint or from weights trained elsewhere.

Evaluation never imports `train`: everything here comes from the checkpoint file itself (the model
is rebuilt from its `model_config`, the data from the training config stored beside it), or for
foreign weights from the architecture and data named by the caller (models/foreign.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..data import Dataset, load_dataset, subset_indices
from ..device import resolve_device
from ..models import load_model
from ..models.checks import check_loaded
from .origin import recorded_paths
from ..models.weights import check_input_fits
from ..validation import check_choice, check_int


@dataclass
class EvalInput:
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    dataset: Dataset
    data: str
    config: dict            # the training run's config ({} for a checkpoint without one, and for foreign weights)
    checkpoint: str         # the file the weights came from (a robustfront checkpoint or foreign weights)
    ids: np.ndarray | None = None   # the points' indices in the split (the subset's, sorted)
    report: dict | None = None      # foreign weights: what was loaded and how (models.foreign.load_foreign)


def load_for_eval(checkpoint=None, *, weights=None, model: str | None = None, model_file: str | None = None,
                  input_mean=None, input_std=None, num_classes: int | None = None, data: str | None = None,
                  data_root: str | None = None, resize: int | None = None, split: str = "test", n: int | None = None,
                  seed: int = 0, device="auto", base=None) -> EvalInput:
    """The model (eval mode, on `device`) and the `split` images (a seeded `n`-subset) it is judged on.

    Either `checkpoint`, a robustfront checkpoint: the data set defaults to the one it was trained
    on, rebuilt with that run's data settings (its root, input size, and its seed and size for the
    held-out split: another seed would carve a "val" split holding training images). Or foreign
    weights: `weights` (.pt/.pth/.safetensors) for the architecture `model` (resnet18, wrn28_10, ...)
    or for the network `model_file="path/net.py:factory"` returns, with `input_mean`/`input_std`
    (default: none, i.e. identity) and `num_classes` (see models.foreign.load_foreign); `data` is then
    required, since nothing in such a file names it.
    """
    check_choice("split", split, ("test", "val"))
    if n is not None:
        check_int("n", n, 1)
    foreign = weights is not None or model is not None or model_file is not None
    if foreign == (checkpoint is not None):
        raise ValueError("checkpoint and weights: give exactly one; allowed: a robustfront checkpoint, or foreign "
                         "weights with model=NAME or model_file=module.py:factory")
    dev = resolve_device(device)
    report = None
    if foreign:
        from ..models.foreign import load_foreign
        if model is None and model_file is None:
            raise ValueError(f"weights={str(weights)!r} needs its architecture; allowed: --model NAME or "
                             f"--model-file module.py:factory")
        if data is None:
            raise ValueError("data=None: foreign weights do not name their data set; allowed: --data NAME_OR_PATH")
        net, report = load_foreign(model, weights, input_mean=input_mean, input_std=input_std,
                                   num_classes=num_classes, device=dev, model_file=model_file)
        cfg, source = {}, str(weights if weights is not None else model_file)
    else:
        state = ckpt.load(checkpoint, dev)
        net = load_model(state, device=dev, base=base)  # base: a fine-tuning delta's moved base file
        cfg, source = state.get("config") or {}, str(checkpoint)
    name = data or cfg.get("data")
    if name is None:
        raise ValueError(f"data=None: checkpoint {checkpoint} does not name its data set; allowed: --data NAME_OR_PATH")
    if resize is not None:
        check_int("resize", resize, 1)
    with recorded_paths(None if foreign else checkpoint, data is not None, data_root is not None, cfg):
        ds = load_dataset(name, root=data_root or cfg.get("data_root"), seed=cfg.get("seed", 0),
                          val_size=cfg.get("val_size"), resize=resize if resize is not None else cfg.get("resize"))
    if not foreign:  # before any other complaint: data the model was not built for
        check_input_fits(state["model_config"], ds.shape, ds.num_classes, what=f"data {name}")
    size = len(ds.arrays(split)[1])
    if n is not None and n > size:
        raise ValueError(f"n={n} is larger than the {split} split of {name} ({size} images); allowed: 1 to {size}")
    x, y = ds.tensors(split, dev, n=n, seed=seed)
    if foreign:
        _check_shape(net, x, name, source)
    check_loaded(net, x, ds.num_classes, str(name), source, "--weights" if foreign else "--checkpoint")
    return EvalInput(net, x, y, ds, str(name), cfg, source, subset_indices(size, n, seed), report)


def _check_shape(model, x, data: str, source: str) -> None:
    """Foreign networks record no input shape: one forward pass on one image, before any attack runs."""
    if len(x):
        try:
            with torch.no_grad():
                model(x[:1])
        except RuntimeError as e:
            raise ValueError(f"data {data} of shape {tuple(x.shape[1:])} does not fit the model of {source} "
                             f"({str(e).splitlines()[0][:120]}); allowed: data of the shape it was trained on") \
                from None


__all__ = ["EvalInput", "load_for_eval"]
