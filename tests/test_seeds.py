"""The seed notebooks: their correct printed values, and one test per known bug.

Values are those listed as correct in ``shared/seeds/README.md``; each test
replays its seed's random draws exactly (``np.random.seed(1)`` then
``np.random.randn`` in the order the notebook cell shows) and runs on every
backend in float64.
"""

import subprocess
import sys

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn.testing import to_numpy

from . import reference as ref


def _to(xp, tree):
    if isinstance(tree, dict):
        return {k: _to(xp, v) for k, v in tree.items()}
    return xp.asarray(tree, dtype="float64")


def _seed002_lstm_draws():
    np.random.seed(1)
    x = np.random.randn(3, 10, 7)
    a0 = np.random.randn(5, 10)
    p = {}
    for k, shape in [
        ("Wf", (5, 8)),
        ("bf", (5, 1)),
        ("Wi", (5, 8)),
        ("bi", (5, 1)),
        ("Wo", (5, 8)),
        ("bo", (5, 1)),
        ("Wc", (5, 8)),
        ("bc", (5, 1)),
        ("Wy", (2, 5)),
        ("by", (2, 1)),
    ]:
        p[k] = np.random.randn(*shape)
    return x, a0, p


def _seed003_rnn_draws(x_shape):
    np.random.seed(1)
    x = np.random.randn(*x_shape)
    Wax = np.random.randn(5, 3)
    a0 = np.random.randn(5, 10)
    Waa = np.random.randn(5, 5)
    Wya = np.random.randn(2, 5)
    ba = np.random.randn(5, 1)
    by = np.random.randn(2, 1)
    return x, a0, {"Waa": Waa, "Wax": Wax, "Wya": Wya, "ba": ba, "by": by}


@pytest.mark.forward
def test_seed002_lstm_forward_values(xp):
    x, a0, p = _seed002_lstm_draws()
    a, y, c, caches = prnn.lstm_forward(_to(xp, x), _to(xp, a0), _to(xp, p))
    a, y, c = to_numpy(a), to_numpy(y), to_numpy(c)
    assert a.shape == (5, 10, 7) and y.shape == (2, 10, 7)
    np.testing.assert_allclose(a[4][3][6], 0.17211776753291672, rtol=1e-12)
    np.testing.assert_allclose(y[1][4][3], 0.9508734618501101, rtol=1e-12)
    np.testing.assert_allclose(c[1][2][1], -0.8555449167181982, rtol=1e-12)
    # the notebook's cache layout: (per-step caches, x)
    assert len(caches) == 2
    np.testing.assert_array_equal(to_numpy(caches[1])[1][1], x[1][1])


@pytest.mark.forward
def test_seed003_rnn_forward_values(xp):
    x, a0, p = _seed003_rnn_draws((3, 10, 4))
    a, y_pred, caches = prnn.rnn_forward(_to(xp, x), _to(xp, a0), _to(xp, p))
    assert tuple(a.shape) == (5, 10, 4) and tuple(y_pred.shape) == (2, 10, 4)
    printed = [-0.90904053, -0.99995561, -0.99999988, -0.99989633]  # 8 printed digits
    np.testing.assert_allclose(to_numpy(a)[4][1], printed, rtol=0, atol=5e-9)
    np.testing.assert_array_equal(to_numpy(caches[1])[1][3], x[1][3])
    assert len(caches) == 2


def test_seed003_rnn_cell_backward_values(xp):
    xt, a_prev, p = _seed003_rnn_draws((3, 10))
    da_next = np.random.randn(5, 10)  # drawn after the parameters, as in the cell
    _, _, cache = prnn.rnn_cell_forward(_to(xp, xt), _to(xp, a_prev), _to(xp, p))
    g = {k: to_numpy(v) for k, v in prnn.rnn_cell_backward(_to(xp, da_next), cache).items()}
    np.testing.assert_allclose(g["dxt"][1][2], -0.4703464057574519, rtol=1e-12)
    np.testing.assert_allclose(g["da_prev"][2][3], -0.036545235051260304, rtol=1e-12)
    np.testing.assert_allclose(g["dWax"][3][1], -3.238639189804605, rtol=1e-12)
    np.testing.assert_allclose(g["dWaa"][1][2], -0.9085593361709091, rtol=1e-12)
    np.testing.assert_allclose(g["dba"][4], [0.37539646], rtol=0, atol=5e-9)
    assert g["dxt"].shape == (3, 10) and g["dba"].shape == (5, 1)


# -- one regression test per known seed bug -------------------------------------


def test_seed000_sigmoid_and_tanh_do_not_overflow(xp):
    """000 built tanh and sigmoid from exp(): nan and overflow warnings for large |z|.

    pytest turns warnings into errors here (filterwarnings = error)."""
    z = xp.asarray([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4, 1e30], dtype="float64")
    s = to_numpy(prnn.sigmoid(z))
    assert np.all(np.isfinite(s))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    x, a0, c0, p, _ = ref.lstm_problem(np.random.default_rng(0), T=3)
    big = {k: v * 1e4 for k, v in p.items()}  # pre-activations of order 1e4
    a, y, c, _ = prnn.lstm_forward(_to(xp, x * 1e4), _to(xp, a0), _to(xp, big))
    for out in (a, y, c):
        assert np.all(np.isfinite(to_numpy(out)))
    x, a0, p, _ = ref.rnn_problem(np.random.default_rng(1))
    a, y, _ = prnn.rnn_forward(
        _to(xp, x * 1e4), _to(xp, a0), _to(xp, {k: v * 1e4 for k, v in p.items()})
    )
    assert np.all(np.isfinite(to_numpy(a))) and np.all(np.isfinite(to_numpy(y)))


def test_seed000_softmax_shifts_by_each_columns_max(xp):
    """000 shifted by the global max: a column far below it underflowed to 0/0 = nan."""
    z = xp.asarray([[1000.0, 0.0], [1001.0, 1.0]], dtype="float64")
    p = to_numpy(prnn.softmax(z))
    expected = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(p[:, 0], expected, rtol=1e-15)
    np.testing.assert_allclose(p[:, 1], expected, rtol=1e-15)
    np.testing.assert_allclose(to_numpy(prnn.sftmax(z)), p, rtol=0)


@pytest.mark.forward
def test_seed000_fwdprop_uses_one_weight_convention(xp):
    """000's fwdProp mixed U.T @ x with W @ h (a shape error for n_x != n_h)."""
    rng = np.random.default_rng(2)
    n_x, n_h, n_y, m = 3, 5, 4, 2
    p = {
        "U": rng.standard_normal((n_x, n_h)),
        "W": rng.standard_normal((n_h, n_h)),
        "V": rng.standard_normal((n_y, n_h)),
        "bx": rng.standard_normal((n_h, 1)),
        "by": rng.standard_normal((n_y, 1)),
    }
    h, x = rng.standard_normal((n_h, m)), rng.standard_normal((n_x, m))
    ht, yt, cache = prnn.fwdProp(_to(xp, h), _to(xp, x), _to(xp, p))
    want = np.tanh(p["U"].T @ x + p["W"].T @ h + p["bx"])
    np.testing.assert_allclose(to_numpy(ht), want, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(yt), ref.softmax(p["V"] @ want + p["by"]), rtol=1e-12)
    assert len(cache) == 1 and len(cache[0]) == 4


@pytest.mark.forward
def test_seed000_lstm_carries_the_cell_state(xp):
    """000's LSTMfwdProp never updated cprev: every step restarted from c0."""
    rng = np.random.default_rng(3)
    n_x, n_h, n_y, m, T = 8, 5, 4, 4, 10
    p = {}
    for g in "fico":
        p[f"Wx{g}"] = rng.standard_normal((n_x, n_h))
        p[f"Wh{g}"] = rng.standard_normal((n_h, n_h))
        p[f"b{g}"] = rng.standard_normal((n_h, 1))
    p["Wy"], p["by"] = rng.standard_normal((n_h, n_y)), rng.standard_normal((n_y, 1))
    X, h0, c0 = (
        rng.standard_normal((n_x, m, T)),
        rng.standard_normal((n_h, m)),
        rng.standard_normal((n_h, m)),
    )
    h, c, y = (
        to_numpy(v) for v in prnn.LSTMfwdProp(_to(xp, X), _to(xp, h0), _to(xp, c0), _to(xp, p))
    )
    c_prev, h_prev = c0, h0
    for t in range(T):  # c<t> = f * c<t-1> + i * cc, with c<t-1> the previous step's state
        gate = {g: p[f"Wx{g}"].T @ X[:, :, t] + p[f"Wh{g}"].T @ h_prev + p[f"b{g}"] for g in "fico"}
        c_t = ref.sigmoid(gate["f"]) * c_prev + ref.sigmoid(gate["i"]) * np.tanh(gate["c"])
        np.testing.assert_allclose(c[:, :, t], c_t, rtol=1e-10, atol=1e-12)
        h_prev, c_prev = h[:, :, t], c_t
    assert y.shape == (n_y, m, T)


def test_seed002_lstm_backward_sums_and_feeds_back(xp):
    """002 overwrote the weight gradients each step and never fed da_prev/dc_prev back.

    lstm_backward must equal the explicit BPTT loop over lstm_cell_backward."""
    x, a0, c0, p, da = ref.lstm_problem(np.random.default_rng(4), T=5)
    X, A0, P, DA = _to(xp, x), _to(xp, a0), _to(xp, p), _to(xp, da)
    _, _, _, caches = prnn.lstm_forward(X, A0, P)
    g = {k: to_numpy(v) for k, v in prnn.lstm_backward(DA, caches).items()}
    total = {k: 0.0 for k in g if k.startswith(("dW", "db"))}
    da_prev = dc_prev = np.zeros_like(a0)
    for t in reversed(range(x.shape[2])):
        step = prnn.lstm_cell_backward(
            _to(xp, da[:, :, t] + da_prev), _to(xp, dc_prev), caches[0][t]
        )
        step = {k: to_numpy(v) for k, v in step.items()}
        np.testing.assert_allclose(g["dx"][:, :, t], step["dxt"], rtol=1e-10, atol=1e-12)
        for k in total:
            total[k] = total[k] + step[k]
        da_prev, dc_prev = step["da_prev"], step["dc_prev"]
    for k in total:
        np.testing.assert_allclose(g[k], total[k], rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(g["da0"], da_prev, rtol=1e-10, atol=1e-12)
    # and the seed's overwritten value (the first step's alone) is not the answer
    assert not np.allclose(g["dWf"], step["dWf"])


def test_seed003_sigmoid_and_softmax_are_not_whole_array_reductions(xp):
    """003's sigmoid summed exp over the whole array; its softmax normalised the whole array."""
    z = np.random.default_rng(5).standard_normal((3, 4))
    s = to_numpy(prnn.sigmoid(_to(xp, z)))
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-z)), rtol=1e-14)
    p = to_numpy(prnn.softmax(_to(xp, z)))
    np.testing.assert_allclose(p.sum(axis=0), np.ones(4), rtol=1e-14)


def test_seed003_lstm_cell_caches_xt(xp):
    """003's lstm_cell_forward put c_next where xt belongs in the cache."""
    x, a0, c0, p, _ = ref.lstm_problem(np.random.default_rng(6))
    *_, cache = prnn.lstm_cell_forward(_to(xp, x[:, :, 0]), _to(xp, a0), _to(xp, c0), _to(xp, p))
    np.testing.assert_array_equal(to_numpy(cache[8]), x[:, :, 0])
    assert tuple(cache[1].shape) == (5, 4)


@pytest.mark.forward
def test_seed003_lstm_forward_keeps_c_apart_from_a(xp):
    """003's lstm_forward set c = a, so the cell states overwrote the hidden states."""
    x, a0, c0, p, _ = ref.lstm_problem(np.random.default_rng(7))
    a, _, c, _ = prnn.lstm_forward(_to(xp, x), _to(xp, a0), _to(xp, p))
    want_a, _, want_c = ref.lstm_forward(x, a0, p)
    np.testing.assert_allclose(to_numpy(a), want_a, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(c), want_c, rtol=1e-10)
    assert a is not c and not np.allclose(want_a, want_c)


def test_seed003_import_pulls_in_no_framework():
    """003 imported an unrelated framework (nnabla); importing portable_rnn imports
    no array library beyond NumPy and array-api-compat."""
    code = (
        "import sys, portable_rnn, portable_rnn.testing; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'jax', 'torch', 'cupy', 'nnabla', 'tensorflow', 'array_api_strict'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
