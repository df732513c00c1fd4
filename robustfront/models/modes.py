"""Train/eval mode switches that give every module its own flag back (a PEFT backbone may keep
frozen BatchNorm in eval mode inside a model in train mode: `model.train(was_training)` would
overwrite that)."""
from __future__ import annotations

from contextlib import contextmanager

from torch import nn


@contextmanager
def set_mode(model: nn.Module, training: bool):
    """`model.train(training)` inside the block; each module's own flag restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, flag in modes:
            m.training = flag


def eval_mode(model: nn.Module):
    """Every module in eval mode inside the block; each module's own flag restored afterwards."""
    return set_mode(model, False)
