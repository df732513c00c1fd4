"""`robustfront report --card EVAL_OR_RUN --out DIR`: a RobustBench model card from an eval result.

    robustfront report --card runs/trades/eval.json --card-name "TRADES" --card-architecture WideResNet-34-10 \
        --card-venue "ICML 2019" --card-link https://arxiv.org/abs/1901.08573 --card-reported 56.43 --out model_info
    robustfront report --card runs/trades --card-fields card.yaml --out model_info     # the same from a YAML

writes DIR/<dataset>/<threat model>/<id>.json, RobustBench's model_info layout (eval/card.py has the
fields and their formats). A YAML holds the same keys as the flags without `--card-` (name,
architecture, venue, link, authors, footnote, reported, external, additional_data,
number_forward_passes, dataset, id, eps); flags override it. reported/external are percentages, as
papers print them (56.43).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..validation import check_int, invalid, parse_number

TEXT = ("name", "architecture", "venue", "link", "authors", "footnote", "dataset", "id", "eps")
KEYS = TEXT + ("reported", "external", "additional_data", "number_forward_passes")


def add_card_flags(p) -> None:
    p.add_argument("--card", metavar="EVAL_OR_RUN", help="write a RobustBench model card (model_info JSON) from this "
                   "eval result, or from the one eval*.json with AutoAttack in this run folder, into --out")
    p.add_argument("--card-fields", metavar="FILE.yaml", help="card fields as YAML (keys as the --card-* flags)")
    for key, what in (("name", "the paper's or model's name (required with --card)"),
                      ("architecture", "e.g. WideResNet-28-10 (required with --card)"), ("venue", "e.g. ICML 2019"),
                      ("link", "paper URL"), ("authors", "authors"), ("footnote", "a note"),
                      ("dataset", "cifar10, cifar100 or imagenet (default: the result's data)"),
                      ("id", "file name, e.g. Zhang2019Theoretically (default: from the name)"),
                      ("eps", "pick this ε of a sweep, e.g. 8/255")):
        p.add_argument(f"--card-{key}", dest=f"card_{key}", metavar="TEXT", help=what)
    p.add_argument("--card-reported", metavar="PCT", help="robust accuracy the paper reports, in percent (56.43)")
    p.add_argument("--card-external", metavar="PCT", help="an external evaluation's accuracy, in percent")
    p.add_argument("--card-additional-data", action="store_true", default=None, help="trained with extra data")
    p.add_argument("--card-forward-passes", dest="card_number_forward_passes", type=int, metavar="N",
                   help="forward passes per prediction (default: 1)")


def _fields(args) -> dict:
    fields = {}
    if args.card_fields:
        import yaml
        try:
            fields = yaml.safe_load(Path(args.card_fields).read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"--card-fields {args.card_fields} is not YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(fields, dict):
            raise invalid("card_fields", args.card_fields, "a YAML mapping of card fields")
        bad = [k for k in fields if k not in KEYS]
        if bad:
            raise invalid("card field", bad[0], ", ".join(KEYS), f"unknown (in {args.card_fields})")
    for k in KEYS:
        # getattr: argparse's namespace, the --card-* flags by name
        v = getattr(args, f"card_{k}", None)
        if v is not None:
            fields[k] = v
    for k in ("name", "architecture"):
        if not fields.get(k):
            raise ValueError(f"the card needs its {k}; allowed: --card-{k} TEXT or {k}: in --card-fields")
    return fields


def _percent(key: str, v) -> float | None:
    if v is None or v == "":
        return None
    x = parse_number(v, key)
    if not 0 <= x <= 100:
        raise invalid(key, v, "a percentage from 0 to 100, as the paper prints it (56.43)")
    return x / 100


def _eval_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"--card {path} does not exist; allowed: an eval JSON or a run folder holding one")
    found = [f for f in sorted(path.glob("eval*.json")) if "autoattack" in f.read_text()]
    if len(found) != 1:
        raise ValueError(f"run folder {path} holds {len(found)} eval file(s) with AutoAttack "
                         f"({', '.join(f.name for f in found) or 'none'}); allowed: --card naming one eval JSON")
    return found[0]


def _one(result: dict, eps_text) -> dict:
    if "checkpoints" in result:
        raise invalid("eval_result", f"{len(result['checkpoints'])} checkpoints", "the result of one model")
    if "sweep" not in result:
        if eps_text is not None:  # one ε: the flag must name it, not be ignored
            want, have = parse_number(eps_text, "card_eps"), result.get("eps")
            if not isinstance(have, (int, float)) or abs(have - want) > 1e-9:
                raise invalid("card_eps", eps_text, f"the evaluated budget {result.get('eps_str') or have} (or "
                              f"leave it out)", "not the budget of this evaluation")
        return result
    if eps_text is None:
        raise invalid("card_eps", None, "one of " + ", ".join(f"{e:.6g}" for e in result["eps"])
                      + " (the result is an ε sweep)", "missing")
    want = parse_number(eps_text, "card_eps")
    pick = [p for p in result["sweep"] if abs(p["eps"] - want) < 1e-9]
    if not pick:
        raise invalid("card_eps", eps_text, ", ".join(f"{e:.6g}" for e in result["eps"]), "not in the sweep")
    return {**{k: v for k, v in result.items() if k not in ("eps", "sweep")}, **pick[0]}


def cmd_card(args) -> int:
    from ..eval.card import card_path, model_card, write_card
    f = _fields(args)
    src = _eval_file(Path(args.card))
    try:
        result = json.loads(src.read_text())
    except ValueError as e:
        raise ValueError(f"--card {src} is not JSON ({e})") from None
    result = _one(result, f.get("eps"))
    n_fp = f.get("number_forward_passes", 1)
    card = model_card(result, name=str(f["name"]), architecture=str(f["architecture"]),
                      venue=str(f.get("venue", "")), link=str(f.get("link", "")), footnote=str(f.get("footnote", "")),
                      authors=str(f.get("authors", "")), reported=_percent("card_reported", f.get("reported")),
                      external=_percent("card_external", f.get("external")),
                      additional_data=f.get("additional_data", False),
                      number_forward_passes=check_int("number_forward_passes", n_fp, 1),
                      dataset=f.get("dataset"))
    model_id = f.get("id") or re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(f["name"])).strip("_")
    path = write_card(card, card_path(card, result.get("norm", "Linf"), model_id, root=args.out))
    print(path)
    return 0


__all__ = ["add_card_flags", "cmd_card"]
