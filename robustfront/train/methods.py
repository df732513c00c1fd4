"""Methods as compositions: an objective, wrappers (AWP) and a combiner, each chosen on its own.

A named method (`--method ca_at_trades`) is a preset of these: the objective and its arguments,
the combiner and its arguments, the wrappers, the training attack, and which loss terms feed which
gradient slot of a two-slot combiner. Any part can be replaced (`--objective trades --combiner
ca_at --wrap awp`) and any hyper-parameter set (`--opt combiner.gamma=0.9 --opt objective.beta=6`,
or a bare `--opt gamma=0.9` where only one part has it). docs/methods/README.md lists the presets.

    objective, combiner = build_method(cfg, threat)

`cfg` needs the attributes method, objective, combiner, wrap, opts, attack, attack_bn_mode (None
or empty: from the preset); `threat` the fields norm, eps, alpha, steps, bounds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..attacks import attack_spec, create_attack
from ..combiners import COMBINERS, create_combiner
from ..objectives import OBJECTIVES, WRAPPERS, create_objective
from ..registry import Registry, hyperparameters
from ..validation import invalid

PARTS = ("objective", "combiner", "attack", "slots")  # option prefixes besides the wrapper names


@dataclass(frozen=True)
class Preset:
    """A named method. `args` holds {"objective": {...}, "combiner": {...}, "<wrapper>": {...},
    "attack": {...}}; attack None: the objective's default; slots None: the objective's default."""
    objective: str
    combiner: str = "sum"
    wrap: tuple[str, ...] = ()
    attack: str | None = None
    args: dict = field(default_factory=dict)
    slots: dict | None = None
    attack_bn_mode: str | None = None
    doc: str = ""

    def __post_init__(self):
        cls = OBJECTIVES.get(self.objective)
        if self.attack is None:  # resolved once, so that `preset.attack` is always an attack name
            object.__setattr__(self, "attack", cls.default_attack)
            object.__setattr__(self, "args", {**self.args, "attack": {**cls.default_attack_args,
                                                                      **self.args.get("attack", {})}})


Method = Preset  # the name the package exported before presets had wrappers and slots
METHODS = Registry("method")


def register_method(name: str, **spec) -> Preset:
    p = Preset(**spec)
    METHODS.register(name)(p)
    return p


@dataclass
class Composition:
    """Everything `build_method` builds, after the preset, the replaced parts and the opts."""
    objective: str
    combiner: str
    wrap: tuple[str, ...]
    attack: str
    objective_args: dict
    combiner_args: dict
    wrap_args: dict
    attack_args: dict
    slots: dict | None
    attack_bn_mode: str | None


def params(cls) -> set[str]:
    """Hyper-parameter names of an objective, wrapper or combiner: its declared fields, parts left out."""
    return set(hyperparameters(cls))


def compose(cfg) -> Composition:
    """The composition `cfg` asks for: the preset `cfg.method`, parts replaced by cfg.objective /
    cfg.combiner / cfg.wrap / cfg.attack, hyper-parameters from cfg.opts."""
    preset = METHODS.get(cfg.method)
    objective = cfg.objective or preset.objective
    combiner = cfg.combiner or preset.combiner
    wrap = tuple(cfg.wrap or preset.wrap)
    obj_cls, comb_cls = OBJECTIVES.get(objective), COMBINERS.get(combiner)
    for w in wrap:
        WRAPPERS.get(w)
    same_obj = objective == preset.objective
    c = Composition(objective, combiner, wrap, preset.attack, dict(preset.args.get("objective", {})) if same_obj else {},
                    dict(preset.args.get("combiner", {})) if combiner == preset.combiner else {},
                    {w: dict(preset.args.get(w, {})) for w in wrap if w in preset.wrap and same_obj},
                    dict(preset.args.get("attack", {})), None, preset.attack_bn_mode)
    if not same_obj:  # the preset's attack belongs to its objective
        c.attack, c.attack_args = obj_cls.default_attack, dict(obj_cls.default_attack_args)
    if cfg.attack and cfg.attack != c.attack:
        c.attack, c.attack_args = cfg.attack, {}
    if cfg.attack_bn_mode:
        c.attack_bn_mode = cfg.attack_bn_mode
    slot_opts = _route(c, cfg.opts or {}, obj_cls, comb_cls)
    c.slots = _slots(c, preset if same_obj else None, obj_cls, comb_cls, slot_opts)
    return c


def _route(c: Composition, opts: dict, obj_cls, comb_cls) -> dict:
    """Put each opts key into its part's arguments; returns the slots.* entries."""
    owners = {"objective": (c.objective_args, params(obj_cls), f"objective '{c.objective}'"),
              "combiner": (c.combiner_args, params(comb_cls), f"combiner '{c.combiner}'")}
    for w in c.wrap:
        owners[w] = (c.wrap_args.setdefault(w, {}), params(WRAPPERS.get(w)), f"wrapper '{w}'")
    slots = {}
    flat = {}
    for key, value in opts.items():  # YAML may nest: opts: {combiner: {gamma: 0.9}}
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    for key, value in flat.items():
        part, _, name = str(key).rpartition(".")
        if part == "attack":
            c.attack_args[name] = value
        elif part == "slots":
            slots[name] = [t.strip() for t in value.split(",")] if isinstance(value, str) else value
        elif part:
            if part not in owners:
                raise invalid("opt", key, "PART.KEY with PART one of " + ", ".join([*owners, "attack", "slots"]),
                              f"for the unknown part '{part}'")
            args, names, label = owners[part]
            if name not in names:
                raise ValueError(f"option '{key}' is not a hyper-parameter of {label}; allowed: "
                                 f"{', '.join(sorted(names)) or 'none'}")
            args[name] = value
        else:
            hits = [p for p, (_, names, _) in owners.items() if name in names]
            if len(hits) > 1:  # e.g. gamma of AWP and of CA-AT: never guess
                raise ValueError(f"option '{name}' is a hyper-parameter of both {owners[hits[0]][2]} and "
                                 f"{owners[hits[1]][2]}; allowed: {' or '.join(f'{h}.{name}' for h in hits)}")
            if not hits:
                allowed = sorted({n for _, names, _ in owners.values() for n in names})
                raise ValueError(f"option '{name}' is not a hyper-parameter of this method; allowed: "
                                 f"{', '.join(allowed) if allowed else 'none'} (or attack.KEY, slots.SLOT)")
            owners[hits[0]][0][name] = value
    return slots


def _slots(c: Composition, preset, obj_cls, comb_cls, slot_opts: dict) -> dict | None:
    """The slot mapping for a combiner with slots; None for a summing combiner."""
    needed = tuple(comb_cls.terms)
    if not needed:
        if slot_opts:
            raise invalid("slots", slot_opts, f"nothing: combiner '{c.combiner}' sums the objective's own terms",
                          "given")
        return None
    probe = OBJECTIVES.build(c.objective, **c.objective_args)  # its terms depend on its arguments
    base = (preset.slots if preset is not None and preset.slots else None) or probe.slots
    if base is None and not slot_opts:
        able = [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).slots is not None]
        raise ValueError(f"combiner '{c.combiner}' needs the gradient slots {', '.join(needed)}; objective "
                         f"'{c.objective}' has no clean side; allowed objectives: {', '.join(able)}")
    mapping = {**(base or {}), **slot_opts}
    missing = [s for s in needed if s not in mapping]
    extra = [s for s in mapping if s not in needed]
    if missing or extra:
        raise invalid("slots", mapping, f"exactly the slots {', '.join(needed)} of combiner '{c.combiner}'")
    return {s: tuple(mapping[s]) for s in needed}


def training_attack(name: str | None, threat, *, bn_mode: str | None = None, **options):
    """The training attack `name` (the attack vocabulary of robustfront.attacks) built for the run's
    threat model; None for "none". attack.KEY options go to the attack's constructor."""
    if name in (None, "none"):
        return None
    return create_attack(name, threat, **{"bn_mode": bn_mode, **typed(attack_spec(name), options)})


def typed(cls, args: dict) -> dict:
    """Each value converted to its declared type first ("0.9" -> 0.9 for a float), so that gamma=abc is
    one line naming gamma and its type, not a TypeError from inside the rule."""
    declared = hyperparameters(cls)
    return {k: declared[k].coerce(v) if k in declared else v for k, v in args.items()}


def option_rows(cfg) -> list[tuple[str, str, object, str]]:
    """(PART.NAME, type, value, help) of every hyper-parameter of the composition `cfg` asks for (see
    `compose`), in declaration order: the objective's, each wrapper's, the combiner's, the attack's.
    The value is the one the method uses: the preset's or an --opt's, else the declared default (also
    for a preset's None, which Registry.create leaves out)."""
    c = compose(cfg)
    parts = [("objective", OBJECTIVES.get(c.objective), c.objective_args),
             *[(w, WRAPPERS.get(w), c.wrap_args.get(w, {})) for w in c.wrap],
             ("combiner", COMBINERS.get(c.combiner), c.combiner_args)]
    if c.attack not in (None, "none"):
        mode = {"bn_mode": c.attack_bn_mode} if c.attack_bn_mode else {}
        parts.append(("attack", attack_spec(c.attack), {**mode, **c.attack_args}))
    rows = []
    for part, cls, args in parts:
        given = typed(cls, args)
        for o in hyperparameters(cls).values():   # None keeps the default when built (Registry.create)
            rows.append((f"{part}.{o.name}", o.type_name, o.default if given.get(o.name) is None else given[o.name],
                         o.help))
    return rows


def options_text(cfg) -> str:
    """The table `robustfront train --list-opts` prints: one line per option, type, value, help."""
    c = compose(cfg)
    rows = [(k, t, _shown(v), h) for k, t, v, h in option_rows(cfg)]
    names = [f"objective {c.objective}", *(f"wrapper {w}" for w in c.wrap), f"combiner {c.combiner}",
             f"attack {c.attack}"]
    head = (f"method {cfg.method}: {', '.join(names)}; set with --opt PART.NAME=VALUE (or NAME=VALUE where one "
            f"part has it)")
    if not rows:
        return head + "\n  (no options)"
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join([head, *("  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows)])


def _shown(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v)) or "(empty)"
    return str(v).lower() if isinstance(v, bool) else str(v)


def build_method(cfg, threat):
    """(objective, combiner) for `cfg` (see the module docstring) and the threat model `threat`."""
    c = compose(cfg)
    attack = training_attack(c.attack, threat, bn_mode=c.attack_bn_mode, **c.attack_args)
    wrap_args = {w: typed(WRAPPERS.get(w), a) for w, a in c.wrap_args.items()}
    try:
        objective = create_objective(c.objective, attack, wrap=c.wrap, wrap_args=wrap_args, slots=c.slots,
                                     **typed(OBJECTIVES.get(c.objective), c.objective_args))
        combiner = create_combiner(c.combiner, **typed(COMBINERS.get(c.combiner), c.combiner_args))
    except TypeError as e:
        raise ValueError(f"method '{cfg.method}' refused its options ({e}); allowed: the declared options "
                         f"(robustfront train --method {cfg.method} --list-opts)") from None
    if objective.needs_averaged and not cfg.ema:
        raise invalid("ema", cfg.ema, f"a decay in (0, 1): method '{cfg.method}' decides with the averaged weights "
                                      f"(e.g. ema=0.999, ema_start=105)", "not set")
    return objective, combiner


# -- the named methods -------------------------------------------------------------------------
# Defaults: the paper's rule where the paper states one, else what the reference code does (its
# numbers came from it); docs/methods/*.md has the paper-vs-code table of every choice.
_R = register_method
_R("standard", objective="standard", doc="Standard training on clean images.")
_R("pgd_at", objective="pgd_at", doc="PGD-AT (Madry et al.): CE on PGD examples.")
_R("vanilla", objective="vanilla", combiner="weighted",
   args={"objective": {"clean_first": True}},  # Weighted's default λ = 0.5 (clean_weight= replaces it)
   doc="Weighted-average AT (CA-AT's baseline): (1-λ)·CE(x) + λ·CE(x'), λ = weight of the adversarial loss, 0.5.")
_R("trades", objective="trades", doc="TRADES: CE(x) + β·KL(p(x)||p(x')), β=6, KL attack from x + 0.001·N.")
_R("mart", objective="mart", doc="MART: BCE(x') + β·KL·(1-p_y(x)), β=6, CE attack from x + 0.001·N.")
_R("clp", objective="clp", doc="Clean logit pairing: CE(x) + CE(x') + w·‖f(x)-f(x')‖², w=0.5.")
_R("cons_at", objective="cons_at", doc="Cons-AT: CE on two attacked views + λ·JS at T=0.5, views forwarded jointly.")
_R("awp", objective="pgd_at", wrap=("awp",), attack_bn_mode="train",
   doc="AT-AWP: adversarial weight perturbation (γ=0.01) around PGD-AT; train-mode BatchNorm in the attack.")
_R("raat", objective="raat", doc="RAAT: reduced examples for boundary samples + DICAR consistency.")
_R("raat_pp", objective="raat_pp",
   doc="RAAT++: MART's BCE on the RAAT inputs + λ·KL·(1-p_y) on the full x', λ=1; MART's attack start.")
_R("raat_sharp", objective="raat", attack_bn_mode="train",
   args={"objective": {"decide_with": "averaged", "dicar_start": None, "supervise": "first", "joint": False}},
   doc="RAAT#: RAAT with decisions by the averaged weights (EMA), DICAR from the averaging start, "
       "train-mode BatchNorm in the attack.")
_R("avmixup", objective="avmixup", args={"objective": {"gamma": 2.0, "lambda1": 1.0, "lambda2": 0.1, "labels": "soft"}},
   doc="AVmixup (Lee et al.): soft labels, CIFAR-10's γ=2, λ1=1, λ2=0.1 (docs/methods/avmixup.md: sources).")
_R("ca_at", objective="vanilla", combiner="ca_at", args={"objective": {"clean_first": True}, "combiner": {"gamma": 0.8}},
   doc="CA-AT (Xue et al.): g_a moved onto the cone of angle arccos γ around g_c when they conflict.")
_R("ca_at_trades", objective="trades", combiner="ca_at",
   args={"objective": {"beta": 1.0, "clean_first": True}, "combiner": {"gamma": 0.8}},
   doc="CA-AT with TRADES: g_c = ∇CE(x), g_a = ∇KL(p(x)||p(x')) (bare KL, as CA-AT's code).")
_R("ca_at_clp", objective="clp", combiner="ca_at", attack="pgd_normal",
   args={"objective": {"pairing": "prob", "adv_ce": False, "weight": 1.0, "clean_first": True},
         "combiner": {"gamma": 0.8}, "attack": {"clamp_start": False}},
   doc="CA-AT with CLP: g_c = ∇CE(x), g_a = ∇ mean‖p(x')-p(x)‖₂ (CA-AT's code), attack from x + 0.001·N.")
_AGR = {"start_epoch": 150, "clip": 0.1}
_R("agr", objective="vanilla", combiner="agr", args={"combiner": _AGR},
   doc="AT + AGR (Tong et al.): per-tensor GOP / GICS reconstruction of g_a, interpolated gradients clipped.")
_R("agr_trades", objective="trades", combiner="agr", attack="pgd", slots={"clean": ("clean",), "adv": ("clean", "kl")},
   args={"combiner": _AGR}, doc="TRADES + AGR: g_c = ∇CE(x), g_a = ∇(whole TRADES loss); CE-PGD attack.")
_R("agr_mart", objective="mart", combiner="agr", attack="pgd", args={"combiner": _AGR},
   doc="MART + AGR: g_c = ∇CE(x), g_a = ∇(whole MART loss); CE-PGD attack.")
_R("agr_awp", objective="vanilla", combiner="agr", wrap=("awp",),
   args={"combiner": _AGR, "awp": {"perturb_terms": ("adv",), "at_w": ("clean",)}},
   doc="AWP + AGR: g_a = ∇CE(x') at w + v (v from the adversarial CE), g_c = ∇CE(x) at w.")
_R("agr_avmixup", objective="avmixup", combiner="agr", args={"combiner": _AGR},
   doc="AVmixup + AGR: g_c = ∇CE(x), g_a = ∇(AVmixup's soft-label CE).")
del _R
