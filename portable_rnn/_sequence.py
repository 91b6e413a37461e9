"""Helpers shared by the RNN and LSTM sequence code (array API only)."""

from __future__ import annotations

from collections.abc import Sequence

from ._activations import _softmax

__all__ = ["StepCaches", "outputs", "project", "steps_and_x"]


def project(xp, W, b, v):
    """``W @ v<t> + b`` for every column of every time step at once, time-major.

    ``W`` is ``(k, n)``, ``b`` is ``(k, 1)`` and ``v`` is ``(n, m, T)``; the
    result is ``(k, T, m)``: step ``t`` is ``result[:, t, :]``, whose rows are
    contiguous (a ``(k, m, T)`` layout would make every step gather scattered
    elements). One matrix product over all ``m * T`` columns replaces ``T``
    small ones.
    """
    n, m, T = v.shape
    k = W.shape[0]
    v_tm = xp.reshape(xp.permute_dims(v, (0, 2, 1)), (n, T * m))
    return xp.reshape(W @ v_tm + b, (k, T, m))


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
