"""The evaluation request: one dataclass, declared once, validated when it is built.

`EvalConfig` is what `robustfront eval` parses (its flags are generated from these declarations,
as train's are from `TrainConfig`), what a sweep's `eval:` block is checked against, and what
`eval.run` and `eval.evaluate` take. Every rule lives here once: the attack vocabulary (canonical
spellings, each attack once), the budgets (numbers or fractions, each >= 0, none twice), the norms
(`attacks.threat.NORMS`), the attacks' step size and iterations (alpha/steps: the rest of the
`ThreatModel`, e.g. a paper's PGD-10 at step 2/225), shards, chunk sizes and reduced AutoAttack budgets. eps/norm None mean
"the checkpoint's training threat model" (`with_training_defaults`; 8/255 and Linf without one).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..attacks import canonical, is_official, names_help
from ..attacks.official import UNIT_BOX, unit_box
from ..attacks.spec import AUTOATTACK_NAMES
from ..attacks.threat import Norm
from ..fields import Checked, Num, coerce_fields, field_comments
from ..validation import check_int, invalid, shown

Split = Literal["test", "val"]
FIXED_BUDGETS = ("fab", "fab_t", "square")   # single official attacks at the standard version's budgets


def check_attacks(attacks, bounds=UNIT_BOX) -> list[str]:
    """The canonical spelling of each attack; one-line errors for unknown names, duplicates, and
    official names on unbounded inputs."""
    if isinstance(attacks, str):
        raise ValueError(f"attacks={attacks!r} must be a list of attack names; allowed: {names_help()}")
    names = [canonical(a) for a in attacks]
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise ValueError(f"attacks={list(attacks)!r} names {', '.join(dup)} twice; allowed: each attack once")
    for a in names:
        if is_official(a) and not unit_box(bounds):
            raise ValueError(f"attack '{a}' is the official AutoAttack code, which clamps to [0,1]; bounds={bounds!r} "
                             f"is not allowed with it (allowed: (0.0, 1.0))")
    return names


def _items(v) -> list:
    """The parts of a comma-separated string, or a list's elements, or the one value."""
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return list(v) if isinstance(v, (list, tuple)) else [v]


class Attacks(list, Checked):
    """Attack names: a list or "pgd20,autoattack"; canonical spellings, each once."""
    metavar = "A,B"

    @classmethod
    def check(cls, name, v):
        names = _items(v)
        if not names or not all(isinstance(a, str) for a in names):
            raise invalid(name, v, "a non-empty list of attack names such as pgd20,autoattack", "empty")
        return cls(check_attacks(names))  # the input box is checked where the data is known (evaluate)


class Budgets(list, Checked):
    """The ε list, one rule: numbers or fractions (8/255), each >= 0, none twice (8/255 and
    0.0313725... are one budget), at least one. The spellings are kept (`str(e)`)."""
    metavar = "E1,E2"

    @classmethod
    def check(cls, name, v):
        out = cls()
        for part in _items(v):
            e = Num(part, name)
            if e < 0:
                raise invalid(name, v, "budgets >= 0 such as 8/255 or 2/255,8/255", "negative")
            if any(abs(e - u) <= 1e-12 for u in out):
                raise invalid(name, v, "distinct budgets (a list that repeats a value evaluates one budget twice)",
                              f"a list with {shown(part)} twice")
            out.append(e)
        if not out:
            raise invalid(name, v, "a budget such as 8/255, or a comma-separated list 2/255,8/255", "empty")
        return out


def _int(name, v, allowed: str, whole=None, lo: int | None = 1) -> int:
    """An integer >= lo given as a number or a string; else one line naming `whole` (default v) and `allowed`."""
    try:
        return check_int(name, int(v) if isinstance(v, str) else v, lo)
    except ValueError:
        raise invalid(name, v if whole is None else whole, allowed) from None


class ChunkSize(Checked):
    """Points per independently attacked chunk: an integer >= 1, or "all" (one chunk)."""
    metavar = "N|all"

    @classmethod
    def check(cls, name, v):
        return v if v == "all" else _int(name, v, "an integer >= 1, or all (one chunk: the official runner's batching)")


class AABudget(dict, Checked):
    """Reduced AutoAttack budgets: {"n_iter": K, "n_queries": Q} or "n_iter=K,n_queries=Q"."""
    metavar = "n_iter=K,n_queries=Q"

    @classmethod
    def check(cls, name, v):
        out = cls()
        pairs = v.items() if isinstance(v, Mapping) else (p.partition("=")[::2] for p in _items(v))
        allowed = "key=integer pairs, e.g. n_iter=10,n_queries=100"
        for key, value in pairs:
            out[str(key).strip()] = _int(name, value, allowed, whole=v, lo=None)
        if not out:
            raise invalid(name, v, "key=integer pairs, e.g. n_iter=10,n_queries=100")
        return out


class Shard(Checked):
    """This process's part of the points: "i/N" (0-based) or (i, N); "env": torchrun's RANK/WORLD_SIZE."""
    metavar = "i/N"

    @classmethod
    def check(cls, name, v):
        from .shards import parse_shard
        if v == "env":
            return v
        i, n = parse_shard(v)
        return f"{i}/{n}"


@dataclass
class EvalConfig:
    # -- what attacks the model, under which threat model
    attacks: Attacks = field(default_factory=lambda: ["pgd20", "autoattack"])  # comma-separated attack names
    eps: Optional[Budgets] = None        # budget, or a comma-separated sweep 2/255,4/255 (default: the checkpoint's training eps; 8/255 for --weights)
    norm: Optional[Norm] = None          # threat model (default: the checkpoint's; Linf for --weights)
    alpha: Optional[Num] = None          # step size of the attacks that take one, e.g. 2/255 (default: each attack's own, PGD ε/4)
    steps: Optional[int] = None          # iterations of the attacks whose name gives no count (cw, apgd_ce, ...; pgd20 keeps 20) (default: each attack's own)
    # -- on which points
    data: Optional[str] = None           # data set (default: the one the checkpoint was trained on; required with --weights)
    data_root: Optional[str] = None      # folder of the named data sets (default: the training run's)
    resize: Optional[int] = None         # image side (default: the training run's)
    split: Split = "test"                # test, or val: the training run's held-out split (same seed and size)
    n: Optional[int] = None              # a seeded random subset of this many images (default: all)
    seed: int = 0                        # seed of the --n subset and the attacks
    # -- how the work is cut, kept and shared
    batch_size: Optional[int] = None     # default: chosen for the device (CPU 500; CUDA: what fits in half the free memory, up to 4096)
    chunk_size: Optional[ChunkSize] = None  # points per independently attacked chunk (default: 1000, or the batch size when larger); all = one chunk, the official runner's batching
    aa_budget: Optional[AABudget] = None  # reduced AutoAttack budgets for quick looks (APGD/FAB iterations, Square queries; single fab, fab_t, square take theirs); the result says official_budgets: false
    state: Optional[str] = None          # resumable state folder: per-sample masks after every attack and chunk (AutoAttack: every batch); re-run the same command to continue (default: FILE.state beside --out, else RUN/eval-state/<request> for a checkpoint in a run folder)
    no_state: bool = False               # keep nothing on disk (not resumable)
    shard: Optional[Shard] = None        # evaluate shard i of N (0-based) of the points into the state folder; the last shard to finish on a shared folder writes the result, else --merge
    sanity: bool = False                 # also run the six gradient-masking checks (PASS/WARN)
    exact: bool = True                   # fp32 with TF32 off (what a published number needs)
    device: str = "auto"                 # auto, cpu, cuda, cuda:N (default: auto; under torchrun cuda:LOCAL_RANK)

    def __post_init__(self):
        coerce_fields(self)
        check_int("seed", self.seed, 0, 2**63 - 1)   # torch.manual_seed takes a signed 64-bit integer
        for name, v in (("n", self.n), ("batch_size", self.batch_size), ("resize", self.resize), ("steps", self.steps)):
            if v is not None:
                check_int(name, v, 1)
        if self.aa_budget and not any(a in AUTOATTACK_NAMES or a in FIXED_BUDGETS for a in self.attacks):
            raise invalid("aa_budget", self.aa_budget, "with an official attack that takes it in --attacks "
                          f"({', '.join((*AUTOATTACK_NAMES, *FIXED_BUDGETS))})", "given without one")
        if self.alpha is not None and not self.alpha > 0:
            raise invalid("alpha", self.alpha, "a step size > 0 such as 2/255")
        fixed = [a for a in self.attacks if a in AUTOATTACK_NAMES or a in FIXED_BUDGETS]
        if (self.alpha is not None or self.steps is not None) and fixed:
            raise ValueError(f"alpha/steps with {', '.join(fixed)}: the official AutoAttack attacks keep their "
                             f"budgets; allowed: alpha/steps with robustfront's own attacks and APGD (aa_budget "
                             f"reduces theirs)")
        if self.state is not None and self.no_state:
            raise ValueError("--state and --no-state: give one of them")
        if self.sanity and self.shard is not None:
            raise sanity_with_shard(f"--shard {self.shard}")

    # -- construction
    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "EvalConfig":
        unknown = sorted(set(map(str, d)) - set(cls.fields()))
        if unknown:
            raise ValueError(f"unknown eval key(s) {unknown}; allowed: {', '.join(cls.fields())}")
        return cls(**d)

    def replace(self, **changes) -> "EvalConfig":
        return dataclasses.replace(self, **changes)

    def with_training_defaults(self, train_config: Mapping | None) -> "EvalConfig":
        """eps and norm not given: the training run's (its config as a mapping, e.g. a checkpoint's
        "config" or `TrainConfig.to_dict()`), kept in their spelling; 8/255 and Linf without one."""
        train_config = train_config or {}
        return self.replace(eps=self.eps if self.eps is not None else train_config.get("eps", "8/255"),
                            norm=self.norm or train_config.get("norm", "Linf"))

    # -- reading
    @property
    def eps_values(self) -> list[float]:
        return [float(e) for e in self.eps]

    @property
    def eps_str(self) -> list[str]:
        return [str(e) for e in self.eps]


def sanity_with_shard(what: str) -> ValueError:
    return ValueError(f"--sanity runs its checks on all points in one process; allowed: without {what} (run it on "
                      f"the merged model once)")


def field_help(name: str) -> str:
    """The comment after an EvalConfig field's declaration (its --help text)."""
    return field_comments(EvalConfig).get(name, "")


__all__ = ["AABudget", "Attacks", "Budgets", "ChunkSize", "EvalConfig", "Shard", "UNIT_BOX", "check_attacks",
           "field_help"]
