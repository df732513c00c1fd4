import torch.nn.functional as F

from .base import Objective, correct


class PGDAT(Objective):
    """PGD-AT (Madry et al., 2018): adv = CE(f(x'), y), x' from the training attack.

    One train-mode forward per step (on x'); the attack runs in its own BatchNorm mode. No clean
    side (no clean forward), so it cannot feed a two-slot combiner: use `vanilla` for that.
    """
    terms = ("adv",)

    def compute(self, model, x, y):
        x_adv = self.attacked(model, x, y)
        logits = model(x_adv)
        return {"adv": F.cross_entropy(logits.float(), y)}, {"adv_correct": correct(logits, y)}
