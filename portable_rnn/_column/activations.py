"""The public activations: numerically stable, checked, on any backend."""

from __future__ import annotations

from .._core import activations as core
from .._validate import check_arrays, float32_inside

__all__ = ["sigmoid", "softmax"]


@float32_inside()
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
    return core.sigmoid(xp, z)


@float32_inside()
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
    return core.softmax(xp, z, axis=axis)
