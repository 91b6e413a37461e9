"""The CS231n dialect of seed 001 (portable_rnn.rnn_layers).

Published CS231n expected values (the np.linspace test cases of its
notebooks), the column reference through transposes on every backend and
dtype, gradients against central differences, and seed 001's bugs.
"""

import numpy as np
import pytest

from portable_rnn import rnn_layers as layers
from portable_rnn.testing import assert_close, check_gradients, to_numpy

from . import reference as ref


def _lin(lo, hi, *shape):
    return np.linspace(lo, hi, num=int(np.prod(shape))).reshape(shape)


# -- CS231n's published values ------------------------------------------------------


@pytest.mark.forward
def test_cs231n_rnn_step_forward(xp):
    N, D, H = 3, 10, 4
    args = [
        _lin(-0.4, 0.7, N, D),
        _lin(-0.2, 0.5, N, H),
        _lin(-0.1, 0.9, D, H),
        _lin(-0.3, 0.7, H, H),
        _lin(-0.2, 0.4, H),
    ]
    next_h, _ = layers.rnn_step_forward(*[xp.asarray(v) for v in args])
    expected = [
        [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
        [0.66854692, 0.79562378, 0.87755553, 0.92795967],
        [0.97934501, 0.99144213, 0.99646691, 0.99854353],
    ]
    assert_close(next_h, np.asarray(expected), xp=xp, rtol=0, atol=5e-8)


@pytest.mark.forward
def test_cs231n_rnn_forward(xp):
    N, T, D, H = 2, 3, 4, 5
    args = [
        _lin(-0.1, 0.3, N, T, D),
        _lin(-0.3, 0.1, N, H),
        _lin(-0.2, 0.4, D, H),
        _lin(-0.4, 0.1, H, H),
        _lin(-0.7, 0.1, H),
    ]
    h, _ = layers.rnn_forward(*[xp.asarray(v) for v in args])
    expected = [
        [
            [-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
            [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
            [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525],
        ],
        [
            [-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
            [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
            [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043],
        ],
    ]
    assert_close(h, np.asarray(expected), xp=xp, rtol=0, atol=5e-8)


@pytest.mark.forward
def test_cs231n_lstm_step_forward(xp):
    N, D, H = 3, 4, 5
    args = [
        _lin(-0.4, 1.2, N, D),
        _lin(-0.3, 0.7, N, H),
        _lin(-0.4, 0.9, N, H),
        _lin(-2.1, 1.3, D, 4 * H),
        _lin(-0.7, 2.2, H, 4 * H),
        _lin(0.3, 0.7, 4 * H),
    ]
    next_h, next_c, _ = layers.lstm_step_forward(*[xp.asarray(v) for v in args])
    expected_h = [
        [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
        [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
        [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299],
    ]
    expected_c = [
        [0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
        [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
        [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676],
    ]
    assert_close(next_h, np.asarray(expected_h), xp=xp, rtol=0, atol=5e-8)
    assert_close(next_c, np.asarray(expected_c), xp=xp, rtol=0, atol=5e-8)


@pytest.mark.forward
def test_cs231n_lstm_forward(xp):
    N, D, H, T = 2, 5, 4, 3
    args = [
        _lin(-0.4, 0.6, N, T, D),
        _lin(-0.4, 0.8, N, H),
        _lin(-0.2, 0.9, D, 4 * H),
        _lin(-0.3, 0.6, H, 4 * H),
        _lin(0.2, 0.7, 4 * H),
    ]
    h, _ = layers.lstm_forward(*[xp.asarray(v) for v in args])
    expected = [
        [
            [0.01764008, 0.01823233, 0.01882671, 0.0194232],
            [0.11287491, 0.12146228, 0.13018446, 0.13902939],
            [0.31358768, 0.33338627, 0.35304453, 0.37250975],
        ],
        [
            [0.45767879, 0.4761092, 0.4936887, 0.51041945],
            [0.6704845, 0.69350089, 0.71486014, 0.7346449],
            [0.81733511, 0.83677871, 0.85403753, 0.86935314],
        ],
    ]
    assert_close(h, np.asarray(expected), xp=xp, rtol=0, atol=5e-8)


# -- the same math as the column dialect, every backend and dtype ------------------------


def _cs_lstm_to_column(Wx, Wh, b):
    """CS231n (i, f, o, g) fused rows -> the column dialect's per-gate dict."""
    H = Wh.shape[0]
    W = np.concatenate([Wh.T, Wx.T], axis=1)
    blocks = {g: slice(k * H, (k + 1) * H) for k, g in enumerate("ifoc")}
    p = {f"W{g}": W[s] for g, s in blocks.items()}
    p.update({f"b{g}": b[s][:, None] for g, s in blocks.items()})
    p["Wy"], p["by"] = np.zeros((1, H)), np.zeros((1, 1))
    return p


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rows_equal_the_column_reference(xp, dtype):
    rng = np.random.default_rng(0)
    N, T, D, H = 4, 5, 3, 6
    x, h0, dh = (
        rng.standard_normal((N, T, D)),
        rng.standard_normal((N, H)),
        rng.standard_normal((N, T, H)),
    )
    Wx, Wh, b = (
        rng.standard_normal((D, H)) * 0.5,
        rng.standard_normal((H, H)) * 0.5,
        rng.standard_normal(H),
    )
    r = {
        k: v.astype(dtype).astype(np.float64)
        for k, v in dict(x=x, h0=h0, dh=dh, Wx=Wx, Wh=Wh, b=b).items()
    }
    col = {
        "Wax": r["Wx"].T,
        "Waa": r["Wh"].T,
        "ba": r["b"][:, None],
        "Wya": np.zeros((1, H)),
        "by": np.zeros((1, 1)),
    }
    xc, dhc = np.transpose(r["x"], (2, 0, 1)), np.transpose(r["dh"], (2, 0, 1))
    want_a, _ = ref.rnn_forward(xc, r["h0"].T, col)
    want = ref.rnn_backward(dhc, xc, r["h0"].T, col)

    def arr(v):
        return xp.asarray(v, dtype=dtype)

    kw = {"xp": xp, "dtype": dtype, "device": xp.array_device}
    h, cache = layers.rnn_forward(arr(x), arr(h0), arr(Wx), arr(Wh), arr(b))
    assert_close(h, np.transpose(want_a, (1, 2, 0)), **kw)
    dx, dh0, dWx, dWh, db = layers.rnn_backward(arr(dh), cache)
    assert_close(dx, np.transpose(want["dx"], (1, 2, 0)), **kw)
    assert_close(dh0, want["da0"].T, **kw)
    assert_close(dWx, want["dWax"].T, **kw)
    assert_close(dWh, want["dWaa"].T, **kw)
    assert_close(db, want["dba"][:, 0], **kw)

    Wx4, Wh4, b4 = (
        rng.standard_normal((D, 4 * H)) * 0.5,
        rng.standard_normal((H, 4 * H)) * 0.5,
        rng.standard_normal(4 * H),
    )
    r4 = {k: v.astype(dtype).astype(np.float64) for k, v in dict(Wx=Wx4, Wh=Wh4, b=b4).items()}
    p = _cs_lstm_to_column(r4["Wx"], r4["Wh"], r4["b"])
    want_a, _, _ = ref.lstm_forward(xc, r["h0"].T, p)
    want = ref.lstm_backward(dhc, xc, r["h0"].T, p)
    h, cache = layers.lstm_forward(arr(x), arr(h0), arr(Wx4), arr(Wh4), arr(b4))
    assert_close(h, np.transpose(want_a, (1, 2, 0)), **kw)
    dx, dh0, dWx, dWh, db = layers.lstm_backward(arr(dh), cache)
    assert_close(dx, np.transpose(want["dx"], (1, 2, 0)), **kw)
    assert_close(dh0, want["da0"].T, **kw)
    dW = np.concatenate([want[f"dW{g}"] for g in "ifoc"], axis=0)  # back to i, f, o, g
    assert_close(dWh, dW[:, :H].T, **kw)
    assert_close(dWx, dW[:, H:].T, **kw)
    assert_close(db, np.concatenate([want[f"db{g}"] for g in "ifoc"])[:, 0], **kw)


# -- gradients against central differences (NumPy float64) ----------------------------


def test_step_backwards_vs_finite_differences():
    rng = np.random.default_rng(1)
    N, D, H = 3, 4, 5
    v = {
        "x": rng.standard_normal((N, D)),
        "prev_h": rng.standard_normal((N, H)),
        "Wx": rng.standard_normal((D, H)),
        "Wh": rng.standard_normal((H, H)) * 0.5,
        "b": rng.standard_normal(H),
    }
    dout = rng.standard_normal((N, H))
    _, cache = layers.rnn_step_forward(**v)
    grads = dict(zip(v, layers.rnn_step_backward(dout, cache), strict=True))
    check_gradients(lambda u: np.sum(dout * layers.rnn_step_forward(**u)[0]), v, grads)

    v = {
        "x": rng.standard_normal((N, D)),
        "prev_h": rng.standard_normal((N, H)),
        "prev_c": rng.standard_normal((N, H)),
        "Wx": rng.standard_normal((D, 4 * H)) * 0.5,
        "Wh": rng.standard_normal((H, 4 * H)) * 0.5,
        "b": rng.standard_normal(4 * H),
    }
    dh, dc = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    *_, cache = layers.lstm_step_forward(**v)
    g = layers.lstm_step_backward(dh, dc, cache)
    grads = dict(zip(["x", "prev_h", "prev_c", "Wx", "Wh", "b"], g, strict=True))

    def loss(u):
        h, c, _ = layers.lstm_step_forward(**u)
        return np.sum(dh * h) + np.sum(dc * c)

    check_gradients(loss, v, grads)


def test_sequence_backwards_vs_finite_differences():
    rng = np.random.default_rng(2)
    N, T, D, H = 2, 4, 3, 4
    dout = rng.standard_normal((N, T, H))
    v = {
        "x": rng.standard_normal((N, T, D)),
        "h0": rng.standard_normal((N, H)),
        "Wx": rng.standard_normal((D, H)),
        "Wh": rng.standard_normal((H, H)) * 0.5,
        "b": rng.standard_normal(H),
    }
    _, cache = layers.rnn_forward(**v)
    grads = dict(zip(v, layers.rnn_backward(dout, cache), strict=True))
    check_gradients(lambda u: np.sum(dout * layers.rnn_forward(**u)[0]), v, grads)
    v.update(
        Wx=rng.standard_normal((D, 4 * H)) * 0.5,
        Wh=rng.standard_normal((H, 4 * H)) * 0.5,
        b=rng.standard_normal(4 * H),
    )
    _, cache = layers.lstm_forward(**v)
    grads = dict(zip(v, layers.lstm_backward(dout, cache), strict=True))
    check_gradients(lambda u: np.sum(dout * layers.lstm_forward(**u)[0]), v, grads)


# -- seed 001's bugs ------------------------------------------------------------------


@pytest.mark.forward
def test_seed001_rnn_step_forward_runs_and_matches_its_equation(xp):
    """001 called np.tanh(t) on an undefined name (a NameError at the first call)."""
    rng = np.random.default_rng(3)
    x, h, Wx, Wh, b = (rng.standard_normal(s) for s in [(2, 3), (2, 4), (3, 4), (4, 4), (4,)])
    next_h, _ = layers.rnn_step_forward(*[xp.asarray(v) for v in (x, h, Wx, Wh, b)])
    assert_close(next_h, np.tanh(x @ Wx + h @ Wh + b), xp=xp)


def test_seed001_sequences_run_on_python3(xp):
    """001 looped with Python 2's xrange (a NameError on Python 3)."""
    rng = np.random.default_rng(4)
    x, h0 = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5))
    h, cache = layers.rnn_forward(
        *[
            xp.asarray(v)
            for v in (
                x,
                h0,
                rng.standard_normal((4, 5)),
                rng.standard_normal((5, 5)),
                rng.standard_normal(5),
            )
        ]
    )
    dx, *_ = layers.rnn_backward(xp.asarray(np.ones((2, 3, 5))), cache)
    assert tuple(h.shape) == (2, 3, 5) and tuple(dx.shape) == (2, 3, 4)


@pytest.mark.forward
def test_seed001_lstm_step_has_a_sigmoid(xp):
    """001's lstm_step_forward called a sigmoid it never defined; gates here are exact."""
    H = 2
    zeros = np.zeros
    b = np.array([100.0] * H + [-100.0] * H + [100.0] * H + [0.5] * H)  # i=1, f=0, o=1, g=tanh(.5)
    next_h, next_c, _ = layers.lstm_step_forward(
        *[
            xp.asarray(v)
            for v in (
                zeros((1, 3)),
                zeros((1, H)),
                np.full((1, H), 7.0),
                zeros((3, 4 * H)),
                zeros((H, 4 * H)),
                b,
            )
        ]
    )
    np.testing.assert_allclose(to_numpy(next_c), np.full((1, H), np.tanh(0.5)), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(next_h), np.tanh(np.tanh(np.full((1, H), 0.5))), rtol=1e-12)


def test_bad_input_names_the_argument(xp):
    x = xp.asarray(np.zeros((2, 3, 4)))
    h0, Wx, Wh = (
        xp.asarray(np.zeros((2, 5))),
        xp.asarray(np.zeros((4, 20))),
        xp.asarray(np.zeros((5, 20))),
    )
    with pytest.raises(ValueError, match=r"^b must be 1-D with shape \(4H\), got shape \(20, 1\)"):
        layers.lstm_forward(x, h0, Wx, Wh, xp.asarray(np.zeros((20, 1))))
    with pytest.raises(
        ValueError, match=r"^Wh must have shape \(H, 4H\) = \(5, 20\), got \(5, 16\)"
    ):
        layers.lstm_forward(x, h0, Wx, xp.asarray(np.zeros((5, 16))), xp.asarray(np.zeros(20)))
    with pytest.raises(TypeError, match="cache must be the cache returned by rnn_forward"):
        layers.rnn_backward(x, ("not", "a", "cache"))
