"""Multi-layer / bidirectional stacks and the rows-dialect GRU on every backend,
gradients against central differences, bad input. (PyTorch agreement: test_interop.py.)"""

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn.testing import assert_close, check_gradients, to_numpy


def _problem(cell, seed=0, n_x=3, n_a=4, m=2, T=5, L=2, bidirectional=True):
    rng = np.random.default_rng(seed)
    layers = prnn.init_multilayer_params(
        cell, n_x, n_a, num_layers=L, bidirectional=bidirectional, seed=seed
    )
    D = 2 if bidirectional else 1
    x = rng.standard_normal((n_x, m, T))
    a0 = rng.standard_normal((L * D, n_a, m)) * 0.5
    dout = rng.standard_normal((D * n_a, m, T))
    da_n = rng.standard_normal((L * D, n_a, m))
    return layers, x, a0, dout, da_n


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_multilayer_every_backend(xp, cell, dtype, record_diff):
    layers, x, a0, dout, da_n = _problem(cell)
    r = [{k: v.astype(dtype).astype(np.float64) for k, v in p.items()} for p in layers]
    rx, ra0, rd, rdn = (v.astype(dtype).astype(np.float64) for v in (x, a0, dout, da_n))
    out64, an64, cn64, cache64 = prnn.multilayer_forward(
        rx, r, cell=cell, bidirectional=True, a0=ra0
    )
    g64 = prnn.multilayer_backward(rd, cache64, da_n=rdn)

    def arr(v):
        return xp.asarray(v, dtype=dtype)

    out, an, cn, cache = prnn.multilayer_forward(
        arr(x),
        [{k: arr(v) for k, v in p.items()} for p in layers],
        cell=cell,
        bidirectional=True,
        a0=arr(a0),
    )
    g = prnn.multilayer_backward(arr(dout), cache, da_n=arr(da_n))
    pairs = [(out, out64), (an, an64), (g["dx"], g64["dx"]), (g["da0"], g64["da0"])]
    if cell == "lstm":
        pairs += [(cn, cn64), (g["dc0"], g64["dc0"])]
    else:
        assert cn is None and "dc0" not in g
    for k, layer in enumerate(g["layers"]):
        pairs += [(layer[key], g64["layers"][k][key]) for key in layer]
    for actual, desired in pairs:
        assert_close(actual, desired, xp=xp, dtype=dtype, device=xp.array_device)
        record_diff(xp.name, dtype, actual, desired)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_multilayer_vs_finite_differences(cell):
    layers, x, a0, dout, da_n = _problem(cell, seed=1, n_x=2, n_a=3, m=2, T=3)

    def run(v):
        ls = [
            {k[len(f"{i}:") :]: val for k, val in v.items() if k.startswith(f"{i}:")}
            for i in range(len(layers))
        ]
        return prnn.multilayer_forward(v["x"], ls, cell=cell, bidirectional=True, a0=v["a0"])

    def loss(v):
        out, a_n, _, _ = run(v)
        return np.sum(dout * out) + np.sum(da_n * a_n)

    inputs = {"x": x, "a0": a0}
    for i, p in enumerate(layers):
        inputs.update({f"{i}:{k}": val for k, val in p.items()})
    g = prnn.multilayer_backward(dout, run(inputs)[3], da_n=da_n)
    grads = {"x": g["dx"], "a0": g["da0"]}
    for i, layer in enumerate(g["layers"]):
        grads.update({f"{i}:{k[1:]}": val for k, val in layer.items()})
    check_gradients(loss, inputs, grads)


def test_one_unidirectional_layer_equals_the_single_layer_function(xp):
    layers, x, a0, dout, _ = _problem("lstm", seed=2, L=1, bidirectional=False)
    X, A0 = xp.asarray(x), xp.asarray(a0)
    P = {k: xp.asarray(v) for k, v in layers[0].items()}
    out, a_n, c_n, cache = prnn.multilayer_forward(X, [P], cell="lstm", a0=A0)
    a, _, c, caches = prnn.lstm_forward(X, A0[0, :, :], P)
    assert_close(out, to_numpy(a), xp=xp, rtol=0, atol=0)
    assert_close(c_n[0, :, :], to_numpy(c)[:, :, -1], xp=xp, rtol=0, atol=0)
    g = prnn.multilayer_backward(xp.asarray(dout), cache)
    g1 = prnn.lstm_backward(xp.asarray(dout), caches)
    assert_close(g["dx"], to_numpy(g1["dx"]), xp=xp, rtol=0, atol=0)


def test_multilayer_bad_input_names_the_argument(xp):
    layers, x, a0, dout, _ = _problem("gru")
    X = xp.asarray(x)
    L = [{k: xp.asarray(v) for k, v in p.items()} for p in layers]
    bad = [dict(p) for p in L]
    bad[2]["Wz"] = xp.asarray(np.zeros((4, 7)))
    with pytest.raises(
        ValueError,
        match=r"^layers\[2\]\['Wz'\] must have shape \(n_a, n_a\+n_x\) = \(4, 12\), got \(4, 7\)",
    ):
        prnn.multilayer_forward(X, bad, cell="gru", bidirectional=True)
    with pytest.raises(ValueError, match="unknown cell 'transformer'; valid cells: rnn, lstm, gru"):
        prnn.multilayer_forward(X, L, cell="transformer")
    with pytest.raises(ValueError, match="num_layers \\* 2 dicts"):
        prnn.multilayer_forward(X, L[:3], cell="gru", bidirectional=True)
    with pytest.raises(ValueError, match="c0 is for the LSTM's cell state"):
        prnn.multilayer_forward(X, L, cell="gru", bidirectional=True, c0=xp.asarray(a0))
    with pytest.raises(ValueError, match=r"^a0 must have shape \(L\*D, n_a, m\) = \(4, 4, 2\)"):
        prnn.multilayer_forward(X, L, cell="gru", bidirectional=True, a0=xp.asarray(a0[:2]))
    with pytest.raises(KeyError, match="'bhn'"):
        prnn.multilayer_forward(
            X,
            [{k: v for k, v in p.items() if k != "bhn"} for p in L],
            cell="gru",
            bidirectional=True,
        )
    _, _, _, cache = prnn.multilayer_forward(X, L, cell="gru", bidirectional=True)
    with pytest.raises(ValueError, match=r"^dout must have shape \(D\*n_a, m, T_x\) = \(8, 2, 5\)"):
        prnn.multilayer_backward(xp.asarray(dout[:4]), cache)
    with pytest.raises(ValueError, match="dc_n is for the LSTM's cell state"):
        prnn.multilayer_backward(xp.asarray(dout), cache, dc_n=xp.asarray(a0))


# -- GRU in the rows dialect ---------------------------------------------------------------


def _gru_rows(seed):
    rng = np.random.default_rng(seed)
    N, T, D, H = 3, 4, 5, 2
    return {
        "x": rng.standard_normal((N, T, D)),
        "h0": rng.standard_normal((N, H)),
        "Wx": rng.standard_normal((D, 3 * H)) * 0.5,
        "Wh": rng.standard_normal((H, 3 * H)) * 0.5,
        "b": rng.standard_normal(3 * H),
        "bhn": rng.standard_normal(H),
    }, rng.standard_normal((N, T, H))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rows_gru_equals_the_column_gru(xp, dtype):
    v, dh = _gru_rows(3)
    r = {k: a.astype(dtype).astype(np.float64) for k, a in v.items()}
    H = r["Wh"].shape[0]
    col = {
        "Wr": np.concatenate([r["Wh"][:, :H].T, r["Wx"][:, :H].T], axis=1),
        "Wz": np.concatenate([r["Wh"][:, H : 2 * H].T, r["Wx"][:, H : 2 * H].T], axis=1),
        "Wn": np.concatenate([r["Wh"][:, 2 * H :].T, r["Wx"][:, 2 * H :].T], axis=1),
        "br": r["b"][:H, None],
        "bz": r["b"][H : 2 * H, None],
        "bn": r["b"][2 * H :, None],
        "bhn": r["bhn"][:, None],
    }
    a, _, caches = prnn.gru_forward(np.transpose(r["x"], (2, 0, 1)), r["h0"].T, col)
    want = prnn.gru_backward(np.transpose(dh.astype(dtype).astype(np.float64), (2, 0, 1)), caches)
    h, cache = rnn_layers.gru_forward(
        *[xp.asarray(v[k], dtype=dtype) for k in ("x", "h0", "Wx", "Wh", "b", "bhn")]
    )
    kw = {"xp": xp, "dtype": dtype, "device": xp.array_device}
    assert_close(h, np.transpose(a, (1, 2, 0)), **kw)
    dx, dh0, dWx, dWh, db, dbhn = rnn_layers.gru_backward(xp.asarray(dh, dtype=dtype), cache)
    assert_close(dx, np.transpose(want["dx"], (1, 2, 0)), **kw)
    assert_close(dh0, want["da0"].T, **kw)
    assert_close(dbhn, want["dbhn"][:, 0], **kw)
    assert_close(db, np.concatenate([want["dbr"], want["dbz"], want["dbn"]])[:, 0], **kw)
    dW = np.concatenate([want["dWr"], want["dWz"], want["dWn"]], axis=0)
    assert_close(dWh, dW[:, :H].T, **kw)
    assert_close(dWx, dW[:, H:].T, **kw)


def test_rows_gru_vs_finite_differences():
    v, dh = _gru_rows(4)
    _, cache = rnn_layers.gru_forward(**v)
    grads = dict(
        zip(["x", "h0", "Wx", "Wh", "b", "bhn"], rnn_layers.gru_backward(dh, cache), strict=True)
    )
    check_gradients(lambda u: np.sum(dh * rnn_layers.gru_forward(**u)[0]), v, grads)
    step = {"x": v["x"][:, 0, :], "prev_h": v["h0"], **{k: v[k] for k in ("Wx", "Wh", "b", "bhn")}}
    _, cache = rnn_layers.gru_step_forward(**step)
    names = ["x", "prev_h", "Wx", "Wh", "b", "bhn"]
    grads = dict(zip(names, rnn_layers.gru_step_backward(dh[:, 0, :], cache), strict=True))
    check_gradients(
        lambda u: np.sum(dh[:, 0, :] * rnn_layers.gru_step_forward(**u)[0]), step, grads
    )
