"""A data set an evaluation did not name itself comes from the training run's config: when that
path is gone (a run trained with a relative --data evaluated from another folder, a moved data set),
the error says so and names the flag that overrides it."""
from __future__ import annotations

from contextlib import contextmanager

from ..validation import one_line


@contextmanager
def recorded_paths(checkpoint, data_given: bool, root_given: bool, config: dict):
    """Around loading the data of `checkpoint`'s run: a missing recorded path is re-raised naming its origin."""
    try:
        yield
    except (FileNotFoundError, ValueError) as e:
        keys = [(k, flag) for k, flag, given in (("data", "--data", data_given), ("data_root", "--data-root",
                                                                                   root_given))
                if not given and config.get(k)]
        if checkpoint is None or not keys:
            raise
        typed = config.get("as_typed") or {}
        where = "; ".join(f"{k}={config[k]!r} comes from the training config stored in {checkpoint}"
                          + (f" (typed as {typed[k]!r})" if k in typed else "") for k, _ in keys)
        flags = " / ".join(f"{flag} PATH" for _, flag in keys)
        head = str(e).partition("; allowed:")[0]
        raise type(e)(one_line(f"{head} ({where}); allowed: {flags} to name where it is now")) from None


__all__ = ["recorded_paths"]
