"""The backend seam: the only place where code depends on which array library runs.

Everything here is small and each branch is tested against the generic path.
The cell and sequence math (``_rnn.py``, ``_lstm.py``) never imports an array
library; when it needs something that the array API standard leaves to each
library, it calls a function of this module.
"""

from __future__ import annotations

from ._compat import backend_name, device

__all__ = ["arange_like", "zeros_like_state"]


def zeros_like_state(xp, shape: tuple[int, ...], like):
    """Zeros of ``shape`` with the dtype and on the device of the array ``like``.

    CuPy's ``zeros(..., device=)`` allocates on the *current* CUDA device
    whatever the argument says, so for CuPy the allocation runs under the
    device of ``like``.  Under ``jax.jit`` arrays have no device (``None``) and
    JAX places the zeros itself.
    """
    if backend_name(xp) == "cupy":  # pragma: no cover - needs a GPU
        with like.device:
            return xp.zeros(shape, dtype=like.dtype)
    return xp.zeros(shape, dtype=like.dtype, device=device(like))


def arange_like(xp, n: int, like):
    """``0 .. n-1`` with the dtype and on the device of the array ``like``.

    As for `zeros_like_state`, CuPy allocates on the current device, so its
    ``arange`` runs under the device of ``like``.
    """
    if backend_name(xp) == "cupy":  # pragma: no cover - needs a GPU
        with like.device:
            return xp.arange(n, dtype=like.dtype)
    return xp.arange(n, dtype=like.dtype, device=device(like))
