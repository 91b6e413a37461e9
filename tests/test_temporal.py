"""CS231n temporal layers (portable_rnn._temporal): affine, masked softmax loss, embeddings.

Every backend and dtype against plain NumPy float64 references written here
(inputs rounded to the dtype first), gradients against central differences,
CS231n's published sanity checks of the loss, and bad input.
"""

import numpy as np
import pytest

from portable_rnn import _temporal as tl
from portable_rnn.testing import Backend, assert_close, check_gradients, to_numpy

DTYPES = ["float64", "float32"]


def _round(v, dtype):
    """The float64 values the backend will see once converted to ``dtype``."""
    return np.asarray(v).astype(dtype).astype(np.float64)


def _kw(xp, dtype):
    return {"xp": xp, "dtype": dtype, "device": xp.array_device}


def _other_backend(xp):
    """A Backend that is not ``xp``'s (NumPy, or array_api_strict when ``xp`` is NumPy)."""
    other = "numpy" if xp.backend != "numpy" else "array_api_strict"
    pytest.importorskip(other)
    return Backend(other, other, "cpu")


# -- NumPy float64 references ------------------------------------------------------


def ref_affine_forward(x, w, b):
    N, T, D = x.shape
    return (x.reshape(N * T, D) @ w + b).reshape(N, T, w.shape[1])


def ref_affine_backward(dout, x, w):
    N, T, D = x.shape
    M = w.shape[1]
    d2 = dout.reshape(N * T, M)
    return (d2 @ w.T).reshape(N, T, D), x.reshape(N * T, D).T @ d2, d2.sum(axis=0)


def ref_softmax_loss(x, y, mask):
    """CS231n's flat formulation, with a log-softmax (no log of an underflowed 0)."""
    N, T, V = x.shape
    xf, yf, mf = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T).astype(np.float64)
    shifted = xf - xf.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N * T)
    loss = -np.sum(mf * logp[rows, yf]) / N
    dx = np.exp(logp)
    dx[rows, yf] -= 1
    dx = dx / N * mf[:, None]
    return loss, dx.reshape(N, T, V)


def ref_embedding_forward(x, W):
    return W[x]


def ref_embedding_backward(dout, x, V):
    dW = np.zeros((V, dout.shape[-1]))
    np.add.at(dW, x, dout)
    return dW


# -- every backend and dtype against the references ---------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_temporal_affine_matches_reference(xp, dtype):
    rng = np.random.default_rng(0)
    N, T, D, M = 3, 4, 5, 6
    x, w, b = rng.standard_normal((N, T, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    dout = rng.standard_normal((N, T, M))
    r = {k: _round(v, dtype) for k, v in dict(x=x, w=w, b=b, dout=dout).items()}
    kw = _kw(xp, dtype)

    out, cache = tl.temporal_affine_forward(*(xp.asarray(v, dtype=dtype) for v in (x, w, b)))
    assert_close(out, ref_affine_forward(r["x"], r["w"], r["b"]), **kw)
    dx, dw, db = tl.temporal_affine_backward(xp.asarray(dout, dtype=dtype), cache)
    want = ref_affine_backward(r["dout"], r["x"], r["w"])
    for got, desired, name in zip((dx, dw, db), want, ("dx", "dw", "db"), strict=True):
        assert_close(got, desired, err_msg=name, **kw)


@pytest.mark.forward
@pytest.mark.parametrize("dtype", DTYPES)
def test_temporal_softmax_loss_matches_reference(xp, dtype):
    rng = np.random.default_rng(1)
    N, T, V = 4, 5, 7
    x = rng.standard_normal((N, T, V)) * 3
    y = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) < 0.7
    want_loss, want_dx = ref_softmax_loss(_round(x, dtype), y, mask)

    loss, dx = tl.temporal_softmax_loss(xp.asarray(x, dtype=dtype), xp.asarray(y), xp.asarray(mask))
    kw = _kw(xp, dtype)
    assert_close(loss, np.asarray(want_loss), err_msg="loss", **kw)
    assert_close(dx, want_dx, err_msg="dx", **kw)
    assert tuple(loss.shape) == ()


@pytest.mark.parametrize("mask_dtype", ["bool", "int64", "int32", "float64", "float32"])
def test_mask_of_any_real_dtype_gives_the_same_loss(xp, mask_dtype):
    rng = np.random.default_rng(2)
    N, T, V = 3, 4, 5
    x, y = rng.standard_normal((N, T, V)), rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) < 0.5
    want_loss, want_dx = ref_softmax_loss(x, y, mask)
    loss, dx = tl.temporal_softmax_loss(
        xp.asarray(x, dtype="float64"), xp.asarray(y), xp.asarray(mask, dtype=mask_dtype)
    )
    assert_close(loss, np.asarray(want_loss), **_kw(xp, "float64"))
    assert_close(dx, want_dx, **_kw(xp, "float64"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_temporal_softmax_loss_is_stable_for_large_scores(xp, dtype):
    """Scores of +-1e4 overflow a naive exp(); the shifted log-sum-exp stays finite."""
    x = np.array([[[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], [[0.0, 1e4, 1e4], [5.0, 1e4, -1e4]]])
    y = np.array([[1, 2], [0, 0]])  # two labels with probability exp(-1e4) = 0
    mask = np.ones((2, 2), dtype=bool)
    want_loss, want_dx = ref_softmax_loss(x, y, mask)
    loss, dx = tl.temporal_softmax_loss(xp.asarray(x, dtype=dtype), xp.asarray(y), xp.asarray(mask))
    assert np.isfinite(to_numpy(loss)) and np.all(np.isfinite(to_numpy(dx)))
    assert_close(loss, np.asarray(want_loss), **_kw(xp, dtype))
    assert_close(dx, want_dx, **_kw(xp, dtype))


#: the largest finite scores of each dtype, within a factor 1.1
BIG = {"float64": 1e308, "float32": 3e38}


def _old_loss(xp, x, y, mask):
    """The formula before issue 17 (x - max, then a one-hot product), for the normal range."""
    N, _, V = x.shape
    shifted = x - xp.max(x, axis=-1, keepdims=True)
    log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
    onehot = tl._one_hot(xp, y, V, x.dtype)
    weights = xp.astype(mask, x.dtype)
    loss = -xp.sum(weights * xp.sum(log_probs * onehot, axis=-1)) / N
    return loss, (xp.exp(log_probs) - onehot) * xp.expand_dims(weights / N, axis=-1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_is_finite_without_warnings_for_scores_spanning_the_dtype(xp, dtype):
    """[big, -big]: ``x - max`` would overflow (a warning, then 0 * inf = NaN in the
    one-hot product); the loss is exact where the label is the maximum, and finite (the
    per-step bound ``-big / (N T)``) where its log-probability is below the dtype."""
    big = BIG[dtype]
    x = xp.asarray(np.array([[[big, -big], [-big, big]], [[big, -big], [0.0, -big]]]), dtype=dtype)
    mask = xp.asarray(np.ones((2, 2), dtype=bool))
    loss, dx = tl.temporal_softmax_loss(x, xp.asarray(np.array([[0, 1], [0, 0]])), mask)
    assert float(to_numpy(loss)) == 0.0  # every label is its step's maximum
    np.testing.assert_array_equal(to_numpy(dx), np.zeros((2, 2, 2)))
    loss, dx = tl.temporal_softmax_loss(x, xp.asarray(np.array([[1, 0], [1, 1]])), mask)
    finfo = np.finfo(dtype)
    assert np.isfinite(to_numpy(loss)) and float(to_numpy(loss)) >= float(finfo.max) / 4 * 0.99
    want_dx = np.array([[[1.0, -1.0], [-1.0, 1.0]], [[1.0, -1.0], [1.0, -1.0]]]) / 2
    np.testing.assert_array_equal(to_numpy(dx), want_dx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_is_bit_for_bit_the_plain_formula_in_the_normal_range(xp, dtype):
    rng = np.random.default_rng(11)
    x = xp.asarray(rng.standard_normal((3, 4, 7)) * 30, dtype=dtype)
    y = xp.asarray(rng.integers(0, 7, size=(3, 4)))
    mask = xp.asarray(rng.random((3, 4)) < 0.7)
    got, want = tl.temporal_softmax_loss(x, y, mask), _old_loss(xp.xp, x, y, mask)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(to_numpy(g), to_numpy(w))


@pytest.mark.parametrize("dtype", DTYPES)
def test_word_embedding_matches_reference(xp, dtype):
    rng = np.random.default_rng(3)
    N, T, V, D = 3, 5, 8, 4
    x = rng.integers(0, V - 2, size=(N, T))  # repeated words, and the last two unused
    x[0, 0] = x[2, 4] = 0  # word 0 at least twice
    W, dout = rng.standard_normal((V, D)), rng.standard_normal((N, T, D))
    kw = _kw(xp, dtype)

    out, cache = tl.word_embedding_forward(xp.asarray(x), xp.asarray(W, dtype=dtype))
    assert_close(out, ref_embedding_forward(x, _round(W, dtype)), **kw)
    dW = tl.word_embedding_backward(xp.asarray(dout, dtype=dtype), cache)
    want = ref_embedding_backward(_round(dout, dtype), x, V)
    assert_close(dW, want, **kw)
    assert np.all(to_numpy(dW)[V - 2 :] == 0)


@pytest.mark.parametrize("index_dtype", ["int32", "int16", "uint8"])
def test_any_integer_dtype_indexes(xp, index_dtype):
    rng = np.random.default_rng(4)
    N, T, V, D = 2, 3, 6, 3
    x, W = rng.integers(0, V, size=(N, T)), rng.standard_normal((V, D))
    dout = rng.standard_normal((N, T, D))
    idx = xp.asarray(x.astype(index_dtype))
    out, cache = tl.word_embedding_forward(idx, xp.asarray(W))
    assert_close(out, ref_embedding_forward(x, W), **_kw(xp, "float64"))
    dW = tl.word_embedding_backward(xp.asarray(dout), cache)
    assert_close(dW, ref_embedding_backward(dout, x, V), **_kw(xp, "float64"))
    x3 = rng.standard_normal((N, T, V))
    loss, dx = tl.temporal_softmax_loss(xp.asarray(x3), idx, xp.asarray(np.ones((N, T), bool)))
    want_loss, want_dx = ref_softmax_loss(x3, x, np.ones((N, T), bool))
    assert_close(loss, np.asarray(want_loss), **_kw(xp, "float64"))
    assert_close(dx, want_dx, **_kw(xp, "float64"))


def test_empty_time_axis(xp):
    N, V, D = 2, 5, 3
    W = xp.asarray(np.ones((V, D)))
    out, cache = tl.word_embedding_forward(xp.asarray(np.zeros((N, 0), dtype=np.int64)), W)
    assert tuple(out.shape) == (N, 0, D)
    assert_close(
        tl.word_embedding_backward(xp.asarray(np.zeros((N, 0, D))), cache), np.zeros((V, D)), xp=xp
    )
    loss, dx = tl.temporal_softmax_loss(
        xp.asarray(np.zeros((N, 0, V))),
        xp.asarray(np.zeros((N, 0), dtype=np.int64)),
        xp.asarray(np.zeros((N, 0), dtype=bool)),
    )
    assert float(to_numpy(loss)) == 0.0 and tuple(dx.shape) == (N, 0, V)


# -- CS231n's published sanity checks of the loss --------------------------------------------


def _cs231n_check_loss(xp, dtype, N, T, V, p, rng):
    x = 0.001 * rng.standard_normal((N, T, V))
    y = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) <= p
    loss, _ = tl.temporal_softmax_loss(xp.asarray(x, dtype=dtype), xp.asarray(y), xp.asarray(mask))
    return float(to_numpy(loss)), mask


@pytest.mark.parametrize("dtype", DTYPES)
def test_cs231n_sanity_check_loss(xp, dtype):
    rng = np.random.default_rng(231)
    loss, _ = _cs231n_check_loss(xp, dtype, 100, 1, 10, 1.0, rng)
    assert abs(loss - np.log(10)) < 0.05  # should be about 2.3
    loss, _ = _cs231n_check_loss(xp, dtype, 100, 10, 10, 1.0, rng)
    assert abs(loss - 10 * np.log(10)) < 0.5  # should be about 23
    loss, mask = _cs231n_check_loss(xp, dtype, 100, 10, 10, 0.1, rng)
    assert abs(loss - np.log(10)) < 0.5  # should be about 2.3 (1000 steps, about 100 counted)
    assert abs(loss - np.log(10) * mask.sum() / 100) < 0.01  # divided by N, not by mask.sum()


# -- gradients against central differences (NumPy float64) --------------------------------


def test_temporal_affine_backward_vs_finite_differences():
    rng = np.random.default_rng(5)
    N, T, D, M = 2, 3, 4, 5
    v = {
        "x": rng.standard_normal((N, T, D)),
        "w": rng.standard_normal((D, M)),
        "b": rng.standard_normal(M),
    }
    dout = rng.standard_normal((N, T, M))
    _, cache = tl.temporal_affine_forward(**v)
    grads = dict(zip(v, tl.temporal_affine_backward(dout, cache), strict=True))
    check_gradients(lambda u: np.sum(dout * tl.temporal_affine_forward(**u)[0]), v, grads)


def test_temporal_softmax_loss_dx_vs_finite_differences():
    rng = np.random.default_rng(6)
    N, T, V = 3, 4, 5
    x = rng.standard_normal((N, T, V))
    y = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) < 0.6
    _, dx = tl.temporal_softmax_loss(x, y, mask)
    check_gradients(lambda u: tl.temporal_softmax_loss(u["x"], y, mask)[0], {"x": x}, {"x": dx})


def test_word_embedding_backward_vs_finite_differences():
    rng = np.random.default_rng(7)
    N, T, V, D = 2, 4, 5, 3
    x = rng.integers(0, V, size=(N, T))
    W, dout = rng.standard_normal((V, D)), rng.standard_normal((N, T, D))
    _, cache = tl.word_embedding_forward(x, W)
    dW = tl.word_embedding_backward(dout, cache)
    check_gradients(
        lambda u: np.sum(dout * tl.word_embedding_forward(x, u["W"])[0]), {"W": W}, {"W": dW}
    )


# -- jax.jit -------------------------------------------------------------------------------


def test_jax_jit_traces_and_skips_the_range_check():
    jax = pytest.importorskip("jax", reason="tests tracing under jax.jit")
    jnp = jax.numpy

    rng = np.random.default_rng(8)
    N, T, V, D = 2, 3, 5, 4
    x, y = rng.standard_normal((N, T, V)), rng.integers(0, V, size=(N, T))
    mask, W = rng.random((N, T)) < 0.5, rng.standard_normal((V, D))
    args = (jnp.asarray(x), jnp.asarray(y), jnp.asarray(mask))
    loss, dx = jax.jit(tl.temporal_softmax_loss)(*args)
    want_loss, want_dx = ref_softmax_loss(x, y, mask)
    assert_close(loss, np.asarray(want_loss), xp=jnp)
    assert_close(dx, want_dx, xp=jnp)

    def embed(idx, W, dout):
        out, cache = tl.word_embedding_forward(idx, W)
        return out, tl.word_embedding_backward(dout, cache)

    dout = rng.standard_normal((N, T, D))
    out, dW = jax.jit(embed)(jnp.asarray(y), jnp.asarray(W), jnp.asarray(dout))
    assert_close(out, ref_embedding_forward(y, W), xp=jnp)
    assert_close(dW, ref_embedding_backward(dout, y, V), xp=jnp)
    out, _ = jax.jit(tl.temporal_affine_forward)(jnp.asarray(x), jnp.asarray(W), jnp.asarray(W[0]))
    assert tuple(out.shape) == (N, T, D)


# -- bad input -------------------------------------------------------------------------------


@pytest.fixture
def loss_args(xp):
    rng = np.random.default_rng(9)
    N, T, V = 2, 3, 10
    return (
        xp.asarray(rng.standard_normal((N, T, V))),
        xp.asarray(rng.integers(0, V, size=(N, T))),
        xp.asarray(np.ones((N, T), dtype=bool)),
    )


@pytest.mark.forward
def test_labels_out_of_range_name_y(xp, loss_args):
    x, y, mask = loss_args
    for bad, lo, hi in ((10, 0, 10), (-1, -1, 9)):
        labels = np.zeros((2, 3), dtype=np.int64)
        labels[1, 2], labels[0, 0] = bad, 9 if bad < 0 else 0
        with pytest.raises(
            ValueError,
            match=rf"^y must hold labels in \[0, V from x\) = \[0, 10\), "
            rf"got values from {lo} to {hi}$",
        ):
            tl.temporal_softmax_loss(x, xp.asarray(labels), mask)


def test_indices_out_of_range_name_x(xp):
    W = xp.asarray(np.zeros((4, 3)))
    with pytest.raises(
        ValueError,
        match=r"^x must hold word indices in \[0, V from W\) = \[0, 4\), got values from 0 to 4$",
    ):
        tl.word_embedding_forward(xp.asarray(np.array([[0, 4], [1, 2]])), W)
    with pytest.raises(ValueError, match=r"^x must hold word indices .* from -3 to 2$"):
        tl.word_embedding_forward(xp.asarray(np.array([[0, -3], [1, 2]])), W)
    with pytest.raises(ValueError, match=r"^x must hold word indices .* from 0 to 255$"):
        tl.word_embedding_forward(xp.asarray(np.array([[0, 255]], dtype=np.uint8)), W)


def test_wrong_mask_shape_names_mask(xp, loss_args):
    x, y, _ = loss_args
    with pytest.raises(
        ValueError, match=r"^mask must have shape \(N, T\) = \(2, 3\), got \(3, 2\)"
    ):
        tl.temporal_softmax_loss(x, y, xp.asarray(np.ones((3, 2), dtype=bool)))
    with pytest.raises(
        ValueError, match=r"^mask must be 2-D with shape \(N, T\), got shape \(6,\)"
    ):
        tl.temporal_softmax_loss(x, y, xp.asarray(np.ones(6, dtype=bool)))
    with pytest.raises(ValueError, match=r"^y must have shape \(N, T\) = \(2, 3\), got \(2, 4\)"):
        tl.temporal_softmax_loss(x, xp.asarray(np.zeros((2, 4), dtype=np.int64)), y)


def test_float_or_boolean_labels_name_y(xp, loss_args):
    x, y, mask = loss_args
    for bad in (xp.asarray(np.zeros((2, 3)), dtype="float64"), mask):
        with pytest.raises(TypeError, match="^y must have an integer dtype"):
            tl.temporal_softmax_loss(x, bad, mask)
    with pytest.raises(TypeError, match="^x must have an integer dtype"):
        tl.word_embedding_forward(xp.asarray(np.zeros((2, 3)), dtype="float64"), x[0, ...])
    with pytest.raises(TypeError, match="^y must be an array"):
        tl.temporal_softmax_loss(x, [[0, 1, 2], [0, 1, 2]], mask)
    with pytest.raises(TypeError, match="^W must have a real floating dtype"):
        tl.word_embedding_forward(y, y)
    with pytest.raises(TypeError, match="^x must have a real floating dtype"):
        tl.temporal_softmax_loss(y[..., None], y, mask)


def test_empty_batch_or_vocabulary_is_refused(xp):
    with pytest.raises(ValueError, match=r"^x must hold at least one example"):
        tl.temporal_softmax_loss(
            xp.asarray(np.zeros((0, 2, 3))),
            xp.asarray(np.zeros((0, 2), dtype=np.int64)),
            xp.asarray(np.zeros((0, 2), dtype=bool)),
        )
    with pytest.raises(ValueError, match=r"^x must hold at least one class"):
        tl.temporal_softmax_loss(
            xp.asarray(np.zeros((1, 2, 0))),
            xp.asarray(np.zeros((1, 2), dtype=np.int64)),
            xp.asarray(np.ones((1, 2), dtype=bool)),
        )


def test_wrong_affine_shapes_name_the_argument(xp):
    x = xp.asarray(np.zeros((2, 3, 4)))
    w, b = xp.asarray(np.zeros((4, 5))), xp.asarray(np.zeros(5))
    with pytest.raises(
        ValueError, match=r"^w must have shape \(D, M\) = \(4, \?\), got \(5, 5\) \(D = 4 from x\)"
    ):
        tl.temporal_affine_forward(x, xp.asarray(np.zeros((5, 5))), b)
    with pytest.raises(ValueError, match=r"^w must be 2-D with shape \(D, M\), got shape \(4,\)"):
        tl.temporal_affine_forward(x, xp.asarray(np.zeros(4)), b)
    with pytest.raises(ValueError, match=r"^b must have shape \(M\) = \(5\), got \(6,\)"):
        tl.temporal_affine_forward(x, w, xp.asarray(np.zeros(6)))
    with pytest.raises(ValueError, match=r"^x must be 3-D with shape \(N, T, D\)"):
        tl.temporal_affine_forward(x[0, ...], w, b)
    _, cache = tl.temporal_affine_forward(x, w, b)
    with pytest.raises(
        ValueError, match=r"^dout must have shape \(N, T, M\) = \(2, 3, 5\), got \(2, 3, 4\)"
    ):
        tl.temporal_affine_backward(x, cache)
    with pytest.raises(TypeError, match="^cache must be the cache returned by temporal_affine"):
        tl.temporal_affine_backward(x, (x, w))


def test_wrong_embedding_shapes_name_the_argument(xp):
    idx, W = xp.asarray(np.zeros((2, 3), dtype=np.int64)), xp.asarray(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"^x must be 2-D with shape \(N, T\), got shape \(6,\)"):
        tl.word_embedding_forward(xp.asarray(np.zeros(6, dtype=np.int64)), W)
    with pytest.raises(ValueError, match=r"^W must be 2-D with shape \(V, D\)"):
        tl.word_embedding_forward(idx, xp.asarray(np.zeros(4)))
    _, cache = tl.word_embedding_forward(idx, W)
    with pytest.raises(
        ValueError, match=r"^dout must have shape \(N, T, D\) = \(2, 3, 5\), got \(2, 3, 4\)"
    ):
        tl.word_embedding_backward(xp.asarray(np.zeros((2, 3, 4))), cache)
    with pytest.raises(TypeError, match="^cache must be the cache returned by word_embedding"):
        tl.word_embedding_backward(W, (idx,))
    with pytest.raises(
        TypeError, match=r"^cache \(the forward's W\) has dtype .*float64.* but dout has dtype"
    ):
        tl.word_embedding_backward(xp.asarray(np.zeros((2, 3, 5)), dtype="float32"), cache)


def test_mixed_backends_are_refused_naming_both(xp, loss_args):
    x, y, mask = loss_args
    other = _other_backend(xp)
    name = other.backend
    with pytest.raises(TypeError, match=f"^y is a {name} array but x is a {xp.backend} array"):
        tl.temporal_softmax_loss(x, other.asarray(to_numpy(y)), mask)
    with pytest.raises(TypeError, match=f"^mask is a {name} array but x is a {xp.backend} array"):
        tl.temporal_softmax_loss(x, y, other.asarray(to_numpy(mask)))
    W = xp.asarray(np.zeros((10, 4)))
    with pytest.raises(TypeError, match=f"^x is a {name} array but W is a {xp.backend} array"):
        tl.word_embedding_forward(other.asarray(to_numpy(y)), W)
    with pytest.raises(TypeError, match=f"^x is a {xp.backend} array but w is a {name} array"):
        tl.temporal_affine_forward(x, other.asarray(np.zeros((10, 4))), W[0, ...])


def test_mixed_devices_are_refused_naming_both():
    """array_api_strict has several CPU 'devices', so this runs without a GPU."""
    xps = pytest.importorskip("array_api_strict")
    d1 = xps.Device("device1")
    x = xps.asarray(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"^y is on device .*device1.* but x is on device .*CPU"):
        tl.temporal_softmax_loss(
            x, xps.asarray(np.zeros((2, 3), dtype=np.int64), device=d1), xps.ones((2, 3))
        )
    with pytest.raises(ValueError, match=r"^mask is on device .*device1.* but x is on device"):
        tl.temporal_softmax_loss(
            x, xps.zeros((2, 3), dtype=xps.int64), xps.ones((2, 3), dtype=xps.bool, device=d1)
        )
    with pytest.raises(ValueError, match=r"^x is on device .*device1.* but W is on device"):
        tl.word_embedding_forward(xps.zeros((2, 3), dtype=xps.int64, device=d1), xps.ones((4, 5)))


def test_errors_come_before_any_work(monkeypatch):
    """Validation precedes arithmetic: no one-hot is built for bad input."""
    calls = []
    monkeypatch.setattr(tl, "_one_hot", lambda *a: calls.append(a))
    x, y = np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="^mask must"):
        tl.temporal_softmax_loss(x, y, np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="^y must hold labels"):
        tl.temporal_softmax_loss(x, y + 4, np.ones((2, 3), dtype=bool))
    assert calls == []
