"""The backend seam: what the array API standard leaves to each library, one function each.

Everything here is small and each branch is tested against the generic path. The cell
and sequence math (`portable_rnn._core`) never imports an array library; when it needs
something that the standard leaves to each library (allocating on an array's device,
a compiled time loop, a fused kernel), it calls a function of this module.
"""

from __future__ import annotations

import functools
import os

from .compat import array_namespace, backend_name, device, is_cupy_namespace
from .steps import ListSteps, StackedSteps

__all__ = [
    "FUSE_CUPY",
    "FUSE_ENV",
    "arange_like",
    "compile_function",
    "elementwise",
    "fuse_setting",
    "fused_kernel",
    "snapshot",
    "time_loop",
    "zeros_like_state",
]


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


def _is_traced(tree) -> bool:
    """Whether any array in a tuple tree is a JAX tracer (we are inside jit, grad, vmap...)."""
    import jax

    leaves = jax.tree_util.tree_leaves(tree)
    # jax.core exists at run time (imported by jax), but jax's stubs do not export it
    return any(
        isinstance(leaf, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]
        for leaf in leaves
    )


def time_loop(xp, step, carry, xs, *, reverse=False):
    """Run ``carry, y = step(carry, x)`` over the steps of ``xs``; the time-loop seam.

    ``xs`` is a `ListSteps` or `StackedSteps` (``xs[t]`` is a tuple of arrays); ``step``
    returns the new carry (a tuple of arrays) and a tuple of arrays for step ``t``.
    Returns ``(carry, ys)`` with ``ys[t]`` the outputs of step ``t`` (in time order, also when
    ``reverse`` runs the steps from last to first).

    The plain path is a Python loop. Under a JAX transformation (inputs are tracers, as
    inside ``jax.jit``) the loop is ``jax.lax.scan``: one traced step, so compile time does
    not grow with the number of steps. Eager JAX keeps the Python loop, which needs no
    compilation.
    """
    if backend_name(xp) == "jax" and _is_traced((carry, xs[0])):
        import jax

        fields = (
            xs.fields
            if isinstance(xs, StackedSteps)
            else tuple(xp.stack([s[j] for s in xs], axis=0) for j in range(len(xs[0])))
        )
        carry, ys = jax.lax.scan(step, carry, fields, reverse=reverse)
        return carry, StackedSteps(ys)
    T = len(xs)
    outs = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        carry, outs[t] = step(carry, xs[t])
    return carry, ListSteps(outs)


FUSE_ENV = "PORTABLE_RNN_CUPY_FUSE"


def fuse_setting(environ=None) -> bool:
    """Whether `elementwise` fuses on CuPy: ``PORTABLE_RNN_CUPY_FUSE``, ``1`` (default) or ``0``.

    ``0`` runs every operation as its own CuPy kernel, as on the other backends: to
    measure what fusion gains (``ci/gpu-bench``), or to rule it out when hunting a problem.
    """
    value = (os.environ if environ is None else environ).get(FUSE_ENV, "1").strip() or "1"
    if value not in ("0", "1"):
        raise ValueError(f"{FUSE_ENV} must be 0 or 1, not {value!r}")
    return value == "1"


#: Read once, on import; the tests switch it off to compare with the plain path.
FUSE_CUPY = fuse_setting()


def elementwise(fn):
    """Decorator for ``fn(xp, *arrays)``, an elementwise function of arrays: one kernel on CuPy.

    ``fn`` may use only the arithmetic operators and elementwise functions of
    ``xp`` (``tanh``, ``exp``...) on its array arguments and Python scalars, and
    returns one array or a tuple of arrays: no slicing, reductions or shapes.
    On CuPy it runs as one ``cupy.fuse`` kernel, instead of one kernel launch and
    one temporary array per operation, which is most of a time step's cost on a
    GPU. Every other backend calls ``fn`` itself (JAX's ``jit`` fuses on its own).
    The arithmetic is the same either way, operation for operation, each
    rounded in the arrays' dtype; only a compiler's contraction of ``a * b + c``
    into one fused multiply-add can change the last bit on a GPU.
    """

    @functools.wraps(fn)
    def call(xp, *arrays):
        if FUSE_CUPY and is_cupy_namespace(xp):  # pragma: no cover - needs a GPU
            return fused_kernel(fn, xp)(*arrays)
        return fn(xp, *arrays)

    return call  # functools.wraps keeps fn as call.__wrapped__, the plain path the tests compare


@functools.cache
def fused_kernel(fn, xp):
    """The ``cupy.fuse`` object of ``fn`` with ``xp`` bound.

    Made once per function: cupy.fuse caches its compiled kernels (one per dtype
    and number of dimensions) on the object it returns.
    """
    import cupy

    name = f"{fn.__module__.rsplit('.', 1)[-1]}_{fn.__name__}".replace("__", "_")  # "lstm_cell"
    return cupy.fuse(kernel_name=name)(functools.partial(fn, xp))


def compile_function(fn, like):
    """``jax.jit(fn)`` when ``like`` is a JAX array, else ``fn`` itself (eager backends).

    For whole training and sampling steps: under ``jit`` the time loops become
    ``lax.scan`` (see `time_loop`) and each step is one compiled program instead
    of thousands of dispatched operations. ``fn`` must be a pure function of
    arrays (dicts of them, and ``None``); the results are the same as eager.
    """
    if backend_name(array_namespace(like)) == "jax":
        import jax

        return jax.jit(fn)
    return fn

def snapshot(xp, arr):
    """``arr`` as the forward saw it, for a cache: a copy, except where arrays are immutable.

    The sequence forwards keep in their caches the inputs their backward reads, so that
    the backward gives the gradients of the forward as it ran even if the caller changes
    an input in place afterwards. JAX arrays cannot change, so they are kept as they are
    (no copy); every other backend's array is copied (``xp.asarray(arr, copy=True)``, on
    its device, in its dtype).
    """
    name = backend_name(xp)
    if name == "jax":
        return arr
    if name == "cupy":  # pragma: no cover - needs a GPU
        with arr.device:  # CuPy copies onto the current device, as in zeros_like_state
            return xp.asarray(arr, copy=True)
    return xp.asarray(arr, copy=True)
