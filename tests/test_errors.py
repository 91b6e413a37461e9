"""Bad input: a clear error naming the argument, before any work, nothing modified.

One test per rule of ``portable_rnn/_validate.py`` (and docs/conventions.md).
"""

import copy
import re

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn.testing import assert_close, to_numpy

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


@pytest.mark.forward
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


@pytest.mark.forward
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


@pytest.mark.forward
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


@pytest.mark.forward
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


@pytest.mark.forward
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


# -- None only where the signature says optional (issue 17) --------------------------------


def _word(name) -> str:
    """A regex finding ``name`` as a whole word of a message."""
    return rf"(?<![\w]){re.escape(str(name))}(?![\w])"


def test_the_table_covers_every_public_array_function(xp):
    from .public_calls import NO_ARRAYS, PUBLIC, calls

    covered = {c.name.split(" ")[0] for c in calls(xp)}
    assert covered | NO_ARRAYS == set(PUBLIC)


def test_none_is_refused_naming_it_unless_optional(xp):
    """Every argument and every parameter entry: ``None`` is a TypeError naming it, except
    where the signature makes it optional (then the call runs)."""
    from .public_calls import calls

    tried = 0
    for call in calls(xp):
        for path in call.paths():
            if isinstance(call.args[path[0]], bool):  # a flag (bidirectional): None is false
                continue
            args = call.replaced(path, None)
            if len(path) == 1 and path[0] in call.optional:
                call(args)  # allowed: runs
                continue
            option = isinstance(call.args[path[0]], str)  # cell="lstm": an unknown name
            with pytest.raises(ValueError if option else TypeError, match=_word(path[-1])) as info:
                call(args)
            assert "\n" not in str(info.value), (call.name, path)
            tried += 1
    assert tried > 200  # the table holds every argument of every function


def test_optional_none_means_zeros(xp):
    x, a0, c0, p, da = _lstm_inputs(xp)
    zeros = xp.zeros((5, 4), dtype=xp.float64)
    a, y, c, caches = prnn.lstm_forward(x, None, p, c0=None)
    a_z, y_z, c_z, caches_z = prnn.lstm_forward(x, zeros, p, c0=zeros)
    for got, want in ((a, a_z), (y, y_z), (c, c_z)):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    g, g_z = prnn.lstm_backward(da, caches), prnn.lstm_backward(da, caches_z)
    assert "dc0" not in g and "dc0" in g_z
    np.testing.assert_array_equal(to_numpy(g["dWf"]), to_numpy(g_z["dWf"]))
    layers = [_to(xp, d) for d in prnn.init_multilayer_params("lstm", 3, 5, seed=0)]
    out, a_n, c_n, cache = prnn.multilayer_forward(x, layers, cell="lstm", a0=None, c0=None)
    zeros3 = xp.zeros((1, 5, 4), dtype=xp.float64)
    out_z, *_ = prnn.multilayer_forward(x, layers, cell="lstm", a0=zeros3, c0=zeros3)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(out_z))
    prnn.multilayer_backward(da, cache, da_n=None, dc_n=None)


def _lstm_inputs(xp):
    x, a0, c0, p, da = ref.lstm_problem(np.random.default_rng(0))
    return _to(xp, x), _to(xp, a0), _to(xp, c0), _to(xp, p), _to(xp, da)


def test_output_layer_given_as_none_is_left_out_both_or_neither(xp, lstm, rnn):
    x, a0, c0, p, da = lstm
    a, y, c, _ = prnn.lstm_forward(x, a0, dict(p, Wy=None, by=None))
    assert y is None
    np.testing.assert_array_equal(to_numpy(a), to_numpy(prnn.lstm_forward(x, a0, p)[0]))
    with pytest.raises(TypeError, match=r"^parameters\['Wy'\] is None but by is given"):
        prnn.lstm_forward(x, a0, dict(p, Wy=None))
    with pytest.raises(TypeError, match=r"^parameters\['by'\] is None but Wya is given"):
        prnn.rnn_forward(rnn[0], rnn[1], dict(rnn[2], by=None))
    xt = x[:, :, 0]
    assert prnn.lstm_cell_forward(xt, a0, c0, dict(p, Wy=None, by=None))[2] is None


def test_none_sizes_and_parameters_name_them():
    for fn in (prnn.init_rnn_params, prnn.init_lstm_params, prnn.init_gru_params):
        with pytest.raises(ValueError, match="^n_a must be a positive integer, got None"):
            fn(3, None, 2)
    with pytest.raises(ValueError, match="^m must be a positive integer, got None"):
        prnn.init_state(3, None)
    with pytest.raises(TypeError, match="^parameters must be a dict of arrays, got None"):
        prnn.gru_forward(np.zeros((3, 4, 5)), None, None)
    with pytest.raises(TypeError, match=r"^layers must be a non-empty list"):
        prnn.multilayer_forward(np.zeros((3, 4, 5)), None, cell="gru")


def test_masked_arrays_are_refused_naming_them(lstm):
    x, a0, c0, p, da = (to_numpy(v) if not isinstance(v, dict) else v for v in lstm)
    p = {k: to_numpy(v) for k, v in p.items()}
    masked = np.ma.masked_array(x, mask=x > 0)
    with pytest.raises(TypeError, match=r"^x is a NumPy masked array, whose mask .* ignore"):
        prnn.lstm_forward(masked, a0, p)
    with pytest.raises(TypeError, match=r"^Wf is a NumPy masked array"):
        prnn.lstm_forward(x, a0, dict(p, Wf=np.ma.masked_array(p["Wf"])))
    labels = np.ma.masked_array(np.zeros((2, 3), dtype=np.int64), mask=np.eye(2, 3, dtype=bool))
    with pytest.raises(TypeError, match=r"^y is a NumPy masked array"):
        rnn_layers.temporal_softmax_loss(np.zeros((2, 3, 4)), labels, np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"^obj\['W'\] is a NumPy masked array, whose mask to_back"):
        prnn.to_backend({"W": np.ma.masked_array(p["Wf"])}, "numpy")


# -- every cache checked for its kind (issue 17) ---------------------------------------------


def _caches_of_every_forward(xp):
    """``name -> cache`` of every forward (the last thing each returns)."""
    from .public_calls import calls

    found = {}
    for call in calls(xp):
        if "_forward" in call.name or call.name in ("fwdProp", "fwdPropSeq"):
            found[call.name] = call()[-1]
    return found


def test_every_backward_refuses_every_other_cache_naming_it(xp):
    """Each backward given another forward's cache, None, or a tuple of the right length
    with other contents: a TypeError (or KeyError/ValueError) naming the cache argument."""
    from .public_calls import calls

    caches = _caches_of_every_forward(xp)
    checked = 0
    for call in calls(xp):
        if "_backward" not in call.name:
            continue
        arg = "cache" if "cache" in call.args else "caches"
        own = call.name.replace("_backward", "_forward").split(" ")[0]  # any stack's cache
        mine = call.args[arg]
        others = {k: v for k, v in caches.items() if k.split(" ")[0] != own}
        if isinstance(mine, tuple):
            others["a tuple of its length holding None"] = (None,) * len(mine)
            others["a tuple of its length holding strings"] = tuple("abcdefghij"[: len(mine)])
        others["None"] = None
        for what, other in others.items():
            with pytest.raises((TypeError, ValueError, KeyError), match=_word(arg)) as info:
                call(call.replaced((arg,), other))
            assert "\n" not in str(info.value), (call.name, what)
            checked += 1
    assert checked > 300  # every backward, every other cache


def test_column_backwards_name_the_forward_of_the_caches_they_got(xp, lstm, rnn):
    x, a0, c0, p, da = lstm
    *_, lstm_caches = prnn.lstm_forward(x, a0, p)
    _, _, rnn_caches = prnn.rnn_forward(*rnn[:3])
    wrong = "^caches must be the caches returned by {}, not by {}"
    with pytest.raises(TypeError, match=wrong.format("rnn_forward", "lstm_forward")):
        prnn.rnn_backward(da, lstm_caches)
    with pytest.raises(TypeError, match=wrong.format("lstm_forward", "rnn_forward")):
        prnn.lstm_backward(da, rnn_caches)
    with pytest.raises(TypeError, match=wrong.format("gru_forward", "lstm_forward")):
        prnn.gru_backward(da, lstm_caches)
    pair = r"^caches must be the \(caches, x\) pair returned by lstm_forward, got LSTMCellCache"
    with pytest.raises(TypeError, match=pair):
        prnn.lstm_backward(da, prnn.lstm_cell_forward(x[:, :, 0], a0, c0, p)[-1])
    with pytest.raises(TypeError, match=r"^cache must be the \(a_next, c_next"):
        prnn.lstm_cell_backward(a0, a0, lstm_caches)
    with pytest.raises(TypeError, match="^cache must be the cache returned by multilayer_forward"):
        prnn.multilayer_backward(da, lstm_caches)


def test_seed_style_cache_lists_are_checked_whole(xp, lstm):
    """A (list of cell caches, x) pair built step by step, as the notebooks do: every
    array of every step is checked, and named by its place."""
    x, a0, c0, p, da = lstm
    cells, a, c = [], a0, c0
    for t in range(x.shape[2]):
        a, c, _, cache = prnn.lstm_cell_forward(x[:, :, t], a, c, p)
        cells.append(cache)
    g = prnn.lstm_backward(da, (cells, x))
    want = prnn.lstm_backward(da, prnn.lstm_forward(x, a0, p, c0=c0)[-1])
    for k, v in g.items():
        assert_close(v, to_numpy(want[k]), xp=xp, err_msg=k)
    broken = list(cells)
    broken[3] = tuple(None if k == 4 else v for k, v in enumerate(broken[3]))
    with pytest.raises(TypeError, match=r"^caches\[0\]\[3\]\[4\] \(ft\) must be an array"):
        prnn.lstm_backward(da, (broken, x))
    with pytest.raises(TypeError, match=r"^caches\[1\] \(x\) must be an array .*, got None"):
        prnn.lstm_backward(da, (cells, None))
    with pytest.raises(ValueError, match=r"^caches\[0\] holds 5 steps but caches\[1\] \(x\) has"):
        prnn.lstm_backward(da, (cells[:5], x))
    with pytest.raises(ValueError, match=r"^da must have shape \(n_a, m, T_x\) = \(5, 4, 6\)"):
        prnn.lstm_backward(da[:, :, :5], (cells, x))


def test_backward_checks_its_gradient_against_the_caches(xp, lstm):
    x, a0, c0, p, da = lstm
    *_, caches = prnn.lstm_forward(x, a0, p)
    with pytest.raises(
        ValueError,
        match=r"^da must have shape \(n_a, m, T_x\) = \(5, 4, 6\), got \(5, 4, 5\) "
        r"\(n_a = 5 from caches; m = 4 from caches; T_x = 6 from caches\)",
    ):
        prnn.lstm_backward(da[:, :, :5], caches)
    da32 = xp.asarray(to_numpy(da), dtype="float32")
    with pytest.raises(
        TypeError, match=r"^caches \(the forward's x\) has dtype .*float64.* but da"
    ):
        prnn.lstm_backward(da32, caches)


# -- extreme and non-finite values (issue 17; docs/conventions.md) ---------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_is_finite_without_warnings_for_any_finite_scores(xp, dtype):
    big = {"float64": 1e308, "float32": 3e38}[dtype]
    columns = [[big, -big, 0.0], [-big, big, 0.0], [0.0, 0.0, -big]]
    z = xp.asarray(np.array(columns).T, dtype=dtype)
    want = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    for got in (prnn.softmax(z), prnn.sftmax(z), prnn.softmax(z.T, axis=1).T):
        np.testing.assert_array_equal(to_numpy(got), want.astype(dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_is_bit_for_bit_the_plain_formula_in_the_normal_range(xp, dtype):
    z = xp.asarray(np.random.default_rng(4).standard_normal((5, 6)) * 40, dtype=dtype)
    ns = xp.xp
    for axis in (0, 1):
        e = ns.exp(z - ns.max(z, axis=axis, keepdims=True))
        want = e / ns.sum(e, axis=axis, keepdims=True)
        np.testing.assert_array_equal(to_numpy(prnn.softmax(z, axis=axis)), to_numpy(want))


def _nan_at(xp, arr, index):
    host = np.array(to_numpy(arr), copy=True)
    host[index] = np.nan
    return xp.asarray(host)


def test_a_nan_in_one_example_stays_in_its_columns_forward_and_reaches_every_weight_gradient(
    xp, lstm
):
    """The documented propagation: a NaN in x[:, j, t] makes column j of a, c, y NaN from
    step t on and leaves every other number of the forward as it was; in the backward,
    example j's dx and da0 are NaN, the other examples' are unchanged, every entry of
    every weight gradient is NaN. No error and no warning."""
    x, a0, c0, p, da = lstm
    j, t = 1, 3
    clean = prnn.lstm_forward(x, a0, p, c0=c0)
    dirty = prnn.lstm_forward(_nan_at(xp, x, (0, j, t)), a0, p, c0=c0)
    others = [k for k in range(x.shape[1]) if k != j]
    for name, got, want in zip("ayc", dirty[:3], clean[:3], strict=True):
        got, want = to_numpy(got), to_numpy(want)
        assert np.isnan(got[:, j, t:]).all(), name
        np.testing.assert_array_equal(got[:, j, :t], want[:, j, :t], err_msg=name)
        np.testing.assert_array_equal(got[:, others, :], want[:, others, :], err_msg=name)
    g_clean, g = prnn.lstm_backward(da, clean[-1]), prnn.lstm_backward(da, dirty[-1])
    for name in ("dx", "da0", "dc0"):
        got, want = to_numpy(g[name]), to_numpy(g_clean[name])
        assert np.isnan(got[:, j, ...]).all(), name
        np.testing.assert_array_equal(got[:, others, ...], want[:, others, ...], err_msg=name)
    for name in ("dWf", "dWi", "dWc", "dWo", "dbf", "dbi", "dbc", "dbo"):
        assert np.isnan(to_numpy(g[name])).all(), name
    for start in (
        {"a0": _nan_at(xp, a0, (2, j)), "c0": c0},
        {"a0": a0, "c0": _nan_at(xp, c0, (0, j))},
    ):
        dirty = prnn.lstm_forward(x, start["a0"], p, c0=start["c0"])
        for name, got, want in zip("ayc", dirty[:3], clean[:3], strict=True):
            got, want = to_numpy(got), to_numpy(want)
            assert np.isnan(got[:, j, 0]).any(), name  # from the first step,
            assert np.isnan(got[:, j, 1:]).all(), name  # in every unit from the second
            np.testing.assert_array_equal(got[:, others, :], want[:, others, :], err_msg=name)


def test_an_inf_in_x_may_leave_the_forward_finite_but_gives_nan_weight_gradients(xp, lstm):
    """The documented case: the gates saturate, the forward stays finite, and the weight
    gradients' products meet 0 * Inf; other examples' dx stay finite. On NumPy (and
    array_api_strict, which computes with NumPy) NumPy warns; numpy.errstate silences it."""
    x, a0, c0, p, da = lstm
    host = np.array(to_numpy(x), copy=True)
    host[0, 1, 2] = np.inf
    with np.errstate(invalid="ignore"):
        a, y, c, caches = prnn.lstm_forward(xp.asarray(host), a0, p)
        g = prnn.lstm_backward(da, caches)
    assert np.isfinite(to_numpy(a)).all() and np.isfinite(to_numpy(y)).all()
    assert np.isnan(to_numpy(g["dWf"])).any()
    assert np.isfinite(to_numpy(g["dx"])[:, [0, 2, 3], :]).all()
    if xp.backend == "numpy":
        with pytest.warns(RuntimeWarning, match="invalid value"):
            prnn.lstm_backward(da, caches)


def test_softmax_of_an_infinite_score_is_nan_in_its_column_only(xp):
    z = xp.asarray(np.array([[np.inf, 1.0, -np.inf], [0.0, 2.0, 0.0]]))
    with np.errstate(invalid="ignore"):
        got = to_numpy(prnn.softmax(z))
    assert np.isnan(got[:, 0]).all()
    assert_close(got[:, 1], np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum())
    np.testing.assert_array_equal(got[:, 2], [0.0, 1.0])


def test_a_square_weight_that_is_not_square_is_named(xp):
    """A letter that repeats in one shape ("H H") must repeat its size: the wrong weight is
    named, not a later one that disagrees with the size it defined."""
    from .public_calls import rows_problem

    x, h0, _, w, _ = rows_problem(xp, "rnn")
    wide = xp.asarray(np.zeros((6, 7)))
    with pytest.raises(ValueError, match=r"^Wh must have shape \(H, H\) = \(6, 6\), got \(6, 7\)"):
        rnn_layers.rnn_forward(x, h0, w["Wx"], wide, w["b"])
    with pytest.raises(ValueError, match=r"^Wh must have shape \(H, H\) = \(6, 6\), got \(6, 7\)"):
        rnn_layers.rnn_step_forward(x[:, 0, :], h0, w["Wx"], wide, w["b"])
    lp = {f"W{s}{g}": np.zeros((3 if s == "x" else 5, 5)) for s in "xh" for g in "fico"}
    lp |= {f"b{g}": np.zeros((5, 1)) for g in "fico"} | {"Wy": np.zeros((5, 2))}
    lp = _to(xp, {**lp, "by": np.zeros((2, 1)), "Whf": np.zeros((5, 6))})
    X, h0 = _to(xp, np.zeros((3, 4, 2))), _to(xp, np.zeros((5, 4)))
    with pytest.raises(
        ValueError, match=r"^Whf must have shape \(n_h, n_h\) = \(5, 5\), got \(5, 6"
    ):
        prnn.LSTMfwdProp(X, h0, None, lp)
