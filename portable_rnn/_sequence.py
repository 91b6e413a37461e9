"""Helpers shared by the RNN and LSTM sequence code (array API only)."""

from __future__ import annotations

from collections.abc import Sequence

from ._activations import _softmax

__all__ = ["StepCaches", "outputs", "project", "steps_and_x"]


def project(xp, W, b, v):
    """``W @ v<t> + b`` for every column of every time step at once, time-major.

    ``W`` is ``(k, n)``, ``b`` is ``(k, 1)`` and ``v`` is ``(n, m, T)``; the
    result is ``(T, k, m)``: step ``t`` is ``result[t]``, whose rows are
    contiguous (a ``(k, m, T)`` layout would make every step gather scattered
    elements). One matrix product over all ``m * T`` columns replaces ``T``
    small ones.
    """
    n, m, T = v.shape
    k = W.shape[0]
    v_tm = xp.reshape(xp.permute_dims(v, (0, 2, 1)), (n, T * m))
    return xp.permute_dims(xp.reshape(W @ v_tm + b, (k, T, m)), (1, 0, 2))


def outputs(xp, Wy, by, a):
    """``softmax(Wy @ a_t + by)`` per column for every step: ``(n_y, m, T)``."""
    n_a, m, T = a.shape
    z = Wy @ xp.reshape(a, (n_a, m * T)) + by
    return xp.reshape(_softmax(xp, z, axis=0), (Wy.shape[0], m, T))


def previous_states(xp, a0, a):
    """``a_prev`` of every step: ``a0`` then ``a[..., :-1]``, shape ``(n, m, T)``."""
    return xp.concat([xp.expand_dims(a0, axis=-1), a[:, :, :-1]], axis=-1)


class StepCaches(Sequence):
    """The per-step caches of a sequence forward, built only when read.

    ``caches[0][t]`` of ``rnn_forward`` / ``lstm_forward`` is the tuple that
    ``rnn_cell_forward`` / ``lstm_cell_forward`` would have cached at step
    ``t``, as in the seed notebooks; the backward reads the stored arrays
    directly instead.  Treat it as opaque.
    """

    def __init__(self, make_step, length: int, **arrays) -> None:
        self._make_step = make_step
        self._length = length
        self.__dict__.update(arrays)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, t):
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(self._length))]
        t = range(self._length)[t]  # bounds check, negative indices
        return self._make_step(self, t)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._length} steps>"


def steps_and_x(caches, name: str = "caches"):
    """Split the ``(steps, x)`` pair that a sequence forward returns."""
    if not (isinstance(caches, (tuple, list)) and len(caches) == 2):
        raise TypeError(f"{name} must be the (caches, x) pair returned by the forward")
    steps, x = caches
    if not isinstance(steps, Sequence) or len(steps) == 0:
        raise TypeError(f"{name}[0] must be the non-empty sequence of per-step caches")
    return steps, x


# -- per-step values ------------------------------------------------------------------------
#
# The time loops produce and consume one tuple of arrays per step. Two representations serve
# every backend: a Python list of tuples (the plain loop), and a tuple of arrays stacked on a
# leading time axis (what ``jax.lax.scan`` takes and returns). Both answer ``steps[t]`` with the
# tuple of step ``t``, so the code around the loops does not care which it holds.


class ListSteps(Sequence):
    """Per-step tuples in a Python list."""

    def __init__(self, items) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, t):
        return self.items[t]

    def last_axis(self, xp, j: int):
        """Field ``j`` of every step, stacked on a new last (time) axis."""
        return xp.stack([s[j] for s in self.items], axis=-1)


class StackedSteps(Sequence):
    """Per-step values as a tuple of arrays with a leading time axis."""

    def __init__(self, fields) -> None:
        self.fields = tuple(fields)

    def __len__(self) -> int:
        return self.fields[0].shape[0]

    def __getitem__(self, t):
        return tuple(f[t, ...] for f in self.fields)

    def last_axis(self, xp, j: int):
        f = self.fields[j]
        return xp.permute_dims(f, (*range(1, f.ndim), 0))


def time_major(xp, arr):
    """``(..., T)`` -> `StackedSteps` of one field, ``arr[..., t]`` at step ``t``."""
    return StackedSteps((xp.permute_dims(arr, (arr.ndim - 1, *range(arr.ndim - 1))),))


def previous(xp, steps, j: int, first):
    """`StackedSteps`/`ListSteps` whose step ``t`` is ``(steps[t - 1][j],)``, ``(first,)`` at 0."""
    if isinstance(steps, StackedSteps):
        f = steps.fields[j]
        return StackedSteps((xp.concat([xp.expand_dims(first, axis=0), f[:-1, ...]], axis=0),))
    return ListSteps([(first,), *((s[j],) for s in steps.items[:-1])])


def zip_steps(*parts):
    """Steps whose step ``t`` joins the tuples of every part at ``t``."""
    if all(isinstance(p, StackedSteps) for p in parts):
        return StackedSteps(tuple(f for p in parts for f in p.fields))
    return ListSteps([sum((p[t] for p in parts), ()) for t in range(len(parts[0]))])


def select(steps, fields):
    """Steps with only the given fields (by index), in that order."""
    if isinstance(steps, StackedSteps):
        return StackedSteps(tuple(steps.fields[j] for j in fields))
    return ListSteps([tuple(s[j] for j in fields) for s in steps.items])
