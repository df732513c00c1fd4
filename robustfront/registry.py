"""A tiny name -> builder registry shared by models, attacks, objectives, combiners and methods, and
the one place the library reads what a builder accepts.

Objectives, wrappers, combiners and attack specs are dataclasses: each field is a hyper-parameter,
its type says what it accepts and the comment after it is its help text (as TrainConfig's fields);
`hyperparameters(cls)` reads that declaration. Fields declared with `metadata=PART` (an objective's
attack, a wrapper's objective) are parts, not hyper-parameters. Builders that are plain functions
(models) still have their signature read by `parameters`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

from . import fields
from .validation import invalid, parse_number

EMPTY = inspect.Parameter.empty   # the default of a parameter that has none
PART = {"part": True}             # field metadata: a part (attack, wrapped objective), not a hyper-parameter


@dataclass(frozen=True)
class Option:
    """One declared hyper-parameter."""
    name: str
    type: Any        # the declared type (float, int, bool, str, Literal[...], X | None, tuple[str, ...])
    default: Any     # EMPTY when there is none
    help: str        # the comment after the field

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def coerce(self, value, label: str | None = None):
        """`value` converted to the declared type ("0.9" -> 0.9 for a float), or one line naming the
        option (`label`, default its name), the value and the type allowed."""
        return coerce(label or self.name, value, self.type)


def _without_none(hint) -> tuple[Any, bool]:
    """(X, True) for `X | None` / Optional[X], else (hint, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else typing.Union[rest]), True
    return hint, False


def type_name(hint) -> str:
    """A reader's name of a declared type: float, int | None, plain|max (the allowed values), list of str."""
    hint, optional = _without_none(hint)
    if typing.get_origin(hint) is Literal:
        name = "|".join(map(str, typing.get_args(hint)))
    elif typing.get_origin(hint) is tuple:
        name = f"list of {type_name(typing.get_args(hint)[0])}"
    elif typing.get_origin(hint) in (typing.Union, types.UnionType):
        name = " | ".join(map(type_name, typing.get_args(hint)))
    else:
        name = hint.__name__ if isinstance(hint, type) else str(hint)
    return f"{name} | None" if optional else name


FLOAT = "float (a finite number or a fraction like 8/255)"


def coerce(name: str, v, hint):
    """One user value checked against a declared type and converted; one line naming it when wrong.
    Literal, bool, int and str follow TrainConfig's rules (fields.coerce); a float also takes "8/255"."""
    hint, optional = _without_none(hint)
    if v is None and optional:
        return None
    if hint is float:
        try:
            if isinstance(v, bool):
                raise ValueError
            return parse_number(v, name)
        except ValueError:
            raise invalid(name, v, FLOAT) from None
    if typing.get_origin(hint) is tuple:   # tuple[str, ...]: "a,b" or a list
        items = [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v
        if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
            raise invalid(name, v, "list of str (names, e.g. clean,adv)")
        return tuple(items)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):   # e.g. bool | str: the value's own type
        if not any(type(v) is m for m in typing.get_args(hint)):
            raise invalid(name, v, type_name(hint))
        return v
    return fields.coerce(name, v, hint)


def _hint(cls, name: str):
    """The declared type of field `name`, resolved in the module of the class that declares it
    (annotations are strings under `from __future__ import annotations`)."""
    for klass in cls.__mro__:
        ann = vars(klass).get("__annotations__", {}).get(name)
        if ann is not None:
            return eval(ann, dict(vars(sys.modules[klass.__module__]))) if isinstance(ann, str) else ann  # noqa: S307
    raise TypeError(f"{cls.__name__}.{name} has no declared type")


def _comments(cls) -> dict[str, str]:
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "__dataclass_fields__" in vars(klass):
            out.update(fields.field_comments(klass))
    return out


def hyperparameters(cls) -> dict[str, Option]:
    """{name: Option} of a declared class (a dataclass), in declaration order; parts and fields not
    set by the constructor (init=False) left out."""
    helps = _comments(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("part"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else EMPTY)
        out[f.name] = Option(f.name, _hint(cls, f.name), default, helps.get(f.name, ""))
    return out


def parameters(fn: Callable) -> dict[str, Any]:
    """{name: default (EMPTY when none)} of what a builder accepts, in order: the constructor fields of
    a declared class (parts included), else the named parameters of a function's or a class's
    signature (self left out; through **kwargs to the parent class's). TypeError/ValueError for a
    callable without a readable signature."""
    # a declared class whose constructor is the one generated from its fields (not a hand-written subclass's)
    if isinstance(fn, type) and "__dataclass_fields__" in vars(next(k for k in fn.__mro__ if "__init__" in vars(k))):
        return {f.name: f.default if f.default is not dataclasses.MISSING else EMPTY
                for f in dataclasses.fields(fn) if f.init}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    sig = inspect.signature(fn.__init__ if isinstance(fn, type) else fn).parameters
    out = {n: p.default for n, p in sig.items() if n != "self" and p.kind in kinds}
    if isinstance(fn, type) and len(fn.__mro__) > 2 and any(p.kind == inspect.Parameter.VAR_KEYWORD
                                                             for p in sig.values()):
        out = {**parameters(fn.__mro__[1]), **out}   # through **kwargs to the parent's (a model class's)
    return out


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable:
        """Decorator at the definition: `@OBJECTIVES.register("trades")` above the class."""
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
        """Build `name`; kwargs left as None keep the builder's defaults (timm's convention, for models)."""
        return self.get(name)(**{k: v for k, v in kwargs.items() if v is not None})

    def build(self, name: str, **options: Any) -> Any:
        """Build `name` with its declared options as given: None is a value where an option takes it
        (AGR's clip=None: no clipping; RAAT#'s dicar_start=None: from the averaging start)."""
        return self.get(name)(**options)

    def options(self, name: str) -> dict[str, Any]:
        """`parameters` of the builder registered as `name`."""
        return parameters(self.get(name))

    def hyperparameters(self, name: str) -> dict[str, Option]:
        """The declared hyper-parameters (type, default, help) of `name`, a declared class."""
        return hyperparameters(self.get(name))

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())
