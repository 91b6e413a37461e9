"""Aliasing: every backward gives the gradients of its forward as it ran (issue 17).

The rules (docs/conventions.md, "Aliasing"): no output of a forward shares memory with
its cache; the cache holds its own copies of the inputs its backward reads (on the
backends whose arrays can change in place; JAX arrays cannot); so changing any output or
any input in place between the forward and the backward changes no gradient. The seed
cell functions' caches are the seeds' tuples and hold references, as in the seeds.

On NumPy, PyTorch and array_api_strict every array is changed in place and the gradients
must be bit for bit those of an undisturbed run; on JAX and ``numpy:readonly`` the test
checks that an in-place change is refused, which is what makes the rule hold there.
"""

from __future__ import annotations

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn._backend import seam
from portable_rnn._backend.steps import ListSteps, StackedSteps, previous
from portable_rnn._core import lstm as core_lstm
from portable_rnn._core import sequence
from portable_rnn._core.spec import LSTM
from portable_rnn.testing import to_numpy

from .public_calls import _to, column_problem, rows_problem


def _mutable(xp) -> bool:
    """Whether the arrays ``xp`` makes from host data can be changed in place."""
    return xp.backend in ("numpy", "torch", "array_api_strict") and not xp.readonly


def _change(xp, arr) -> None:
    """Change every element of ``arr`` in place, or check that it cannot be changed
    (JAX arrays; the read-only inputs of ``numpy:readonly``)."""
    host = to_numpy(arr)
    if np.issubdtype(host.dtype, np.integer):
        new = xp.asarray((host + 1) % 2, dtype=arr.dtype)
    else:
        new = xp.asarray(host * -1.5 + 0.25, dtype=arr.dtype)
    if xp.backend == "jax" or not getattr(getattr(arr, "flags", None), "writeable", True):
        with pytest.raises((TypeError, ValueError)):  # no item assignment; read-only
            arr[...] = new
        return
    arr[...] = new


def _leaves(tree):
    if isinstance(tree, dict):
        return [a for v in tree.values() for a in _leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [a for v in tree for a in _leaves(v)]
    return [] if tree is None else [tree]


def _column(cell):
    def run(xp):
        x, a0, c0, p, da = column_problem(xp, cell)
        lstm = cell == "lstm"
        inputs = {"x": x, "a0": a0, "parameters": p, **({"c0": c0} if lstm else {})}
        fwd, bwd = getattr(prnn, f"{cell}_forward"), getattr(prnn, f"{cell}_backward")
        *outputs, caches = fwd(x, a0, p, **({"c0": c0} if lstm else {}))
        return inputs, outputs, lambda: bwd(da, caches)

    return run


def _stack(cell, bidirectional):
    def run(xp):
        x, _, _, _, _ = column_problem(xp, cell)
        layers = [
            _to(xp, d)
            for d in prnn.init_multilayer_params(
                cell, 3, 4, num_layers=2, bidirectional=bidirectional, seed=1
            )
        ]
        rng = np.random.default_rng(2)
        D = 2 if bidirectional else 1
        state = (2 * D, 4, 4)
        a0, c0, da_n, dc_n = (_to(xp, rng.standard_normal(state)) for _ in range(4))
        dout = _to(xp, rng.standard_normal((4 * D, 4, 6)))
        lstm = cell == "lstm"
        inputs = {"x": x, "layers": layers, "a0": a0, **({"c0": c0} if lstm else {})}
        kw = {"a0": a0, **({"c0": c0} if lstm else {})}
        out, a_n, c_n, cache = prnn.multilayer_forward(
            x, layers, cell=cell, bidirectional=bidirectional, **kw
        )
        finals = {"da_n": da_n, **({"dc_n": dc_n} if lstm else {})}
        return inputs, [out, a_n, c_n], lambda: prnn.multilayer_backward(dout, cache, **finals)

    return run


def _rows(cell):
    def run(xp):
        x, h0, _, w, dh = rows_problem(xp, cell)
        fwd, bwd = getattr(rnn_layers, f"{cell}_forward"), getattr(rnn_layers, f"{cell}_backward")
        h, cache = fwd(x, h0, *w.values())
        return {"x": x, "h0": h0, **w}, [h], lambda: bwd(dh, cache)

    return run


def _rows_step(cell):
    def run(xp):
        x, h0, c0, w, dh = rows_problem(xp, cell)
        lstm = cell == "lstm"
        inputs = {"x": x[:, 0, :], "prev_h": h0, **({"prev_c": c0} if lstm else {}), **w}
        inputs["x"] = xp.asarray(to_numpy(inputs["x"]))  # its own array, not a view of x
        fwd = getattr(rnn_layers, f"{cell}_step_forward")
        bwd = getattr(rnn_layers, f"{cell}_step_backward")
        *outputs, cache = fwd(*inputs.values())
        upstream = (dh[:, 0, :], *((dh[:, 1, :],) if lstm else ()))
        return inputs, outputs, lambda: bwd(*upstream, cache)

    return run


def _affine(xp):
    rng = np.random.default_rng(3)
    x, w, b = (_to(xp, rng.standard_normal(s)) for s in ((2, 3, 4), (4, 5), (5,)))
    dout = _to(xp, rng.standard_normal((2, 3, 5)))
    out, cache = rnn_layers.temporal_affine_forward(x, w, b)
    return {"x": x, "w": w, "b": b}, [out], lambda: rnn_layers.temporal_affine_backward(dout, cache)


def _embedding(xp):
    rng = np.random.default_rng(4)
    idx = xp.asarray(np.array([[0, 1, 1], [2, 0, 1]]))
    W, dout = _to(xp, rng.standard_normal((3, 4))), _to(xp, rng.standard_normal((2, 3, 4)))
    out, cache = rnn_layers.word_embedding_forward(idx, W)
    return {"x": idx, "W": W}, [out], lambda: rnn_layers.word_embedding_backward(dout, cache)


SCENARIOS = {
    **{f"{c}_forward": _column(c) for c in ("rnn", "lstm", "gru")},
    **{
        f"multilayer_forward ({c}, {'bidirectional' if d else 'one direction'})": _stack(c, d)
        for c in ("rnn", "lstm", "gru")
        for d in (False, True)
    },
    **{f"rnn_layers.{c}_forward": _rows(c) for c in ("rnn", "lstm", "gru")},
    **{f"rnn_layers.{c}_step_forward": _rows_step(c) for c in ("rnn", "lstm", "gru")},
    "rnn_layers.temporal_affine_forward": _affine,
    "rnn_layers.word_embedding_forward": _embedding,
}


@pytest.mark.parametrize("changed", ["outputs", "inputs"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_changing_arrays_after_the_forward_changes_no_gradient(xp, name, changed):
    _, _, backward = SCENARIOS[name](xp)
    want = [to_numpy(g) for g in _leaves(backward())]
    inputs, outputs, backward = SCENARIOS[name](xp)
    arrays = _leaves(outputs if changed == "outputs" else inputs)
    assert arrays
    for arr in arrays:
        _change(xp, arr)
    got = [to_numpy(g) for g in _leaves(backward())]
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_array_equal(g, w, err_msg=f"{name}: gradient {k}")


def test_the_changes_above_would_change_the_gradients(xp):
    """The test above can fail: the same changes made before the forward do change them."""
    if not _mutable(xp):
        pytest.skip(f"{xp.name} arrays cannot be changed in place")
    _, _, backward = SCENARIOS["lstm_forward"](xp)
    want = to_numpy(backward()["dWf"])
    x, a0, c0, p, da = column_problem(xp, "lstm")
    for arr in (x, a0, c0, *p.values()):
        _change(xp, arr)
    got = to_numpy(prnn.lstm_backward(da, prnn.lstm_forward(x, a0, p, c0=c0)[-1])["dWf"])
    assert np.abs(got - want).max() > 0.1


def test_seed_cell_caches_hold_references_as_the_seeds_do(xp):
    """The cell functions' caches are the seeds' tuples of the arrays themselves."""
    x, a0, c0, p, da = column_problem(xp, "lstm")
    xt = xp.asarray(to_numpy(x[:, :, 0]))
    a_next, c_next, _, cache = prnn.lstm_cell_forward(xt, a0, c0, p)
    assert cache.a_next is a_next and cache.c_next is c_next
    assert cache.xt is xt and cache.a_prev is a0 and cache.parameters is p
    a_rnn, _, rnn_cache = prnn.rnn_cell_forward(xt, a0, column_problem(xp, "rnn")[3])
    assert rnn_cache[0] is a_rnn and rnn_cache[2] is xt
    if not _mutable(xp):
        return
    before = to_numpy(prnn.lstm_cell_backward(da[:, :, 0], c0, cache)["dWf"])
    _change(xp, xt)
    after = to_numpy(prnn.lstm_cell_backward(da[:, :, 0], c0, cache)["dWf"])
    assert np.abs(after - before).max() > 0.01  # the backward read the changed xt


def test_sequence_caches_show_the_forward_as_it_ran(xp):
    """``caches[1]`` is the caller's x, as in the seeds; ``caches[0][t]`` (the cell caches
    the backward would use) show the forward's own copy."""
    x, a0, c0, p, _ = column_problem(xp, "lstm")
    keep = np.array(to_numpy(x), copy=True)
    _, _, _, caches = prnn.lstm_forward(x, a0, p)
    assert caches[1] is x
    _change(xp, x)
    np.testing.assert_array_equal(to_numpy(caches[0][2].xt), keep[:, :, 2])


# -- the seam function, against the generic path -------------------------------------------


def test_snapshot_equals_a_copy_and_shares_no_memory(xp):
    host = np.arange(24.0).reshape(2, 3, 4)
    arr = xp.asarray(np.transpose(host, (2, 0, 1)))
    kept = seam.snapshot(xp.xp, arr)
    generic = xp.xp.asarray(arr, copy=True)
    np.testing.assert_array_equal(to_numpy(kept), to_numpy(generic))
    assert kept.dtype == arr.dtype and kept.shape == arr.shape
    assert prnn.testing._compat.device(kept) == prnn.testing._compat.device(arr)
    if xp.backend == "jax":
        assert kept is arr  # immutable: no copy
    if _mutable(xp):
        _change(xp, arr)
        np.testing.assert_array_equal(to_numpy(kept), np.transpose(host, (2, 0, 1)))
    if xp.backend == "numpy":
        assert kept.strides == generic.strides  # the layout is kept: same bits downstream


# -- the backward's a<t-1>, built from the per-step values -----------------------------------


def _a_prev_two_ways(xp, x, a0, c0, p):
    """a<t-1> of every step as the backward builds it, and as it was built from ``a``."""
    w = sequence.fuse(xp, LSTM, p)
    states = sequence.forward(xp, core_lstm.CELL, w, x, core_lstm.Carry(a0, c0))
    a = states.last_axis(xp, "a")
    old = xp.concat([xp.expand_dims(a0, axis=-1), a[:, :, :-1]], axis=-1)
    return states, previous(xp, states, "a", a0).last_axis(xp, 0), old


def test_previous_states_from_the_steps_equal_the_returned_states():
    """`sequence.backward` builds a<t-1> with `steps.previous` from the per-step values,
    instead of from the returned ``a``: the same numbers, bit for bit, from the plain
    loop's `ListSteps`, from `StackedSteps`, and under ``jax.jit`` (``lax.scan``)."""
    import array_api_compat.numpy as xp

    x, a0, c0, p, _ = column_problem(prnn.testing.Backend("numpy", "numpy", "cpu"), "lstm")
    states, new, old = _a_prev_two_ways(xp, x, a0, c0, p)
    np.testing.assert_array_equal(new, old)
    steps = [states[t] for t in range(len(states))]
    fields = core_lstm.Step(*(xp.stack([s[j] for s in steps], axis=0) for j in range(7)))
    for kind in (ListSteps(steps), StackedSteps(fields)):
        np.testing.assert_array_equal(previous(xp, kind, "a", a0).last_axis(xp, 0), old)

    jax = pytest.importorskip("jax")
    kinds = []

    def traced(*args):
        states, new, old = _a_prev_two_ways(jax.numpy, *args)
        kinds.append(type(states))
        return new, old

    new, old = jax.jit(traced)(*jax.tree_util.tree_map(jax.numpy.asarray, (x, a0, c0, p)))
    assert kinds == [StackedSteps]
    np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
