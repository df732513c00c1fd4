"""RobustBench-style model cards: the `model_info/<dataset>/<threat_model>/<Name>.json` of RobustBench,
from a robustfront evaluation result.

    card = model_card(result, name="Conflict-Aware Adversarial Training", architecture="WideResNet-28-10",
                      venue="arXiv, Mar 2025", link="https://arxiv.org/abs/...", reported=0.5521)
    validate_card(card)                       # one ValueError line for a bad field
    write_card(card, card_path(card, "Linf", "Xu2025Conflict"))

Fields and formats, as RobustBench's own files write them (e.g. model_info/cifar10/Linf/Wang2023Better_WRN-28-10.json):
link, name, authors, venue, architecture, footnote (strings); additional_data (bool);
number_forward_passes (int); dataset ("cifar10", "cifar100", "imagenet"); eps ("8/255" for L∞, a
decimal like "0.5" for L2); clean_acc, autoattack_acc, reported, external (accuracy in percent as a
string, "59.53"); unreliable (bool, optional). The threat model is not a field: it is the folder.
robustfront writes reported = "" when no paper number is given.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

from ..checkpoint import write_json_atomic
from ..validation import check_bool, check_choice, check_int, invalid

REQUIRED = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
            "architecture", "eps", "clean_acc", "reported", "autoattack_acc")
OPTIONAL = ("footnote", "unreliable", "external")
DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("Linf", "L2")
TEST_POINTS = {"cifar10": 10000, "cifar100": 10000, "imagenet": 5000}  # RobustBench's AutoAttack sets
_ACC = re.compile(r"(100(\.0{1,2})?|\d{1,2}(\.\d{1,2})?)")
_EPS = re.compile(r"(\d+(\.\d+)?/255|\d*\.?\d+)")


def format_eps(eps: float, norm: str) -> str:
    """"8/255" for an L∞ budget that is k/255 (or k.5/255), else a decimal like "0.031" or "0.5"."""
    if norm == "Linf":
        k = Fraction(eps * 255).limit_denominator(2)
        if abs(float(k) - eps * 255) < 1e-6 and k > 0:
            return f"{k.numerator}/255" if k.denominator == 1 else f"{float(k):g}/255"
    return f"{eps:.6g}"


def format_acc(acc: float) -> str:
    """A fraction in [0, 1] as RobustBench's percent string with 2 decimals: 0.59534 -> "59.53"."""
    if not (isinstance(acc, (int, float)) and math.isfinite(acc) and 0 <= acc <= 1):
        raise invalid("accuracy", acc, "a fraction in [0, 1]")
    return f"{100 * acc:.2f}"


def _autoattack(result: dict) -> tuple[float, float, dict]:
    """(clean accuracy, standard AutoAttack accuracy, the result) from a suite or cascade result."""
    if "sweep" in result:
        raise invalid("eval_result", "an ε sweep", "the result of one ε (one entry of its 'sweep')")
    ra = result.get("robust_acc", {})
    if "autoattack" not in ra:
        raise invalid("eval_result", f"robust_acc keys {sorted(ra)}", "a result with the standard AutoAttack "
                      "('autoattack'), which is what RobustBench's autoattack_acc reports", "without AutoAttack")
    cascade = result.get("kind") == "autoattack-cascade"  # the cascade's own result says both, always
    if not result.get("official_budgets", not cascade):
        raise invalid("eval_result", "reduced AutoAttack budgets", "a run with the official budgets")
    if not result.get("complete", not cascade):
        raise invalid("eval_result", f"{result.get('chunks_done')} of {result.get('chunks_total')} chunks",
                      "a finished run (merge the shards first)", "incomplete")
    return float(result["clean_acc"]), float(ra["autoattack"]), result


def dataset_of(result: dict) -> str:
    """RobustBench's data set name from a result: its "dataset", or its "data" when that is one of
    DATASETS; cifar10 when the result names none. A data set RobustBench does not list is an error."""
    if result.get("dataset"):
        return result["dataset"]
    data = result.get("data")
    if data is None:
        return "cifar10"
    if str(data).lower() in DATASETS:
        return str(data).lower()
    raise invalid("dataset", data, f"{', '.join(DATASETS)} (name it: dataset=...)", "not a RobustBench data set")


def model_card(eval_result: dict, *, name: str, architecture: str, venue: str = "", link: str = "",
               footnote: str = "", reported: float | None = None, additional_data: bool = False,
               number_forward_passes: int = 1, authors: str = "", dataset: str | None = None,
               unreliable: bool | None = None, external: float | None = None) -> dict:
    """The card's fields from an evaluation result ({"clean_acc", "robust_acc": {"autoattack"}, "eps",
    "norm", "n"...}). reported/external are fractions in [0, 1] (None: not given). dataset defaults to
    the result's "dataset" or "data" (`dataset_of`). unreliable=None sets it when the evaluation flagged a
    randomised model; an evaluation on fewer points than RobustBench's test set says so in the footnote."""
    clean, aa, res = _autoattack(eval_result)
    norm = check_choice("threat model", res.get("norm", "Linf"), THREAT_MODELS)
    dataset = check_choice("dataset", dataset or dataset_of(res), DATASETS)
    notes = [footnote] if footnote else []
    n = res.get("n_total", res.get("n"))
    if n is not None and n < TEST_POINTS[dataset]:
        notes.append(f"AutoAttack on {n} of the {TEST_POINTS[dataset]} test points.")
    randomized = bool(res.get("flags", {}).get("randomized"))
    if randomized:
        notes.append("The evaluation flagged a randomised model (use AutoAttack's rand version).")
    card = {"link": link, "name": name, "authors": authors,
            "additional_data": check_bool("additional_data", additional_data),
            "number_forward_passes": check_int("number_forward_passes", number_forward_passes, 1),
            "dataset": dataset, "venue": venue, "architecture": architecture,
            "eps": format_eps(float(res["eps"]), norm), "clean_acc": format_acc(clean),
            "reported": "" if reported is None else format_acc(reported), "autoattack_acc": format_acc(aa),
            "footnote": " ".join(notes),
            "unreliable": randomized if unreliable is None else check_bool("unreliable", unreliable)}
    if external is not None:
        card["external"] = format_acc(external)
    validate_card(card)
    return card


def validate_card(card: dict) -> dict:
    """Check the field list and every field's format; returns the card, or one ValueError line."""
    if not isinstance(card, dict):
        raise invalid("card", type(card).__name__, "a dict of RobustBench model_info fields")
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise invalid("card", f"missing {', '.join(missing)}", f"the fields {', '.join(REQUIRED)}", "incomplete")
    extra = [k for k in card if k not in REQUIRED + OPTIONAL]
    if extra:
        raise invalid("card field", extra[0], ", ".join(REQUIRED + OPTIONAL), "unknown")
    for k in ("link", "name", "authors", "venue", "architecture", "footnote"):
        if k in card and not isinstance(card[k], str):
            raise invalid(k, card[k], "a string")
    for k in ("name", "architecture"):
        if not card[k].strip():
            raise invalid(k, card[k], "a non-empty string")
    for k in ("additional_data", "unreliable"):
        if k in card and not isinstance(card[k], bool):
            raise invalid(k, card[k], "true or false")
    if isinstance(card["number_forward_passes"], bool) or not isinstance(card["number_forward_passes"], int) \
            or card["number_forward_passes"] < 1:
        raise invalid("number_forward_passes", card["number_forward_passes"], "an integer >= 1")
    check_choice("dataset", card["dataset"], DATASETS)
    if not isinstance(card["eps"], str) or not _EPS.fullmatch(card["eps"]):
        raise invalid("eps", card["eps"], 'a string like "8/255" or "0.5"')
    for k in ("clean_acc", "autoattack_acc", "reported", "external"):
        v = card.get(k)
        if k not in card or (k == "reported" and v == ""):
            continue
        if not isinstance(v, str) or not _ACC.fullmatch(v):
            raise invalid(k, v, 'a percentage string from "0" to "100" with at most 2 decimals, like "59.53"')
    if float(card["autoattack_acc"]) > float(card["clean_acc"]):
        raise invalid("autoattack_acc", card["autoattack_acc"], f"at most clean_acc ({card['clean_acc']})")
    return card


def card_path(card: dict, threat_model: str, model_id: str, root="model_info") -> Path:
    """RobustBench's place for the card: <root>/<dataset>/<threat_model>/<model_id>.json."""
    check_choice("threat_model", threat_model, THREAT_MODELS)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", model_id or ""):
        raise invalid("model_id", model_id, "letters, digits, _ . - (e.g. Xu2025Conflict_WRN-28-10)")
    return Path(root) / card["dataset"] / threat_model / f"{model_id}.json"


def write_card(card: dict, path) -> Path:
    return write_json_atomic(path, validate_card(card))


__all__ = ["DATASETS", "OPTIONAL", "REQUIRED", "card_path", "dataset_of", "format_acc", "format_eps", "model_card",
           "validate_card", "write_card"]
