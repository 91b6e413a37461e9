"""The layer objects `portable_rnn.LSTM`, `GRU` and `RNN`.

On every backend: the forward and backward equal `multilayer_forward` / `multilayer_backward`
run on NumPy float64 with the data transposed to the column dialect (every cell, one and two
directions, both layouts, with and without lengths, unbatched); `.to` round trips; save and
load round trip. On NumPy: central differences, defensive loading of bad files, bad input
named. On JAX: ``jax.jit`` and ``jax.grad`` of functions of a layer. With PyTorch:
`from_torch` matches the module to 1e-10 in float64.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn.testing import Backend, assert_close, check_gradients, to_numpy

CLASSES = {"lstm": prnn.LSTM, "gru": prnn.GRU, "rnn": prnn.RNN}
N_X, H, L, N, T = 3, 4, 2, 3, 5


def _layer(cell, xp=None, *, bidirectional=False, batch_first=False, num_layers=L, seed=0):
    where = {"backend": "numpy"} if xp is None else {"backend": xp.backend, "device": xp.device}
    return CLASSES[cell](
        N_X,
        H,
        num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        seed=seed,
        dtype="float64",
        **where,
    )


def _seq_in(arr, batch_first):
    """A NumPy sequence in a layer's layout -> the column dialect (features, N, T)."""
    return arr.transpose(2, 0, 1) if batch_first else arr.transpose(2, 1, 0)


def _seq_out(arr, batch_first):
    """A column-dialect NumPy sequence (features, N, T) -> a layer's layout."""
    return arr.transpose(1, 2, 0) if batch_first else arr.transpose(2, 1, 0)


def _data(cell, bidirectional, batch_first, seed=0, n=N):
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    shape = (n, T, N_X) if batch_first else (T, n, N_X)
    x = rng.standard_normal(shape)
    states = [rng.standard_normal((L * D, n, H)) * 0.5 for _ in range(2 if cell == "lstm" else 1)]
    dout = rng.standard_normal((n, T, D * H) if batch_first else (T, n, D * H))
    dstates = [rng.standard_normal((L * D, n, H)) for _ in states]
    return x, states, dout, dstates


def _reference(cell, layers, x, states, dout, dstates, *, bidirectional, batch_first, lengths):
    """`multilayer_forward` / `multilayer_backward` on NumPy float64, in the layer's layout."""
    c0 = states[1].transpose(0, 2, 1) if cell == "lstm" else None
    out, a_n, c_n, cache = prnn.multilayer_forward(
        _seq_in(x, batch_first),
        layers,
        cell=cell,
        bidirectional=bidirectional,
        a0=states[0].transpose(0, 2, 1),
        c0=c0,
        lengths=lengths,
    )
    g = prnn.multilayer_backward(
        _seq_in(dout, batch_first),
        cache,
        da_n=dstates[0].transpose(0, 2, 1),
        dc_n=dstates[1].transpose(0, 2, 1) if cell == "lstm" else None,
    )
    finals = [a_n] + ([c_n] if cell == "lstm" else [])
    dinits = [g["da0"]] + ([g["dc0"]] if cell == "lstm" else [])
    return {
        "out": _seq_out(out, batch_first),
        "state": [s.transpose(0, 2, 1) for s in finals],
        "dx": _seq_out(g["dx"], batch_first),
        "dstate0": [s.transpose(0, 2, 1) for s in dinits],
        "grads": g["layers"],
    }


def _parts(state, cell):
    if cell == "lstm":
        assert isinstance(state, tuple) and len(state) == 2
        return list(state)
    assert not isinstance(state, tuple)
    return [state]


def _pack(parts, cell):
    return tuple(parts) if cell == "lstm" else parts[0]


# -- forward and backward on every backend --------------------------------------------------


@pytest.mark.parametrize("cell", sorted(CLASSES))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths", [None, [5, 2, 3]])
def test_layer_equals_the_stack_functions(xp, cell, bidirectional, batch_first, lengths):
    layer = _layer(cell, xp, bidirectional=bidirectional, batch_first=batch_first)
    host = [{k: to_numpy(v) for k, v in p.items()} for p in layer.layers]
    x, states, dout, dstates = _data(cell, bidirectional, batch_first)
    ref = _reference(
        cell,
        host,
        x,
        states,
        dout,
        dstates,
        bidirectional=bidirectional,
        batch_first=batch_first,
        lengths=lengths,
    )
    state = _pack([xp.asarray(s) for s in states], cell)
    dstate = _pack([xp.asarray(s) for s in dstates], cell)
    out, final = layer(xp.asarray(x), state, lengths=lengths)
    out2, final2, cache = layer.forward(xp.asarray(x), state, lengths=lengths)
    dx, dstate0, grads = layer.backward(xp.asarray(dout), cache, dstate=dstate)

    dev = xp.array_device
    for actual in (out, out2):
        assert_close(actual, ref["out"], xp=xp, device=dev)
    for got in (final, final2):
        for actual, desired in zip(_parts(got, cell), ref["state"], strict=True):
            assert_close(actual, desired, xp=xp, device=dev)
    assert_close(dx, ref["dx"], xp=xp, device=dev)
    for actual, desired in zip(_parts(dstate0, cell), ref["dstate0"], strict=True):
        assert_close(actual, desired, xp=xp, device=dev)
    assert len(grads) == len(layer.layers)
    for g, g_ref, p in zip(grads, ref["grads"], layer.layers, strict=True):
        assert sorted(g) == sorted(f"d{k}" for k in p)
        for key in g:
            assert_close(g[key], g_ref[key], xp=xp, device=dev)


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_float32_and_no_state(xp, cell, record_diff):
    layer = _layer(cell, xp, bidirectional=True).to(dtype="float32")
    assert layer.dtype == "float32" and layer.backend == xp.backend
    host = [{k: to_numpy(v).astype(np.float64) for k, v in p.items()} for p in layer.layers]
    x, states, dout, _ = _data(cell, True, False, seed=3)
    x = x.astype(np.float32).astype(np.float64)
    zeros = [np.zeros_like(s) for s in states]
    ref = _reference(
        cell, host, x, zeros, dout, zeros, bidirectional=True, batch_first=False, lengths=None
    )
    out, state, cache = layer.forward(xp.asarray(x, dtype="float32"))
    dx, dstate0, grads = layer.backward(xp.asarray(dout, dtype="float32"), cache)
    pairs = [(out, ref["out"]), (dx, ref["dx"])]
    pairs += list(zip(_parts(state, cell), ref["state"], strict=True))
    pairs += list(zip(_parts(dstate0, cell), ref["dstate0"], strict=True))
    pairs += [(g[k], r[k]) for g, r in zip(grads, ref["grads"], strict=True) for k in g]
    for actual, desired in pairs:
        assert_close(actual, desired, xp=xp, dtype="float32", device=xp.array_device)
        record_diff(xp.name, "float32", actual, desired)


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_unbatched_equals_a_batch_of_one(xp, cell):
    layer = _layer(cell, xp, bidirectional=True)
    x, states, dout, dstates = _data(cell, True, False, seed=4, n=1)
    state = _pack([xp.asarray(s) for s in states], cell)
    dstate = _pack([xp.asarray(s) for s in dstates], cell)
    out_b, final_b, cache_b = layer.forward(xp.asarray(x), state)
    dx_b, d0_b, g_b = layer.backward(xp.asarray(dout), cache_b, dstate=dstate)

    state1 = _pack([xp.asarray(s[:, 0, :]) for s in states], cell)
    dstate1 = _pack([xp.asarray(s[:, 0, :]) for s in dstates], cell)
    out, final, cache = layer.forward(xp.asarray(x[:, 0, :]), state1)
    dx, d0, g = layer.backward(xp.asarray(dout[:, 0, :]), cache, dstate=dstate1)
    assert_close(out, to_numpy(out_b)[:, 0, :], xp=xp)
    assert_close(dx, to_numpy(dx_b)[:, 0, :], xp=xp)
    for pairs in ((final, final_b), (d0, d0_b)):
        for actual, batch in zip(_parts(pairs[0], cell), _parts(pairs[1], cell), strict=True):
            assert_close(actual, to_numpy(batch)[:, 0, :], xp=xp)
    for gu, gb in zip(g, g_b, strict=True):
        for key in gu:
            assert_close(gu[key], to_numpy(gb[key]), xp=xp)


def test_lstm_state_gradients_may_be_given_apart(xp):
    layer = _layer("lstm", xp)
    x, states, dout, dstates = _data("lstm", False, False, seed=5)
    _, _, cache = layer.forward(xp.asarray(x))
    both = layer.backward(xp.asarray(dout), cache, dstate=(xp.asarray(dstates[0]), None))
    host = [{k: to_numpy(v) for k, v in p.items()} for p in layer.layers]
    zeros = [np.zeros_like(s) for s in states]
    ref = _reference(
        "lstm",
        host,
        x,
        zeros,
        dout,
        [dstates[0], np.zeros_like(dstates[1])],
        bidirectional=False,
        batch_first=False,
        lengths=None,
    )
    assert_close(both[0], ref["dx"], xp=xp)
    assert_close(both[1][1], ref["dstate0"][1], xp=xp)


# -- gradients against central differences ------------------------------------------------


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_backward_vs_central_differences(cell):
    layer = CLASSES[cell](
        2, 3, 2, bidirectional=True, batch_first=True, seed=1, backend="numpy", dtype="float64"
    )
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 2))  # (N, T, input_size)
    n_state = 2 if cell == "lstm" else 1
    states = [rng.standard_normal((4, 2, 3)) * 0.5 for _ in range(n_state)]
    w_out = rng.standard_normal((2, 3, 6))
    w_state = [rng.standard_normal((4, 2, 3)) for _ in range(n_state)]

    def run(v):
        probe = layer.to()
        probe.layers = [
            {key: v.get(f"{k}:{key}", p[key]) for key in p} for k, p in enumerate(layer.layers)
        ]
        state = _pack([v[f"s{i}"] for i in range(n_state)], cell)
        return probe(v["x"], state)

    def loss(v):
        out, state = run(v)
        parts = _parts(state, cell)
        return np.sum(w_out * out) + sum(np.sum(w * s) for w, s in zip(w_state, parts, strict=True))

    inputs = {"x": x, **{f"s{i}": s for i, s in enumerate(states)}}
    inputs.update({f"{k}:{key}": val for k, p in enumerate(layer.layers) for key, val in p.items()})
    _, _, cache = layer.forward(x, _pack(states, cell))
    dx, dstate0, grads = layer.backward(w_out, cache, dstate=_pack(w_state, cell))
    analytic = {"x": dx, **{f"s{i}": d for i, d in enumerate(_parts(dstate0, cell))}}
    analytic.update({f"{k}:{key[1:]}": val for k, g in enumerate(grads) for key, val in g.items()})
    check_gradients(loss, inputs, analytic)


# -- properties, repr, construction ---------------------------------------------------------


def test_properties_and_repr():
    lstm = prnn.LSTM(8, 16, num_layers=2, bidirectional=True, backend="numpy", dtype="float64")
    assert repr(lstm) == (
        "LSTM(8, 16, num_layers=2, bidirectional=True, backend='numpy', dtype='float64')"
    )
    gru = prnn.GRU(5, 7, batch_first=True, backend="numpy", dtype="float32")
    assert repr(gru) == "GRU(5, 7, batch_first=True, backend='numpy', dtype='float32')"
    assert (lstm.cell, gru.cell, prnn.RNN(1, 1, backend="numpy").cell) == ("lstm", "gru", "rnn")
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (8, 16, 2)
    assert lstm.bidirectional and not lstm.batch_first and gru.batch_first
    assert (lstm.backend, lstm.device, lstm.dtype) == ("numpy", "cpu", "float64")
    assert len(lstm.layers) == 4 and len(gru.layers) == 1
    for cell, layer in (("lstm", lstm), ("gru", gru)):
        expected = prnn.init_multilayer_params(
            cell,
            layer.input_size,
            layer.hidden_size,
            num_layers=layer.num_layers,
            bidirectional=layer.bidirectional,
            backend="numpy",
        )
        assert layer.num_parameters() == sum(v.size for p in expected for v in p.values())


def test_num_parameters_is_pytorchs_less_the_second_bias():
    torch = pytest.importorskip("torch")
    for cell, cls in CLASSES.items():
        module = getattr(torch.nn, cls.__name__)(3, 5, num_layers=2, bidirectional=True)
        layer = cls.from_torch(module)
        torch_count = sum(p.numel() for p in module.parameters())
        blocks = {"lstm": 4, "gru": 2, "rnn": 1}[cell]  # bias_hh rows folded into bias_ih
        assert layer.num_parameters() == torch_count - 2 * 2 * blocks * 5


def test_seed_gives_the_same_layers_as_init_multilayer_params(xp):
    layer = _layer("gru", xp, bidirectional=True, seed=3)
    expected = prnn.init_multilayer_params(
        "gru", N_X, H, num_layers=L, bidirectional=True, seed=3, backend="numpy"
    )
    for got, want in zip(layer.layers, expected, strict=True):
        assert list(got) == list(want)
        for key in got:
            assert_close(got[key], want[key], xp=xp, device=xp.array_device, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, 4), {}, ValueError, "^input_size must be a positive integer, got 0$"),
        ((3, 2.5), {}, ValueError, "^hidden_size must be a positive integer, got 2.5$"),
        ((3, True), {}, ValueError, "^hidden_size must be a positive integer, got True$"),
        ((3, 4, 0), {}, ValueError, "^num_layers must be a positive integer, got 0$"),
        ((3, 4), {"bidirectional": "yes"}, TypeError, "^bidirectional must be True or False"),
        ((3, 4), {"batch_first": 1}, TypeError, "^batch_first must be True or False"),
        ((3, 4), {"seed": -1}, ValueError, "^seed must be"),
        ((3, 4), {"dtype": "int32"}, ValueError, "dtype"),
        ((3, 4), {"backend": "tensorflow"}, ValueError, "backend"),
    ],
)
def test_bad_construction_is_one_line_naming_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        prnn.LSTM(*args, **{"backend": "numpy", **kwargs})
    assert "\n" not in str(info.value)


def test_the_base_class_is_not_made_directly():
    with pytest.raises(TypeError, match="RNNBase is the base class"):
        prnn.RNNBase(3, 4)


# -- bad input to a call --------------------------------------------------------------------


def test_bad_input_names_the_argument(xp):
    lstm = _layer("lstm", xp, bidirectional=True)  # L * D = 4
    gru = _layer("gru", xp, batch_first=True)
    x = xp.asarray(np.ones((T, N, N_X)))
    h = xp.asarray(np.zeros((4, N, H)))
    cases = [
        (lambda: lstm(xp.asarray(np.ones((T, N, 2)))), ValueError, r"^x must have shape \(T, N"),
        (
            lambda: gru(xp.asarray(np.ones((N, T, 2)))),
            ValueError,
            r"^x must have shape \(N, T, input_size\) with input_size = 3, got \(3, 5, 2\)",
        ),
        (lambda: lstm(xp.asarray(np.ones((1, T, N, N_X)))), ValueError, "^x must have shape"),
        (lambda: lstm(xp.asarray(np.ones((0, N, N_X)))), ValueError, "^x must have at least one"),
        (lambda: lstm(None), TypeError, "^x must be an array"),
        (lambda: lstm(x, h), TypeError, r"^state of an LSTM must be a tuple \(h, c\)"),
        (lambda: lstm(x, (h,)), TypeError, "^state of an LSTM must be a tuple"),
        (lambda: lstm(x, (h, None)), TypeError, r"^state\[1\] must be an array"),
        (
            lambda: lstm(x, (h, xp.asarray(np.zeros((2, N, H))))),
            ValueError,
            r"^state\[1\] must have shape \(num_layers \* num_directions, N, hidden_size\) = "
            r"\(4, 3, 4\), got \(2, 3, 4\)",
        ),
        (lambda: gru(xp.asarray(np.ones((N, T, N_X))), (h,)), TypeError, "^state of a GRU is one"),
        (
            lambda: lstm(xp.asarray(np.ones((T, N_X))), lengths=[T]),
            ValueError,
            "^lengths needs batched x",
        ),
        (lambda: lstm(x, lengths=[T, T]), ValueError, "lengths"),
        (
            lambda: lstm(xp.asarray(np.ones((T, N, N_X)), dtype="float32")),
            TypeError,
            "^x has dtype float32 but this LSTM's parameters are float64",
        ),
    ]
    if xp.backend != "numpy":
        cases.append(
            (
                lambda: lstm(np.ones((T, N, N_X))),
                TypeError,
                f"^x is a numpy array but this LSTM's parameters are {xp.backend} arrays",
            )
        )
    for call, error, match in cases:
        with pytest.raises(error, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_gru_state_of_the_wrong_size_is_named():
    gru = _layer("gru", batch_first=True)  # L * D = 2
    with pytest.raises(
        ValueError, match=r"^state must have shape .* = \(2, 3, 4\), got \(1, 3, 4\)"
    ):
        gru(np.ones((N, T, N_X)), np.zeros((1, N, H)))


def test_bad_backward_input_names_the_argument(xp):
    lstm = _layer("lstm", xp)
    x, _, dout, _ = _data("lstm", False, False)
    out, _, cache = lstm.forward(xp.asarray(x))
    other = _layer("lstm", xp, bidirectional=True)
    _, _, other_cache = other.forward(xp.asarray(x))
    gru = _layer("gru", xp)
    _, _, gru_cache = gru.forward(xp.asarray(x))
    dh = xp.asarray(np.zeros((L, N, H)))
    cases = [
        (lambda: lstm.backward(xp.asarray(dout), None), TypeError, "^cache must be the cache"),
        (
            lambda: lstm.backward(xp.asarray(dout), (1, 2)),
            TypeError,
            "^cache must be the cache returned by LSTM.forward",
        ),
        (
            lambda: lstm.backward(xp.asarray(dout), other_cache),
            ValueError,
            r"bidirectional=True.*not of this LSTM",
        ),
        (
            lambda: lstm.backward(xp.asarray(dout), gru_cache),
            ValueError,
            r"^cache comes from the forward of a GRU, not of this LSTM\(3, 4",
        ),
        (
            lambda: lstm.backward(xp.asarray(dout[:, :2]), cache),
            ValueError,
            r"^dout must have shape \(T, N, num_directions \* hidden_size\) = \(5, 3, 4\)",
        ),
        (lambda: lstm.backward(xp.asarray(dout), cache, dstate=dh), TypeError, "^dstate of an"),
        (
            lambda: lstm.backward(
                xp.asarray(dout), cache, dstate=(xp.asarray(np.zeros((1, N, H))), None)
            ),
            ValueError,
            r"^dstate\[0\] must have shape",
        ),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match) as info:
            call()
        assert "\n" not in str(info.value)


# -- moving -------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_to_round_trip(xp, cell):
    layer = _layer(cell, bidirectional=True, batch_first=True)
    before = [{k: v.copy() for k, v in p.items()} for p in layer.layers]
    moved = layer.to(xp.backend, xp.device)
    assert type(moved) is type(layer) and moved is not layer
    assert moved.backend == xp.backend and moved.dtype == "float64"
    assert (moved.input_size, moved.hidden_size, moved.num_layers) == (N_X, H, L)
    assert moved.bidirectional and moved.batch_first
    for p in moved.layers:
        for v in p.values():
            assert_close(v, to_numpy(v), xp=xp, device=xp.array_device)  # backend and device
    back = moved.to("numpy")
    assert back.backend == "numpy" and layer.backend == "numpy"
    for got, want, orig in zip(back.layers, before, layer.layers, strict=True):
        assert list(got) == list(want)
        for key in got:
            np.testing.assert_array_equal(got[key], want[key])
            np.testing.assert_array_equal(orig[key], want[key])  # the original untouched
    keeps = moved.to(dtype="float32")  # the backend and device kept
    assert (keeps.backend, keeps.dtype) == (xp.backend, "float32")
    for got, want in zip(keeps.layers, before, strict=True):
        for key in got:
            assert_close(got[key], want[key], xp=xp, dtype="float32", device=xp.array_device)


# -- save and load --------------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_save_load_round_trip(xp, cell, tmp_path):
    layer = _layer(cell, xp, bidirectional=True, batch_first=True)
    path = layer.save(tmp_path / "layer.npz")
    assert path == tmp_path / "layer.npz" and not list(tmp_path.glob(".*.tmp"))
    loaded = prnn.RNNBase.load(path, backend=xp.backend, device=xp.device)
    assert type(loaded) is type(layer)
    again = type(layer).load(path, backend=xp.backend, device=xp.device)
    for other in (loaded, again):
        assert repr(other) == repr(layer)
        for got, want in zip(other.layers, layer.layers, strict=True):
            assert list(got) == list(want)
            for key in got:
                assert_close(
                    got[key], to_numpy(want[key]), xp=xp, device=xp.array_device, rtol=0, atol=0
                )
    x = xp.asarray(_data(cell, True, True)[0])
    assert_close(loaded(x)[0], to_numpy(layer(x)[0]), xp=xp, rtol=0, atol=0)
    as32 = prnn.RNNBase.load(path, backend="numpy", dtype="float32")
    assert (as32.backend, as32.dtype) == ("numpy", "float32")


def test_load_refuses_a_file_of_another_cell(tmp_path):
    path = _layer("gru").save(tmp_path / "gru.npz")
    with pytest.raises(ValueError, match=r"holds a GRU, not a LSTM; load it with portable_rnn.GRU"):
        prnn.LSTM.load(path)
    assert isinstance(prnn.GRU.load(path, backend="numpy"), prnn.GRU)


def _bits(arr) -> bytes:
    """The bytes of an array (a torch bfloat16 tensor's as int16)."""
    if type(arr).__module__.startswith("torch"):
        import torch

        return arr.detach().cpu().view(torch.int16).numpy().tobytes()
    return np.asarray(arr).tobytes()


@pytest.mark.parametrize(
    ("backend", "dtype", "stored"),
    [("torch", "bfloat16", "float32"), ("numpy", "float16", "float16")],
)
def test_half_layers_round_trip_bit_exact(backend, dtype, stored, tmp_path):
    if backend == "torch":
        pytest.importorskip("torch")
    layer = prnn.GRU(N_X, H, 2, bidirectional=True, seed=3, backend=backend, dtype=dtype)
    path = layer.save(tmp_path / "half.npz")
    with np.load(path) as f:
        assert json.loads(bytes(f["header"]).decode())["dtype"] == dtype
        assert {f[k].dtype.name for k in f.files if k != "header"} == {stored}
    loaded = prnn.RNNBase.load(path, backend=backend)
    assert (loaded.backend, loaded.dtype, repr(loaded)) == (backend, dtype, repr(layer))
    for got, want in zip(loaded.layers, layer.layers, strict=True):
        assert list(got) == list(want)
        for key in got:
            assert got[key].dtype == want[key].dtype
            assert _bits(got[key]) == _bits(want[key]), key
    if dtype == "bfloat16":  # NumPy has no bfloat16: refused unless a dtype is given
        message = r"holds a bfloat16 layer, which backend 'numpy' does not have .*float16\)"
        with pytest.raises(ValueError, match=message) as info:
            prnn.RNNBase.load(path, backend="numpy")
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        as32 = prnn.RNNBase.load(path, backend="numpy", dtype="float32")
        for got, want in zip(as32.layers, layer.layers, strict=True):
            for key in got:
                assert got[key].tobytes() == to_numpy(want[key]).astype(np.float32).tobytes()


def _write(path, header, arrays):
    payload = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays}
    with open(path, "wb") as fh:
        np.savez(fh, **payload)


def _good(tmp_path):
    layer = _layer("lstm", bidirectional=True)
    path = layer.save(tmp_path / "good.npz")
    with np.load(path) as f:
        header = json.loads(bytes(f["header"]).decode())
        arrays = {k: f[k] for k in f.files if k != "header"}
    return header, arrays


def _bad_files(tmp_path):
    """name -> (path, expected message), each a file one change away from a good one."""
    header, arrays = _good(tmp_path)
    cases = {}

    def case(name, match, *, header_change=None, arrays_change=None, raw=None):
        path = tmp_path / f"{name}.npz"
        if raw is not None:
            path.write_bytes(raw)
        else:
            h = dict(header)
            a = dict(arrays)
            if header_change:
                header_change(h)
            if arrays_change:
                arrays_change(a)
            _write(path, h, a)
        cases[name] = (path, match)

    good = (tmp_path / "good.npz").read_bytes()
    case("truncated", "is truncated or not a portable_rnn layer file", raw=good[: len(good) // 2])
    case("not_a_zip", "is truncated or not a portable_rnn layer file", raw=b"hello" * 100)
    case("version", "header version is 2", header_change=lambda h: h.update(version=2))
    case("format", "header format is 'x'", header_change=lambda h: h.update(format="x"))
    case(
        "cell", "header cell is 'transformer'", header_change=lambda h: h.update(cell="transformer")
    )
    case(
        "num_layers",
        "header num_layers must be a positive integer, got 0",
        header_change=lambda h: h.update(num_layers=0),
    )
    case(
        "hidden_size",
        "header hidden_size must be a positive integer, got '4'",
        header_change=lambda h: h.update(hidden_size="4"),
    )
    case(
        "flag",
        "header bidirectional must be true or false",
        header_change=lambda h: h.update(bidirectional=1),
    )
    case("dtype", "header dtype is 'int8'", header_change=lambda h: h.update(dtype="int8"))
    case(
        "half_header",
        r"layers.0.Wf has dtype 'float64'; allowed: float16",
        header_change=lambda h: h.update(dtype="float16"),
    )
    case("missing_field", "header lacks batch_first", header_change=lambda h: h.pop("batch_first"))
    case(
        "extra_field", "header has unknown fields extra", header_change=lambda h: h.update(extra=1)
    )
    case(
        "sizes_disagree",
        "has shape .*, its header implies",
        header_change=lambda h: h.update(hidden_size=5),
    )
    case(
        "more_layers",
        "holds 32 arrays; its header implies 64",
        header_change=lambda h: h.update(num_layers=4),
    )

    def nan(a):
        a["layers.1.Wf"] = a["layers.1.Wf"].copy()
        a["layers.1.Wf"][0, 0] = np.nan

    case("nan", r"layers.1.Wf holds NaN or infinite values", arrays_change=nan)
    case(
        "inf",
        r"layers.0.bo holds NaN or infinite values",
        arrays_change=lambda a: a.update({"layers.0.bo": np.full_like(a["layers.0.bo"], np.inf)}),
    )
    case(
        "pickled",
        r"layers.2.Wi holds Python objects",
        arrays_change=lambda a: a.update({"layers.2.Wi": np.array([{"x": 1}], dtype=object)}),
    )
    case(
        "int_array",
        r"layers.0.Wf has dtype 'int64'; allowed: float64",
        arrays_change=lambda a: a.update({"layers.0.Wf": a["layers.0.Wf"].astype(np.int64)}),
    )
    case(
        "float32_array",
        r"layers.0.Wf has dtype 'float32'; allowed: float64",
        arrays_change=lambda a: a.update({"layers.0.Wf": a["layers.0.Wf"].astype(np.float32)}),
    )
    case(
        "wrong_shape",
        r"layers.3.bc has shape \(4, 2\), its header implies \(4, 1\)",
        arrays_change=lambda a: a.update({"layers.3.bc": np.zeros((4, 2))}),
    )
    case(
        "renamed",
        "holds arrays its header does not: layers.0.Wq",
        arrays_change=lambda a: a.update({"layers.0.Wq": a.pop("layers.0.Wf")}),
    )
    case(
        "extra_array",
        "holds 33 arrays; its header implies 32",
        arrays_change=lambda a: a.update({"extra": np.zeros(1)}),
    )
    return cases


def test_bad_files_are_refused_naming_path_and_field(tmp_path):
    for name, (path, match) in _bad_files(tmp_path).items():
        with pytest.raises(ValueError, match=match) as info:
            prnn.RNNBase.load(path)
        message = str(info.value)
        assert "\n" not in message, name
        assert str(path) in message, name


def test_bad_headers_are_refused(tmp_path):
    header, arrays = _good(tmp_path)
    cases = {
        "not_json": (b"{not json", "header is not JSON"),
        "a_list": (b"[1, 2]", "header is a JSON list, not a JSON object"),
    }
    for name, (raw, match) in cases.items():
        path = tmp_path / f"{name}.npz"
        with open(path, "wb") as fh:
            np.savez(fh, header=np.frombuffer(raw, np.uint8), **arrays)
        with pytest.raises(ValueError, match=match):
            prnn.LSTM.load(path)
    path = tmp_path / "str_header.npz"
    with open(path, "wb") as fh:
        np.savez(fh, header=np.array(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match="header must be a uint8 array"):
        prnn.LSTM.load(path)
    path = tmp_path / "no_header.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match=r"not a portable_rnn layer file \(no header\)"):
        prnn.LSTM.load(path)
    path = tmp_path / "not_npy.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="readme.txt"):
        prnn.LSTM.load(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prnn.LSTM.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="is not a regular file"):
        prnn.LSTM.load(tmp_path)


def test_the_good_file_of_the_bad_file_tests_loads(tmp_path):
    """The bad files are one change away from this one, which loads."""
    header, arrays = _good(tmp_path)
    path = tmp_path / "rewritten.npz"
    _write(path, header, arrays)
    layer = prnn.RNNBase.load(path, backend="numpy")
    assert repr(layer) == repr(_layer("lstm", bidirectional=True))


# -- JAX: pytrees, jit, grad ----------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_jax_jit_and_grad_over_the_layer(cell):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    jx = Backend("jax", "jax", "cpu")

    def close(actual, desired):
        assert_close(actual, desired, xp=jx)

    layer = CLASSES[cell](N_X, H, L, bidirectional=True, seed=0, backend="jax", dtype="float64")
    leaves, treedef = jax.tree_util.tree_flatten(layer)
    assert len(leaves) == sum(len(p) for p in layer.layers)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(rebuilt) is type(layer) and repr(rebuilt) == repr(layer)

    x, _, dout, _ = _data(cell, True, False, seed=8)
    X, DOUT = jnp.asarray(x), jnp.asarray(dout)
    eager_out, eager_state = layer(X)
    out, state = jax.jit(lambda lay, x: lay(x))(layer, X)
    close(out, np.asarray(eager_out))
    for a, b in zip(_parts(state, cell), _parts(eager_state, cell), strict=True):
        close(a, np.asarray(b))

    # with a state and lengths, traced: one compilation serves every set of lengths
    _, states, _, _ = _data(cell, True, False, seed=10)
    S = _pack([jnp.asarray(st) for st in states], cell)
    run = jax.jit(lambda lay, x, s, n: lay(x, s, lengths=n))
    for lengths in ([5, 2, 3], [1, 5, 4]):
        n = jnp.asarray(lengths)
        want_out, want_state = layer(X, S, lengths=n)
        got_out, got_state = run(layer, X, S, n)
        close(got_out, np.asarray(want_out))
        for a, b in zip(_parts(got_state, cell), _parts(want_state, cell), strict=True):
            close(a, np.asarray(b))

    def loss(lay, x):
        return jnp.sum(lay(x)[0] * DOUT)

    g_layer, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(layer, X)
    assert type(g_layer) is type(layer)
    _, _, cache = layer.forward(X)
    dx, _, grads = layer.backward(DOUT, cache)
    close(g_x, np.asarray(dx))
    for got, want in zip(g_layer.layers, grads, strict=True):
        for key in got:
            close(got[key], np.asarray(want[f"d{key}"]))

    # forward and backward jitted apart: the cache crosses the jit boundary
    fwd = jax.jit(lambda lay, x: lay.forward(x))
    bwd = jax.jit(lambda lay, d, c: lay.backward(d, c))
    _, _, jcache = fwd(layer, X)
    jdx, _, jgrads = bwd(layer, DOUT, jcache)
    close(jdx, np.asarray(dx))
    for got, want in zip(jgrads, grads, strict=True):
        for key in got:
            close(got[key], np.asarray(want[key]))

    # an SGD step is a tree_map over the layer
    stepped = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, layer, g_layer)
    assert type(stepped) is type(layer)
    first = next(iter(layer.layers[0]))
    close(
        stepped.layers[0][first],
        np.asarray(layer.layers[0][first]) - 0.1 * np.asarray(g_layer.layers[0][first]),
    )


# -- PyTorch --------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", sorted(CLASSES))
@pytest.mark.parametrize("batch_first", [False, True])
def test_from_torch_matches_the_module(cell, batch_first):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tx = Backend("torch", "torch", "cpu")
    cls = CLASSES[cell]
    module = getattr(torch.nn, cls.__name__)(
        N_X, H, num_layers=L, bidirectional=True, batch_first=batch_first, dtype=torch.float64
    )
    layer = prnn.RNNBase.from_torch(module)
    assert type(layer) is cls and layer.backend == "torch" and layer.dtype == "float64"
    assert (layer.num_layers, layer.bidirectional, layer.batch_first) == (L, True, batch_first)
    x, states, _, _ = _data(cell, True, batch_first, seed=9)
    X = torch.from_numpy(x)
    state = _pack([torch.from_numpy(s) for s in states], cell)
    with torch.no_grad():
        want_out, want_state = module(X, state)
    out, got_state = layer(X, state)
    assert_close(out, want_out.numpy(), xp=tx, rtol=1e-10, atol=1e-10)
    for a, b in zip(_parts(got_state, cell), _parts(want_state, cell), strict=True):
        assert_close(a, b.numpy(), xp=tx, rtol=1e-10, atol=1e-10)

    on_numpy = cls.from_torch(module, backend="numpy")
    assert on_numpy.backend == "numpy"
    out_np, _ = on_numpy(x, _pack(states, cell))
    assert_close(out_np, want_out.numpy(), rtol=1e-10, atol=1e-10)

    back = layer.to_torch()
    assert type(back) is type(module) and back.batch_first == batch_first
    with torch.no_grad():
        again, _ = back(X, state)
    assert_close(again, want_out.numpy(), xp=tx, rtol=1e-10, atol=1e-10)


def test_from_torch_refuses_the_wrong_module():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^module is a torch.nn.GRU, not a torch.nn.LSTM"):
        prnn.LSTM.from_torch(torch.nn.GRU(2, 3))
    with pytest.raises(TypeError, match=r"^module must be a torch.nn.LSTM, GRU or RNN"):
        prnn.RNNBase.from_torch(torch.nn.LSTMCell(2, 3))
    with pytest.raises(TypeError, match="^module must be"):
        prnn.GRU.from_torch(torch.nn.Linear(2, 3))


# -- cell variants and dropout --------------------------------------------------------------

#: (cell, constructor options, the keywords multilayer_forward takes for them)
VARIANTS = {
    "relu": ("rnn", {"nonlinearity": "relu"}, {"nonlinearity": "relu"}),
    "reset_before": ("gru", {"reset_after": False}, {"reset_after": False}),
    "proj": ("lstm", {"proj_size": 2}, {}),
    "onnx_lstm": (
        "lstm",
        {"peepholes": True, "clip": 0.9, "input_forget": True},
        {"clip": 0.9, "input_forget": True},
    ),
    "proj_peepholes": ("lstm", {"proj_size": 3, "peepholes": True}, {}),
}


def _variant_layer(name, xp=None, **kw):
    cell, options, _ = VARIANTS[name]
    where = {"backend": "numpy"} if xp is None else {"backend": xp.backend, "device": xp.device}
    return CLASSES[cell](N_X, H, L, seed=2, dtype="float64", **where, **options, **kw)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_layer_equals_the_stack_functions(xp, name, bidirectional):
    cell, options, keywords = VARIANTS[name]
    layer = _variant_layer(name, xp, bidirectional=bidirectional)
    D = 2 if bidirectional else 1
    n_h = options.get("proj_size", H)
    for key, value in options.items():
        assert getattr(layer, key) == value, key
    extra = (["Wp"] if "proj_size" in options else []) + (
        ["Pi", "Pf", "Po"] if options.get("peepholes") else []
    )
    for k, p in enumerate(layer.layers):
        assert list(p) == [*prnn.interop._spec.cell_spec(cell).layer_keys, *extra]
        n_in = N_X if k < D else D * n_h
        if cell == "lstm":
            assert tuple(p["Wf"].shape) == (H, n_h + n_in)
        if "Wp" in p:
            assert tuple(p["Wp"].shape) == (n_h, H)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, N, N_X))
    states = [rng.standard_normal((L * D, N, n_h))]
    if cell == "lstm":
        states.append(rng.standard_normal((L * D, N, H)))
    dout = rng.standard_normal((T, N, D * n_h))
    on = [xp.asarray(s) for s in states]
    out, state, cache = layer.forward(xp.asarray(x), _pack(on, cell))
    dx, dstate0, grads = layer.backward(xp.asarray(dout), cache)

    host = [{k: to_numpy(v) for k, v in p.items()} for p in layer.layers]
    want, a_n, c_n, wcache = prnn.multilayer_forward(
        x.transpose(2, 1, 0),
        host,
        cell=cell,
        bidirectional=bidirectional,
        a0=states[0].transpose(0, 2, 1),
        c0=states[1].transpose(0, 2, 1) if cell == "lstm" else None,
        **keywords,
    )
    g = prnn.multilayer_backward(dout.transpose(2, 1, 0), wcache)
    kw = {"xp": xp, "device": xp.array_device, "rtol": 1e-12, "atol": 1e-12}
    assert_close(out, want.transpose(2, 1, 0), **kw)
    finals = [a_n] + ([c_n] if cell == "lstm" else [])
    for got, ref in zip(_parts(state, cell), finals, strict=True):
        assert_close(got, ref.transpose(0, 2, 1), **kw)
    assert_close(dx, g["dx"].transpose(2, 1, 0), **kw)
    dinits = [g["da0"]] + ([g["dc0"]] if cell == "lstm" else [])
    for got, ref in zip(_parts(dstate0, cell), dinits, strict=True):
        assert_close(got, ref.transpose(0, 2, 1), **kw)
    for got, ref in zip(grads, g["layers"], strict=True):
        assert list(got) == list(ref)
        for key in got:
            assert_close(got[key], ref[key], err_msg=key, **kw)


def test_variant_options_change_the_result():
    """Each option is passed on: the same weights without it give other outputs."""
    x = np.random.default_rng(0).standard_normal((T, N, N_X))
    for name in ("relu", "reset_before", "onnx_lstm"):
        layer = _variant_layer(name)
        cell = VARIANTS[name][0]
        plain = prnn.RNNBase._assemble(cell, layer.layers, N_X, H, L, False, False)
        if name == "onnx_lstm":  # the classic cell without the peepholes' keys
            keys = prnn.interop._spec.cell_spec(cell).layer_keys
            plain.layers = [{k: p[k] for k in keys} for p in layer.layers]
        assert not np.allclose(layer(x)[0], plain(x)[0]), name


def test_variant_init_is_uniform_and_seeded():
    lstm = prnn.LSTM(N_X, 16, 2, proj_size=5, peepholes=True, seed=1, backend="numpy")
    for p in lstm.layers:
        for key, value in p.items():
            assert np.abs(value).max() <= 16**-0.5, key
        assert np.abs(p["Wp"]).max() > 0.5 * 16**-0.5 and np.abs(p["Pf"]).max() > 0
    again = prnn.LSTM(N_X, 16, 2, proj_size=5, peepholes=True, seed=1, backend="numpy")
    other = prnn.LSTM(N_X, 16, 2, proj_size=5, peepholes=True, seed=2, backend="numpy")
    for a, b, c in zip(lstm.layers, again.layers, other.layers, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)
        assert not np.array_equal(a["Wp"], c["Wp"])
    # peepholes alone: the gate weights and biases are init_multilayer_params' numbers
    peep = prnn.LSTM(N_X, H, L, peepholes=True, seed=3, backend="numpy")
    plain = prnn.init_multilayer_params("lstm", N_X, H, num_layers=L, seed=3, backend="numpy")
    for got, want in zip(peep.layers, plain, strict=True):
        assert all(np.array_equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: prnn.GRU(3, 4, proj_size=2), ValueError, "^proj_size=2 is the LSTM's option"),
        (lambda: prnn.RNN(3, 4, proj_size=1), ValueError, "cell 'rnn' has no proj_size"),
        (lambda: prnn.LSTM(3, 4, reset_after=False), ValueError, "cell 'lstm' has no reset_after"),
        (lambda: prnn.LSTM(3, 4, nonlinearity="relu"), ValueError, "has no nonlinearity"),
        (lambda: prnn.GRU(3, 4, peepholes=True), ValueError, "cell 'gru' has no peepholes"),
        (lambda: prnn.RNN(3, 4, clip=1.0), ValueError, "cell 'rnn' has no clip"),
        (lambda: prnn.GRU(3, 4, input_forget=True), ValueError, "has no input_forget"),
        (lambda: prnn.LSTM(3, 4, proj_size=4), ValueError, r"proj_size must be .*\[1, 4\)"),
        (lambda: prnn.LSTM(3, 4, proj_size=-1), ValueError, "proj_size must be"),
        (lambda: prnn.LSTM(3, 4, proj_size=1.5), TypeError, "proj_size must be"),
        (lambda: prnn.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "nonlinearity must be"),
        (lambda: prnn.LSTM(3, 4, clip=0), ValueError, "clip must be"),
        (lambda: prnn.GRU(3, 4, dropout=1.0), ValueError, "dropout must be in"),
        (lambda: prnn.GRU(3, 4, dropout=-0.1), ValueError, "dropout must be in"),
        (lambda: prnn.GRU(3, 4, dropout="0.1"), TypeError, "dropout must be"),
    ],
)
def test_bad_options_are_named(make, error, match):
    with pytest.raises(error, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_dropout_in_training_needs_a_seed_and_eval_has_none(xp):
    layer = prnn.GRU(N_X, H, 3, dropout=0.5, seed=0, backend=xp.backend, device=xp.device)
    layer = layer.to(dtype="float64")
    assert layer.training and layer.dropout == 0.5
    x = np.random.default_rng(0).standard_normal((T, N, N_X))
    with pytest.raises(ValueError, match="dropout=0.5 and is in training mode: pass seed="):
        layer(xp.asarray(x))
    out, cache = layer.forward(xp.asarray(x), seed=7)[::2]
    host = [{k: to_numpy(v) for k, v in p.items()} for p in layer.layers]
    want, *_, wcache = prnn.multilayer_forward(
        x.transpose(2, 1, 0), host, cell="gru", dropout=0.5, seed=7
    )
    kw = {"xp": xp, "device": xp.array_device, "rtol": 1e-12, "atol": 1e-12}
    assert_close(out, want.transpose(2, 1, 0), **kw)
    dout = np.ones(want.shape).transpose(2, 1, 0)
    dx, _, _ = layer.backward(xp.asarray(dout), cache)
    g = prnn.multilayer_backward(dout.transpose(2, 1, 0), wcache)
    assert_close(dx, g["dx"].transpose(2, 1, 0), **kw)
    assert_close(layer(xp.asarray(x), seed=7)[0], to_numpy(out), xp=xp, rtol=0, atol=0)
    assert not np.allclose(to_numpy(layer(xp.asarray(x), seed=8)[0]), to_numpy(out))
    assert layer.eval() is layer and not layer.training
    plain, *_ = prnn.multilayer_forward(x.transpose(2, 1, 0), host, cell="gru")
    assert_close(layer(xp.asarray(x))[0], plain.transpose(2, 1, 0), **kw)  # no seed needed
    assert layer.train() is layer and layer.training
    with pytest.raises(TypeError, match="mode must be True or False"):
        layer.train("no")


def test_variant_repr_and_moves_keep_the_options():
    layer = prnn.LSTM(3, 4, proj_size=2, clip=1.5, dropout=0.1, backend="numpy", dtype="float64")
    assert repr(layer) == (
        "LSTM(3, 4, proj_size=2, clip=1.5, dropout=0.1, backend='numpy', dtype='float64')"
    )
    layer.eval()
    moved = layer.to(dtype="float32")
    assert repr(moved) == repr(layer).replace("float64", "float32") and not moved.training
    assert prnn.RNN(3, 4, nonlinearity="relu", backend="numpy").nonlinearity == "relu"
    gru = prnn.GRU(3, 4, backend="numpy")
    assert (gru.nonlinearity, gru.reset_after, gru.proj_size, gru.peepholes) == (
        "tanh",
        True,
        0,
        False,
    )
    assert (gru.clip, gru.input_forget, gru.dropout) == (None, False, 0.0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_save_load_round_trip(name, tmp_path):
    layer = _variant_layer(name, bidirectional=True, dropout=0.25)
    path = layer.save(tmp_path / "variant.npz")
    with np.load(path) as f:
        header = json.loads(bytes(f["header"]).decode())
    cell, options, _ = VARIANTS[name]
    assert {k: header[k] for k in options} == options and header["dropout"] == 0.25
    loaded = prnn.RNNBase.load(path, backend="numpy")
    assert type(loaded) is type(layer) and repr(loaded) == repr(layer)
    for got, want in zip(loaded.layers, layer.layers, strict=True):
        assert list(got) == list(want)
        assert all(np.array_equal(got[k], want[k]) for k in got)
    x = np.random.default_rng(1).standard_normal((T, N, N_X))
    assert np.array_equal(loaded(x, seed=3)[0], layer(x, seed=3)[0])


def test_classic_header_has_no_option_fields(tmp_path):
    path = _layer("lstm").save(tmp_path / "classic.npz")
    with np.load(path) as f:
        header = json.loads(bytes(f["header"]).decode())
    assert set(header) == {
        "format",
        "version",
        "cell",
        "input_size",
        "hidden_size",
        "num_layers",
        "bidirectional",
        "batch_first",
        "dtype",
    }


def test_bad_option_headers_are_refused(tmp_path):
    header, arrays = _good(tmp_path)  # a bidirectional two-layer LSTM, hidden_size 4
    cases = {
        "gru_option": ({"reset_after": False}, "header reset_after=False is the GRU's option"),
        "proj_too_big": ({"proj_size": 4}, r"header proj_size must be .*\[1, 4\)"),
        "proj_bool": ({"proj_size": True}, "header proj_size must be a number"),
        "relu_str": ({"nonlinearity": 1}, "header nonlinearity must be a string"),
        "peep_int": ({"peepholes": 1}, "header peepholes must be true or false"),
        "dropout": ({"dropout": 1.5}, "header dropout must be in"),
        "clip": ({"clip": -1.0}, "header clip must be a positive"),
        "proj_arrays": ({"proj_size": 2}, "holds 32 arrays; its header implies 36"),
        "peep_arrays": ({"peepholes": True}, "holds 32 arrays; its header implies 44"),
        "unknown": ({"proj": 2}, "header has unknown fields proj"),
    }
    for name, (change, match) in cases.items():
        path = tmp_path / f"{name}.npz"
        _write(path, {**header, **change}, arrays)
        with pytest.raises(ValueError, match=match) as info:
            prnn.RNNBase.load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name


@pytest.mark.parametrize("name", ["relu", "proj"])
def test_variant_from_torch_and_back(name):
    torch = pytest.importorskip("torch")
    tx = Backend("torch", "torch", "cpu")
    cell, options, _ = VARIANTS[name]
    torch.manual_seed(0)
    module = getattr(torch.nn, cell.upper())(
        N_X, H, L, bidirectional=True, dropout=0.3, dtype=torch.float64, **options
    )
    module.eval()
    layer = prnn.RNNBase.from_torch(module)
    assert not layer.training and layer.dropout == 0.3
    assert {k: getattr(layer, k) for k in options} == options
    n_h = options.get("proj_size", H)
    x = torch.randn(T, N, N_X, dtype=torch.float64)
    with torch.no_grad():
        want, _ = module(x)
    out, _ = layer(x)
    assert tuple(out.shape) == (T, N, 2 * n_h)
    assert_close(out, want.numpy(), xp=tx, rtol=1e-10, atol=1e-10)
    back = layer.to_torch()
    assert type(back) is type(module) and not back.training and back.dropout == 0.3
    for key, value in module.state_dict().items():
        if key.startswith("weight"):
            assert torch.equal(back.state_dict()[key], value), key
    with torch.no_grad():
        assert_close(back(x)[0], want.numpy(), xp=tx, rtol=1e-10, atol=1e-10)
    module.train()
    assert prnn.RNNBase.from_torch(module).training


def test_variant_to_torch_refuses_what_torch_lacks():
    pytest.importorskip("torch")
    for layer, match in (
        (prnn.LSTM(3, 4, peepholes=True, backend="numpy"), r"peepholes \('Pi', 'Pf', 'Po'\)"),
        (prnn.GRU(3, 4, reset_after=False, backend="numpy"), "reset_after=False"),
        (prnn.LSTM(3, 4, clip=2.0, backend="numpy"), "clip"),
        (prnn.LSTM(3, 4, input_forget=True, backend="numpy"), "input_forget=True"),
    ):
        with pytest.raises(ValueError, match=match):
            layer.to_torch()


def test_variant_layer_is_a_jax_pytree():
    jax = pytest.importorskip("jax")
    layer = prnn.LSTM(N_X, H, L, proj_size=2, dropout=0.2, backend="jax", dtype="float64")
    layer.eval()
    leaves, treedef = jax.tree_util.tree_flatten(layer)
    assert len(leaves) == L * 9
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert repr(rebuilt) == repr(layer) and not rebuilt.training
    x = jax.numpy.ones((T, N, N_X))

    def loss(lay):
        return (lay(x)[0] ** 2).sum()

    grads = jax.jit(jax.grad(loss))(layer)
    assert type(grads) is prnn.LSTM and tuple(grads.layers[1]["Wp"].shape) == (2, H)
