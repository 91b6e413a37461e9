"""Cell variants in `multilayer_forward` / `multilayer_backward`: the relu RNN, the GRU with
the reset before the product, the LSTM's peepholes, projection, clip and coupled gates,
``reverse`` and seeded dropout between layers.

Forward against an independent NumPy float64 reference (plain loops, one matrix per gate,
each example run alone over its own length); backward against central differences and
``jax.vjp`` of the forward; every backend against NumPy float64; bad input named.
(Against PyTorch: tests/test_variants_torch.py; against ONNX Runtime: tests/test_onnx.py.)
"""

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn._backend.devices import dropout_masks
from portable_rnn.testing import assert_close, check_gradients, to_numpy

from .reference import sigmoid

#: name -> (cell, keyword options, optional parameter groups)
VARIANTS = {
    "rnn-relu": ("rnn", {"nonlinearity": "relu"}, ()),
    "gru-reset-before": ("gru", {"reset_after": False}, ()),
    "lstm-peepholes": ("lstm", {}, ("peepholes",)),
    "lstm-clip": ("lstm", {"clip": 0.6}, ()),
    "lstm-input-forget": ("lstm", {"input_forget": True}, ()),
    "lstm-proj": ("lstm", {}, ("proj",)),
    "lstm-all": ("lstm", {"clip": 0.9, "input_forget": True}, ("peepholes", "proj")),
}


def make_layers(cell, groups, n_x, n_a, L, D, rng, n_p=2, scale=0.7):
    """Random column-dialect dicts of a stack, with the optional keys of ``groups``."""
    n_h = n_p if "proj" in groups else n_a
    layers = []
    for k in range(L * D):
        n_in = n_x if k < D else D * n_h
        p = {}
        if cell == "rnn":
            p = {"Wax": (n_a, n_in), "Waa": (n_a, n_a), "ba": (n_a, 1)}
        else:
            gates = "fico" if cell == "lstm" else "rzn"
            for g in gates:
                p[f"W{g}"], p[f"b{g}"] = (n_a, n_h + n_in), (n_a, 1)
            if cell == "gru":
                p["bhn"] = (n_a, 1)
        if "peepholes" in groups:
            p.update(Pi=(n_a, 1), Pf=(n_a, 1), Po=(n_a, 1))
        if "proj" in groups:
            p["Wp"] = (n_p, n_a)
        layers.append({key: rng.standard_normal(shape) * scale for key, shape in p.items()})
    return layers


def _run_one(cell, opts, p, x, h, c):
    """One layer, one direction, one example: ``x`` (n_x, T) from ``h``, ``c`` (n, 1)."""
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t : t + 1]
        if cell == "rnn":
            z = p["Wax"] @ xt + p["Waa"] @ h + p["ba"]
            h = np.maximum(z, 0.0) if opts.get("nonlinearity") == "relu" else np.tanh(z)
        elif cell == "gru":
            n_a = h.shape[0]
            W = {g: (p[f"W{g}"][:, :n_a], p[f"W{g}"][:, n_a:]) for g in "rzn"}
            r = sigmoid(W["r"][0] @ h + W["r"][1] @ xt + p["br"])
            z = sigmoid(W["z"][0] @ h + W["z"][1] @ xt + p["bz"])
            if opts.get("reset_after", True):
                n = np.tanh(W["n"][1] @ xt + p["bn"] + r * (W["n"][0] @ h + p["bhn"]))
            else:
                n = np.tanh(W["n"][1] @ xt + p["bn"] + W["n"][0] @ (r * h) + p["bhn"])
            h = (1 - z) * n + z * h
        else:
            cat = np.concatenate([h, xt])
            clip = opts.get("clip")

            def pre(g, extra=0.0, cat=cat, clip=clip):
                v = p[f"W{g}"] @ cat + p[f"b{g}"] + extra
                return np.clip(v, -clip, clip) if clip is not None else v

            peep = "Pi" in p
            i = sigmoid(pre("i", p["Pi"] * c if peep else 0.0))
            f = (
                1 - i
                if opts.get("input_forget")
                else sigmoid(pre("f", p["Pf"] * c if peep else 0.0))
            )
            c = f * c + i * np.tanh(pre("c"))
            o = sigmoid(pre("o", p["Po"] * c if peep else 0.0))
            h = o * np.tanh(c)
            if "Wp" in p:
                h = p["Wp"] @ h
        outs.append(h)
    T = x.shape[1]
    out = np.concatenate(outs, axis=1) if T else np.zeros((h.shape[0], 0))
    return out, h, c


def reference(cell, opts, layers, x, D, lengths, reverse=False, masks=None):
    """The stack's ``out`` and ``a_n`` (and ``c_n``), each example over its own length."""
    n_x, m, T = x.shape
    L = len(layers) // D
    n_h = (
        layers[0]["Wp"].shape[0]
        if "Wp" in layers[0]
        else layers[0]["ba" if cell == "rnn" else "bz" if cell == "gru" else "bf"].shape[0]
    )
    n_c = layers[0]["bf"].shape[0] if cell == "lstm" else n_h
    out = np.zeros((D * n_h, m, T))
    a_n, c_n = np.zeros((L * D, n_h, m)), np.zeros((L * D, n_c, m))
    for j in range(m):
        n = T if lengths is None else int(lengths[j])
        inp = x[:, j, :n]
        for layer in range(L):
            if layer and masks is not None:
                inp = inp * masks[layer - 1][:, j, :n]
            ys = []
            for d in range(D):
                k = layer * D + d
                back = d == 1 or reverse
                xin = inp[:, ::-1] if back else inp
                h0, c0 = np.zeros((n_h, 1)), np.zeros((n_c, 1))
                y, h, c = _run_one(cell, opts, layers[k], xin, h0, c0)
                ys.append(y[:, ::-1] if back else y)
                a_n[k, :, j], c_n[k, :, j] = h[:, 0], c[:, 0]
            inp = np.concatenate(ys, axis=0)
        out[:, j, :n] = inp
    return out, a_n, c_n


def _problem(name, seed=0, n_x=3, n_a=4, m=3, T=5, L=2, D=2):
    cell, opts, groups = VARIANTS[name]
    rng = np.random.default_rng(seed)
    layers = make_layers(cell, groups, n_x, n_a, L, D, rng)
    x = rng.standard_normal((n_x, m, T))
    return cell, opts, layers, x


@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_forward_equals_the_reference(name, D, with_lengths):
    cell, opts, layers, x = _problem(name, D=D)
    lengths = np.array([5, 2, 0]) if with_lengths else None
    out, a_n, c_n, _ = prnn.multilayer_forward(
        x, layers, cell=cell, bidirectional=D == 2, lengths=lengths, **opts
    )
    r_out, r_an, r_cn = reference(cell, opts, layers, x, D, lengths)
    np.testing.assert_allclose(out, r_out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a_n, r_an, rtol=1e-12, atol=1e-13)
    if cell == "lstm":
        np.testing.assert_allclose(c_n, r_cn, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("name", ["rnn-relu", "gru-reset-before", "lstm-all", "lstm-proj"])
def test_reverse_runs_every_layer_backwards(name, with_lengths):
    cell, opts, layers, x = _problem(name, D=1, seed=3)
    lengths = np.array([5, 3, 1]) if with_lengths else None
    out, a_n, _, _ = prnn.multilayer_forward(
        x, layers, cell=cell, lengths=lengths, reverse=True, **opts
    )
    r_out, r_an, _ = reference(cell, opts, layers, x, 1, lengths, reverse=True)
    np.testing.assert_allclose(out, r_out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a_n, r_an, rtol=1e-12, atol=1e-13)
    if not with_lengths:  # = the forward run of the flipped sequence, flipped back
        flip, _, _, _ = prnn.multilayer_forward(x[:, :, ::-1].copy(), layers, cell=cell, **opts)
        np.testing.assert_allclose(out, flip[:, :, ::-1], rtol=1e-13, atol=1e-14)


def _flat(layers, x, a0=None, c0=None):
    inputs = {"x": x}
    if a0 is not None:
        inputs["a0"] = a0
    if c0 is not None:
        inputs["c0"] = c0
    for i, p in enumerate(layers):
        inputs.update({f"{i}:{k}": v for k, v in p.items()})
    return inputs


def _unflat(v, n):
    return [
        {k.split(":", 1)[1]: val for k, val in v.items() if k.startswith(f"{i}:")} for i in range(n)
    ]


def _grads(g):
    grads = {"x": g["dx"], "a0": g["da0"]}
    if "dc0" in g:
        grads["c0"] = g["dc0"]
    for i, layer in enumerate(g["layers"]):
        grads.update({f"{i}:{k[1:]}": val for k, val in layer.items()})
    return grads


def _gradient_case(name, D, reverse, lengths, dropout=0.0, seed=None):
    cell, opts, layers, x = _problem(name, seed=5, n_x=2, n_a=3, m=2, T=3, D=D)
    rng = np.random.default_rng(6)
    n_h = layers[0]["Wp"].shape[0] if "Wp" in layers[0] else 3
    a0 = rng.standard_normal((2 * D, n_h, 2)) * 0.5
    c0 = rng.standard_normal((2 * D, 3, 2)) * 0.5 if cell == "lstm" else None
    dout = rng.standard_normal((D * n_h, 2, 3))
    da_n = rng.standard_normal((2 * D, n_h, 2))
    dc_n = rng.standard_normal((2 * D, 3, 2)) if cell == "lstm" else None
    kw = dict(cell=cell, bidirectional=D == 2, lengths=lengths, reverse=reverse, **opts)
    if dropout:
        kw.update(dropout=dropout, seed=seed)

    def run(v):
        return prnn.multilayer_forward(
            v["x"], _unflat(v, len(layers)), a0=v["a0"], c0=v.get("c0"), **kw
        )

    def loss(v):
        out, a_n, c_n, _ = run(v)
        total = np.sum(dout * out) + np.sum(da_n * a_n)
        return total + (np.sum(dc_n * c_n) if c_n is not None else 0.0)

    inputs = _flat(layers, x, a0, c0)
    g = prnn.multilayer_backward(dout, run(inputs)[3], da_n=da_n, dc_n=dc_n)
    return loss, inputs, _grads(g)


@pytest.mark.parametrize(
    ("D", "reverse", "with_lengths"),
    [(2, False, False), (1, True, True), (2, False, True)],
    ids=["bidirectional", "reverse-lengths", "bidirectional-lengths"],
)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_backward_vs_finite_differences(name, D, reverse, with_lengths):
    lengths = np.array([3, 2]) if with_lengths else None
    loss, inputs, grads = _gradient_case(name, D, reverse, lengths)
    if VARIANTS[name][1].get("input_forget"):  # Wf and bf are not read: exact zeros
        for key in ("0:Wf", "0:bf"):
            assert not np.any(grads[key])
    check_gradients(loss, inputs, grads)


@pytest.mark.parametrize("name", ["rnn-relu", "gru-reset-before", "lstm-all"])
def test_dropout_backward_vs_finite_differences(name):
    loss, inputs, grads = _gradient_case(name, 2, False, np.array([3, 1]), dropout=0.4, seed=11)
    check_gradients(loss, inputs, grads)


# lstm-all holds every LSTM option (peepholes, projection, clip, coupled gates); each alone,
# and the relu RNN, is checked against central differences above (and the relu RNN against
# PyTorch's autograd in test_variants_torch.py). Each case costs JAX a compilation of the
# differentiated time loop (about 10 s on a 2-core machine).
@pytest.mark.parametrize("name", ["gru-reset-before", "lstm-all"])
def test_variant_backward_equals_jax_vjp(name, record_diff):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    cell, opts, layers, x = _problem(name, seed=8, m=2, T=4)
    lengths = np.array([4, 2])
    J = {k: jnp.asarray(v) for k, v in _flat(layers, x).items()}
    kw = dict(cell=cell, bidirectional=True, **opts)

    def forward(v):
        out, a_n, c_n, _ = prnn.multilayer_forward(
            v["x"], _unflat(v, len(layers)), lengths=jnp.asarray(lengths), **kw
        )
        return (out, a_n) if c_n is None else (out, a_n, c_n)

    # JAX's autodiff of the time loop (lax.scan when traced), compiled whole: eagerly, each
    # of its thousands of small operations would compile apart
    outs = jax.eval_shape(forward, J)
    rng = np.random.default_rng(9)
    cot = tuple(jnp.asarray(rng.standard_normal(o.shape)) for o in outs)
    (auto,) = jax.jit(lambda J, cot: jax.vjp(forward, J)[1](cot))(J, cot)
    _, _, _, cache = prnn.multilayer_forward(
        J["x"], _unflat(J, len(layers)), lengths=jnp.asarray(lengths), **kw
    )
    g = prnn.multilayer_backward(cot[0], cache, da_n=cot[1], dc_n=cot[2] if len(cot) > 2 else None)
    ours = _grads(g)
    ours.pop("a0")
    ours.pop("c0", None)
    for key, value in ours.items():
        np.testing.assert_allclose(
            np.asarray(value), np.asarray(auto[key]), rtol=1e-10, atol=1e-12, err_msg=key
        )
        record_diff("jax.vjp vs ours (variants)", "float64", value, np.asarray(auto[key]))


#: one case per cell on every backend: lstm-all holds every LSTM option at once
EVERY_BACKEND = ["rnn-relu", "gru-reset-before", "lstm-all"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", EVERY_BACKEND)
def test_variant_every_backend(xp, name, dtype, record_diff):
    cell, opts, layers, x = _problem(name, seed=12)
    lengths = [5, 3, 1]
    rng = np.random.default_rng(13)
    rd = lambda v: v.astype(dtype).astype(np.float64)  # noqa: E731
    r_layers = [{k: rd(v) for k, v in p.items()} for p in layers]
    kw = dict(cell=cell, bidirectional=True, dropout=0.3, seed=4, **opts)
    out64, an64, cn64, cache64 = prnn.multilayer_forward(rd(x), r_layers, lengths=lengths, **kw)
    dout = rd(rng.standard_normal(out64.shape))
    g64 = prnn.multilayer_backward(dout, cache64)

    def arr(v):
        return xp.asarray(v, dtype=dtype)

    X = [{k: arr(v) for k, v in p.items()} for p in layers]
    out, an, cn, cache = prnn.multilayer_forward(arr(x), X, lengths=xp.asarray(lengths), **kw)
    g = prnn.multilayer_backward(arr(dout), cache)
    pairs = [(out, out64), (an, an64), (g["dx"], g64["dx"])]
    if cell == "lstm":
        pairs.append((cn, cn64))
    for k, layer in enumerate(g["layers"]):
        pairs += [(layer[key], g64["layers"][k][key]) for key in layer]
    for actual, desired in pairs:
        assert_close(actual, desired, xp=xp, dtype=dtype, device=xp.array_device)
        record_diff(xp.name, dtype, actual, desired)


def test_dropout_is_deterministic_per_seed_and_off_by_default():
    cell, opts, layers, x = _problem("lstm-peepholes", L=3)
    run = lambda **kw: prnn.multilayer_forward(x, layers, cell="lstm", bidirectional=True, **kw)  # noqa: E731
    a = run(dropout=0.5, seed=1)[0]
    np.testing.assert_array_equal(a, run(dropout=0.5, seed=1)[0])
    assert np.max(np.abs(a - run(dropout=0.5, seed=2)[0])) > 1e-3
    plain = run()[0]
    np.testing.assert_array_equal(plain, run(dropout=0.0, seed=1)[0])
    assert np.max(np.abs(a - plain)) > 1e-3
    # the masks: PyTorch's placement (layers 1..L-1), zeros and 1 / (1 - p)
    masks = dropout_masks(1, 0.5, [(8, 3, 5)] * 2, x)
    assert len(masks) == 2 and set(np.unique(masks[0])) <= {0.0, 2.0}
    r_out, _, _ = reference("lstm", opts, layers, x, 2, None, masks=masks)
    np.testing.assert_allclose(a, r_out, rtol=1e-12, atol=1e-13)
    # one layer: nothing to drop
    one = _problem("rnn-relu", L=1)
    o1 = prnn.multilayer_forward(
        one[3], one[2], cell="rnn", bidirectional=True, dropout=0.5, seed=0, **one[1]
    )
    o2 = prnn.multilayer_forward(one[3], one[2], cell="rnn", bidirectional=True, **one[1])
    np.testing.assert_array_equal(o1[0], o2[0])


def test_dropout_masks_are_the_same_on_every_backend(xp):
    cell, opts, layers, x = _problem("gru-reset-before", L=3)
    kw = dict(cell="gru", bidirectional=True, dropout=0.25, seed=7, **opts)
    ref = prnn.multilayer_forward(x, layers, **kw)[0]
    X = [{k: xp.asarray(v) for k, v in p.items()} for p in layers]
    out = prnn.multilayer_forward(xp.asarray(x), X, **kw)[0]
    assert_close(out, ref, xp=xp, dtype="float64", device=xp.array_device)


@pytest.mark.parametrize(
    ("cell", "kwargs", "error", "match"),
    [
        (
            "lstm",
            {"reset_after": False},
            ValueError,
            r"reset_after=False is the GRU's option; cell 'lstm' has no reset_after",
        ),
        (
            "gru",
            {"nonlinearity": "relu"},
            ValueError,
            r"nonlinearity='relu' is the RNN's option; cell 'gru'",
        ),
        (
            "rnn",
            {"clip": 1.0},
            ValueError,
            r"clip=1.0 is the LSTM's option; cell 'rnn' has no clip",
        ),
        ("gru", {"input_forget": True}, ValueError, r"input_forget=True is the LSTM's option"),
        (
            "rnn",
            {"nonlinearity": "sigmoid"},
            ValueError,
            r"nonlinearity must be one of 'tanh', 'relu', got 'sigmoid'",
        ),
        ("lstm", {"clip": -1.0}, ValueError, r"clip must be a positive finite number"),
        ("lstm", {"clip": "1"}, TypeError, r"clip must be a positive number or None"),
        ("gru", {"reset_after": 0}, TypeError, r"reset_after must be True or False"),
        ("rnn", {"dropout": 0.5}, ValueError, r"dropout needs seed="),
        ("rnn", {"dropout": 1.0, "seed": 0}, ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        ("rnn", {"dropout": -0.1, "seed": 0}, ValueError, r"dropout must be in \[0, 1\)"),
        ("rnn", {"dropout": 0.1, "seed": 1.5}, TypeError, r"seed must be a non-negative int"),
        (
            "rnn",
            {"reverse": True, "bidirectional": True},
            ValueError,
            r"reverse=True is for a unidirectional stack",
        ),
        ("rnn", {"reverse": 1}, TypeError, r"reverse must be True or False"),
    ],
)
def test_bad_options_name_the_argument(cell, kwargs, error, match):
    groups = ()
    rng = np.random.default_rng(0)
    layers = make_layers(cell, groups, 3, 4, 2, 2 if kwargs.get("bidirectional") else 1, rng)
    x = rng.standard_normal((3, 2, 4))
    with pytest.raises(error, match=match):
        prnn.multilayer_forward(x, layers, cell=cell, **kwargs)


def test_bad_option_parameters_name_the_key():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4))
    peep = make_layers("lstm", ("peepholes",), 3, 4, 2, 1, rng)
    partial = [dict(p) for p in peep]
    del partial[0]["Po"]
    with pytest.raises(ValueError, match=r"layers\[0\] has 'Pi', 'Pf' but not 'Po'"):
        prnn.multilayer_forward(x, partial, cell="lstm")
    mixed = [dict(p) for p in peep]
    for key in ("Pi", "Pf", "Po"):
        del mixed[1][key]
    with pytest.raises(ValueError, match=r"layers\[1\] lacks the peepholes keys"):
        prnn.multilayer_forward(x, mixed, cell="lstm")
    wrong = [dict(p) for p in peep]
    wrong[1]["Pf"] = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"layers\[1\]\['Pf'\] must have shape \(n_a, 1\)"):
        prnn.multilayer_forward(x, wrong, cell="lstm")
    big = make_layers("lstm", ("proj",), 3, 4, 1, 1, rng, n_p=4)
    with pytest.raises(ValueError, match=r"layers\[0\]\['Wp'\] has 4 rows .* n_p < n_a = 4"):
        prnn.multilayer_forward(x, big, cell="lstm")
    proj = make_layers("lstm", ("proj",), 3, 4, 2, 1, rng)
    with pytest.raises(ValueError, match=r"^a0 must have shape \(L\*D, n_p, m\) = \(2, 2, 2\)"):
        prnn.multilayer_forward(x, proj, cell="lstm", a0=np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match=r"^c0 must have shape \(L\*D, n_a, m\) = \(2, 4, 2\)"):
        prnn.multilayer_forward(x, proj, cell="lstm", c0=np.zeros((2, 2, 2)))


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_single_layer_reverse_is_the_reverse_direction(xp, cell, with_lengths):
    """``reverse=True`` on `rnn_forward`/`lstm_forward`/`gru_forward` equals the reverse half
    of a one-layer bidirectional stack (outputs in time order, each example from its own
    last real step), and its backward equals that stack's backward."""
    rng = np.random.default_rng(21)
    layers = make_layers(cell, (), 3, 4, 1, 2, rng)
    fwd = getattr(prnn, f"{cell}_forward")
    bwd = getattr(prnn, f"{cell}_backward")
    x = rng.standard_normal((3, 3, 5))
    lengths = [5, 2, 0] if with_lengths else None
    dout = rng.standard_normal((8, 3, 5))
    dout[:4] = 0.0  # the forward direction gets no gradient
    out, _, _, cache = prnn.multilayer_forward(
        x, layers, cell=cell, bidirectional=True, lengths=lengths
    )
    g = prnn.multilayer_backward(dout, cache)
    X = xp.asarray(x)
    P = {k: xp.asarray(v) for k, v in layers[1].items()}
    lens = None if lengths is None else xp.asarray(lengths)
    result = fwd(X, None, P, lengths=lens, reverse=True)
    a, caches = result[0], result[-1]
    assert_close(a, out[4:], xp=xp, dtype="float64", device=xp.array_device)
    grads = bwd(xp.asarray(dout[4:]), caches)
    assert_close(grads["dx"], g["dx"], xp=xp, dtype="float64", device=xp.array_device)
    for key, value in g["layers"][1].items():
        assert_close(grads[key], value, xp=xp, dtype="float64", device=xp.array_device)
    with pytest.raises(TypeError, match="reverse must be True or False, got 'yes'"):
        fwd(X, None, P, reverse="yes")


@pytest.mark.parametrize(
    ("cell", "opts"),
    [("rnn", {"nonlinearity": "relu"}), ("gru", {"reset_after": False}), ("lstm", {})],
)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_rows_dialect_reverse_and_options(xp, cell, opts, with_lengths):
    """The rows (CS231n) dialect's ``reverse`` and options equal `multilayer_forward`'s on
    the same weights (both read from one PyTorch module by `interop.from_torch`)."""
    torch = pytest.importorskip("torch")
    from portable_rnn import interop, rnn_layers

    torch.manual_seed(0)
    module = getattr(torch.nn, cell.upper())(3, 4, batch_first=True, dtype=torch.float64)
    rows = {k: prnn.to_backend(v, "numpy") for k, v in interop.from_torch(module, "rows").items()}
    col = {k: prnn.to_backend(v, "numpy") for k, v in interop.from_torch(module).items()}
    rng = np.random.default_rng(31)
    x = rng.standard_normal((3, 5, 3))  # (N, T, D)
    h0 = rng.standard_normal((3, 4))
    lengths = [5, 2, 0] if with_lengths else None
    out, _, _, cache = prnn.multilayer_forward(
        np.transpose(x, (2, 0, 1)).copy(),
        [col],
        cell=cell,
        a0=h0.T[None].copy(),
        lengths=lengths,
        reverse=True,
        **opts,
    )
    dh = rng.standard_normal((3, 5, 4))
    g = prnn.multilayer_backward(np.transpose(dh, (2, 0, 1)).copy(), cache)
    fwd, bwd = getattr(rnn_layers, f"{cell}_forward"), getattr(rnn_layers, f"{cell}_backward")
    args = [xp.asarray(rows[k]) for k in ("Wx", "Wh", "b", "bhn") if k in rows]
    lens = None if lengths is None else xp.asarray(lengths)
    h, c = fwd(xp.asarray(x), xp.asarray(h0), *args, lengths=lens, reverse=True, **opts)
    assert_close(h, np.transpose(out, (1, 2, 0)), xp=xp, dtype="float64", device=xp.array_device)
    grads = bwd(xp.asarray(dh), c)
    assert_close(grads[0], np.transpose(g["dx"], (1, 2, 0)), xp=xp, dtype="float64")
    assert_close(grads[1], g["da0"][0].T, xp=xp, dtype="float64")
    if not with_lengths and cell == "rnn":  # = the forward run of the flipped sequence
        flip, _ = fwd(xp.asarray(x[:, ::-1].copy()), xp.asarray(h0), *args, **opts)
        assert_close(h, to_numpy(flip)[:, ::-1], xp=xp, dtype="float64")


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("lstm-all", {"dropout": 0.3, "seed": 5}),
        ("gru-reset-before", {"reverse": True}),
        ("rnn-relu", {}),
    ],
)
def test_jax_custom_vjp_takes_the_variants(name, extra):
    """`portable_rnn.jax.multilayer_forward` with the variants: ``jax.grad`` gives
    `multilayer_backward`'s gradients, peepholes and projection included."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    pj = pytest.importorskip("portable_rnn.jax")
    cell, opts, layers, x = _problem(name, seed=40, m=2, T=4, D=1 if extra.get("reverse") else 2)
    J = [{k: jnp.asarray(v) for k, v in p.items()} for p in layers]
    kw = dict(cell=cell, bidirectional="reverse" not in extra, lengths=[4, 2], **opts, **extra)
    rng = np.random.default_rng(41)
    out, a_n, _, cache = prnn.multilayer_forward(jnp.asarray(x), J, **kw)
    dout, da_n = (
        jnp.asarray(rng.standard_normal(out.shape)),
        jnp.asarray(rng.standard_normal(a_n.shape)),
    )

    def loss(x, layers):
        o, h, _ = pj.multilayer_forward(x, layers, **kw)
        return jnp.sum(dout * o) + jnp.sum(da_n * h)

    dx, dlayers = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(x), J)
    g = prnn.multilayer_backward(dout, cache, da_n=da_n)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(g["dx"]), rtol=1e-12, atol=1e-13)
    for mine, theirs in zip(dlayers, g["layers"], strict=True):
        assert set(mine) == {k[1:] for k in theirs}
        for key, value in mine.items():
            np.testing.assert_allclose(
                np.asarray(value),
                np.asarray(theirs["d" + key]),
                rtol=1e-12,
                atol=1e-13,
                err_msg=key,
            )


def test_a_traced_jax_seed_compiles_once():
    """A 0-d JAX integer ``seed`` is traced: one compilation serves every seed, each seed
    gives its own masks, deterministically, and ``jax.grad`` through the custom VJP uses
    the forward's masks (equal to the plain backward of the same seed)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    pj = pytest.importorskip("portable_rnn.jax")
    cell, opts, layers, x = _problem("lstm-peepholes", seed=42, L=3)
    J = [{k: jnp.asarray(v) for k, v in p.items()} for p in layers]
    X = jnp.asarray(x)

    def loss(layers, seed):
        o, _, _ = pj.multilayer_forward(
            X, layers, cell=cell, bidirectional=True, dropout=0.5, seed=seed
        )
        return jnp.sum(o * o)

    step = jax.jit(jax.value_and_grad(loss))
    v1, g1 = step(J, jnp.asarray(1))
    v1b, _ = step(J, jnp.asarray(1))
    v2, _ = step(J, jnp.asarray(2))
    assert step._cache_size() == 1
    assert float(v1) == float(v1b) and abs(float(v1) - float(v2)) > 1e-6
    out, _, _, cache = prnn.multilayer_forward(
        X, J, cell=cell, bidirectional=True, dropout=0.5, seed=jnp.asarray(1)
    )
    g = prnn.multilayer_backward(2 * out, cache)
    for mine, theirs in zip(g1, g["layers"], strict=True):
        for key, value in mine.items():
            np.testing.assert_allclose(
                np.asarray(value), np.asarray(theirs["d" + key]), rtol=1e-10, atol=1e-12
            )
    with pytest.raises(TypeError, match="seed is a JAX array, but x is not"):
        prnn.multilayer_forward(
            x, layers, cell=cell, dropout=0.5, seed=jnp.asarray(1), bidirectional=True
        )


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_jax_column_functions_take_reverse(cell):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    pj = pytest.importorskip("portable_rnn.jax")
    rng = np.random.default_rng(50)
    p = {k: jnp.asarray(v) for k, v in make_layers(cell, (), 3, 4, 1, 1, rng)[0].items()}
    x = jnp.asarray(rng.standard_normal((3, 2, 5)))
    da = jnp.asarray(rng.standard_normal((4, 2, 5)))
    fwd = getattr(pj, f"{cell}_forward")
    grad = jax.grad(
        lambda x, p: jnp.sum(da * fwd(x, None, p, lengths=[5, 3], reverse=True)[0]), (0, 1)
    )
    dx, dp = grad(x, p)
    result = getattr(prnn, f"{cell}_forward")(x, None, p, lengths=[5, 3], reverse=True)
    g = getattr(prnn, f"{cell}_backward")(da, result[-1])
    np.testing.assert_allclose(np.asarray(dx), np.asarray(g["dx"]), rtol=1e-12, atol=1e-13)
    for key, value in dp.items():
        np.testing.assert_allclose(
            np.asarray(value), np.asarray(g["d" + key]), rtol=1e-12, atol=1e-13
        )


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_torch_column_functions_take_reverse(cell):
    torch = pytest.importorskip("torch")
    pt = pytest.importorskip("portable_rnn.torch")
    rng = np.random.default_rng(51)
    p = {
        k: torch.tensor(v, requires_grad=True)
        for k, v in make_layers(cell, (), 3, 4, 1, 1, rng)[0].items()
    }
    x = torch.tensor(rng.standard_normal((3, 2, 5)), requires_grad=True)
    da = torch.tensor(rng.standard_normal((4, 2, 5)))
    a = getattr(pt, f"{cell}_forward")(x, None, p, lengths=[5, 3], reverse=True)[0]
    (da * a).sum().backward()
    result = getattr(prnn, f"{cell}_forward")(
        x.detach(), None, {k: v.detach() for k, v in p.items()}, lengths=[5, 3], reverse=True
    )
    np.testing.assert_allclose(a.detach().numpy(), result[0].numpy(), rtol=0, atol=0)
    g = getattr(prnn, f"{cell}_backward")(da, result[-1])
    np.testing.assert_allclose(x.grad.numpy(), g["dx"].numpy(), rtol=1e-12, atol=1e-13)
    for key, value in p.items():
        np.testing.assert_allclose(value.grad.numpy(), g["d" + key].numpy(), rtol=1e-12, atol=1e-13)
