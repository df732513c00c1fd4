import torch.nn.functional as F

from ..validation import check_bool, check_number
from .base import Objective, correct


class Vanilla(Objective):
    """Clean and adversarial CE as separate terms (CA-AT's "vanilla AT").

    clean = CE(f(x), y), adv = CE(f(x'), y); the `weighted` combiner mixes them as
    (1-λ)·clean + λ·adv, CA-AT's and AGR's combiners take g_c from `clean` and g_a from `adv`.
    Two train-mode forwards per step, kept separate (no concatenated batch) so each term's
    gradient can be taken on its own.

    Arguments:
        attack: the training attack.
        clean_first (bool): run the clean forward before the attack (default False: after it). The
            CA-AT reference code does it first, so the attack (eval-mode BatchNorm) already sees
            running statistics updated by this batch's clean forward.
        label_smoothing (float): label smoothing of both CE terms (torch's meaning; default 0, hard
            labels as both references). A training option for fair comparisons (docs/evidence.md).
    """
    terms = ("clean", "adv")
    slots = {"clean": ("clean",), "adv": ("adv",)}

    def __init__(self, attack=None, clean_first: bool = False, label_smoothing: float = 0.0):
        super().__init__(attack)
        self.clean_first = check_bool("clean_first", clean_first)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, 0.0, hi=1.0, hi_strict=True)

    def compute(self, model, x, y):
        logits_clean, logits_adv = self.clean_and_adv(model, x, y)
        ls = self.label_smoothing
        losses = {"clean": F.cross_entropy(logits_clean, y, label_smoothing=ls),
                  "adv": F.cross_entropy(logits_adv, y, label_smoothing=ls)}
        return losses, {"clean_correct": correct(logits_clean, y), "adv_correct": correct(logits_adv, y)}
