"""Numerically stable activations, unchecked (the checked public ones are in `_column`)."""

from __future__ import annotations

from .._backend.seam import elementwise

__all__ = ["sigmoid", "softmax"]


@elementwise
def sigmoid(xp, z):
    """``1 / (1 + exp(-z))`` elementwise, as ``(1 + tanh(z / 2)) / 2``: never overflows."""
    # 1 / (1 + exp(-z)) overflows exp() for z < -709 (float64) or -88 (float32);
    # the identity sigmoid(z) = (1 + tanh(z / 2)) / 2 never does, and tanh
    # saturates to exactly +-1, so sigmoid(+-1e4) is exactly 1 or 0.
    return (xp.tanh(z * 0.5) + 1.0) * 0.5


def softmax(xp, z, axis: int = 0):
    """Softmax along ``axis``, shifted by the maximum of each slice along it."""
    # Shift by the per-column maximum (not the global one, seed 000's bug) so
    # that every column has an exp() of exactly 1 and none underflows to 0/0.
    e = xp.exp(z - xp.max(z, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)
