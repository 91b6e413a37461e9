"""CS231n temporal layers: affine over time, masked softmax loss, word embeddings.

Dimension letters: ``N`` examples in the batch, ``T`` time steps, ``D`` input
features, ``M`` output features, ``V`` vocabulary size (classes).

Written once against the array API standard, like the rest of the library:
no array library is imported here, gathers are ``xp.take`` or one-hot
comparisons, and the scatter-add of the embedding gradient (which the standard
lacks) is the matrix product ``onehot.T @ dout``.

Argument rules (see ``docs/conventions.md``): the floating arrays follow
`portable_rnn._validate.check_arrays`; the integer arrays (labels ``y``, word
indices ``x``) must have an integer dtype and be of the backend and on the
device of the floating arrays; ``mask`` may be boolean, integer or floating
(it is converted to the dtype of ``x``). Every check, including the range of
the labels and indices, runs before any arithmetic. The range check reads two
numbers back to the host (a sync on GPU backends); under ``jax.jit``, where
the values are not known, it is skipped.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._backend.compat import array_namespace, backend_name, device, read_values, same_device
from ._backend.seam import arange_like, snapshot
from ._validate import Dims, check_arrays, check_is_array, float32_inside, unpack_cache

__all__ = [
    "temporal_affine_backward",
    "temporal_affine_forward",
    "temporal_softmax_loss",
    "word_embedding_backward",
    "word_embedding_forward",
]


# -- checks -----------------------------------------------------------------------


def _check_companion(xp, ref_name: str, ref, name: str, arr, kinds, wanted: str) -> None:
    """Check a non-floating argument (labels, indices, mask) against the floating ``ref``.

    It must be an array of ``ref``'s backend, with a dtype of one of ``kinds``
    (`isdtype` kinds), on ``ref``'s device.
    """
    check_is_array(name, arr)
    other = array_namespace(arr)
    if other is not xp:
        raise TypeError(
            f"{name} is a {backend_name(other)} array but {ref_name} is a "
            f"{backend_name(xp)} array; pass arrays of one backend "
            "(portable_rnn.to_backend moves them)"
        )
    if not xp.isdtype(arr.dtype, kinds):
        raise TypeError(f"{name} must have {wanted}, got {arr.dtype}")
    dev, other_dev = device(ref), device(arr)
    if not same_device(dev, other_dev):
        raise ValueError(
            f"{name} is on device {other_dev} but {ref_name} is on device {dev}; "
            "pass arrays on one device (portable_rnn.to_backend moves them)"
        )


def _is_untraceable(exc: Exception) -> bool:
    """Whether ``exc`` is JAX's refusal to read a traced value (inside ``jax.jit``)."""
    return any(cls.__name__ == "ConcretizationTypeError" for cls in type(exc).__mro__)


def _check_range(xp, name: str, idx, n: int, what: str, source: str) -> None:
    """Refuse values of the integer array ``idx`` outside ``[0, n)``.

    Reads the minimum and maximum back to the host; skipped for empty arrays
    and for traced JAX arrays (whose values are not known).
    """
    if math.prod(idx.shape) == 0:
        return
    info = xp.iinfo(idx.dtype)
    if info.min >= 0 and n > info.max:  # no value of the dtype can be out of range
        return
    try:  # read at once (for Dask: one compute of both)
        lo, hi = (int(v) for v in read_values(xp.min(idx), xp.max(idx)))
    except Exception as exc:
        if _is_untraceable(exc):
            return
        raise
    if lo < 0 or hi >= n:
        raise ValueError(
            f"{name} must hold {what} in [0, {source}) = [0, {n}), got values from {lo} to {hi}"
        )


class _AffineCache(NamedTuple):
    """What `temporal_affine_forward` keeps for its backward: copies of ``x`` and ``w``."""

    x: Any  #: (N, T, D)
    w: Any  #: (D, M)


class _EmbeddingCache(NamedTuple):
    """What `word_embedding_forward` keeps: a copy of the indices, and ``W`` (only its
    shape, dtype and device are read)."""

    x: Any  #: (N, T), integer
    W: Any  #: (V, D)


def _shifted(xp, x):
    """``x`` minus its maximum over the last axis, never overflowing (at least ``-big``).

    The same computation as `portable_rnn._core.activations.shifted` (which this layer
    may not import): bit for bit ``x - max`` wherever that does not overflow.
    """
    m = xp.max(x, axis=-1, keepdims=True)
    big = float(xp.finfo(x.dtype).max)
    return xp.maximum(x, xp.maximum(m, 0.0) - big) - m


# -- helpers ------------------------------------------------------------------------


def _as_index(xp, idx):
    """``idx`` with an index dtype every backend's ``take`` accepts (int32 or int64)."""
    if idx.dtype in (xp.int32, xp.int64):
        return idx
    return xp.astype(idx, xp.__array_namespace_info__().default_dtypes()["indexing"])


def _one_hot(xp, idx, n: int, dtype):
    """``idx (...)`` -> ``(..., n)`` one-hot rows of ``dtype``, on ``idx``'s device."""
    idx = _as_index(xp, idx)
    classes = arange_like(xp, n, idx)
    return xp.astype(xp.expand_dims(idx, axis=-1) == classes, dtype)


# -- temporal affine ------------------------------------------------------------------


@float32_inside(returns_cache=True)
def temporal_affine_forward(x, w, b):
    """An affine layer applied at every time step, ``out = x @ w + b``.

    Parameters
    ----------
    x : array, shape (N, T, D)
        Inputs of every step.
    w : array, shape (D, M)
        Weights.
    b : array, shape (M,)
        Biases.

    Returns
    -------
    out : array, shape (N, T, M)
        Outputs of every step.
    cache : tuple
        For `temporal_affine_backward`: copies of ``x`` and ``w`` (on backends whose
        arrays can change in place), so that the backward gives the gradients of
        this forward as it ran.
    """
    xp = check_arrays({"x": x, "w": w, "b": b})
    dims = Dims()
    dims.check("x", x, "N T D")
    dims.check("w", w, "D M")
    dims.check("b", b, "M")
    out = x @ w + b
    return out, _AffineCache(snapshot(xp, x), snapshot(xp, w))


@float32_inside(caches="cache")
def temporal_affine_backward(dout, cache):
    """Backward pass of `temporal_affine_forward`.

    Parameters
    ----------
    dout : array, shape (N, T, M)
        Upstream gradients of the outputs.
    cache : tuple
        From `temporal_affine_forward`.

    Returns
    -------
    dx : array, shape (N, T, D)
    dw : array, shape (D, M)
    db : array, shape (M,)
    """
    x, w = unpack_cache(cache, _AffineCache, "temporal_affine_forward")
    xp = check_arrays({"dout": dout, "cache (the forward's x)": x})
    dims = Dims()
    dims.define("N", x.shape[0], "cache")
    dims.define("T", x.shape[1], "cache")
    dims.define("D", x.shape[2], "cache")
    dims.define("M", w.shape[1], "cache")
    dims.check("dout", dout, "N T M")
    NT = dims["N"] * dims["T"]
    dx = dout @ w.T
    dw = xp.reshape(x, (NT, dims["D"])).T @ xp.reshape(dout, (NT, dims["M"]))
    db = xp.sum(dout, axis=(0, 1))
    return dx, dw, db


# -- temporal softmax loss ------------------------------------------------------------


@float32_inside(skip=("y", "mask"))
def temporal_softmax_loss(x, y, mask):
    """Softmax cross-entropy summed over the unmasked time steps, averaged over the batch.

    ``loss = -sum over n, t of mask[n, t] * log(softmax(x[n, t])[y[n, t]]) / N``:
    divided by the batch size ``N``, not by the number of unmasked steps, as in
    CS231n. Computed with the log-sum-exp of the scores shifted by their
    per-step maximum, so it is finite, with no warning, for any finite ``x`` (and
    ``mask`` in ``[0, 1]``): where a label's score lies so far below the maximum that
    ``x - max`` would overflow, or its log-probability is below ``-big / (N T)``
    (``big`` the dtype's largest number), the log-probability is taken as that bound,
    so the sum cannot overflow; it is exact wherever neither happens.

    Parameters
    ----------
    x : array, shape (N, T, V)
        Scores of every class at every step (``N >= 1``, ``V >= 1``).
    y : array of an integer dtype, shape (N, T)
        Labels, ``0 <= y < V``; same backend and device as ``x``.
    mask : array, shape (N, T)
        Which steps count: boolean, or integer or floating 0/1 (any real
        dtype, converted to ``x``'s; other values weight the steps). Same
        backend and device as ``x``.

    Returns
    -------
    loss : array, shape ()
        0-D array of ``x``'s dtype.
    dx : array, shape (N, T, V)
        Gradient of ``loss`` with respect to ``x``.

    Raises
    ------
    ValueError
        A label outside ``[0, V)`` (checked on the values, except under
        ``jax.jit``), or a shape that does not match.
    """
    xp = check_arrays({"x": x})
    _check_companion(xp, "x", x, "y", y, "integral", "an integer dtype (class labels)")
    _check_companion(
        xp,
        "x",
        x,
        "mask",
        mask,
        ("bool", "integral", "real floating"),
        "a boolean or real dtype",
    )
    dims = Dims()
    dims.check("x", x, "N T V")
    dims.check("y", y, "N T")
    dims.check("mask", mask, "N T")
    N, V = dims["N"], dims["V"]
    if N < 1:
        raise ValueError(f"x must hold at least one example (N >= 1), got shape {tuple(x.shape)}")
    if V < 1:
        raise ValueError(f"x must hold at least one class (V >= 1), got shape {tuple(x.shape)}")
    _check_range(xp, "y", y, V, "labels", "V from x")

    weights = mask if mask.dtype == x.dtype else xp.astype(mask, x.dtype)
    shifted = _shifted(xp, x)  # >= -big: log_probs are finite, no 0 * inf below
    lse = xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
    log_probs = shifted - lse
    onehot = _one_hot(xp, y, V, x.dtype)
    picked = xp.sum(log_probs * onehot, axis=-1)  # (N, T): each step's label
    bound = -float(xp.finfo(x.dtype).max) / (N * dims["T"]) if dims["T"] else 0.0
    picked = xp.maximum(picked, bound)  # so that the sum of N * T terms cannot overflow
    loss = xp.asarray(-xp.sum(weights * picked) / N)  # NumPy would give a scalar
    dx = (xp.exp(log_probs) - onehot) * xp.expand_dims(weights / N, axis=-1)
    return loss, dx


# -- word embeddings --------------------------------------------------------------------


@float32_inside(returns_cache=True, skip=("x",))
def word_embedding_forward(x, W):
    """Look up the embedding of every word, ``out[n, t] = W[x[n, t]]``.

    Parameters
    ----------
    x : array of an integer dtype, shape (N, T)
        Word indices, ``0 <= x < V``; same backend and device as ``W``.
    W : array, shape (V, D)
        Embedding of every word of the vocabulary, one per row.

    Returns
    -------
    out : array, shape (N, T, D)
        Embeddings of the words, of ``W``'s dtype.
    cache : tuple
        For `word_embedding_backward`: a copy of ``x`` (on backends whose arrays can
        change in place) and ``W`` itself, of which the backward reads only the shape.

    Raises
    ------
    ValueError
        An index outside ``[0, V)`` (checked on the values, except under
        ``jax.jit``), or a shape that does not match.
    """
    xp = check_arrays({"W": W})
    _check_companion(xp, "W", W, "x", x, "integral", "an integer dtype (word indices)")
    dims = Dims()
    dims.check("x", x, "N T")
    dims.check("W", W, "V D")
    _check_range(xp, "x", x, dims["V"], "word indices", "V from W")
    N, T, D = dims["N"], dims["T"], dims["D"]
    rows = xp.take(W, xp.reshape(_as_index(xp, x), (N * T,)), axis=0)
    return xp.reshape(rows, (N, T, D)), _EmbeddingCache(snapshot(xp, x), W)


@float32_inside(caches="cache")
def word_embedding_backward(dout, cache):
    """Backward pass of `word_embedding_forward`: the gradient of the embedding matrix.

    Rows of words that occur several times get the sum of their gradients;
    rows of words that do not occur are zero. Computed as ``onehot.T @ dout``
    (the array API standard has no scatter-add), which builds an
    ``(N * T, V)`` one-hot matrix.

    Parameters
    ----------
    dout : array, shape (N, T, D)
        Upstream gradients of the embeddings.
    cache : tuple
        From `word_embedding_forward`.

    Returns
    -------
    dW : array, shape (V, D)
        Gradient of the embedding matrix (there is none for the integer ``x``).
    """
    x, W = unpack_cache(cache, _EmbeddingCache, "word_embedding_forward")
    xp = check_arrays({"dout": dout, "cache (the forward's W)": W})
    dims = Dims()
    dims.define("N", x.shape[0], "cache")
    dims.define("T", x.shape[1], "cache")
    dims.define("V", W.shape[0], "cache")
    dims.define("D", W.shape[1], "cache")
    dims.check("dout", dout, "N T D")
    NT = dims["N"] * dims["T"]
    onehot = _one_hot(xp, xp.reshape(x, (NT,)), dims["V"], dout.dtype)  # (N * T, V)
    return onehot.T @ xp.reshape(dout, (NT, dims["D"]))
