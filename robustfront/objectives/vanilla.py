from dataclasses import dataclass

import torch.nn.functional as F

from ..validation import check_bool, check_number
from .base import OBJECTIVES, Objective, correct


@OBJECTIVES.register("vanilla")
@dataclass(eq=False, repr=False)
class Vanilla(Objective):
    """Clean and adversarial CE as separate terms (CA-AT's "vanilla AT").

    clean = CE(f(x), y), adv = CE(f(x'), y); the `weighted` combiner mixes them as
    (1-λ)·clean + λ·adv, CA-AT's and AGR's combiners take g_c from `clean` and g_a from `adv`.
    Two train-mode forwards per step, kept separate (no concatenated batch) so each term's
    gradient can be taken on its own.

    clean_first: the CA-AT reference code runs the clean forward first, so the attack (eval-mode
    BatchNorm) already sees running statistics updated by this batch's clean forward. Label
    smoothing is a training option for fair comparisons (docs/evidence.md); both references use 0.
    """
    terms = ("clean", "adv")
    slots = {"clean": ("clean",), "adv": ("adv",)}
    clean_first: bool = False     # clean forward before the attack (CA-AT's reference order)
    label_smoothing: float = 0.0  # label smoothing of both CE terms, in [0, 1) (torch's meaning; 0: hard labels)

    def __post_init__(self):
        super().__post_init__()
        self.clean_first = check_bool("clean_first", self.clean_first)
        self.label_smoothing = check_number("label_smoothing", self.label_smoothing, 0.0, hi=1.0, hi_strict=True)

    def compute(self, model, x, y):
        logits_clean, logits_adv = self.clean_and_adv(model, x, y)
        ls = self.label_smoothing
        losses = {"clean": F.cross_entropy(logits_clean, y, label_smoothing=ls),
                  "adv": F.cross_entropy(logits_adv, y, label_smoothing=ls)}
        return losses, {"clean_correct": correct(logits_clean, y), "adv_correct": correct(logits_adv, y)}
