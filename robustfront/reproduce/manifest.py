"""The manifest of published results (configs/reproduce/{ca_at,agr,raat}.yaml): loading, checking, selecting.

One file per paper:

    paper: raat                       title, reference (repository @ commit), numbers_source, rows_source
    protocol: {name, label, attacks}  the paper's own evaluation (protocols.check_protocol), protocol (a)
    defaults: {seeds: 3, ...}         entry defaults
    entries:
      - id: raat.t1.cifar10.resnet18.pgd_at       PAPER.TABLE.DATA.MODEL.METHOD (lower case, dots)
        table: raat.t1                            what it reproduces: a table or figure of the paper
        what: "Table 1, CIFAR-10, ResNet-18, PGD-AT"
        status: train | quoted | derived | not_reproducible
        recipe: {config: raat_t1_pgd_at.yaml, set: {KEY: value}}   a configs/paper file + changes
        grid: {opts.gamma: [...]}                 figure series: one run per value (and per seed)
        numbers: {clean: 82.92, pgd10: 51.81, autoattack: 46.74} | unavailable
        wa: false, label_smoothing: false         stated, and checked against the recipe
        unverified: ["what was assumed", ...]     values neither the paper nor the code fixes here
        reason: "..."                             why an entry is quoted / derived / not reproducible
        protocol: {name, label, attacks}          (optional) the entry's own paper protocol (e.g. an L2 table)

Only `train` entries run. `quoted` rows are numbers the paper copied from other work, `derived` ones
are analyses of other entries' checkpoints (no training of their own), `not_reproducible` ones say why.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..validation import check_choice, check_int, invalid
from .protocols import check_protocol, metric_keys

STATUSES = ("train", "quoted", "derived", "not_reproducible")
PAPERS = ("ca_at", "agr", "raat")
ENTRY_KEYS = ("id", "table", "what", "status", "recipe", "grid", "numbers", "wa", "label_smoothing", "unverified",
              "reason", "sources", "seeds", "notes", "protocol")
FILE_KEYS = ("paper", "title", "reference", "numbers_source", "rows_source", "protocol", "defaults", "entries")
ROOT = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class Entry:
    id: str
    paper: str
    table: str
    what: str
    status: str
    raw: dict
    protocol: dict                       # the paper's protocol (a)
    config: dict | None = None           # the resolved TrainConfig mapping (train entries)
    grid: dict = field(default_factory=dict)
    seeds: int = 3

    @property
    def numbers(self) -> dict | None:
        n = self.raw.get("numbers")
        return n if isinstance(n, dict) else None

    @property
    def selection(self) -> str:
        """The checkpoint-selection rule, a column of every table."""
        c = self.config or {}
        rule = {"val": f"held-out split ({c.get('val_size') or 'default'} train images)", "test": "test set",
                "last": "last epoch"}.get(c.get("select_on", "val"), "?")
        if c.get("select_stale"):
            rule += ", stale ties (CA-AT)"
        if c.get("select_on") in ("val", "test"):
            rule += f", PGD-{c.get('eval_steps', 10)} every {c.get('eval_every', 1)} ep"
        return rule


def _recipe(raw: dict, where: str, root: Path) -> dict:
    from ..checkpoint import read_yaml
    from ..sweep.spec import expand, set_key   # the sweep validates a run config (and its method) for us
    rec = raw.get("recipe")
    if not isinstance(rec, dict) or "config" not in rec:
        raise invalid(f"{where}.recipe", rec, "a mapping {config: FILE under configs/paper, set: {KEY: value}}")
    path = root / "paper" / rec["config"]
    if not path.is_file():
        raise invalid(f"{where}.recipe.config", rec["config"], "a file under configs/paper", "missing")
    cfg = read_yaml(path)
    for k, v in (rec.get("set") or {}).items():
        set_key(cfg, k, v)
    cfg.pop("out", None)
    try:
        return expand({"name": str(raw.get("id")), "base": cfg})[0].config
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: recipe does not validate: {' '.join(str(e).split())}") from None


def _check_flags(e: Entry, where: str) -> None:
    """WA and label smoothing are stated in the entry and must be what the recipe does."""
    c = e.config
    wa = c.get("ema") is not None
    ls = float((c.get("opts") or {}).get("label_smoothing", 0.0) or 0.0) > 0
    for name, actual in (("wa", wa), ("label_smoothing", ls)):
        if e.raw.get(name) is None:
            raise invalid(f"{where}.{name}", None, "true or false, stated for every trained entry", "missing")
        if bool(e.raw[name]) != actual:
            raise invalid(f"{where}.{name}", e.raw[name], f"{actual} (what the recipe does)", "contradicts the recipe")


def load_file(path: Path, root: Path = ROOT) -> list[Entry]:
    from ..checkpoint import read_yaml
    raw = read_yaml(path)
    where = path.name
    if not isinstance(raw, dict):
        raise invalid(where, type(raw).__name__, "a mapping with keys " + ", ".join(FILE_KEYS))
    for k in raw:
        check_choice(f"{where} key", k, FILE_KEYS)
    paper = check_choice(f"{where}.paper", raw.get("paper"), PAPERS)
    protocol = check_protocol(raw.get("protocol"), f"{where}.protocol")
    defaults = raw.get("defaults") or {}
    out = []
    for i, r in enumerate(raw.get("entries") or []):
        r = {**defaults, **r}
        w = f"{where} entry {r.get('id', i)}"
        for k in r:
            check_choice(f"{w} key", k, ENTRY_KEYS)
        if not isinstance(r.get("id"), str) or not r["id"].startswith(paper + "."):
            raise invalid(f"{w}.id", r.get("id"), f"a dotted id starting with '{paper}.'")
        status = check_choice(f"{w}.status", r.get("status", "train"), STATUSES)
        proto = check_protocol(r["protocol"], f"{w}.protocol") if "protocol" in r else protocol
        e = Entry(r["id"], paper, str(r.get("table", "")), str(r.get("what", "")), status, r, proto,
                  grid=dict(r.get("grid") or {}), seeds=check_int(f"{w}.seeds", r.get("seeds", 3), 1))
        if status == "train":
            e.config = _recipe(r, w, root)
            _check_flags(e, w)
            nums = r.get("numbers", "unavailable")
            if nums != "unavailable":
                if not isinstance(nums, dict):
                    raise invalid(f"{w}.numbers", nums, "a mapping of metric to the paper's number, or unavailable")
                allowed = {"clean", *metric_keys(proto, e.config.get("eps"))}
                for k in nums:
                    check_choice(f"{w}.numbers key", k, sorted(allowed))
        elif not r.get("reason"):
            raise invalid(f"{w}.reason", None, f"why a '{status}' entry is not trained", "missing")
        out.append(e)
    ids = [e.id for e in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise invalid(f"{where} ids", dup, "each id once", "repeated")
    return out


def load_manifest(root: Path = ROOT) -> list[Entry]:
    """Every entry of configs/reproduce/*.yaml, in file order (ca_at, agr, raat)."""
    entries = []
    for paper in PAPERS:
        path = Path(root) / "reproduce" / f"{paper}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"manifest {path} does not exist; allowed: a configs folder holding "
                                    f"reproduce/{{{','.join(PAPERS)}}}.yaml")
        entries += load_file(path, Path(root))
    return entries


def select(entries: list[Entry], selection: list[str]) -> list[Entry]:
    """Entries matching any selector: `all`, a paper, a table (`raat.t1`), an id, or an fnmatch pattern."""
    chosen, seen = [], set()
    for s in selection:
        hits = [e for e in entries if s == "all" or e.id == s or e.id.startswith(s + ".") or e.table == s
                or fnmatch.fnmatchcase(e.id, s)]
        if not hits:
            tables = sorted({e.table for e in entries})
            raise invalid("selection", s, f"all, a paper ({', '.join(PAPERS)}), a table ({', '.join(tables)}), "
                                          f"an entry id, an id pattern, or a sweep file (testbed)", "not a selection: it matches nothing")
        for e in hits:
            if e.id not in seen:
                seen.add(e.id)
                chosen.append(e)
    return chosen


def covered(entries: list[Entry]) -> dict:
    """Per paper: entries trained and evaluated by `reproduce`, and the others by status."""
    out = {}
    for e in entries:
        d = out.setdefault(e.paper, {s: 0 for s in STATUSES})
        d[e.status] += 1
    return out


def describe(e: Entry) -> str:
    return json.dumps({"id": e.id, "status": e.status, "what": e.what}, ensure_ascii=False)


__all__ = ["Entry", "PAPERS", "ROOT", "STATUSES", "covered", "load_file", "load_manifest", "select"]
