"""A tiny name -> builder registry shared by models, attacks, objectives, combiners and methods, and
`parameters`, the one place the library reads a builder's signature (its options and their defaults)."""
from __future__ import annotations

import fnmatch
import inspect
from typing import Any, Callable

EMPTY = inspect.Parameter.empty   # the default of a parameter that has none


def parameters(fn: Callable) -> dict[str, Any]:
    """{name: default (EMPTY when none)} of the named parameters of a builder function, or of a class's
    constructor (self left out; through **kwargs to the parent class's, as RAATPP's), in order.
    TypeError/ValueError for a callable without a readable signature (some builtins)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    sig = inspect.signature(fn.__init__ if isinstance(fn, type) else fn).parameters
    out = {n: p.default for n, p in sig.items() if n != "self" and p.kind in kinds}
    if isinstance(fn, type) and len(fn.__mro__) > 2 and any(p.kind == inspect.Parameter.VAR_KEYWORD
                                                             for p in sig.values()):
        out = {**parameters(fn.__mro__[1]), **out}
    return out


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable:
        def deco(fn: Callable) -> Callable:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = fn
            return fn
        return deco

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} '{name}'; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build `name`; kwargs left as None keep the builder's defaults (timm's convention)."""
        return self.get(name)(**{k: v for k, v in kwargs.items() if v is not None})

    def options(self, name: str) -> dict[str, Any]:
        """`parameters` of the builder registered as `name`."""
        return parameters(self.get(name))

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())
