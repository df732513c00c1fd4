from dataclasses import dataclass

import torch.nn.functional as F

from .base import OBJECTIVES, Objective, correct


@OBJECTIVES.register("standard")
@dataclass(eq=False, repr=False)
class Standard(Objective):
    """Standard (non-adversarial) training: clean = CE(f(x), y). No adversarial side, so it cannot
    feed a two-slot combiner."""
    terms = ("clean",)
    default_attack = "none"

    def compute(self, model, x, y):
        logits = model(x)
        return {"clean": F.cross_entropy(logits.float(), y)}, {"clean_correct": correct(logits, y)}
