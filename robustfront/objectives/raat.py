"""RAAT / RAAT++ — Robust Alignment Adversarial Training (Wang et al., 2026).

Specification: METHODS.md, section "RAAT / RAAT++". Two augmentations per image, PGD on both
views, a boundary split that needs no extra attack, a supervised term on reduced or full
adversarial examples, and DICAR, a JS alignment of a mixed adversarial input with the same mix of
the clean views' logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.base import check_choice, check_number
from ..models.modes import eval_mode
from .base import Objective
from .cons_at import _two_views, js_from_logits
from .mart import mart_loss

MIXES = ("max", "plain")


def _per_sample(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *[1] * (like.dim() - 1))


class RAAT(Objective):
    r"""RAAT (plus=False) and RAAT++ (plus=True). `views = 2`: x is a tuple (x1, x2).

    For each view v ∈ {1, 2} (all per image, no host sync):

    1. x_v' = attack(model, x_v, y) (PGD, eval-mode BatchNorm: the attack switches modes itself).
    2. Boundary split, eval mode, no gradient: classify x_v, x_v' and the reduced example
       x_v'' = x_v + η·(x_v' - x_v). *misclassified*: clean wrong; *boundary*: clean right and x_v''
       wrong (with `require_adv_wrong=True`, the reference code's rule, also x_v' wrong);
       *non-boundary*: the rest.
    3. Input x_in,v = x_v'' for boundary samples, x_v' for all others (torch.where, no indexing).
       Supervised loss, train mode: RAAT: CE(f(x_in,v), y); RAAT++: the MART loss
       BCE(f(x_in,v), y) + β·KL(p(x_v) ‖ p(x_in,v))·(1 - p_y(x_v)) with p(x_v) from the train-mode
       clean forward. adv = mean over samples and the two views.
    4. DICAR on images whose clean views are both correct (eval-mode split): one m ~ Beta(γ, γ) per
       batch (`mix="plain"`: m, the paper; `mix="max"`: max(m, 1-m), the reference code), input
       m·x1' + (1-m)·x2', target m·f(x1) + (1-m)·f(x2) from the train-mode clean forwards, not
       detached (as the reference), loss JS of the softmaxes at temperature T, averaged over the
       selected images (0 when none is selected), times λ.

    Train-mode forwards per step: x1, x2 (clean, for the DICAR target and RAAT++'s KL), x_in,1,
    x_in,2 and the mixed input: five, kept separate (BatchNorm running statistics see each of them),
    plus two attacks and, per view, one eval-mode no-grad forward of its 3 split inputs (x, x', x'')
    concatenated (eval mode makes each sample's logits independent of the batch). Cost about 2–2.5× PGD-AT.

    Returns losses {"adv": supervised, "dicar": λ·JS}. There is no separate clean term, so RAAT
    is meant for the `sum` combiner; gradient-surgery combiners (CA-AT, AGR) do not apply.

    Stats (device sums; the trainer divides by the number of images): "boundary", "misclassified",
    "adv_correct" (eval-mode prediction on x'), "clean_correct" (eval-mode prediction on x) are
    counted over both views and halved, i.e. averaged over the two views: multiples of ½, at most
    the batch size, so the per-epoch value is the fraction of views. "dicar_selected" counts images
    (both clean views correct).

    Arguments:
        attack: the training attack (PGD), applied to each view separately.
        eta (float): η ∈ (0, 1], the reduction factor of x'' (default 0.1). η = 1 gives x'' = x'.
        lam (float): λ, weight of DICAR (default 1).
        gamma (float): γ > 0 of the Beta(γ, γ) mixing distribution (default 0.75).
        temperature (float): T of the JS softmaxes (default 0.5).
        beta (float): β of RAAT++'s KL term (default 6; unused by RAAT).
        plus (bool): RAAT++ (MART-style supervised term) instead of RAAT (CE).
        mix (str): "plain" (default, the paper: m as drawn) or "max" (the reference code: max(m, 1-m)).
        require_adv_wrong (bool): boundary also requires x' wrong (reference code); default False
            (the paper's rule).
    """
    terms = ("adv", "dicar")
    views = 2

    def __init__(self, attack=None, eta: float = 0.1, lam: float = 1.0, gamma: float = 0.75,
                 temperature: float = 0.5, beta: float = 6.0, plus: bool = False, mix: str = "plain",
                 require_adv_wrong: bool = False):
        super().__init__(attack)
        self.eta = check_number("eta", eta, 0.0, strict=True)
        if self.eta > 1:
            raise ValueError(f"eta={eta!r} is invalid; allowed: 0 < eta <= 1")
        self.lam = check_number("lam", lam, 0.0)
        self.gamma = check_number("gamma", gamma, 0.0, strict=True)
        self.temperature = check_number("temperature", temperature, 0.0, strict=True)
        self.beta = check_number("beta", beta, 0.0)
        self.plus = bool(plus)
        self.mix = check_choice("mix", mix, MIXES)
        self.require_adv_wrong = bool(require_adv_wrong)

    # ------------------------------------------------------------------ pieces (also used by tests)
    def draw_mix(self, device) -> Tensor:
        """One m ~ Beta(γ, γ) on `device` (a 0-dim tensor, no host sync); max(m, 1-m) if mix="max"."""
        c = torch.full((), self.gamma, device=device)
        m = torch.distributions.Beta(c, c, validate_args=False).sample()
        return torch.maximum(m, 1 - m) if self.mix == "max" else m

    @torch.no_grad()
    def split(self, model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Boundary split of one view in eval mode without gradient.

        Returns boolean masks (B,): "clean_ok", "adv_ok", "boundary", "misclassified", and the
        reduced example "x_red" = x + η(x' - x).
        """
        x_red = torch.lerp(x, x_adv, self.eta)  # weight 1 returns x_adv exactly
        with eval_mode(model):
            clean_ok, adv_ok, red_ok = (model(torch.cat([x, x_adv, x_red])).argmax(1) == y.repeat(3)).chunk(3)
        boundary = clean_ok & ~red_ok
        if self.require_adv_wrong:
            boundary = boundary & ~adv_ok
        return {"clean_ok": clean_ok, "adv_ok": adv_ok, "boundary": boundary, "misclassified": ~clean_ok,
                "x_red": x_red}

    def supervised(self, logits_clean: Tensor, logits_in: Tensor, y: Tensor) -> Tensor:
        """Mean supervised loss of one view: CE (RAAT) or the MART loss (RAAT++)."""
        if self.plus:
            return mart_loss(logits_clean, logits_in, y, self.beta).mean()
        return F.cross_entropy(logits_in, y)

    # ------------------------------------------------------------------ the objective
    def __call__(self, model, x, y):
        x1, x2 = _two_views(x)
        x1_adv = self.attack(model, x1, y)
        x2_adv = self.attack(model, x2, y)
        s1 = self.split(model, x1, x1_adv, y)
        s2 = self.split(model, x2, x2_adv, y)

        # train-mode forwards, one per input
        logits_c1 = model(x1).float()
        logits_c2 = model(x2).float()
        x1_in = torch.where(_per_sample(s1["boundary"], x1), s1["x_red"], x1_adv)
        x2_in = torch.where(_per_sample(s2["boundary"], x2), s2["x_red"], x2_adv)
        sup = 0.5 * (self.supervised(logits_c1, model(x1_in).float(), y)
                     + self.supervised(logits_c2, model(x2_in).float(), y))

        selected = (s1["clean_ok"] & s2["clean_ok"]).float()
        m = self.draw_mix(x1.device).to(x1_adv.dtype)
        logits_mix = model(m * x1_adv + (1 - m) * x2_adv).float()
        target = m.float() * logits_c1 + (1 - m.float()) * logits_c2
        js = js_from_logits(logits_mix, target, self.temperature)
        dicar = self.lam * (js * selected).sum() / selected.sum().clamp_min(1.0)

        def views_avg(key):
            return 0.5 * (s1[key].sum() + s2[key].sum())

        stats = {"boundary": views_avg("boundary"), "misclassified": views_avg("misclassified"),
                 "adv_correct": views_avg("adv_ok"), "clean_correct": views_avg("clean_ok"),
                 "dicar_selected": selected.sum()}
        return {"adv": sup, "dicar": dicar}, stats

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(attack={self.attack!r}, eta={self.eta}, lam={self.lam}, gamma={self.gamma}, "
                f"temperature={self.temperature}, beta={self.beta}, plus={self.plus}, mix={self.mix!r}, "
                f"require_adv_wrong={self.require_adv_wrong})")


class RAATPP(RAAT):
    """RAAT++: RAAT with the MART-style supervised term (`plus=True`); see `RAAT`."""

    def __init__(self, attack=None, eta: float = 0.1, lam: float = 1.0, gamma: float = 0.75,
                 temperature: float = 0.5, beta: float = 6.0, mix: str = "plain", require_adv_wrong: bool = False):
        super().__init__(attack, eta=eta, lam=lam, gamma=gamma, temperature=temperature, beta=beta, plus=True,
                         mix=mix, require_adv_wrong=require_adv_wrong)


__all__ = ["RAAT", "RAATPP"]
