"""GRU (column dialect): every backend and dtype against the NumPy float64 reference,
gradients against central differences and jax.vjp, bad input."""

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn.testing import assert_close, check_gradients, to_numpy

from . import reference as ref

GRU_P = ("Wr", "br", "Wz", "bz", "Wn", "bn", "bhn")


def _round(tree, dtype):
    return {k: np.asarray(v).astype(dtype).astype(np.float64) for k, v in tree.items()}


def _to(xp, tree, dtype="float64"):
    if isinstance(tree, dict):
        return {k: _to(xp, v, dtype) for k, v in tree.items()}
    return xp.asarray(tree, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gru_every_backend(xp, dtype, record_diff):
    x, a0, p, da = ref.gru_problem(np.random.default_rng(20))
    r = _round({"x": x, "a0": a0, "da": da, **p}, dtype)
    kw = {"xp": xp, "dtype": dtype, "device": xp.array_device}

    def check(actual, desired, what):
        assert_close(actual, desired, err_msg=what, **kw)
        record_diff(xp.name, dtype, actual, desired)

    a_next, yt, cache = prnn.gru_cell_forward(
        _to(xp, x[:, :, 0], dtype), _to(xp, a0, dtype), _to(xp, p, dtype)
    )
    want_a, want_y = ref.gru_cell_forward(r["x"][:, :, 0], r["a0"], r)
    check(a_next, want_a, "a_next")
    check(yt, want_y, "yt_pred")
    a, y, caches = prnn.gru_forward(_to(xp, x, dtype), _to(xp, a0, dtype), _to(xp, p, dtype))
    want_a, want_y = ref.gru_forward(r["x"], r["a0"], r)
    check(a, want_a, "a")
    check(y, want_y, "y")
    # the backward on every backend equals the NumPy float64 backward (checked below)
    g = prnn.gru_backward(_to(xp, da, dtype), caches)
    g64 = prnn.gru_backward(r["da"], prnn.gru_forward(r["x"], r["a0"], r)[2])
    assert list(g) == ["dx", "da0", "dWr", "dbr", "dWz", "dbz", "dWn", "dbn", "dbhn"]
    for k in g:
        check(g[k], g64[k], k)
    gc = prnn.gru_cell_backward(_to(xp, da[:, :, 0], dtype), cache)
    gc64 = prnn.gru_cell_backward(
        r["da"][:, :, 0], prnn.gru_cell_forward(r["x"][:, :, 0], r["a0"], r)[2]
    )
    for k in gc:
        check(gc[k], gc64[k], k)


def _small():
    return ref.gru_problem(np.random.default_rng(21), n_x=3, n_a=4, n_y=2, m=3, T=4)


def test_gru_backward_vs_finite_differences():
    x, a0, p, da = _small()

    def loss(v):
        return np.sum(da * prnn.gru_forward(v["x"], v["a0"], {**p, **v})[0])

    g = prnn.gru_backward(da, prnn.gru_forward(x, a0, p)[2])
    inputs = {"x": x, "a0": a0, **{k: p[k] for k in GRU_P}}
    grads = {"x": g["dx"], "a0": g["da0"], **{k: g["d" + k] for k in GRU_P}}
    check_gradients(loss, inputs, grads)


def test_gru_cell_backward_vs_finite_differences():
    x, a0, p, da = _small()
    xt, d = x[:, :, 0], da[:, :, 0]

    def loss(v):
        return np.sum(d * prnn.gru_cell_forward(v["xt"], v["a_prev"], {**p, **v})[0])

    g = prnn.gru_cell_backward(d, prnn.gru_cell_forward(xt, a0, p)[2])
    inputs = {"xt": xt, "a_prev": a0, **{k: p[k] for k in GRU_P}}
    grads = {"xt": g["dxt"], "a_prev": g["da_prev"], **{k: g["d" + k] for k in GRU_P}}
    check_gradients(loss, inputs, grads)


def test_gru_backward_vs_jax_vjp():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x, a0, p, da = _small()
    jp = {k: jnp.asarray(v) for k, v in p.items()}
    primals = {"x": x, "a0": a0, **{k: p[k] for k in GRU_P}}
    _, pullback = jax.vjp(
        lambda v: prnn.gru_forward(v["x"], v["a0"], {**jp, **v})[0],
        {k: jnp.asarray(v) for k, v in primals.items()},
    )
    auto = pullback(jnp.asarray(da))[0]
    g = prnn.gru_backward(da, prnn.gru_forward(x, a0, p)[2])
    for k in primals:
        assert_close(g["d" + k], to_numpy(auto[k]), xp=np, err_msg=k)


def test_gru_bad_input_names_the_argument(xp):
    x, a0, p, da = ref.gru_problem(np.random.default_rng(22))
    X, A0, P = _to(xp, x), _to(xp, a0), _to(xp, p)
    with pytest.raises(ValueError, match=r"^bhn must be 2-D with shape \(n_a, 1\)"):
        prnn.gru_forward(X, A0, dict(P, bhn=_to(xp, np.zeros(5))))
    with pytest.raises(ValueError, match=r"^Wz must have shape \(n_a, n_a\+n_x\) = \(5, 8\)"):
        prnn.gru_forward(X, A0, dict(P, Wz=_to(xp, np.zeros((5, 7)))))
    with pytest.raises(KeyError, match="'bhn'"):
        prnn.gru_forward(X, A0, {k: v for k, v in P.items() if k != "bhn"})
    with pytest.raises(TypeError, match="^a0 has dtype"):
        prnn.gru_forward(X, _to(xp, a0, "float32"), P)
    with pytest.raises(TypeError, match="caches must be the caches returned by gru_forward"):
        prnn.gru_backward(
            _to(xp, da),
            prnn.rnn_forward(X, None, _to(xp, ref.rnn_problem(np.random.default_rng(0))[2]))[2],
        )
