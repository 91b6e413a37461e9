"""Fuzzing every public array function: a correct result or a typed error naming an argument.

For every public array function (the table of `public_calls`, which
``test_errors.py`` checks leaves none out), hypothesis draws the sizes of a valid call
(every size from 1 to 4, so that ``m == n_a`` and the other coincidences where a layout
mix-up hides come up; one or two layers, one or two directions), its dtype and the seed
of its numbers. Then every one of these changes is tried at every argument and every
entry of a parameter dict, one at a time:

* ``none``: replaced by ``None``;
* ``list``: replaced by the same numbers as nested Python lists (not an array);
* ``int``: replaced by an integer array of the same shape;
* ``dtype``: replaced by the array in the other floating dtype;
* ``backend``: replaced by the same array of another backend;
* ``rank``: given one more (leading) axis of size 1;
* ``size``: one axis (drawn) one longer;
* ``missing``: a parameter dict without that key;
* ``cache``: a backward given another function's cache;
* ``index``: an index argument (labels, word indices) with a value out of range.

What must happen: an unchanged call, or a change the signature allows (``None`` for an
optional argument; any shape of an elementwise function's argument; another dtype or
backend for the only array of a call), gives the result of the same call on NumPy float64
within the dtype's tolerances, in the backend, dtype and device of its inputs; every other
change raises ``TypeError``, ``ValueError`` or ``KeyError`` with a one-line message that
names the argument (or dict key) that was changed. A ``size`` change is judged against
NumPy float64: the same error type, naming an argument, or, where NumPy accepts the sizes
(a longer sequence is still a sequence), the same result. Any other exception
(``AttributeError``, ``IndexError``, a backend's own shape error...) fails the test.

Deterministic (``derandomize=True``, no example database) and bounded:
``PORTABLE_RNN_FUZZ_EXAMPLES`` sizes per function and backend (default 3 on NumPy, 1 on
the other backends, each with every change), so that CI stays fast; set it higher for a
longer search.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from portable_rnn.testing import Backend, assert_close, to_numpy, tolerances

from .public_calls import Call, calls

NUMPY = Backend("numpy", "numpy", "cpu")
STRICT = Backend("array_api_strict", "array_api_strict", "cpu")
TYPED = (TypeError, ValueError, KeyError)
NAMES = sorted(c.name for c in calls(NUMPY))


def _examples(xp) -> int:
    env = os.environ.get("PORTABLE_RNN_FUZZ_EXAMPLES")
    if env:
        return int(env)
    return 3 if xp.backend == "numpy" else 1


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to a valid call: its kind, where (a path of `Call.paths`), which axis."""

    kind: str
    path: tuple = ()
    axis: int = 0


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _changes(call: Call) -> list[Change]:
    """Every change that applies to ``call``, each kind at each place, and no change."""
    out = [Change("none")]
    for path in call.paths():
        name = path[0]
        if name in call.caches:
            out += [Change("cache", path), Change("none", path)]
            continue
        if not _is_array(call.get(path)):  # the stacks' cell name, their direction flag
            continue
        kinds = ["none", "list", "backend", "rank", "size"]
        if name in call.index:
            kinds += ["index", "dtype"]
        elif name not in call.mask:
            kinds += ["int", "dtype"]
        if len(path) > 1:
            kinds.append("missing")
        out += [Change(kind, path) for kind in kinds]
    return out


def _floating(call: Call) -> list[tuple]:
    return [
        p
        for p in call.paths()
        if _is_array(call.get(p)) and np.issubdtype(to_numpy(call.get(p)).dtype, np.floating)
    ]


def _apply(change: Change, call: Call, xp, dtype: str, other_cache) -> tuple[dict, bool | None]:
    """``(args, valid)``: the changed arguments, and whether the call stays valid (``None``:
    judged against NumPy float64)."""
    if not change.path:
        return call.args, True
    path, name = change.path, change.path[0]
    if change.kind == "none":
        return call.replaced(path, None), len(path) == 1 and name in call.optional
    if change.kind == "cache":
        return call.replaced(path, other_cache), False
    if change.kind == "missing":
        return call.replaced(path, remove=True), False
    host = to_numpy(call.get(path))
    arrays = [p for p in call.paths() if _is_array(call.get(p))]
    if change.kind == "list":  # valid where a list of ints may stand for the array (lengths)
        return call.replaced(path, host.tolist()), None if name in call.lists else False
    if change.kind == "int":
        return call.replaced(path, xp.asarray(np.ones(host.shape, np.int32))), False
    if change.kind == "dtype":  # valid for the only floating array (the result follows it)
        other = "float32" if (dtype == "float64" or name in call.index) else "float64"
        alone = _floating(call) == [path] and not call.caches
        return call.replaced(path, xp.asarray(host, dtype=other)), alone
    if change.kind == "backend":  # valid for the only array (the result follows it)
        new = _other_backend(xp).asarray(host, dtype=host.dtype)
        return call.replaced(path, new), arrays == [path] and not call.caches
    if change.kind == "index":
        bad = host.copy()
        bad.flat[0] = call.index[name] if change.axis % 2 == 0 else -1
        return call.replaced(path, xp.asarray(bad)), False
    if change.kind == "rank":
        new = xp.asarray(host[None, ...], dtype=host.dtype)
        return call.replaced(path, new), name in call.any_shape
    assert change.kind == "size", change
    if host.ndim == 0:
        return call.args, True
    longer = np.concatenate([host, np.take(host, [-1], axis=change.axis)], axis=change.axis)
    new = xp.asarray(longer, dtype=host.dtype)
    return call.replaced(path, new), (True if name in call.any_shape else None)


def _other_backend(xp) -> Backend:
    return STRICT if xp.backend != "array_api_strict" else NUMPY


def _arrays(tree) -> list:
    """The arrays of a result, in order (other objects skipped)."""
    if isinstance(tree, dict):
        return [a for v in tree.values() for a in _arrays(v)]
    if isinstance(tree, (tuple, list)):
        return [a for v in tree for a in _arrays(v)]
    return [tree] if _is_array(tree) else []


def _names(message: str, names) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(str(n))}(?!\w)", message) for n in names)


def _check(call: Call, ref: Call, change: Change, xp, dtype: str, other_cache) -> None:
    """Call with ``change``: the result of NumPy float64, or a typed error naming the place."""
    args, valid = _apply(change, call, xp, dtype, other_cache)
    # the reference runs in float64 on NumPy, whatever dtype or backend the change gave
    same = Change("none") if change.kind in ("dtype", "backend") else change
    ref_args, _ = _apply(same, ref, NUMPY, "float64", other_cache)
    shown = change.path[-1] if change.path else None
    try:
        out = call(args)
    except TYPED as exc:
        message = str(exc)
        assert "\n" not in message.strip(), f"{change}: a message of several lines: {message!r}"
        if valid is True:
            raise AssertionError(f"{change} is a valid call, but it raised {exc!r}") from exc
        if valid is None:  # judged by NumPy float64: the same refusal, naming an argument
            with pytest.raises(type(exc)):
                ref(ref_args)
            names = {p[-1] for p in call.paths()} | set(call.args)
            assert _names(message, names), f"{change}: the message names no argument: {message!r}"
        else:
            assert _names(message, [shown]), f"{change}: not naming {shown!r}: {message!r}"
        return
    assert valid is not False, f"{change} was accepted, but it is not a valid call"
    desired = ref(ref_args)
    if call.returns_cache:  # caches are opaque
        out, desired = out[:-1], desired[:-1]
    got, want = _arrays(out), _arrays(desired)
    assert len(got) == len(want), change
    if change.kind == "dtype":  # the only floating array: the results follow it
        dtype = "float32" if dtype == "float64" else "float64"
    if change.kind == "backend":  # the only array: the results follow it
        xp = _other_backend(xp)
    rtol, atol = tolerances(dtype)
    for g, w in zip(got, want, strict=True):
        w = to_numpy(w)
        if np.issubdtype(w.dtype, np.floating):
            assert_close(g, w, xp=xp, dtype=dtype, rtol=rtol, atol=atol, err_msg=str(change))
        else:
            np.testing.assert_array_equal(to_numpy(g), w, err_msg=str(change))


def _run(name: str, xp, data) -> None:
    sizes = data.draw(
        st.fixed_dictionaries(
            {
                **{k: st.integers(1, 4) for k in ("n_x", "n_a", "n_y", "m", "T")},
                "layers": st.integers(1, 2),
                "directions": st.integers(1, 2),
            }
        ),
        label="sizes",
    )
    dtype = data.draw(st.sampled_from(["float64", "float32"]), label="dtype")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    table = calls(xp, sizes=sizes, dtype=dtype, seed=seed)
    (call,) = (c for c in table if c.name == name)
    (ref,) = (c for c in calls(NUMPY, sizes=sizes, seed=seed) if c.name == name)
    # another function's cache: of the first other forward of the table
    other_cache = next(
        c()[-1]
        for c in table
        if c.returns_cache and c.name.split(" ")[0] != name.replace("_backward", "_forward")
    )
    for change in _changes(call):
        if change.kind in ("size", "index"):  # which axis grows; which end is out of range
            n = len(call.get(change.path).shape)
            axis = data.draw(st.integers(0, max(n - 1, 0)), label=f"axis of {change}")
            change = dataclasses.replace(change, axis=axis)
        _check(call, ref, change, xp, dtype, other_cache)


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_every_public_array_function(xp, name):
    @hypothesis.settings(
        max_examples=_examples(xp),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    )
    @hypothesis.given(data=st.data())
    def run(data):
        _run(name, xp, data)

    run()


# -- the functions that create or move arrays ---------------------------------------------------


#: valid and invalid values of each keyword: every example draws valid ones, then changes at
#: most one keyword to an invalid value, so that the error must name that keyword
SIZE = (st.integers(1, 4), st.sampled_from([-1, 0, None, 2.5, "3", True]))
SEED = (
    st.one_of(st.none(), st.integers(0, 2**40), st.just(np.int64(3))),
    st.sampled_from([-1, -(2**40), 2.5, "1", True]),
)
BACKEND = (
    st.sampled_from([None, "numpy", "jax", "torch", "array_api_strict"]),
    st.sampled_from(["nope", 3, "NumPy"]),
)
DEVICE = (st.sampled_from([None, "cpu", " CPU "]), st.sampled_from(["tpu", "cpu:x", 5, 1.5]))
DTYPE = (
    st.sampled_from([None, "float32", "float64", np.float32]),
    st.sampled_from(["float8", "int32", 7, "double"]),
)
CELL = (st.sampled_from(["rnn", "lstm", "gru"]), st.sampled_from(["LSTM", "cnn", None, 3]))
#: whether CuPy is installed here: a GPU asked of it is then a RuntimeError, else an ImportError
CUPY_INSTALLED = importlib.util.find_spec("cupy") is not None
#: asked for on this machine, which has no GPU: a RuntimeError saying so
NO_GPU = {"device": st.sampled_from(["gpu", "cuda:1"]), "backend": st.just("cupy")}


def _keywords(data, table: dict) -> tuple[dict, str | None, bool]:
    """``(values, the keyword made invalid or None, whether a GPU was asked for)``."""
    values = {k: data.draw(valid, label=k) for k, (valid, _) in table.items()}
    choices = [None, *table, *[f"gpu:{k}" for k in NO_GPU if k in table]]
    bad = data.draw(st.sampled_from(choices), label="changed")
    if bad is None:
        return values, None, False
    if bad.startswith("gpu:"):
        key = bad[4:]
        values[key] = data.draw(NO_GPU[key], label=key)
        if key == "device" and values.get("backend") in (None, "numpy", "array_api_strict"):
            return values, "device", False  # a CPU-only backend: the device is refused
        if key == "backend" and values.get("device") is not None:
            return values, "device", True  # CuPy has no CPU device, and no GPU here
        return values, None, True
    values[bad] = data.draw(table[bad][1], label=bad)
    return values, bad, False


def _expect(fn, bad: str | None, gpu: bool):
    """Call ``fn()``: a typed error naming ``bad`` (one line); a RuntimeError saying that
    no GPU is visible where ``gpu``; else (valid) its result."""
    try:
        result = fn()
    except TYPED as exc:
        assert bad is not None, f"a valid call raised {exc!r}"
        assert "\n" not in str(exc).strip(), f"a message of several lines: {exc}"
        assert _names(str(exc), [bad]), f"{exc!r} does not name {bad!r}"
        return None
    except RuntimeError as exc:
        assert gpu, f"{exc!r} where no GPU was asked for"
        assert "GPU" in str(exc), exc
        return None
    except ImportError as exc:  # a GPU asked of CuPy where CuPy is not installed
        assert gpu and not CUPY_INSTALLED, f"{exc!r}"
        assert "backend 'cupy'" in str(exc) and "pip install portable_rnn[cuda" in str(exc), exc
        return None
    assert bad is None and not gpu, f"accepted a bad {bad or 'GPU'}"
    return result


def _dtype_name(dtype) -> str:
    return "float32" if dtype in ("float32", np.float32) else "float64"


def _check_params(params: dict, reference: dict, backend, dtype, seeded: bool) -> None:
    """The keys and, for each array, backend, shape, dtype and device; with a seed, the
    values that seed draws in float64 on NumPy (rounded to the dtype)."""
    b = Backend(backend or "numpy", backend or "numpy", "cpu")
    assert set(params) == set(reference)
    for key, arr in params.items():
        want = reference[key] if seeded else np.zeros(reference[key].shape)
        if not seeded:  # fresh entropy: only the metadata is known
            want = to_numpy(arr).astype(np.float64) if tuple(arr.shape) == want.shape else want
        assert_close(arr, want, xp=b, dtype=_dtype_name(dtype), err_msg=key)


@hypothesis.settings(max_examples=150, derandomize=True, database=None, deadline=None)
@hypothesis.given(data=st.data())
def test_fuzz_init_params(data):
    """``init_*_params`` with at most one bad argument: the parameters asked for, or a typed
    error naming the argument."""
    import portable_rnn as prnn

    table = {"n_x": SIZE, "n_a": SIZE, "n_y": SIZE, "seed": SEED, "backend": BACKEND}
    table |= {"device": DEVICE, "dtype": DTYPE}
    cell = data.draw(CELL[0], label="cell")
    kw, bad, gpu = _keywords(data, table)
    init = getattr(prnn, f"init_{cell}_params")
    sizes = [kw.pop(k) for k in ("n_x", "n_a", "n_y")]
    params = _expect(lambda: init(*sizes, **kw), bad, gpu)
    if params is not None:
        seed = 0 if kw["seed"] is None else kw["seed"]
        reference = init(*sizes, seed=seed, backend="numpy", dtype="float64")
        _check_params(params, reference, kw["backend"], kw["dtype"], kw["seed"] is not None)


@hypothesis.settings(max_examples=150, derandomize=True, database=None, deadline=None)
@hypothesis.given(data=st.data())
def test_fuzz_init_multilayer_params(data):
    """``init_multilayer_params`` with at most one bad argument: ``num_layers *
    num_directions`` dicts of the cell, or a typed error naming the argument."""
    import portable_rnn as prnn

    table = {"cell": CELL, "n_x": SIZE, "n_a": SIZE, "num_layers": SIZE, "seed": SEED}
    table |= {"backend": BACKEND, "device": DEVICE, "dtype": DTYPE}
    kw, bad, gpu = _keywords(data, table)
    kw["bidirectional"] = data.draw(st.booleans(), label="bidirectional")
    cell, n_x, n_a = kw.pop("cell"), kw.pop("n_x"), kw.pop("n_a")
    layers = _expect(lambda: prnn.init_multilayer_params(cell, n_x, n_a, **kw), bad, gpu)
    if layers is None:
        return
    assert len(layers) == kw["num_layers"] * (2 if kw["bidirectional"] else 1)
    host = {**kw, "seed": 0 if kw["seed"] is None else kw["seed"]}
    host |= {"backend": "numpy", "device": None, "dtype": "float64"}
    for got, want in zip(layers, prnn.init_multilayer_params(cell, n_x, n_a, **host), strict=True):
        _check_params(got, want, kw["backend"], kw["dtype"], kw["seed"] is not None)


LEAVES = ["float64", "float32", "float16", "int32", "bool", "none", "str", "int"]


def _leaf(kind: str, backend: Backend, rng):
    """An array of ``kind`` (a dtype name) on ``backend``, or a non-array leaf."""
    if kind in ("none", "str", "int"):
        return {"none": None, "str": "label", "int": 3}[kind]
    host = rng.standard_normal((2, 3))
    if kind == "float16" and backend.backend == "array_api_strict":  # it has no float16
        backend = NUMPY
    if kind in ("int32", "bool"):
        return backend.asarray(host > 0 if kind == "bool" else (host * 10).astype(np.int32))
    return backend.asarray(host, dtype=kind)


@hypothesis.settings(max_examples=150, derandomize=True, database=None, deadline=None)
@hypothesis.given(data=st.data())
def test_fuzz_to_backend(data):
    """``to_backend`` of a dict, list or tuple of arrays of any backend and dtype and of other
    leaves, with at most one bad argument: the same structure with every array on the
    target, or a typed error naming the bad argument (a float16 array with no ``dtype``
    to array_api_strict, which has no float16: naming the array)."""
    import portable_rnn as prnn

    leaves = data.draw(
        st.lists(
            st.tuples(st.sampled_from(LEAVES), st.sampled_from(["numpy", "jax", "torch"])),
            min_size=1,
            max_size=4,
        ),
        label="leaves",
    )
    container = data.draw(st.sampled_from([dict, list, tuple]), label="container")
    kw, bad, gpu = _keywords(data, {"backend": BACKEND, "device": DEVICE, "dtype": DTYPE})
    rng = np.random.default_rng(0)
    items = [_leaf(kind, Backend(b, b, "cpu"), rng) for kind, b in leaves]
    obj = {f"k{i}": v for i, v in enumerate(items)} if container is dict else container(items)
    halves = [i for i, (kind, _) in enumerate(leaves) if kind == "float16"]
    # float16 is kept where the target has it; array_api_strict has none: naming the array
    lacks = kw["backend"] == "array_api_strict"
    if halves and kw["dtype"] is None and bad is None and not gpu and lacks:
        bad = f"obj['k{halves[0]}']" if container is dict else f"obj[{halves[0]}]"
    target = kw.pop("backend")
    moved = _expect(lambda: prnn.to_backend(obj, target, **kw), bad, gpu)
    if moved is None:
        return
    assert type(moved) is container
    values = list(moved.values()) if container is dict else list(moved)
    b = Backend(target or "numpy", target or "numpy", "cpu")
    for (kind, _), before, after in zip(leaves, items, values, strict=True):
        if not _is_array(before):
            assert after is before
        elif kind in ("int32", "bool"):
            host = to_numpy(before)
            assert_close(after, host, xp=b, dtype=host.dtype.name, rtol=0, atol=0)
        else:
            dtype = kind if kw["dtype"] is None else _dtype_name(kw["dtype"])
            assert_close(after, to_numpy(before).astype(np.float64), xp=b, dtype=dtype)
