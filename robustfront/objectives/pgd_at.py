from dataclasses import dataclass

import torch.nn.functional as F

from ..validation import check_number
from .base import OBJECTIVES, Objective, correct


@OBJECTIVES.register("pgd_at")
@dataclass(eq=False, repr=False)
class PGDAT(Objective):
    """PGD-AT (Madry et al., 2018): adv = CE(f(x'), y), x' from the training attack.

    One train-mode forward per step (on x'); the attack runs in its own BatchNorm mode. No clean
    side (no clean forward), so it cannot feed a two-slot combiner: use `vanilla` for that.

    Label smoothing is for the FastAT benchmark's "PGD-AT + WA + label smoothing" comparisons; 0 is
    Madry et al.'s hard labels.
    """
    terms = ("adv",)
    label_smoothing: float = 0.0  # label smoothing of the CE, in [0, 1) (torch's meaning; 0: hard labels)

    def __post_init__(self):
        super().__post_init__()
        self.label_smoothing = check_number("label_smoothing", self.label_smoothing, 0.0, hi=1.0, hi_strict=True)

    def compute(self, model, x, y):
        x_adv = self.attacked(model, x, y)
        logits = model(x_adv)
        return {"adv": F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)}, {"adv_correct": correct(logits, y)}
