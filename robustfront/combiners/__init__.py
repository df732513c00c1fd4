"""Gradient combiners: how the gradients of an objective's terms become one update."""
from .agr import AGR, agr_diagnostics, agr_update
from .base import COMBINERS, Combiner, Sum, Weighted
from .ca_at import CAAT, ca_at_diagnostics, ca_at_update  # each module registers its class when imported


def create_combiner(name: str, **kwargs) -> Combiner:
    return COMBINERS.build(name, **kwargs)


__all__ = ["AGR", "CAAT", "COMBINERS", "Combiner", "Sum", "Weighted", "agr_diagnostics", "agr_update",
           "ca_at_diagnostics", "ca_at_update", "create_combiner"]
