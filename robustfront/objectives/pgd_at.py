import torch.nn.functional as F

from .base import Objective, correct


class PGDAT(Objective):
    """PGD-AT (Madry et al., 2018): adv = CE(f(x'), y), x' from the training attack.

    One train-mode forward per step (on x'); the attack runs in eval mode.
    """
    terms = ("adv",)

    def __call__(self, model, x, y):
        x_adv = self.attack(model, x, y)
        logits = model(x_adv)
        return {"adv": F.cross_entropy(logits.float(), y)}, {"adv_correct": correct(logits, y)}
