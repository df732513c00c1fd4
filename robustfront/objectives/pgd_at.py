import torch.nn.functional as F

from ..validation import check_number
from .base import Objective, correct


class PGDAT(Objective):
    """PGD-AT (Madry et al., 2018): adv = CE(f(x'), y), x' from the training attack.

    One train-mode forward per step (on x'); the attack runs in its own BatchNorm mode. No clean
    side (no clean forward), so it cannot feed a two-slot combiner: use `vanilla` for that.

    Argument label_smoothing (float, default 0): the CE's label smoothing (torch's meaning), for the
    FastAT benchmark's "PGD-AT + WA + label smoothing" comparisons; 0 is Madry et al.'s hard labels.
    """
    terms = ("adv",)

    def __init__(self, attack=None, label_smoothing: float = 0.0):
        super().__init__(attack)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, 0.0, hi=1.0, hi_strict=True)

    def compute(self, model, x, y):
        x_adv = self.attacked(model, x, y)
        logits = model(x_adv)
        return {"adv": F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)}, {"adv_correct": correct(logits, y)}
