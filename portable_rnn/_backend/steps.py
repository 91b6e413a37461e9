"""Per-step values: the two containers the time loop produces and consumes.

The time loops (`portable_rnn._backend.seam.time_loop`) produce and consume one tuple of
arrays per step, usually a cell's named tuple (``Step(f, i, cc, o, c, tc, a)``). Two
representations serve every backend: a Python list of tuples (`ListSteps`, the plain
loop), and one tuple of arrays stacked on a leading time axis (`StackedSteps`, what
``jax.lax.scan`` takes and returns). Both answer ``steps[t]`` with the tuple of step ``t``,
of the same type, and both look fields up by name, so the code around the loops does not
care which it holds. Nothing here imports an array library.

Joining per-step arrays on JAX takes bounded blocks (`join_time`): XLA compiles one program
per operand count, in a time that grows faster than the count (a ``stack`` of 1000 arrays
takes seconds to compile, and again for every new length), so no op here is ever given more
than `FAN_IN` arrays. Every other backend joins in one ``stack``, which is linear in time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import pytrees
from .compat import backend_name

__all__ = [
    "FAN_IN",
    "ListSteps",
    "StackedSteps",
    "join_time",
    "previous",
    "select",
    "stack_time",
    "time_major",
    "zip_steps",
]

#: The most arrays one ``stack`` or ``concat`` of per-step values takes on JAX.
FAN_IN = 32


def join_time(xp, blocks: Sequence):
    """Concatenate arrays ``(T_k, ...)`` on their leading (time) axis: ``(sum T_k, ...)``.

    On JAX in a tree of concatenations of at most `FAN_IN` arrays each, so that the
    compiled programs are few and small whatever the number of blocks (each element is
    copied ``ceil(log_FAN_IN(len(blocks)))`` times); elsewhere one ``concat``. Pure data
    movement: the values are exactly those of one ``concat``.
    """
    blocks = list(blocks)
    if backend_name(xp) == "jax":
        while len(blocks) > FAN_IN:
            blocks = [_concat(xp, blocks[i : i + FAN_IN]) for i in range(0, len(blocks), FAN_IN)]
    return _concat(xp, blocks)


def _concat(xp, blocks: list):
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=0)


def stack_time(xp, arrays: Sequence):
    """Stack per-step arrays, each ``(...)``, on a new leading time axis: ``(T, ...)``.

    On JAX in blocks of at most `FAN_IN` arrays, joined by `join_time`; elsewhere one
    ``stack``. The values are exactly those of ``xp.stack(arrays, axis=0)``.
    """
    arrays = list(arrays)
    if backend_name(xp) != "jax" or len(arrays) <= FAN_IN:
        return xp.stack(arrays, axis=0)
    n = FAN_IN
    return join_time(xp, [xp.stack(arrays[i : i + n], axis=0) for i in range(0, len(arrays), n)])


def _position(kind: type, name: str | int) -> int:
    """The index of field ``name`` in tuples of ``kind`` (a named tuple class); ints pass."""
    if isinstance(name, int):
        return name
    fields = getattr(kind, "_fields", None)
    if fields is None or name not in fields:
        raise KeyError(f"per-step values of type {kind.__name__} have no field {name!r}")
    return fields.index(name)


@pytrees.node(children=("items",))
class ListSteps(Sequence):
    """Per-step tuples in a Python list (the plain loop); a JAX pytree of the list."""

    def __init__(self, items) -> None:
        self.items: list[Any] = list(items)
        pytrees.ensure()

    @property
    def kind(self) -> type:
        """The type of each step's tuple (a cell's named tuple, or ``tuple``)."""
        return type(self.items[0]) if self.items else tuple

    def __len__(self) -> int:
        return len(self.items)

    @property
    def width(self) -> int:
        """The number of fields of each step."""
        return len(self.items[0])

    def final(self, name: str | int):
        """Field ``name`` of the last step."""
        return self.items[-1][_position(self.kind, name)]

    def __getitem__(self, t) -> Any:
        return self.items[t]

    def last_axis(self, xp, name: str | int):
        """Field ``name`` of every step, stacked on a new last (time) axis."""
        j = _position(self.kind, name)
        if len(self.items) <= FAN_IN or backend_name(xp) != "jax":
            return xp.stack([s[j] for s in self.items], axis=-1)
        f = stack_time(xp, [s[j] for s in self.items])  # bounded blocks (see join_time)
        return xp.permute_dims(f, (*range(1, f.ndim), 0))

    def stacked(self, xp) -> StackedSteps:
        """The same steps as a `StackedSteps` (every field stacked with `stack_time`)."""
        fields = [stack_time(xp, [s[j] for s in self.items]) for j in range(self.width)]
        return StackedSteps(self.kind._make(fields) if self.kind is not tuple else tuple(fields))


@pytrees.node(children=("fields",), static=("kind",))
class StackedSteps(Sequence):
    """Per-step values as a tuple of arrays with a leading time axis (``lax.scan``'s layout).

    ``fields`` may be a named tuple of stacked arrays (``scan`` returns the type the step
    returned); ``steps[t]`` is then a tuple of the same type. A JAX pytree of the fields,
    with ``kind`` static.
    """

    def __init__(self, fields) -> None:
        self.kind: type = type(fields) if hasattr(fields, "_fields") else tuple
        self.fields: tuple = tuple(fields)
        pytrees.ensure()

    def __len__(self) -> int:
        return self.fields[0].shape[0]

    @property
    def width(self) -> int:
        """The number of fields of each step."""
        return len(self.fields)

    def final(self, name: str | int):
        """Field ``name`` of the last step."""
        return self.field(name)[-1, ...]

    def __getitem__(self, t) -> Any:
        values = (f[t, ...] for f in self.fields)
        return self.kind._make(values) if self.kind is not tuple else tuple(values)

    def field(self, name: str | int):
        """Field ``name`` with its leading time axis, ``(T, ...)``."""
        return self.fields[_position(self.kind, name)]

    def last_axis(self, xp, name: str | int):
        """Field ``name`` of every step, with time as the last axis."""
        f = self.field(name)
        return xp.permute_dims(f, (*range(1, f.ndim), 0))


Steps = ListSteps | StackedSteps


def time_major(xp, arr) -> StackedSteps:
    """``(..., T)`` -> `StackedSteps` of one field, ``arr[..., t]`` at step ``t``."""
    return StackedSteps((xp.permute_dims(arr, (arr.ndim - 1, *range(arr.ndim - 1))),))


def previous(xp, steps: Steps, name: str, first) -> Steps:
    """Steps whose step ``t`` is ``(steps[t - 1].<name>,)``, and ``(first,)`` at step 0."""
    if isinstance(steps, StackedSteps):
        f = steps.field(name)
        return StackedSteps((xp.concat([xp.expand_dims(first, axis=0), f[:-1, ...]], axis=0),))
    j = _position(steps.kind, name)
    return ListSteps([(first,), *((s[j],) for s in steps.items[:-1])])


def zip_steps(*parts: Steps) -> Steps:
    """Steps whose step ``t`` joins the tuples of every part at ``t`` (a plain tuple)."""
    if all(isinstance(p, StackedSteps) for p in parts):
        return StackedSteps(tuple(f for p in parts for f in p.fields))  # type: ignore[union-attr]
    return ListSteps([sum((p[t] for p in parts), ()) for t in range(len(parts[0]))])


def select(steps: Steps, names: tuple[str, ...]) -> Steps:
    """Steps with only the named fields, in that order (plain tuples)."""
    if isinstance(steps, StackedSteps):
        return StackedSteps(tuple(steps.field(n) for n in names))
    js = [_position(steps.kind, n) for n in names]
    return ListSteps([tuple(s[j] for j in js) for s in steps.items])
