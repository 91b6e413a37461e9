"""The backend seam: what the array API standard leaves to each library, one function each.

Everything here is small and each branch is tested against the generic path. The cell
and sequence math (`portable_rnn._core`) never imports an array library; when it needs
something that the standard leaves to each library (allocating on an array's device,
a compiled time loop, a fused kernel), it calls a function of this module.
"""

from __future__ import annotations

import functools
import os

from .compat import array_namespace, backend_name, device, is_array, is_cupy_namespace
from .steps import ListSteps, StackedSteps, join_time

__all__ = [
    "CHUNK",
    "COMPILE_EAGER_JAX",
    "FUSE_CUPY",
    "FUSE_ENV",
    "arange_like",
    "compile_function",
    "eager_jax_loop",
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


def time_loop(xp, step, carry, xs, *, args=(), reverse=False):
    """Run ``carry, y = step(carry, x, *args)`` over the steps of ``xs``; the time-loop seam.

    ``xs`` is a `ListSteps` or `StackedSteps` (``xs[t]`` is a tuple of arrays); ``step``
    returns the new carry (a tuple of arrays) and a tuple of arrays for step ``t``.
    ``args`` is everything else the step reads (the weights, the cell, the namespace):
    ``step`` is a pure function of its arguments, and should be a module-level function
    (see below). Returns ``(carry, ys)`` with ``ys[t]`` the outputs of step ``t`` (in time
    order, also when ``reverse`` runs the steps from last to first).

    Three paths, each linear in the number of steps ``T``, none with an operation whose
    number of operands grows with ``T``:

    * A Python loop, one step after the other (``ys`` a `ListSteps`): NumPy, PyTorch, CuPy,
      array_api_strict, and eager JAX for fewer than `CHUNK` steps.
    * JAX under a transformation (inputs are tracers, as inside ``jax.jit``):
      ``jax.lax.scan``, one traced step, so compile time does not grow with ``T``.
    * Eager JAX, ``T >= CHUNK``: `eager_jax_loop`, chunks of `CHUNK` steps, each chunk one
      call of a compiled program (a step run eagerly is about 15 dispatched operations).
      The program is compiled once per ``step``, shapes and dtypes, and per the non-array
      leaves of ``args`` (constants, compared by value, or by identity when unhashable);
      the JAX arrays of ``args`` are its arguments, so new weights reuse it. A new
      ``step`` object (a closure made at every call) would compile at every call. With an
      array of another library in ``args``, eager JAX runs the plain loop.
    """
    args = tuple(args)
    if backend_name(xp) == "jax":
        if _is_traced((carry, _first_arrays(xs), args)):
            return _scan(xp, step, carry, xs, args, reverse)
        split = _split(args)
        if split is not None and COMPILE_EAGER_JAX and len(xs) >= CHUNK:
            return eager_jax_loop(xp, step, split, carry, xs, reverse=reverse)
    T = len(xs)
    outs = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        carry, outs[t] = step(carry, xs[t], *args)
    return carry, ListSteps(outs)


def _first_arrays(xs):
    """The arrays of ``xs`` to test for tracers, without indexing (an eager op on JAX)."""
    return xs.fields if isinstance(xs, StackedSteps) else xs[0]


def _scan(xp, step, carry, xs, args, reverse):
    import jax

    fields = xs.fields if isinstance(xs, StackedSteps) else xs.stacked(xp).fields
    carry, ys = jax.lax.scan(lambda c, x: step(c, x, *args), carry, fields, reverse=reverse)
    return carry, StackedSteps(ys)


#: Eager JAX runs `time_loop` through `eager_jax_loop` (``False``: the plain Python loop,
#: one dispatched operation at a time; the tests compare the two).
COMPILE_EAGER_JAX = True

#: The steps of one compiled chunk of `eager_jax_loop` (fewer in the last chunk).
CHUNK = 32


class _Static:
    """A leaf of `time_loop`'s ``args`` that is not an array, as part of a cache key.

    Compared by value when it is hashable (ints, strings, modules...), by identity
    otherwise (a frozen dataclass holding a dict, such as a ``Cell``); holding it keeps
    its identity from being reused while the key lives.
    """

    __slots__ = ("by_value", "value")

    def __init__(self, value) -> None:
        self.value = value
        try:
            hash(value)
            self.by_value = True
        except TypeError:
            self.by_value = False

    def __hash__(self) -> int:
        return hash((type(self.value), self.value if self.by_value else id(self.value)))

    def __eq__(self, other) -> bool:
        if not isinstance(other, _Static) or type(self.value) is not type(other.value):
            return False
        if self.value is other.value:
            return True
        if not (self.by_value and other.by_value):
            return False
        try:
            return bool(self.value == other.value)
        except Exception:  # an __eq__ that gives no truth value: not the same constant
            return False


def _split(args):
    """``(constants, arrays)`` of `time_loop`'s ``args``: its structure and non-array leaves
    (a hashable key), and its JAX arrays in order; ``None`` if it holds an array of another
    library (its contents could change between calls: no constant of a compiled program)."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(args)
    arrays, statics = [], []
    for leaf in leaves:
        if isinstance(leaf, jax.Array):
            arrays.append(leaf)
            statics.append(None)
        elif is_array(leaf):
            return None
        else:
            statics.append(_Static(leaf))
    return (treedef, tuple(statics)), tuple(arrays)


def _joined(constants, arrays) -> tuple:
    """The ``args`` that `_split` took apart, with ``arrays`` (tracers) in their places."""
    import jax

    treedef, statics = constants
    it = iter(arrays)
    return jax.tree_util.tree_unflatten(
        treedef, [next(it) if c is None else c.value for c in statics]
    )


@functools.lru_cache(maxsize=256)
def _chunk_program(step, constants, kind, length: int, reverse: bool):
    """The compiled chunk of `eager_jax_loop`: up to ``length`` steps of ``step``.

    ``time_chunk(arrays, carry, fields, offset, n)`` runs steps ``offset .. offset + n - 1``
    (last to first when ``reverse``) of ``step(carry, x, *args)``, with the ``args`` that
    `_split` took apart into ``constants`` and ``arrays``, reading step ``j`` as
    ``kind(*(f[j] for f in fields))`` from fields of ``length`` rows. It returns the carry
    and every output field as a ``(length, ...)`` block whose rows ``offset .. offset + n -
    1`` are those steps (the other rows are zeros). ``offset`` and ``n`` are arguments, so
    that one compiled program serves every chunk and every sequence length (one per shape
    and dtype).
    """
    import jax
    import jax.numpy as jnp

    lax = jax.lax

    def time_chunk(arrays, carry, fields, offset, n):
        args = _joined(constants, arrays)

        def x_at(j):
            values = [lax.dynamic_index_in_dim(f, j, 0, keepdims=False) for f in fields]
            return tuple(values) if kind is tuple else kind._make(values)

        shapes = jax.eval_shape(lambda c, x: step(c, x, *args), carry, x_at(offset))[1]
        blocks = jax.tree_util.tree_map(lambda s: jnp.zeros((length, *s.shape), s.dtype), shapes)

        def body(i, state):
            carry, blocks = state
            j = offset + (n - 1 - i if reverse else i)
            carry, y = step(carry, x_at(j), *args)
            blocks = jax.tree_util.tree_map(
                lambda b, v: lax.dynamic_update_index_in_dim(b, v, j, 0), blocks, y
            )
            return carry, blocks

        return lax.fori_loop(0, n, body, (carry, blocks))

    return jax.jit(time_chunk)


@functools.cache
def _rows_program(length: int):
    """``rows(fields, start)``: rows ``start .. start + length - 1`` of every array of
    ``fields`` (a pytree), compiled: one dispatch for all of them (``start`` an argument)."""
    import jax

    def rows(fields, start):
        return jax.tree_util.tree_map(
            lambda f: jax.lax.dynamic_slice_in_dim(f, start, length, 0), fields
        )

    return jax.jit(rows)


def eager_jax_loop(xp, step, split, carry, xs, *, reverse=False):
    """`time_loop` on eager JAX arrays, ``T >= CHUNK`` steps: compiled chunks of steps.

    A step run eagerly is about 15 dispatched operations, each tens of microseconds of
    Python and dispatch. Here the ``T`` steps run in chunks of ``L = CHUNK`` steps, each
    chunk one call of a program compiled once per step function and shapes
    (`_chunk_program`, a ``lax.fori_loop``), whatever ``T`` is. A chunk reads ``L`` rows
    of the inputs (``lax.dynamic_slice``; the last chunk the last ``L`` rows, of which it
    runs those not run yet), and the chunks' output blocks are joined with
    `steps.join_time`, so no operation takes more than ``FAN_IN`` arrays: about ``T / L``
    dispatched operations per field in all. ``split`` is ``_split(args)`` of `time_loop`'s
    ``args``. Returns ``(carry, ys)`` as `time_loop`, ``ys`` a `StackedSteps`.

    A step is the same operations as eagerly, but XLA compiles it as one program and may
    fuse ``a * b + c`` into one multiply-add, so results can differ from the plain loop's
    in the last bits (as ``jax.jit``'s do): well within `portable_rnn.testing.TOLERANCES`
    (tested for every cell, dialect and stack).
    """
    import jax

    constants, arrays = split
    fields = xs.fields if isinstance(xs, StackedSteps) else xs.stacked(xp).fields
    T = len(xs)
    length = CHUNK
    if T < length:
        raise ValueError(f"eager_jax_loop runs at least CHUNK = {CHUNK} steps, not {T}")
    run = _chunk_program(step, constants, xs.kind, length, bool(reverse))
    # The carry placed as the chunks return it (committed to its device): otherwise the
    # first chunk, given a carry of uncommitted arrays, would compile a program of its own.
    carry = jax.device_put(carry, device(jax.tree_util.tree_leaves(carry)[0]))
    count = -(-T // length)
    parts: list = [None] * count
    for k in reversed(range(count)) if reverse else range(count):
        lo, hi = k * length, min((k + 1) * length, T)
        start = min(lo, T - length)  # the last chunk reads the last `length` rows
        rows = fields if T == length else _rows_program(length)(fields, start)
        carry, block = run(arrays, carry, rows, lo - start, hi - lo)
        parts[k] = block if hi - lo == length else _rows_program(hi - lo)(block, lo - start)
    leaves = [jax.tree_util.tree_leaves(p) for p in parts]
    joined = [join_time(xp, [p[j] for p in leaves]) for j in range(len(leaves[0]))]
    return carry, StackedSteps(
        jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(parts[0]), joined)
    )


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
    its device, in its dtype; PyTorch's with ``clone``, which autograd follows and which
    does not warn about ``requires_grad`` as ``torch.asarray`` does).
    """
    name = backend_name(xp)
    if name == "jax":
        return arr
    if name == "cupy":  # pragma: no cover - needs a GPU
        with arr.device:  # CuPy copies onto the current device, as in zeros_like_state
            return xp.asarray(arr, copy=True)
    if name == "torch":  # a differentiable copy: torch.asarray warns on requires_grad
        return arr.clone()
    return xp.asarray(arr, copy=True)
