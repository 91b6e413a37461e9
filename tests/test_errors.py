"""Bad input: a clear error naming the argument, before any work, nothing modified.

One test per rule of ``portable_rnn/_validate.py`` (and docs/conventions.md).
"""

import copy
import re

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn.testing import to_numpy

from . import reference as ref


def _to(xp, tree, dtype="float64"):
    if isinstance(tree, dict):
        return {k: _to(xp, v, dtype) for k, v in tree.items()}
    return xp.asarray(tree, dtype=dtype)


@pytest.fixture
def lstm(xp):
    x, a0, c0, p, da = ref.lstm_problem(np.random.default_rng(0))
    return _to(xp, x), _to(xp, a0), _to(xp, c0), _to(xp, p), _to(xp, da)


@pytest.fixture
def rnn(xp):
    x, a0, p, da = ref.rnn_problem(np.random.default_rng(1))
    return _to(xp, x), _to(xp, a0), _to(xp, p), _to(xp, da)


# -- shapes ---------------------------------------------------------------------


def test_wrong_a0_shape_names_a0_with_both_shapes(xp, lstm):
    x, a0, c0, p, _ = lstm
    bad = _to(xp, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"a0 must have shape \(n_a, m\) = \(5, 4\), got \(5, 3\)"):
        prnn.lstm_forward(x, bad, p)
    with pytest.raises(ValueError, match=r"^a0 must have shape"):
        prnn.rnn_forward(rnn_x := _to(xp, np.zeros((3, 4, 6))), bad, _rnn_params(xp))
    del rnn_x


def _rnn_params(xp):
    return _to(xp, ref.rnn_problem(np.random.default_rng(1))[2])


def test_wrong_weight_shape_names_the_weight(xp, lstm):
    x, a0, c0, p, _ = lstm
    bad = dict(p, Wf=_to(xp, np.zeros((5, 9))))
    with pytest.raises(
        ValueError, match=r"^Wf must have shape \(n_a, n_a\+n_x\) = \(5, 8\), got \(5, 9\)"
    ):
        prnn.lstm_forward(x, a0, bad)
    bad = dict(
        p,
        Wi=_to(xp, np.zeros((5, 7))),
        Wf=_to(xp, np.zeros((5, 7))),
        Wc=_to(xp, np.zeros((5, 7))),
        Wo=_to(xp, np.zeros((5, 7))),
    )
    with pytest.raises(
        ValueError, match=r"^Wf must have shape \(n_a, n_a\+n_x\) = \(5, 8\), got \(5, 7\)"
    ):
        prnn.lstm_forward(x, a0, bad)
    with pytest.raises(
        ValueError, match=r"^bc must be 2-D with shape \(n_a, 1\), got shape \(5,\)"
    ):
        prnn.lstm_forward(x, a0, dict(p, bc=_to(xp, np.zeros((5,)))))


def test_wrong_rnn_shapes_name_the_argument(xp, rnn):
    x, a0, p, da = rnn
    with pytest.raises(
        ValueError, match=r"^Wax must have shape \(n_a, n_x\) = \(5, 3\), got \(5, 2\)"
    ):
        prnn.rnn_forward(x, a0, dict(p, Wax=_to(xp, np.zeros((5, 2)))))
    with pytest.raises(
        ValueError, match=r"^x must be 3-D with shape \(n_x, m, T_x\), got shape \(3, 4\)"
    ):
        prnn.rnn_forward(_to(xp, np.zeros((3, 4))), a0, p)
    with pytest.raises(ValueError, match=r"^xt must be 2-D"):
        prnn.rnn_cell_forward(x, a0, p)
    with pytest.raises(ValueError, match="at least one time step"):
        prnn.rnn_forward(_to(xp, np.zeros((3, 4, 0))), a0, p)
    _, _, caches = prnn.rnn_forward(x, a0, p)
    with pytest.raises(
        ValueError, match=r"^da must have shape \(n_a, m, T_x\) = \(5, 4, 6\), got \(5, 4, 5\)"
    ):
        prnn.rnn_backward(_to(xp, np.zeros((5, 4, 5))), caches)
    _, _, cache = prnn.rnn_cell_forward(_to(xp, np.zeros((3, 4))), a0, p)
    with pytest.raises(ValueError, match=r"^da_next must"):
        prnn.rnn_cell_backward(_to(xp, np.zeros((4, 5))), cache)


def test_backward_shapes_name_the_argument(xp, lstm):
    x, a0, c0, p, da = lstm
    *_, caches = prnn.lstm_forward(x, a0, p)
    with pytest.raises(ValueError, match=r"^da must be 3-D"):
        prnn.lstm_backward(_to(xp, np.zeros((5, 4))), caches)
    *_, cache = prnn.lstm_cell_forward(_to(xp, np.zeros((3, 4))), a0, c0, p)
    with pytest.raises(ValueError, match=r"^dc_next must have shape \(n_a, m\) = \(5, 4\)"):
        prnn.lstm_cell_backward(a0, _to(xp, np.zeros((5, 2))), cache)


def test_softmax_axis_out_of_range(xp):
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        prnn.softmax(_to(xp, np.zeros((2, 3))), axis=2)


# -- keys, caches, non-arrays ---------------------------------------------------


def test_missing_parameter_key_names_the_key(xp, lstm):
    x, a0, c0, p, _ = lstm
    bad = {k: v for k, v in p.items() if k != "Wo"}
    with pytest.raises(KeyError, match="'Wo'") as info:
        prnn.lstm_forward(x, a0, bad)
    assert isinstance(info.value, ValueError)  # MissingParameterError is both
    assert "expected keys: Wf, bf, Wi" in str(info.value)
    with pytest.raises(prnn.MissingParameterError, match="'Waa'"):
        prnn.rnn_cell_forward(x[:, :, 0], a0, {"Wax": p["Wf"]})


def test_not_an_array_names_the_argument(xp, rnn):
    x, a0, p, _ = rnn
    with pytest.raises(TypeError, match="^a0 must be an array"):
        prnn.rnn_forward(x, [[0.0] * 4] * 5, p)
    with pytest.raises(TypeError, match="parameters must be a dict"):
        prnn.rnn_forward(x, a0, [p])
    with pytest.raises(TypeError, match=r"caches must be the \(caches, x\) pair"):
        prnn.rnn_backward(x, "not caches")
    with pytest.raises(TypeError, match="cache must be the"):
        prnn.lstm_cell_backward(a0, a0, (a0, a0))


# -- dtypes ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_integer_and_boolean_arrays_are_refused(xp, rnn, dtype):
    x, a0, p, _ = rnn
    bad = xp.asarray(np.ones((5, 4)), dtype=dtype)
    with pytest.raises(TypeError, match="^a0 must have a real floating dtype"):
        prnn.rnn_forward(x, bad, p)
    with pytest.raises(TypeError, match="^z must have a real floating dtype"):
        prnn.sigmoid(bad)
    with pytest.raises(TypeError, match="^Waa must have a real floating dtype"):
        prnn.rnn_forward(x, a0, dict(p, Waa=xp.asarray(np.ones((5, 5)), dtype=dtype)))


def test_mixed_float_dtypes_are_refused_naming_both(xp, lstm):
    """The documented rule: no promotion; every array must have x's dtype."""
    x, a0, c0, p, _ = lstm
    a0_32 = xp.asarray(to_numpy(a0), dtype="float32")
    with pytest.raises(TypeError, match="^a0 has dtype .*float32.* but x has dtype .*float64"):
        prnn.lstm_forward(x, a0_32, p)
    p32 = _to(xp, {k: to_numpy(v) for k, v in p.items()}, "float32")
    with pytest.raises(TypeError, match="^Wf has dtype .*float32.* but x has dtype .*float64"):
        prnn.lstm_forward(x, a0, p32)
    # all float32 is fine and stays float32
    a, *_ = prnn.lstm_forward(xp.asarray(to_numpy(x), dtype="float32"), a0_32, p32)
    assert a.dtype == xp.float32


# -- backends and devices ----------------------------------------------------------


def test_two_backends_are_refused_naming_both(xp, rnn):
    x, a0, p, _ = rnn
    other = "numpy" if xp.backend != "numpy" else "array_api_strict"
    pytest.importorskip(other)
    a0_other = prnn.to_backend(a0, other)
    with pytest.raises(TypeError, match=f"^x is a {xp.backend} array but a0 is a {other} array"):
        prnn.rnn_forward(x, a0_other, p)


def test_two_devices_are_refused_naming_both():
    """array_api_strict has several CPU 'devices', so this runs without a GPU."""
    xps = pytest.importorskip("array_api_strict")
    x, a0, p, _ = ref.rnn_problem(np.random.default_rng(2))
    on = {k: xps.asarray(v) for k, v in p.items()}
    x_d1 = xps.asarray(x, device=xps.Device("device1"))
    with pytest.raises(
        ValueError, match=r"^x is on device .*device1.* but a0 is on device .*CPU_DEVICE"
    ):
        prnn.rnn_forward(x_d1, xps.asarray(a0), on)


# -- nothing modified ---------------------------------------------------------------


def test_inputs_are_not_modified_by_success_or_failure(xp, lstm):
    x, a0, c0, p, da = lstm
    before = {k: to_numpy(v).copy() for k, v in {"x": x, "a0": a0, "da": da, **p}.items()}
    p_keys = list(p)
    *_, caches = prnn.lstm_forward(x, a0, p, c0=c0)
    prnn.lstm_backward(da, caches)
    with pytest.raises(ValueError):
        prnn.lstm_forward(x, a0, dict(p, Wy=_to(xp, np.zeros((2, 4)))))
    assert list(p) == p_keys
    after = {k: to_numpy(v) for k, v in {"x": x, "a0": a0, "da": da, **p}.items()}
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_error_is_raised_before_any_work(monkeypatch):
    """Validation precedes arithmetic: a bad last argument fails before any product."""
    import portable_rnn._core.sequence as sequence_mod

    calls = []
    monkeypatch.setattr(sequence_mod, "forward", lambda *a: calls.append(a))
    x, a0, c0, p, _ = ref.lstm_problem(np.random.default_rng(3))
    with pytest.raises(ValueError, match="^c0 must"):
        prnn.lstm_forward(x, a0, copy.deepcopy(p), c0=np.zeros((5, 1)))
    assert calls == []
    assert re.escape  # keep the import honest for readers grepping for regexes


def test_output_layer_is_optional_both_or_neither(xp, lstm, rnn):
    x, a0, c0, p, da = lstm
    bare = {k: v for k, v in p.items() if k not in ("Wy", "by")}
    a, y, c, caches = prnn.lstm_forward(x, a0, bare)
    a_full, y_full, _, _ = prnn.lstm_forward(x, a0, p)
    assert y is None and y_full is not None
    np.testing.assert_array_equal(to_numpy(a), to_numpy(a_full))
    prnn.lstm_backward(da, caches)  # the backward needs no output layer either
    with pytest.raises(prnn.MissingParameterError, match="'by'.*Wy and by together or neither"):
        prnn.lstm_forward(x, a0, dict(bare, Wy=p["Wy"]))
    xr, a0r, pr, _ = rnn
    a_next, yt, _ = prnn.rnn_cell_forward(
        xr[:, :, 0], a0r, {k: v for k, v in pr.items() if k not in ("Wya", "by")}
    )
    assert yt is None and tuple(a_next.shape) == (5, 4)
