"""The caches and per-step containers as JAX pytrees, registered lazily.

Every cache a public forward returns is a pytree whose leaves are exactly its arrays:
plain named tuples of arrays are pytrees already; the classes that also hold non-array
parts (a cell spec, a `Cell`, sizes such as ``H`` or ``n_a``, flags) declare here which
attributes are their children and which are static (the aux data: compared by value when
hashable, as ints, flags, shapes and types; by identity otherwise, as cell specs and cells).

Nothing here imports JAX at import time (importing it costs seconds). `node` records a
class; the records are registered with ``jax.tree_util`` by `ensure`, which does so once,
and only when JAX is already imported (``"jax" in sys.modules``). `node` calls it, so that
classes defined after JAX was imported are registered at once, and so do the places that
make a cache or a per-step container: a JAX array cannot exist before JAX is imported, so
every cache made from JAX arrays is registered before it is returned, in a jitted function
too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["Static", "ensure", "node"]

#: (class, children, static, make) of every recorded class, in the order recorded
_RECORDS: list[tuple[type, tuple[str, ...], tuple[str, ...], Callable | None]] = []
#: how many of `_RECORDS` are registered with JAX
_registered = 0


class Static:
    """A static part of a pytree's aux data, equal only to itself (hashed by identity).

    Cell specs and cells hold dicts, so they are not hashable; they are module-level
    singletons, compared by identity.
    """

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __eq__(self, other) -> bool:
        return isinstance(other, Static) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)

    def __repr__(self) -> str:
        return f"Static({self.value!r})"


def _wrap(value):
    """``value`` itself if hashable (ints, flags, shapes, types), else `Static`."""
    try:
        hash(value)
    except TypeError:
        return Static(value)
    return value


def _unwrap(value):
    return value.value if isinstance(value, Static) else value


def node(children: tuple[str, ...], static: tuple[str, ...] = (), make: Callable | None = None):
    """Class decorator: record the class as a pytree of the attributes ``children``, with
    the attributes ``static`` in its aux data.

    ``make(cls, values)`` builds an instance from a dict of every attribute; by default a
    named tuple is called with them as keywords and any other class gets them set on a
    new instance without calling ``__init__`` (frozen dataclasses included), so that JAX
    may rebuild it from leaves that are not arrays.
    """

    def record(cls):
        _RECORDS.append((cls, tuple(children), tuple(static), make))
        ensure()
        return cls

    return record


def _make(cls, values: dict):
    if hasattr(cls, "_fields"):
        return cls(**values)
    obj = object.__new__(cls)
    for k, v in values.items():
        object.__setattr__(obj, k, v)
    return obj


def ensure() -> None:
    """Register every recorded class with JAX, if JAX is imported (else nothing).

    Cheap after the first time: a length comparison, and a look-up in ``sys.modules``.
    """
    global _registered
    # sys.modules["jax"] = None blocks the import (the standard way): that is "not imported"
    if _registered == len(_RECORDS) or sys.modules.get("jax") is None:
        return
    from jax import tree_util

    while _registered < len(_RECORDS):
        cls, children, static, make = _RECORDS[_registered]
        _registered += 1
        tree_util.register_pytree_node(cls, *_functions(cls, children, static, make or _make))


def _functions(cls, children, static, make):
    def flatten(obj):
        kids = tuple(getattr(obj, k) for k in children)
        return kids, tuple(_wrap(getattr(obj, k)) for k in static)

    def unflatten(aux, kids):
        values = dict(zip(children, kids, strict=True))
        values |= {k: _unwrap(v) for k, v in zip(static, aux, strict=True)}
        return make(cls, values)

    return flatten, unflatten
