"""Evaluation: `EvalConfig` + `run(cfg, sources) -> EvalResult` (the one driver), attack suites, the self-driven AutoAttack cascade, per-sample masks, shards, metrics,
sanity checks, model cards, typed results. Never imports `train`."""
from .card import card_path, model_card, validate_card, write_card
from .cascade import autoattack_cascade, merge_states
from .config import EvalConfig
from .guards import check_randomized
from .load import EvalInput, load_for_eval
from .masks import Masks, merge as merge_masks
from .metrics import accuracy, aggregate, auto_batch_size, correct_mask, mean_nrr
from .result import EvalResult
from .sanity import format_sanity, sanity_check
from .shards import parse_shard
from .run import run
from .suite import check_attacks, evaluate
from .suite_state import merge_evaluations

__all__ = ["EvalConfig", "EvalInput", "EvalResult", "Masks", "accuracy", "aggregate", "auto_batch_size", "autoattack_cascade",
           "card_path", "check_attacks", "check_randomized", "correct_mask", "evaluate", "format_sanity",
           "load_for_eval", "mean_nrr", "merge_evaluations", "merge_masks", "merge_states", "model_card",
           "parse_shard", "run", "sanity_check", "validate_card", "write_card"]
