import torch.nn.functional as F

from .base import Objective, correct


class Vanilla(Objective):
    """Clean and adversarial CE as separate terms (CA-AT's "vanilla AT").

    clean = CE(f(x), y), adv = CE(f(x'), y); the `weighted` combiner mixes them as
    λ·clean + (1-λ)·adv, CA-AT's combiner projects their gradients instead.
    Two train-mode forwards per step, kept separate (no concatenated batch) so
    each term's gradient can be taken on its own.
    """
    terms = ("clean", "adv")

    def __call__(self, model, x, y):
        x_adv = self.attack(model, x, y)
        logits_clean = model(x)
        logits_adv = model(x_adv)
        losses = {"clean": F.cross_entropy(logits_clean.float(), y), "adv": F.cross_entropy(logits_adv.float(), y)}
        return losses, {"clean_correct": correct(logits_clean, y), "adv_correct": correct(logits_adv, y)}
