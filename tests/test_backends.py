"""Every public function, on every backend, in float64 and float32.

Each result must keep the backend, device and dtype of the inputs and equal
the independent NumPy float64 reference (tests/reference.py) within the
tolerances of `portable_rnn.testing.TOLERANCES`. The reference is computed
from the inputs rounded to the tested dtype, so only the arithmetic differs.
"""

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn.testing import assert_close

from . import reference as ref

DTYPES = ["float64", "float32"]


@pytest.fixture
def check(xp, record_diff):
    """``check(actual, desired, dtype, what)``: assert_close on xp's device, and record."""

    def run(actual, desired, dtype, what=""):
        assert_close(actual, desired, xp=xp, dtype=dtype, device=xp.array_device, err_msg=what)
        record_diff(xp.name, dtype, actual, desired)

    return run


def _round(tree, dtype):
    """The float64 values the backend will see once converted to ``dtype``."""
    if isinstance(tree, dict):
        return {k: _round(v, dtype) for k, v in tree.items()}
    return np.asarray(tree).astype(dtype).astype(np.float64)


def _to(xp, tree, dtype):
    if isinstance(tree, dict):
        return {k: _to(xp, v, dtype) for k, v in tree.items()}
    return xp.asarray(tree, dtype=dtype)


@pytest.mark.forward
@pytest.mark.parametrize("dtype", DTYPES)
def test_activations(xp, dtype, check):
    z = np.random.default_rng(0).standard_normal((4, 7)) * 3
    zr = _round(z, dtype)
    check(prnn.sigmoid(_to(xp, z, dtype)), ref.sigmoid(zr), dtype, "sigmoid")
    check(prnn.softmax(_to(xp, z, dtype)), ref.softmax(zr), dtype, "softmax")
    check(prnn.softmax(_to(xp, z, dtype), axis=1), ref.softmax(zr, axis=1), dtype, "softmax 1")
    check(prnn.sftmax(_to(xp, z, dtype)), ref.softmax(zr), dtype, "sftmax")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_cell(xp, dtype, check):
    x, a0, p, da = ref.rnn_problem(np.random.default_rng(1))
    xt, da_next = x[:, :, 0], da[:, :, 0]
    r = _round({"xt": xt, "a0": a0, "da": da_next, **p}, dtype)
    a_next, yt, cache = prnn.rnn_cell_forward(
        _to(xp, xt, dtype), _to(xp, a0, dtype), _to(xp, p, dtype)
    )
    want_a, want_y = ref.rnn_cell_forward(r["xt"], r["a0"], r)
    check(a_next, want_a, dtype, "a_next")
    check(yt, want_y, dtype, "yt_pred")
    assert cache[0] is a_next and len(cache) == 4
    grads = prnn.rnn_cell_backward(_to(xp, da_next, dtype), cache)
    want = ref.rnn_cell_backward(r["da"], r["xt"], r["a0"], r)
    assert list(grads) == ["dxt", "da_prev", "dWax", "dWaa", "dba"]
    for k, v in want.items():
        check(grads[k], v, dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_a0", [True, False])
def test_rnn_sequence(xp, dtype, with_a0, check):
    x, a0, p, da = ref.rnn_problem(np.random.default_rng(2))
    if not with_a0:
        a0 = np.zeros_like(a0)
    r = _round({"x": x, "a0": a0, "da": da, **p}, dtype)
    a, y, caches = prnn.rnn_forward(
        _to(xp, x, dtype), _to(xp, a0, dtype) if with_a0 else None, _to(xp, p, dtype)
    )
    want_a, want_y = ref.rnn_forward(r["x"], r["a0"], r)
    check(a, want_a, dtype, "a")
    check(y, want_y, dtype, "y_pred")
    assert len(caches) == 2 and len(caches[0]) == x.shape[2]
    grads = prnn.rnn_backward(_to(xp, da, dtype), caches)
    want = ref.rnn_backward(r["da"], r["x"], r["a0"], r)
    assert list(grads) == ["dx", "da0", "dWax", "dWaa", "dba"]
    for k, v in want.items():
        check(grads[k], v, dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_cell(xp, dtype, check):
    x, a0, c0, p, da = ref.lstm_problem(np.random.default_rng(3))
    xt, da_next, dc_next = x[:, :, 0], da[:, :, 0], da[:, :, 1]
    r = _round({"xt": xt, "a0": a0, "c0": c0, "da": da_next, "dc": dc_next, **p}, dtype)
    args = [_to(xp, v, dtype) for v in (xt, a0, c0)]
    a_next, c_next, yt, cache = prnn.lstm_cell_forward(*args, _to(xp, p, dtype))
    want_a, want_c, want_y, _ = ref.lstm_cell_forward(r["xt"], r["a0"], r["c0"], r)
    check(a_next, want_a, dtype, "a_next")
    check(c_next, want_c, dtype, "c_next")
    check(yt, want_y, dtype, "yt_pred")
    assert len(cache) == 10
    grads = prnn.lstm_cell_backward(_to(xp, da_next, dtype), _to(xp, dc_next, dtype), cache)
    want = ref.lstm_cell_backward(r["da"], r["dc"], r["xt"], r["a0"], r["c0"], r)
    assert list(grads) == [
        "dxt",
        "da_prev",
        "dc_prev",
        "dWf",
        "dbf",
        "dWi",
        "dbi",
        "dWc",
        "dbc",
        "dWo",
        "dbo",
    ]
    for k, v in want.items():
        check(grads[k], v, dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_c0", [True, False])
def test_lstm_sequence(xp, dtype, with_c0, check):
    x, a0, c0, p, da = ref.lstm_problem(np.random.default_rng(4))
    if not with_c0:
        c0 = np.zeros_like(c0)
    r = _round({"x": x, "a0": a0, "c0": c0, "da": da, **p}, dtype)
    kwargs = {"c0": _to(xp, c0, dtype)} if with_c0 else {}
    a, y, c, caches = prnn.lstm_forward(
        _to(xp, x, dtype), _to(xp, a0, dtype), _to(xp, p, dtype), **kwargs
    )
    want_a, want_y, want_c = ref.lstm_forward(r["x"], r["a0"], r, r["c0"])
    check(a, want_a, dtype, "a")
    check(y, want_y, dtype, "y")
    check(c, want_c, dtype, "c")
    grads = prnn.lstm_backward(_to(xp, da, dtype), caches)
    want = ref.lstm_backward(r["da"], r["x"], r["a0"], r, r["c0"])
    expected_keys = ["dx", "da0", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"]
    assert list(grads) == expected_keys + (["dc0"] if with_c0 else [])
    for k in grads:
        check(grads[k], want[k], dtype, k)


@pytest.mark.forward
@pytest.mark.parametrize("dtype", DTYPES)
def test_seed000_names(xp, dtype, check):
    rng = np.random.default_rng(5)
    n_x, n_h, n_y, m, T = 3, 5, 2, 4, 6
    p = {
        "U": rng.standard_normal((n_x, n_h)) * 0.5,
        "W": rng.standard_normal((n_h, n_h)) * 0.5,
        "V": rng.standard_normal((n_y, n_h)) * 0.5,
        "bx": rng.standard_normal((n_h, 1)),
        "by": rng.standard_normal((n_y, 1)),
    }
    x, h0 = rng.standard_normal((n_x, m, T)), rng.standard_normal((n_h, m))
    r = _round({"x": x, "h0": h0, **p}, dtype)
    # the same network in the column dialect's layout (weights transposed)
    col = {"Wax": r["U"].T, "Waa": r["W"].T, "Wya": r["V"], "ba": r["bx"], "by": r["by"]}
    ht, yt, cache = prnn.fwdProp(_to(xp, h0, dtype), _to(xp, x[:, :, 0], dtype), _to(xp, p, dtype))
    want_h, want_y = ref.rnn_cell_forward(r["x"][:, :, 0], r["h0"], col)
    check(ht, want_h, dtype, "ht")
    check(yt, want_y, dtype, "yt")
    Y, H, caches = prnn.fwdPropSeq(_to(xp, x, dtype), _to(xp, h0, dtype), _to(xp, p, dtype))
    want_H, want_Y = ref.rnn_forward(r["x"], r["h0"], col)
    check(H, want_H, dtype, "H")
    check(Y, want_Y, dtype, "Ypred")
    assert len(caches) == T

    lp = {}
    for g in "fico":
        lp[f"Wx{g}"] = rng.standard_normal((n_x, n_h)) * 0.5
        lp[f"Wh{g}"] = rng.standard_normal((n_h, n_h)) * 0.5
        lp[f"b{g}"] = rng.standard_normal((n_h, 1)) * 0.5
    lp["Wy"] = rng.standard_normal((n_h, n_y)) * 0.5
    lp["by"] = rng.standard_normal((n_y, 1)) * 0.5
    c0 = rng.standard_normal((n_h, m))
    rl = _round({"c0": c0, **lp}, dtype)
    colp = {f"W{g}": np.concatenate([rl[f"Wh{g}"].T, rl[f"Wx{g}"].T], axis=1) for g in "fico"}
    colp.update({f"b{g}": rl[f"b{g}"] for g in "fico"}, Wy=rl["Wy"].T, by=rl["by"])
    h, c, y = prnn.LSTMfwdProp(
        _to(xp, x, dtype), _to(xp, h0, dtype), _to(xp, c0, dtype), _to(xp, lp, dtype)
    )
    want_a, want_y, want_c = ref.lstm_forward(r["x"], r["h0"], colp, rl["c0"])
    check(h, want_a, dtype, "h")
    check(c, want_c, dtype, "c")
    check(y, want_y, dtype, "y")


#: the rows dialect's gate blocks per cell (the column dialect's parameters come from init_*)
_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}


def _outputs(result):
    """The arrays a forward returns, without its cache (the last item) and ``None``s."""
    return [v for v in result[:-1] if v is not None]


@pytest.mark.forward
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forward_functions(xp, cell, dtype, check):
    """Every forward of ``cell``: the column dialect's cell and sequence, the rows dialect's
    step and sequence, and a bidirectional 2-layer stack with and without lengths (a list, and
    an integer array of the backend), against the same functions on NumPy float64. The
    forward-only backends (dask) run this test: it covers every forward function on them.
    The other backends run these functions in the forward-and-backward tests (NumPy runs it
    too, to keep the test itself checked)."""
    from portable_rnn import rnn_layers

    if not (xp.forward_only or xp.backend == "numpy"):
        pytest.skip(f"{xp.name} runs these forwards in the forward-and-backward tests")

    rng = np.random.default_rng(6)
    n_x, n_a, m, T = 3, 5, 4, 4
    p = getattr(prnn, f"init_{cell}_params")(n_x, n_a, 2, seed=1)
    layers = prnn.init_multilayer_params(cell, n_x, n_a, num_layers=2, bidirectional=True, seed=2)
    G = _BLOCKS[cell]
    rows = {"Wx": rng.standard_normal((n_x, G * n_a)) * 0.5}
    rows.update(Wh=rng.standard_normal((n_a, G * n_a)) * 0.5, b=rng.standard_normal(G * n_a))
    if cell == "gru":
        rows["bhn"] = rng.standard_normal(n_a)
    x, a0 = rng.standard_normal((n_x, m, T)), rng.standard_normal((n_a, m))
    xr, h0 = np.ascontiguousarray(x.transpose(1, 2, 0)), np.ascontiguousarray(a0.T)
    lengths = [4, 2, 0, 1]

    def calls(v):  # name -> the call, on NumPy float64 or on the backend
        cell_args = (v["x"][:, :, 0], v["a0"]) + ((v["a0"],) if cell == "lstm" else ())
        row_w = [v["rows"][k] for k in ("Wx", "Wh", "b", "bhn") if k in v["rows"]]
        step_state = (v["h0"],) * (2 if cell == "lstm" else 1)
        stack = {"cell": cell, "bidirectional": True}
        return {
            "cell_forward": lambda: getattr(prnn, f"{cell}_cell_forward")(*cell_args, v["p"]),
            "forward": lambda: getattr(prnn, f"{cell}_forward")(v["x"], v["a0"], v["p"]),
            "step_forward": lambda: getattr(rnn_layers, f"{cell}_step_forward")(
                v["xr"][:, 0, :], *step_state, *row_w
            ),
            "rows forward": lambda: getattr(rnn_layers, f"{cell}_forward")(
                v["xr"], v["h0"], *row_w
            ),
            "multilayer": lambda: prnn.multilayer_forward(v["x"], v["layers"], **stack),
            "multilayer, lengths": lambda: prnn.multilayer_forward(
                v["x"], v["layers"], lengths=lengths, **stack
            ),
            "multilayer, lengths array": lambda: prnn.multilayer_forward(
                v["x"], v["layers"], lengths=v["lengths"], **stack
            ),
        }

    host = {"x": x, "a0": a0, "xr": xr, "h0": h0, "p": p, "rows": rows}
    want = calls(
        {**_round(host, dtype), "layers": [_round(q, dtype) for q in layers], "lengths": lengths}
    )
    on = {**_to(xp, host, dtype), "layers": [_to(xp, q, dtype) for q in layers]}
    on["lengths"] = xp.asarray(np.asarray(lengths))
    got = calls(on)
    for name, run in got.items():
        expected = _outputs(want[name]())
        actual = _outputs(run())
        if xp.backend == "dask":  # compute the call's graph once, not once per output read
            import dask

            actual = list(dask.persist(*actual))  # still Dask arrays, their chunks computed
        assert len(actual) == len(expected), name
        for k, (a, w) in enumerate(zip(actual, expected, strict=True)):
            check(a, w, dtype, f"{cell} {name} [{k}]")


def test_dask_forwards_build_a_graph_and_compute_only_to_read_lengths():
    """On Dask the forwards are lazy: no compute, except one to check the values of a
    lengths array (a list needs none). Unknown dimensions are refused, naming the array."""
    dask = pytest.importorskip("dask")
    from dask.callbacks import Callback

    computes = []

    class Count(Callback):
        def _start(self, dsk):
            computes.append(len(dsk))

    def on(v):
        return prnn.to_backend(v, "dask")

    layers = on(prnn.init_multilayer_params("lstm", 3, 4, num_layers=2, bidirectional=True))
    x = on(np.random.default_rng(0).standard_normal((3, 4, 5)))
    with Count(), dask.config.set(scheduler="synchronous"):
        out, a_n, c_n, _ = prnn.multilayer_forward(x, layers, cell="lstm", bidirectional=True)
        prnn.multilayer_forward(x, layers, cell="lstm", bidirectional=True, lengths=[5, 2, 0, 1])
        assert computes == []
        lengths = on(np.asarray([5, 2, 0, 1]))
        prnn.multilayer_forward(x, layers, cell="lstm", bidirectional=True, lengths=lengths)
        assert len(computes) == 1  # min and max of lengths, read together
    assert all(type(v).__module__.startswith("dask") for v in (out, a_n, c_n))
    unknown = x[:, :, x[0, 0, :] > -np.inf]  # boolean indexing: unknown length
    with pytest.raises(ValueError, match=r"^x has unknown dimensions \(3, 4, nan\)"):
        prnn.lstm_forward(unknown, None, on(prnn.init_lstm_params(3, 4, 2, seed=0)))
