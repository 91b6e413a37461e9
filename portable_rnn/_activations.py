"""Numerically stable activations, written once against the array API standard."""

from __future__ import annotations

from ._backend import elementwise
from ._validate import check_arrays

__all__ = ["sigmoid", "softmax"]


@elementwise
def _sigmoid(xp, z):
    # 1 / (1 + exp(-z)) overflows exp() for z < -709 (float64) or -88 (float32);
    # the identity sigmoid(z) = (1 + tanh(z / 2)) / 2 never does, and tanh
    # saturates to exactly +-1, so sigmoid(+-1e4) is exactly 1 or 0.
    return (xp.tanh(z * 0.5) + 1.0) * 0.5


def _softmax(xp, z, axis: int = 0):
    # Shift by the per-column maximum (not the global one, seed 000's bug) so
    # that every column has an exp() of exactly 1 and none underflows to 0/0.
    e = xp.exp(z - xp.max(z, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def sigmoid(z):
    """Logistic sigmoid ``1 / (1 + exp(-z))``, elementwise and overflow-free.

    Computed as ``(1 + tanh(z / 2)) / 2``, which never overflows: ``sigmoid(-1e4)``
    is exactly 0 and ``sigmoid(1e4)`` exactly 1, with no warning.

    Parameters
    ----------
    z : array, any shape
        Real floating array of any backend.

    Returns
    -------
    s : array, same shape, backend, device and dtype as ``z``
        The sigmoid of every element (each element on its own, never a sum
        over the array as in seed 003).
    """
    xp = check_arrays({"z": z})
    return _sigmoid(xp, z)


def softmax(z, axis: int = 0):
    """Softmax along ``axis`` (per column by default), numerically stable.

    Parameters
    ----------
    z : array, shape (n_y, m) or any shape
        Real floating array of scores; with the default ``axis=0`` each column
        (one example of the batch) is normalised on its own.
    axis : int, optional
        Axis that sums to one. Default 0, the column dialect's class axis.

    Returns
    -------
    p : array, same shape, backend, device and dtype as ``z``
        Probabilities; ``p.sum(axis) == 1``. Finite for any finite ``z``
        (the per-column maximum is subtracted before ``exp``).
    """
    xp = check_arrays({"z": z})
    if not -z.ndim <= axis < max(z.ndim, 1):
        raise ValueError(f"axis {axis} is out of range for z with {z.ndim} dimensions")
    return _softmax(xp, z, axis=axis)
