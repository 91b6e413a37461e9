"""Input checks shared by every public function.

All checks run before any arithmetic, and none of them modifies its inputs.
The rules (documented in ``docs/conventions.md``):

* every array argument is an array of one backend (NumPy, CuPy, JAX, PyTorch,
  array_api_strict...), all from the same backend -> else ``TypeError``; ``None`` only
  where the signature says the argument is optional, and never a NumPy masked array
  (its mask would be ignored);
* every array has a floating dtype the backend has: float32, float64, and the
  half-precision float16 and bfloat16 where the backend has them (torch and JAX both,
  NumPy and CuPy float16, array_api_strict neither) -> else ``TypeError`` naming the
  backend's dtypes (an integer array; bfloat16 on NumPy);
* **mixed floating dtypes are refused**: every array must have the dtype of
  the first array argument (``x`` or ``xt`` for the forwards, the upstream
  gradient for the backwards) -> else ``TypeError`` naming both.  Nothing is
  promoted silently, as in ``torch.nn.LSTM``;
* **half precision is computed in float32** (`float32_inside`, the one place): every
  public function upcasts float16 / bfloat16 inputs to float32 before its checks, runs
  in float32, and rounds its results back to the input dtype; caches keep float32;
* all arrays are on one device -> else ``ValueError`` naming both;
* every shape is checked against the sizes read from the other arguments ->
  else ``ValueError`` naming the argument, the expected and the actual shape;
* ``lengths`` (variable-length sequences) is an integer array ``(m,)`` of the inputs'
  backend and device, or a Python sequence of ints, each in ``0 .. T_x`` (values are
  read unless traced under ``jax.jit``) -> else ``TypeError``/``ValueError`` naming it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Collection, Mapping
from typing import Any

from ._backend import pytrees
from ._backend.compat import (
    array_namespace,
    backend_name,
    device,
    dtype_name,
    is_array,
    is_traced,
    read_values,
    same_device,
)
from ._backend.devices import FLOAT_DTYPES, HALF_DTYPES, backend_dtypes, lacking
from ._backend.seam import snapshot

__all__ = [
    "Dims",
    "MissingParameterError",
    "check_arrays",
    "check_backward_lengths",
    "check_is_array",
    "check_lengths",
    "float32_inside",
    "get_params",
    "unpack_cache",
]


class MissingParameterError(KeyError, ValueError):
    """A parameter dictionary lacks a key (both a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def check_arrays(named: Mapping[str, Any], optional: Collection[str] = ()):
    """Check that the named arrays share one backend, floating dtype and device.

    Parameters
    ----------
    named : mapping of str to array or None
        Argument name -> array, in the order the arguments are reported.
    optional : collection of str
        The names that may be ``None`` (skipped then): the arguments the signature
        makes optional. ``None`` anywhere else is a ``TypeError`` naming it.

    Returns
    -------
    xp : namespace
        The array API namespace of the arrays.
    """
    items = []
    for name, arr in named.items():
        if arr is None and name in optional:
            continue
        check_is_array(name, arr)
        items.append((name, arr))
    first_name, first = items[0]
    xp = array_namespace(first)
    for name, arr in items[1:]:
        other = array_namespace(arr)
        if other is not xp:
            raise TypeError(
                f"{first_name} is a {backend_name(xp)} array but {name} is a "
                f"{backend_name(other)} array; pass arrays of one backend "
                "(portable_rnn.to_backend moves them)"
            )
    backend = backend_name(xp)
    widened = _WIDENED.get()  # arrays float32_inside upcast: id -> their caller's dtype
    names = []
    for name, arr in items:
        dt = dtype_name(arr.dtype)
        dt = widened.get(id(arr), dt) if widened else dt
        if dt not in FLOAT_DTYPES:
            raise TypeError(
                f"{name} must have a real floating dtype (on {backend}: "
                f"{', '.join(backend_dtypes(backend))}), got {dt}"
            )
        if dt not in backend_dtypes(backend):
            raise TypeError(f"{name} has dtype {dt}, {lacking(backend)}")
        names.append(dt)
    for (name, _), dt in zip(items[1:], names[1:], strict=True):
        if dt != names[0]:
            raise TypeError(
                f"{name} has dtype {dt} but {first_name} has dtype {names[0]}; "
                "portable_rnn does not mix floating dtypes: convert them to one "
                "(for example with portable_rnn.to_backend(..., dtype=...))"
            )
    for name, arr in items:
        if _is_half(arr.dtype):  # a public function without float32_inside: a bug here
            raise RuntimeError(
                f"portable_rnn internal error: {name} reached the arithmetic in "
                f"{dtype_name(arr.dtype)}; half precision must be upcast by float32_inside"
            )
    dev = device(first)
    for name, arr in items[1:]:
        other = device(arr)
        if not same_device(dev, other):
            raise ValueError(
                f"{first_name} is on device {dev} but {name} is on device {other}; "
                "pass arrays on one device (portable_rnn.to_backend moves them)"
            )
    return xp


# -- half precision: computed in float32 ----------------------------------------------------

#: Inside a `float32_inside` call: ``id(array) -> dtype name`` of the arrays it upcast from
#: a half dtype (and of the float32 arrays of a half call's caches), so that `check_arrays`
#: checks and names the dtypes the caller gave.
_WIDENED: contextvars.ContextVar[dict[int, str] | None] = contextvars.ContextVar(
    "portable_rnn_widened", default=None
)


def _is_half(dtype) -> bool:
    """Whether ``dtype`` (of any backend) is float16 or bfloat16 (cheap for the others)."""
    return getattr(dtype, "itemsize", 2) == 2 and dtype_name(dtype) in HALF_DTYPES


def _first_half(obj):
    """The first float16 / bfloat16 array in ``obj`` (itself, or in dicts, lists and tuples,
    nested), or ``None``. Cheap where there is none: a look at each leaf's ``dtype``."""
    if isinstance(obj, (dict, Mapping)):
        for v in obj.values():
            found = _first_half(v)
            if found is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found = _first_half(v)
            if found is not None:
                return found
    else:
        dtype = getattr(obj, "dtype", None)
        if dtype is not None and _is_half(dtype) and is_array(obj):
            return obj
    return None


def _cast(obj: Any, convert) -> Any:
    """``obj`` with every array ``a`` in dicts, lists and tuples replaced by ``convert(a)``.

    Containers with nothing replaced are returned as they are (the same object), so
    that named tuples and the caller's own objects keep their identity; changed dicts
    become dicts, lists lists, tuples (named tuples) tuples of their type.
    """
    if isinstance(obj, Mapping):
        items = {k: _cast(v, convert) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        return items
    if isinstance(obj, (list, tuple)):
        items = [_cast(v, convert) for v in obj]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        if isinstance(obj, list):
            return items
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if obj is not None and is_array(obj):
        return convert(obj)
    return obj


def float32_inside(*, caches: str | None = None, returns_cache: bool = False, skip=()):
    """Decorator of every public array function: half precision is computed in float32.

    The one place of the rule. A call whose arrays (outside its cache) include a
    float16 or bfloat16 array of a backend that has that dtype runs as follows:

    * every array of that dtype in the arguments (in dicts, lists and tuples too: the
      parameter dicts, multi-layer lists, seed-style cell caches) is upcast to float32
      (exactly: every half value is a float32 value), and so are the float32 arrays of
      the cache argument ``caches`` counted as that dtype (a half call's caches hold
      float32, so that the backward also accumulates in float32);
    * the function checks its arguments against the dtypes the caller gave
      (`check_arrays` reads them from `_WIDENED`): a mix, say a float16 ``x`` with
      float32 parameters, is refused as always, naming both;
    * it computes in float32, and every floating result is rounded back to the half
      dtype (once, at the end), except the cache a forward returns last
      (``returns_cache``), which keeps float32.

    Every other call runs unchanged (one walk over the arguments' arrays to look).

    Parameters
    ----------
    caches : str, optional
        The name of the argument holding a forward's cache(s), if any.
    returns_cache : bool
        Whether the function returns a tuple whose last element is a cache.
    skip : tuple of str
        Arguments that are not floating inputs (integer labels, masks of any dtype,
        ``lengths``): left alone.
    """
    skipped = {"lengths", *skip}

    def decorate(fn):
        params = list(inspect.signature(fn).parameters)
        position = {name: k for k, name in enumerate(params)}
        cache_at = position.get(caches) if caches is not None else None

        #: the positions of the floating inputs (not the cache, not the skipped)
        looked = [k for k, n in enumerate(params) if n != caches and n not in skipped]

        def split(args, kwargs):
            """The floating inputs, as (position or name, value)."""
            inputs = [(k, args[k]) for k in looked if k < len(args)]
            inputs += [(n, a) for n, a in kwargs.items() if n != caches and n not in skipped]
            return inputs

        @functools.wraps(fn)
        def run(*args, **kwargs):
            half = None
            for k in looked:
                if k < len(args) and (half := _first_half(args[k])) is not None:
                    break
            if half is None:
                for n, v in kwargs.items():
                    if n != caches and n not in skipped and (half := _first_half(v)) is not None:
                        break
            if half is None:
                if _WIDENED.get() is None:
                    return fn(*args, **kwargs)
                # called inside another half call (portable_rnn.jax/torch call the plain
                # functions on what they upcast, some as new objects, e.g. JAX tracers):
                # every array here is float32, and so is the call
                token = _WIDENED.set(None)
                try:
                    return fn(*args, **kwargs)
                finally:
                    _WIDENED.reset(token)
            inputs = split(args, kwargs)
            xp = array_namespace(half)
            name = dtype_name(half.dtype)
            if name not in backend_dtypes(backend_name(xp)):
                return fn(*args, **kwargs)  # check_arrays refuses it, naming the backend
            widened: dict[int, str] = dict(_WIDENED.get() or {})
            f32 = xp.float32

            def up(a):
                if dtype_name(a.dtype) != name:
                    return a
                out = xp.astype(a, f32)
                widened[id(out)] = name
                return out

            def counted(a):  # the cache's float32 arrays stand for the call's dtype
                if dtype_name(a.dtype) == "float32":
                    widened[id(a)] = name
                    return a
                return up(a)

            args, kwargs = list(args), dict(kwargs)
            for key, value in inputs:
                if isinstance(key, int):
                    args[key] = _cast(value, up)
                else:
                    kwargs[key] = _cast(value, up)
            if cache_at is not None and cache_at < len(args):
                args[cache_at] = _cast(args[cache_at], counted)
                _count_cache(args[cache_at], widened, name)
            elif caches in kwargs:
                kwargs[caches] = _cast(kwargs[caches], counted)
                _count_cache(kwargs[caches], widened, name)
            target = getattr(xp, name)
            token = _WIDENED.set(widened)
            try:
                result = fn(*args, **kwargs)
            finally:
                _WIDENED.reset(token)

            def down(a):
                return xp.astype(a, target) if dtype_name(a.dtype) == "float32" else a

            if returns_cache:
                *outputs, cache = result
                return (*_cast(tuple(outputs), down), cache)
            return _cast(result, down)

        return run

    return decorate


def _count_cache(cache, widened: dict[int, str], name: str) -> None:
    """Count the float32 arrays inside a cache's own objects (which `_cast` does not open:
    the forwards' step caches, JAX pytrees of their arrays) as of dtype ``name``."""
    for arr in _cache_arrays(cache):
        if dtype_name(arr.dtype) == "float32":
            widened.setdefault(id(arr), name)


def _cache_arrays(obj):
    """Every array of a cache: in dicts, lists, tuples and the recorded cache classes
    (`portable_rnn._backend.pytrees` records which attributes of each hold its arrays)."""
    if isinstance(obj, Mapping):
        for v in obj.values():
            yield from _cache_arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _cache_arrays(v)
    elif obj is not None and is_array(obj):
        yield obj
    else:
        for cls, children, _, _ in pytrees._RECORDS:  # a cache's own objects
            if type(obj) is cls:
                for child in children:
                    yield from _cache_arrays(getattr(obj, child))
                return


def check_is_array(name: str, arr) -> None:
    """Refuse anything but an array (``None``, lists, numbers), and NumPy masked arrays."""
    if arr is None or not is_array(arr):
        got = "None" if arr is None else type(arr).__name__
        raise TypeError(
            f"{name} must be an array (NumPy, CuPy, JAX, PyTorch or any array API array), got {got}"
        )
    if _is_masked(arr):
        raise TypeError(
            f"{name} is a NumPy masked array, whose mask portable_rnn would ignore; "
            f"pass {name}.filled(value) or numpy.asarray({name}) (the data without the mask)"
        )
    shape = tuple(arr.shape)
    if any(n is None or n != n for n in shape):  # None, or NaN (Dask's unknown chunk sizes)
        raise ValueError(
            f"{name} has unknown dimensions {shape}: a lazy array whose sizes are not known "
            "yet (a Dask array after boolean indexing, say: call its compute_chunk_sizes())"
        )


def check_lengths(
    lengths, x, m: int, T: int, *, x_name: str = "x", name: str = "lengths", optional=True
):
    """``None``, or ``lengths`` checked and as the cache keeps it: an integer array ``(m,)``.

    ``lengths`` may be an integer array of ``x``'s backend and device (any integer
    dtype), or a Python sequence of ints; every value must lie in ``0 .. T``. Values are
    read (one device sync) unless ``lengths`` is traced under a JAX transformation,
    where they cannot be. Returns a new array of the backend's default integer dtype on
    ``x``'s device (the caller's array is never kept: changing it later changes nothing).
    """
    where = f" (one per example of {x_name}, each in 0 .. T_x = {T})"
    if lengths is None:
        if optional:
            return None
        raise TypeError(f"{name} must be an integer array or a list of ints{where}, got None")
    xp = array_namespace(x)
    default = xp.asarray(0, device=device(x)).dtype  # the backend's default integer dtype
    if isinstance(lengths, (list, tuple)):
        bad = [v for v in lengths if isinstance(v, bool) or not _is_int(v)]
        if bad:
            raise TypeError(f"{name} must hold ints{where}, got {type(bad[0]).__name__} {bad[0]!r}")
        if len(lengths) != m:
            raise ValueError(f"{name} must have {m} values{where}, got {len(lengths)}")
        values = [int(v) for v in lengths]
        _check_range(name, values, T)
        return xp.asarray(values, dtype=default, device=device(x))
    if not is_array(lengths) or _is_masked(lengths):
        got = type(lengths).__name__
        raise TypeError(f"{name} must be an integer array or a list of ints{where}, got {got}")
    other = array_namespace(lengths)
    if other is not xp:
        raise TypeError(
            f"{name} is a {backend_name(other)} array but {x_name} is a "
            f"{backend_name(xp)} array; pass {name} on {x_name}'s backend (or a list of ints)"
        )
    if not xp.isdtype(lengths.dtype, "integral"):
        raise TypeError(
            f"{name} must have an integer dtype{where}, got {dtype_name(lengths.dtype)}"
        )
    if not same_device(device(x), device(lengths)):
        raise ValueError(
            f"{x_name} is on device {device(x)} but {name} is on device {device(lengths)}; "
            "pass them on one device"
        )
    if tuple(lengths.shape) != (m,):
        raise ValueError(f"{name} must have shape ({m},){where}, got {tuple(lengths.shape)}")
    if m:
        lo, hi = xp.min(lengths), xp.max(lengths)
        # traced (under jax.jit, also when lengths is a constant there): cannot be read
        if not is_traced(lo):  # read at once (for Dask: one compute of both)
            lo, hi = read_values(lo, hi)
            _check_range(name, [int(lo), int(hi)], T)
    return snapshot(xp, lengths) if lengths.dtype == default else xp.astype(lengths, default)


def _check_range(name: str, values, T: int) -> None:
    for v in values:
        if not 0 <= v <= T:
            raise ValueError(f"{name} must hold values in 0 .. T_x = {T}, got {v}")


def check_backward_lengths(xp, x, kept, lengths, what: str, forward: str) -> None:
    """Check the optional ``lengths`` of the backward ``what`` against the forward's.

    The backward reads the lengths from the cache (``kept``: the forward's, or ``None``);
    giving them is a check: given to a backward whose forward had none, or unequal, they
    are a ``ValueError`` naming ``lengths``. ``x`` is the forward's input ``(n_x, m, T)``.
    (Traced under ``jax.jit``, the values cannot be compared and are not.)
    """
    if lengths is None:
        return
    _, m, T = x.shape
    given = check_lengths(lengths, x, m, T, x_name="the forward's x")
    if kept is None:
        raise ValueError(
            f"lengths was given to {what}, but {forward} ran without lengths (every "
            "sequence full length); leave it out (the backward reads it from the cache)"
        )
    if not (is_traced(given) or is_traced(kept)) and not bool(xp.all(given == kept)):
        raise ValueError(
            f"lengths given to {what} differs from the lengths {forward} ran with; "
            "leave it out (the backward reads it from the cache)"
        )


def _is_int(v) -> bool:
    """Whether ``v`` is an integer (Python or NumPy), by the ``__index__`` protocol."""
    try:
        v.__index__()
    except (AttributeError, TypeError):
        return False
    return not hasattr(v, "shape") or getattr(v, "ndim", 0) == 0


def _is_masked(arr) -> bool:
    """Whether ``arr`` is a NumPy masked array (without importing NumPy for other backends)."""
    return any(
        cls.__name__ == "MaskedArray" and cls.__module__.startswith("numpy")
        for cls in type(arr).__mro__
    )


def get_params(parameters, keys: tuple[str, ...], name: str = "parameters", optional=()) -> dict:
    """Return ``{key: parameters[key]}`` for ``keys``, refusing missing keys.

    ``optional`` names a group of keys (the output layer ``Wy``, ``by``) that
    may be left out together (or given as ``None`` together, which is the same);
    giving only some of them is an error. ``None`` for any other key is left to
    `check_arrays`, which refuses it naming the key.
    """
    if not isinstance(parameters, Mapping):
        got = "None" if parameters is None else type(parameters).__name__
        raise TypeError(f"{name} must be a dict of arrays, got {got}")
    required = [k for k in keys if k not in optional]
    missing = [k for k in required if k not in parameters]
    given = [k for k in optional if parameters.get(k) is not None]
    if given and len(given) < len(optional):
        nones = [k for k in optional if k in parameters and parameters[k] is None]
        if nones and not missing:
            raise TypeError(
                f"{name}[{nones[0]!r}] is None but {', '.join(given)} "
                f"{'is' if len(given) == 1 else 'are'} given; the output layer "
                f"({' and '.join(optional)}) may be left out (or None) only all together"
            )
        missing += [k for k in optional if k not in parameters]
    if missing:
        raise MissingParameterError(
            f"{name} is missing the key(s) {', '.join(repr(k) for k in missing)}; "
            f"expected keys: {', '.join(keys)}"
            + (f" ({' and '.join(optional)} together or neither)" if optional else "")
        )
    return {k: parameters[k] for k in keys if k in parameters and (k in given or k in required)}


def unpack_cache(cache, kind: type, what: str):
    """``cache`` if it is a ``kind`` (the cache ``what`` returns), else a ``TypeError``."""
    if not isinstance(cache, kind):
        got = "None" if cache is None else f"a {type(cache).__name__}"
        raise TypeError(f"cache must be the cache returned by {what}, got {got}")
    return cache


class Dims:
    """Sizes (``n_x``, ``m``, ``n_a``...) read from arguments and checked against the rest.

    ``dims.check("Wax", Wax, "n_a n_x")`` checks that ``Wax`` is 2-D, that its
    sizes agree with the letters already known, and records the letters not yet
    known (remembering which argument they came from, for the error message).
    """

    def __init__(self) -> None:
        self.size: dict[str, int] = {}
        self._source: dict[str, str] = {}

    def __getitem__(self, letter: str) -> int:
        return self.size[letter]

    def define(self, letter: str, value: int, source: str) -> None:
        self.size[letter] = int(value)
        self._source[letter] = source

    def check(self, name: str, arr, letters: str) -> None:
        spec = letters.split()
        shape = tuple(int(s) for s in arr.shape)
        wanted = ", ".join(spec)
        if len(shape) != len(spec):
            raise ValueError(
                f"{name} must be {len(spec)}-D with shape ({wanted}), got shape {shape}"
            )
        # a letter not yet known takes its size from its first axis here, so that a
        # letter that repeats ("n_h n_h": a square matrix) must repeat its size
        here: dict[str, int] = {}
        for letter, actual in zip(spec, shape, strict=True):
            if self._expected(letter) is None and spec.count(letter) > 1:
                here.setdefault(letter, actual)

        def expected_size(letter: str) -> int | None:
            known = self._expected(letter)
            return here.get(letter) if known is None else known

        if any(
            expected_size(lt) not in (None, actual) for lt, actual in zip(spec, shape, strict=True)
        ):
            expected = "(" + ", ".join(str(expected_size(lt) or "?") for lt in spec) + ")"
            known = "; ".join(
                f"{letter} = {self.size[letter]} from {self._source[letter]}"
                for letter in dict.fromkeys(spec)
                if letter in self.size
            )
            raise ValueError(
                f"{name} must have shape ({wanted}) = {expected}, got {shape}"
                + (f" ({known})" if known else "")
            )
        for letter, actual in zip(spec, shape, strict=True):
            if self._expected(letter) is None:
                self.define(letter, actual, name)

    def require_steps(self, letter: str, name: str, arr) -> None:
        """Refuse an empty time axis: sequences need at least one step."""
        if self.size[letter] < 1:
            raise ValueError(
                f"{name} must have at least one time step, got shape {tuple(arr.shape)}"
            )

    def _expected(self, letter: str) -> int | None:
        """The size a letter stands for: a literal ("1") or one already read."""
        return int(letter) if letter.isdigit() else self.size.get(letter)
