import torch.nn.functional as F

from .base import Objective, correct


class Standard(Objective):
    """Standard (non-adversarial) training: clean = CE(f(x), y)."""
    terms = ("clean",)

    def __call__(self, model, x, y):
        logits = model(x)
        return {"clean": F.cross_entropy(logits.float(), y)}, {"clean_correct": correct(logits, y)}
