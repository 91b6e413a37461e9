"""Numerically stable activations, unchecked (the checked public ones are in `_column`)."""

from __future__ import annotations

from .._backend.seam import elementwise

__all__ = ["shifted", "sigmoid", "softmax"]


@elementwise
def sigmoid(xp, z):
    """``1 / (1 + exp(-z))`` elementwise, as ``(1 + tanh(z / 2)) / 2``: never overflows."""
    # 1 / (1 + exp(-z)) overflows exp() for z < -709 (float64) or -88 (float32);
    # the identity sigmoid(z) = (1 + tanh(z / 2)) / 2 never does, and tanh
    # saturates to exactly +-1, so sigmoid(+-1e4) is exactly 1 or 0.
    return (xp.tanh(z * 0.5) + 1.0) * 0.5


def shifted(xp, z, axis: int):
    """``z`` minus its maximum along ``axis``, computed so that it cannot overflow.

    ``z - max`` overflows to ``-inf`` (with a warning on NumPy) where an element lies
    more than the dtype's largest number below its slice's maximum (``[1e308, -1e308]``).
    Such elements are first raised to that distance, ``max(z, max(m, 0) - big)`` (which
    cannot overflow either), so the result is at least ``-big``: ``exp`` of it is 0, as
    ``exp(-inf)`` would have been. Every other element is left as it is, so the result is
    bit for bit ``z - max`` wherever that does not overflow.
    """
    m = xp.max(z, axis=axis, keepdims=True)
    big = float(xp.finfo(z.dtype).max)
    return xp.maximum(z, xp.maximum(m, 0.0) - big) - m


def softmax(xp, z, axis: int = 0):
    """Softmax along ``axis``, shifted by the maximum of each slice along it."""
    # Shift by the per-column maximum (not the global one, seed 000's bug) so
    # that every column has an exp() of exactly 1 and none underflows to 0/0;
    # `shifted` keeps the subtraction from overflowing for scores that span more
    # than the dtype's range, so the result is finite for any finite input.
    e = xp.exp(shifted(xp, z, axis))
    return e / xp.sum(e, axis=axis, keepdims=True)
