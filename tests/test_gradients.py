"""Every backward against two oracles: central differences and ``jax.vjp``.

Central differences run in NumPy float64 on the library's own forward (the
loss is ``sum(da * a)`` (+ ``sum(dc * c)`` for the LSTM cell), whose gradient
is exactly what the backward functions return).  ``jax.vjp`` differentiates
the same array-API forward on JAX float64 arrays automatically.
"""

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn.testing import assert_close, check_gradients, to_numpy

from . import reference as ref

RNN_P = ("Wax", "Waa", "ba")
LSTM_P = tuple(f"{w}{g}" for g in "fico" for w in "Wb")


def _small_rnn():
    return ref.rnn_problem(np.random.default_rng(10), n_x=3, n_a=4, n_y=2, m=3, T=4)


def _small_lstm():
    return ref.lstm_problem(np.random.default_rng(11), n_x=3, n_a=4, n_y=2, m=3, T=4)


def test_rnn_cell_backward_vs_finite_differences():
    x, a0, p, da = _small_rnn()
    xt, da_next = x[:, :, 0], da[:, :, 0]

    def loss(v):
        a_next, _, _ = prnn.rnn_cell_forward(v["xt"], v["a_prev"], {**p, **v})
        return np.sum(da_next * a_next)

    _, _, cache = prnn.rnn_cell_forward(xt, a0, p)
    g = prnn.rnn_cell_backward(da_next, cache)
    inputs = {"xt": xt, "a_prev": a0, **{k: p[k] for k in RNN_P}}
    grads = {"xt": g["dxt"], "a_prev": g["da_prev"], **{k: g["d" + k] for k in RNN_P}}
    check_gradients(loss, inputs, grads)


def test_rnn_backward_vs_finite_differences():
    x, a0, p, da = _small_rnn()

    def loss(v):
        a, _, _ = prnn.rnn_forward(v["x"], v["a0"], {**p, **v})
        return np.sum(da * a)

    _, _, caches = prnn.rnn_forward(x, a0, p)
    g = prnn.rnn_backward(da, caches)
    inputs = {"x": x, "a0": a0, **{k: p[k] for k in RNN_P}}
    grads = {"x": g["dx"], "a0": g["da0"], **{k: g["d" + k] for k in RNN_P}}
    check_gradients(loss, inputs, grads)


def test_lstm_cell_backward_vs_finite_differences():
    x, a0, c0, p, da = _small_lstm()
    xt, da_next, dc_next = x[:, :, 0], da[:, :, 0], da[:, :, 1]

    def loss(v):
        a_next, c_next, _, _ = prnn.lstm_cell_forward(v["xt"], v["a_prev"], v["c_prev"], {**p, **v})
        return np.sum(da_next * a_next) + np.sum(dc_next * c_next)

    *_, cache = prnn.lstm_cell_forward(xt, a0, c0, p)
    g = prnn.lstm_cell_backward(da_next, dc_next, cache)
    inputs = {"xt": xt, "a_prev": a0, "c_prev": c0, **{k: p[k] for k in LSTM_P}}
    grads = {"xt": g["dxt"], "a_prev": g["da_prev"], "c_prev": g["dc_prev"]}
    grads.update({k: g["d" + k] for k in LSTM_P})
    check_gradients(loss, inputs, grads)


@pytest.mark.parametrize("with_c0", [True, False])
def test_lstm_backward_vs_finite_differences(with_c0):
    x, a0, c0, p, da = _small_lstm()

    def loss(v):
        kw = {"c0": v["c0"]} if with_c0 else {}
        a, _, _, _ = prnn.lstm_forward(v["x"], v["a0"], {**p, **v}, **kw)
        return np.sum(da * a)

    kw = {"c0": c0} if with_c0 else {}
    *_, caches = prnn.lstm_forward(x, a0, p, **kw)
    g = prnn.lstm_backward(da, caches)
    inputs = {"x": x, "a0": a0, **{k: p[k] for k in LSTM_P}}
    grads = {"x": g["dx"], "a0": g["da0"], **{k: g["d" + k] for k in LSTM_P}}
    if with_c0:
        inputs["c0"], grads["c0"] = c0, g["dc0"]
    check_gradients(loss, inputs, grads)


# -- second oracle: automatic differentiation of the same forward on JAX -------------


@pytest.fixture
def jnp():
    jax = pytest.importorskip("jax", reason="jax.vjp is the automatic-differentiation oracle")
    assert jax.config.jax_enable_x64, "tests/conftest.py enables float64 on JAX"
    return jax.numpy


def _vjp(fn, primals, cotangent):
    import jax

    out, pullback = jax.vjp(fn, primals)
    return pullback(cotangent)[0]


def _close(ours, theirs, what):
    assert_close(ours, to_numpy(theirs), xp=np, dtype="float64", err_msg=what)


def test_rnn_backward_vs_jax_vjp(jnp):
    x, a0, p, da = _small_rnn()
    jp = {k: jnp.asarray(v) for k, v in p.items()}
    primals = {"x": x, "a0": a0, **{k: p[k] for k in RNN_P}}
    auto = _vjp(
        lambda v: prnn.rnn_forward(v["x"], v["a0"], {**jp, **v})[0],
        {k: jnp.asarray(v) for k, v in primals.items()},
        jnp.asarray(da),
    )
    g = prnn.rnn_backward(da, prnn.rnn_forward(x, a0, p)[2])
    for k in primals:
        _close(g["d" + k], auto[k], k)

    cell = _vjp(
        lambda v: prnn.rnn_cell_forward(v["x"], v["a0"], {**jp, **v})[0],
        {k: jnp.asarray(v[:, :, 1] if k == "x" else v) for k, v in primals.items()},
        jnp.asarray(da[:, :, 1]),
    )
    gc = prnn.rnn_cell_backward(da[:, :, 1], prnn.rnn_cell_forward(x[:, :, 1], a0, p)[2])
    names = {"x": "dxt", "a0": "da_prev", **{k: "d" + k for k in RNN_P}}
    for k, ours in names.items():
        _close(gc[ours], cell[k], k)


def test_lstm_backward_vs_jax_vjp(jnp):
    x, a0, c0, p, da = _small_lstm()
    jp = {k: jnp.asarray(v) for k, v in p.items()}
    primals = {"x": x, "a0": a0, "c0": c0, **{k: p[k] for k in LSTM_P}}
    auto = _vjp(
        lambda v: prnn.lstm_forward(v["x"], v["a0"], {**jp, **v}, c0=v["c0"])[0],
        {k: jnp.asarray(v) for k, v in primals.items()},
        jnp.asarray(da),
    )
    g = prnn.lstm_backward(da, prnn.lstm_forward(x, a0, p, c0=c0)[3])
    for k in primals:
        _close(g["d" + k], auto[k], k)

    def cell(v):
        a, c, _, _ = prnn.lstm_cell_forward(v["x"], v["a0"], v["c0"], {**jp, **v})
        return a, c

    primals_t = {k: jnp.asarray(v[:, :, 1] if k == "x" else v) for k, v in primals.items()}
    import jax

    _, pullback = jax.vjp(cell, primals_t)
    auto_cell = pullback((jnp.asarray(da[:, :, 1]), jnp.asarray(da[:, :, 2])))[0]
    *_, cache = prnn.lstm_cell_forward(x[:, :, 1], a0, c0, p)
    gc = prnn.lstm_cell_backward(da[:, :, 1], da[:, :, 2], cache)
    names = {"x": "dxt", "a0": "da_prev", "c0": "dc_prev", **{k: "d" + k for k in LSTM_P}}
    for k, ours in names.items():
        _close(gc[ours], auto_cell[k], k)


def test_forward_under_jax_jit(jnp):
    """Inside jax.jit arrays have no device; validation and the math still work."""
    import jax

    x, a0, c0, p, da = _small_lstm()
    jp = {k: jnp.asarray(v) for k, v in p.items()}

    @jax.jit
    def run(x, a0, params):
        a, y, c, caches = prnn.lstm_forward(x, a0, params)
        return a, prnn.lstm_backward(jnp.ones_like(a), caches)["dWf"]

    a, dWf = run(jnp.asarray(x), None, jp)
    a_eager, _, _, caches = prnn.lstm_forward(jnp.asarray(x), None, jp)
    dWf_eager = prnn.lstm_backward(jnp.ones_like(a_eager), caches)["dWf"]
    assert_close(a, a_eager)
    assert_close(dWf, dWf_eager)
