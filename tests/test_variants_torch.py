"""PyTorch as the oracle of the cell variants it has: the relu RNN (``nonlinearity="relu"``),
the LSTM with a projection (``proj_size``) and the dropout between layers.

For each, in float64: `portable_rnn.multilayer_forward` (outputs ``out``, ``a_n``,
``c_n``) and `portable_rnn.multilayer_backward` (``dx``, ``da0``, ``dc0`` and every weight,
``dWp`` included) equal PyTorch's forward and ``torch.autograd.grad`` to 1e-10, for 1 and
2 layers, uni- and bidirectional, with and without ``lengths`` (PyTorch: packed sequences,
``enforce_sorted=False``). Dropout: a 3-layer module is run layer by layer in PyTorch, our
masks (`portable_rnn._backend.devices.dropout_masks`, the call `multilayer_forward` makes)
applied between the layers. Also `portable_rnn.interop`'s round trips, `torch_options`, and
the refusals of `to_torch`.
"""

from __future__ import annotations

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn._backend.devices import dropout_masks
from portable_rnn._core.spec import cell_spec
from portable_rnn.interop import (
    _column,
    from_torch,
    grads_to_torch,
    to_torch,
    torch_options,
)
from portable_rnn.testing import assert_close, to_numpy

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

TOL = {"rtol": 1e-10, "atol": 1e-10}
N_X, H, P, M, T = 3, 5, 2, 4, 6
LENGTHS = [6, 2, 1, 4]  # unsorted, one full length

#: variant -> (cell, a function making the module)
VARIANTS = {
    "relu": ("rnn", lambda L, bi: torch.nn.RNN(N_X, H, L, nonlinearity="relu", bidirectional=bi)),
    "proj": ("lstm", lambda L, bi: torch.nn.LSTM(N_X, H, L, proj_size=P, bidirectional=bi)),
}


def _module(variant, L, bi, seed=0):
    torch.manual_seed(seed)
    return VARIANTS[variant][1](L, bi).double()


def _close(ours, theirs, what):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert_close(to_numpy(ours), np.asarray(theirs), err_msg=what, **TOL)


def _params(module):
    """The module's parameters by name, in ``named_parameters`` order."""
    return dict(module.named_parameters())


def _torch_run(module, x, h0, c0, lengths):
    """``(out (T, m, D*n_h), h_n, c_n or None)`` of a module on ``x`` (T, m, n_x), packed
    (``enforce_sorted=False``) when ``lengths`` is given."""
    hx = h0 if c0 is None else (h0, c0)
    if lengths is None:
        out, states = module(x, hx)
    else:
        packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        out, states = module(packed, hx)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    h_n, c_n = states if isinstance(states, tuple) else (states, None)
    return out, h_n, c_n


def _inputs(module, seed=1):
    """``x`` (T, m, n_x), ``h0`` and, for the LSTM, ``c0``: leaves that need gradients."""
    g = torch.Generator().manual_seed(seed)
    LD = module.num_layers * (2 if module.bidirectional else 1)
    n_h = getattr(module, "proj_size", 0) or module.hidden_size

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    c0 = leaf(LD, M, module.hidden_size) if isinstance(module, torch.nn.LSTM) else None
    return leaf(T, M, module.input_size), leaf(LD, M, n_h), c0


def _cotangents(out, h_n, c_n, seed=2):
    g = torch.Generator().manual_seed(seed)

    def like(t):
        return None if t is None else torch.randn(t.shape, generator=g, dtype=t.dtype)

    return like(out), like(h_n), like(c_n)


def _loss(outs, cots):
    return sum((o * c).sum() for o, c in zip(outs, cots, strict=True) if o is not None)


def _col(t):
    """PyTorch's (T, m, F) sequence or (L*D, m, F) state -> the column dialect's layout."""
    return None if t is None else t.detach().permute(2, 1, 0).numpy().copy()


def _state(t):
    return None if t is None else t.detach().permute(0, 2, 1).numpy().copy()


def _ours(layers, options, x, h0, c0, lengths, cots, **extra):
    """Our forward and backward on NumPy: ``(out, a_n, c_n, grads)``."""
    out, a_n, c_n, cache = prnn.multilayer_forward(
        _col(x), layers, a0=_state(h0), c0=_state(c0), lengths=lengths, **options, **extra
    )
    dout, dh_n, dc_n = cots
    g = prnn.multilayer_backward(_col(dout), cache, da_n=_state(dh_n), dc_n=_state(dc_n))
    return out, a_n, c_n, g


def _check_layer_grads(spec, ours, tgrads, suffix, what):
    """Our gradient dict of one layer against PyTorch's (by name, ``suffix`` the layer's):
    the weights mapped like the weights; a summed bias equals each of PyTorch's two."""
    g_ih, g_hh = tgrads["weight_ih" + suffix], tgrads["weight_hh" + suffix]
    b_ih, b_hh = tgrads["bias_ih" + suffix], tgrads["bias_hh" + suffix]
    z = torch.zeros_like(b_ih)
    xp = prnn.testing.Backend("torch", "torch", "cpu").xp
    W_hr = tgrads.get("weight_hr" + suffix)
    from_ih = _column(spec, xp, g_ih, g_hh, b_ih, z, W_hr)
    from_hh = _column(spec, xp, g_ih, g_hh, z, b_hh, W_hr)
    assert set(ours) == {"d" + k for k in from_ih}, (sorted(ours), sorted(from_ih))
    for key in from_ih:
        if key.startswith("W"):
            _close(ours["d" + key], from_ih[key], f"{what} d{key}")
        elif key in spec.hidden_biases.values():  # the GRU's bhn: b_hn only
            _close(ours["d" + key], from_hh[key], f"{what} d{key} (bias_hh)")
        elif key in (f"b{g}" for g in spec.hidden_biases):  # the GRU's bn: b_in only
            _close(ours["d" + key], from_ih[key], f"{what} d{key} (bias_ih)")
        else:
            _close(ours["d" + key], from_ih[key], f"{what} d{key} (bias_ih)")
            _close(ours["d" + key], from_hh[key], f"{what} d{key} (bias_hh)")


def _layer_list(found):
    return found if isinstance(found, list) else [found]


# --- relu RNN and projected LSTM against autograd ---------------------------------------


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("variant", ["relu", "proj"])
def test_variant_matches_autograd(variant, L, bi, lengths):
    module = _module(variant, L, bi)
    x, h0, c0 = _inputs(module)
    out, h_n, c_n = _torch_run(module, x, h0, c0, lengths)
    cots = _cotangents(out, h_n, c_n)
    params = _params(module)
    leaves = [x, h0] + ([c0] if c0 is not None else []) + list(params.values())
    grads = torch.autograd.grad(_loss((out, h_n, c_n), cots), leaves)
    gx, gh0, *rest = grads
    gc0 = rest.pop(0) if c0 is not None else None
    tgrads = dict(zip(params, rest, strict=True))

    layers = prnn.to_backend(_layer_list(from_torch(module)), "numpy")
    if variant == "proj":
        assert all(p["Wp"].shape == (P, H) for p in layers)
        assert layers[0]["Wf"].shape == (H, P + N_X)
    ours_out, a_n, ours_c_n, g = _ours(layers, torch_options(module), x, h0, c0, lengths, cots)
    _close(ours_out, _col(out), "out")
    _close(a_n, _state(h_n), "a_n")
    _close(g["dx"], _col(gx), "dx")
    _close(g["da0"], _state(gh0), "da0")
    if c0 is not None:
        _close(ours_c_n, _state(c_n), "c_n")
        _close(g["dc0"], _state(gc0), "dc0")
    else:
        assert ours_c_n is None and "dc0" not in g
    spec = cell_spec(VARIANTS[variant][0])
    D = 2 if bi else 1
    for k, lg in enumerate(g["layers"]):
        suffix = f"_l{k // D}" + ("_reverse" if k % D else "")
        _check_layer_grads(spec, lg, tgrads, suffix, f"layers[{k}]")


@pytest.mark.parametrize("variant", ["relu", "proj"])
def test_variant_on_every_backend(xp, variant, record_diff):
    """The dicts of `from_torch`, moved to each backend: outputs and gradients equal
    PyTorch's (two bidirectional layers, with lengths)."""
    module = _module(variant, 2, True, seed=7)
    x, h0, c0 = _inputs(module, seed=8)
    out, h_n, c_n = _torch_run(module, x, h0, c0, LENGTHS)
    cots = _cotangents(out, h_n, c_n, seed=9)
    gx, gh0 = torch.autograd.grad(_loss((out, h_n, c_n), cots), [x, h0])

    layers = prnn.to_backend(_layer_list(from_torch(module)), xp.backend, xp.device)

    def on(arr):
        return None if arr is None else xp.asarray(arr)

    ours, a_n, _, cache = prnn.multilayer_forward(
        on(_col(x)),
        layers,
        a0=on(_state(h0)),
        c0=on(_state(c0)),
        lengths=LENGTHS,
        **torch_options(module),
    )
    g = prnn.multilayer_backward(
        on(_col(cots[0])), cache, da_n=on(_state(cots[1])), dc_n=on(_state(cots[2]))
    )
    kw = {"xp": xp, "dtype": "float64", "device": xp.array_device, **TOL}
    assert_close(ours, _col(out), **kw)
    record_diff(xp.name, "float64", ours, _col(out))
    assert_close(a_n, _state(h_n), **kw)
    assert_close(g["dx"], _col(gx), **kw)
    assert_close(g["da0"], _state(gh0), **kw)


# --- dropout between layers ---------------------------------------------------------------

#: variant -> (cell, module class, its extra constructor arguments)
STACKS = {
    "relu": ("rnn", torch.nn.RNN, {"nonlinearity": "relu"}),
    "proj": ("lstm", torch.nn.LSTM, {"proj_size": P}),
    "lstm": ("lstm", torch.nn.LSTM, {}),
    "gru": ("gru", torch.nn.GRU, {}),
}


def _layer_by_layer(variant, big, x, h0, c0, lengths, masks):
    """PyTorch's run of ``big`` one layer at a time, each a one-layer module holding that
    layer's weights, ``masks`` (ours, column layout) multiplied into the inputs of every
    layer but the first. Returns ``(out, h_n, c_n, layers)``: ``layers`` the one-layer
    modules (their parameters are leaves that autograd reaches)."""
    _, cls, extra = STACKS[variant]
    D = 2 if big.bidirectional else 1
    inp, finals_h, finals_c, modules = x, [], [], []
    for k in range(big.num_layers):
        n_in = big.input_size if k == 0 else inp.shape[2]
        one = cls(n_in, big.hidden_size, bidirectional=big.bidirectional, **extra).double()
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(getattr(big, name.replace("_l0", f"_l{k}")))
        modules.append(one)
        if k:
            inp = inp * torch.from_numpy(masks[k - 1]).permute(2, 1, 0)
        c = None if c0 is None else c0[k * D : (k + 1) * D]
        inp, h_n, c_n = _torch_run(one, inp, h0[k * D : (k + 1) * D], c, lengths)
        finals_h.append(h_n)
        finals_c.append(c_n)
    c_n = None if c0 is None else torch.cat(finals_c)
    return inp, torch.cat(finals_h), c_n, modules


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("variant", list(STACKS))
def test_dropout_stack_matches_torch_layer_by_layer(variant, bi, lengths):
    cell, cls, extra = STACKS[variant]
    L, D, p_drop, seed = 3, 2 if bi else 1, 0.4, 1234
    torch.manual_seed(3)
    big = cls(N_X, H, L, bidirectional=bi, dropout=p_drop, **extra).double()
    x, h0, c0 = _inputs(big, seed=4)
    n_h = extra.get("proj_size", H)
    # the call multilayer_forward makes: seed, p, one (D * n_h, m, T) mask per boundary, x
    masks = dropout_masks(seed, p_drop, [(D * n_h, M, T)] * (L - 1), _col(x))
    assert any((mask == 0).any() for mask in masks)  # the masks do drop something
    out, h_n, c_n, ones = _layer_by_layer(variant, big, x, h0, c0, lengths, masks)
    cots = _cotangents(out, h_n, c_n, seed=5)
    params = [dict(one.named_parameters()) for one in ones]
    leaves = [x, h0] + ([c0] if c0 is not None else [])
    leaves += [t for ps in params for t in ps.values()]
    grads = list(torch.autograd.grad(_loss((out, h_n, c_n), cots), leaves))
    gx, gh0 = grads.pop(0), grads.pop(0)
    gc0 = grads.pop(0) if c0 is not None else None

    with pytest.warns(UserWarning, match="dropout=module.dropout, seed="):
        layers = prnn.to_backend(from_torch(big), "numpy")
    options = torch_options(big)
    ours, a_n, ours_c_n, g = _ours(
        layers, options, x, h0, c0, lengths, cots, dropout=p_drop, seed=seed
    )
    _close(ours, _col(out), "out")
    _close(a_n, _state(h_n), "a_n")
    _close(g["dx"], _col(gx), "dx")
    _close(g["da0"], _state(gh0), "da0")
    if c0 is not None:
        _close(ours_c_n, _state(c_n), "c_n")
        _close(g["dc0"], _state(gc0), "dc0")
    spec = cell_spec(cell)
    for k in range(L):
        tgrads = dict(zip(params[k], grads[: len(params[k])], strict=True))
        del grads[: len(params[k])]
        for d in range(D):
            suffix = "_l0" + ("_reverse" if d else "")
            _check_layer_grads(spec, g["layers"][k * D + d], tgrads, suffix, f"layer {k} dir {d}")
    # without our masks, PyTorch's own run differs: the masks above did something
    plain, *_ = _layer_by_layer(variant, big, x, h0, c0, lengths, [np.ones_like(m) for m in masks])
    assert not np.allclose(_col(plain), ours)


def _stack(seed=None, dropout=0.0, cell="lstm"):
    layers = prnn.init_multilayer_params(
        cell, N_X, H, num_layers=3, bidirectional=True, seed=0, backend="numpy", dtype="float64"
    )
    x = np.random.default_rng(1).standard_normal((N_X, M, T))
    out, a_n, _, cache = prnn.multilayer_forward(
        x, layers, cell=cell, bidirectional=True, dropout=dropout, seed=seed
    )
    dout = np.random.default_rng(2).standard_normal(out.shape)
    g = prnn.multilayer_backward(dout, cache)
    return out, a_n, g


def _flat(result):
    out, a_n, g = result
    arrays = [out, a_n, g["dx"], g["da0"]] + [v for lg in g["layers"] for v in lg.values()]
    return [np.asarray(a) for a in arrays]


def test_dropout_same_seed_same_result_other_seed_other():
    first, again = _flat(_stack(seed=5, dropout=0.3)), _flat(_stack(seed=5, dropout=0.3))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = _flat(_stack(seed=6, dropout=0.3))
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[2], other[2])


def test_dropout_zero_is_no_dropout_exactly():
    plain = _flat(_stack())
    for seed in (None, 9):
        zero = _flat(_stack(seed=seed, dropout=0.0))
        assert all(np.array_equal(a, b) for a, b in zip(plain, zero, strict=True))
    assert not np.array_equal(plain[0], _flat(_stack(seed=9, dropout=0.5))[0])


def test_dropout_arguments_are_checked():
    with pytest.raises(ValueError, match="seed"):
        _stack(dropout=0.2)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="dropout"):
            _stack(seed=0, dropout=bad)


# --- interop: round trips, torch_options, refusals ---------------------------------------


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("variant", ["relu", "proj"])
def test_round_trip_bit_for_bit(variant, L, bi):
    """``to_torch(from_torch(m), **torch_options(m))``: every weight (``weight_hr``
    included) equal bit for bit; the biases PyTorch splits in two come back summed in
    ``bias_ih`` (``bias_hh`` zero), so their sums are equal, and `from_torch` of the
    rebuilt module gives the same dicts bit for bit."""
    module = _module(variant, L, bi, seed=11)
    with torch.no_grad():  # biases that are not small integers: a real sum
        for name, p in module.named_parameters():
            if name.startswith("bias"):
                p.copy_(torch.randn_like(p))
    found = from_torch(module)
    for source in (found, prnn.to_backend(found, "numpy")):
        back = to_torch(source, **torch_options(module))
        assert type(back) is type(module)
        for attr in ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first"):
            assert getattr(back, attr) == getattr(module, attr), attr
        if variant == "relu":
            assert back.nonlinearity == "relu"
        else:
            assert back.proj_size == P
        mine, theirs = module.state_dict(), back.state_dict()
        assert list(mine) == list(theirs)
        for name in mine:
            if name.startswith("weight"):
                assert torch.equal(mine[name], theirs[name]), name
            elif name.startswith("bias_ih"):
                hh = name.replace("bias_ih", "bias_hh")
                assert torch.equal(mine[name] + mine[hh], theirs[name] + theirs[hh]), name
                assert not theirs[hh].any()
        again = _layer_list(from_torch(back))
        for p, q in zip(_layer_list(found), again, strict=True):
            assert list(p) == list(q)
            assert all(torch.equal(p[k], q[k]) for k in p)
        x = torch.randn(T, M, N_X, dtype=torch.float64)
        _close(back(x)[0], module(x)[0], "output")  # not bit for bit: PyTorch adds the
        # biases in another order


def test_torch_options():
    assert torch_options(torch.nn.RNN(3, 4, nonlinearity="relu", bidirectional=True)) == {
        "cell": "rnn",
        "bidirectional": True,
        "nonlinearity": "relu",
    }
    assert torch_options(torch.nn.RNN(3, 4)) == {
        "cell": "rnn",
        "bidirectional": False,
        "nonlinearity": "tanh",
    }
    assert torch_options(torch.nn.LSTM(3, 4, 2, proj_size=2, dropout=0.5)) == {
        "cell": "lstm",
        "bidirectional": False,
    }
    assert torch_options(torch.nn.GRU(3, 4, bidirectional=True)) == {
        "cell": "gru",
        "bidirectional": True,
    }
    assert torch_options(torch.nn.RNNCell(3, 4, nonlinearity="relu")) == {
        "cell": "rnn",
        "bidirectional": False,
        "nonlinearity": "relu",
    }
    with pytest.raises(TypeError, match="got Linear"):
        torch_options(torch.nn.Linear(3, 4))


def test_relu_rnn_cell_module():
    torch.manual_seed(2)
    module = torch.nn.RNNCell(N_X, H, nonlinearity="relu").double()
    p = from_torch(module)
    x = torch.randn(M, N_X, dtype=torch.float64)
    h = torch.randn(M, H, dtype=torch.float64)
    ours, *_ = prnn.multilayer_forward(
        x.T.numpy()[:, :, None].copy(),
        [prnn.to_backend(p, "numpy")],
        a0=h.T.numpy()[None].copy(),
        **torch_options(module),
    )
    _close(ours[:, :, 0], module(x, h).T, "h'")
    tanh, *_ = prnn.multilayer_forward(
        x.T.numpy()[:, :, None].copy(), [prnn.to_backend(p, "numpy")], cell="rnn"
    )
    assert not np.allclose(tanh, ours)  # the nonlinearity is the keyword, not the dicts


def test_rows_dialect_refuses_relu_and_projection():
    with pytest.raises(ValueError, match="nonlinearity is 'relu'.*dialect='column'"):
        from_torch(torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True), dialect="rows")
    with pytest.raises(ValueError, match="proj_size is 2.*dialect='column'"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2, batch_first=True), dialect="rows")


def _lstm_layers(**kw):
    return prnn.init_multilayer_params("lstm", 3, 4, seed=0, backend="numpy", **kw)


def test_to_torch_refuses_what_torch_has_no_module_for():
    p = _lstm_layers()[0]
    peep = dict(p, Pi=np.zeros((4, 1)), Pf=np.zeros((4, 1)), Po=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="peepholes \\('Pi', 'Pf', 'Po'\\)"):
        to_torch(peep)
    gru = prnn.init_multilayer_params("gru", 3, 4, seed=0, backend="numpy")
    with pytest.raises(ValueError, match="reset_after=False"):
        to_torch(gru, reset_after=False)
    with pytest.raises(ValueError, match="clip"):
        to_torch(p, clip=1.0)
    with pytest.raises(ValueError, match="input_forget=True"):
        to_torch(p, input_forget=True)
    with pytest.raises(ValueError, match="reverse=True"):
        to_torch(p, reverse=True)
    with pytest.raises(ValueError, match="nonlinearity='relu' is the RNN's option"):
        to_torch(p, nonlinearity="relu")
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        to_torch(prnn.init_multilayer_params("rnn", 3, 4, seed=0), nonlinearity="sigmoid")
    with pytest.raises(
        ValueError, match="cell='gru', but the dicts' keys are those of cell 'lstm'"
    ):
        to_torch(p, cell="gru")
    proj = dict(p, Wp=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="parameters\\[1\\] holds the optional keys none"):
        to_torch([proj, p])
    with pytest.raises(ValueError, match="weight_hr would have shape \\(2, 3\\)"):
        to_torch(dict(proj, Wp=np.zeros((2, 3))))
    with pytest.raises(ValueError, match="Wp has 4 rows, the gates 4: .*proj_size"):
        to_torch(dict(p, Wp=np.zeros((4, 4))))


def test_to_torch_relu_rnn_from_init():
    layers = prnn.init_multilayer_params("rnn", 3, 4, num_layers=2, seed=0, dtype="float64")
    module = to_torch(layers, nonlinearity="relu")
    assert module.nonlinearity == "relu" and module.num_layers == 2
    x = np.random.default_rng(0).standard_normal((3, 2, 5))
    ours, *_ = prnn.multilayer_forward(x, layers, cell="rnn", nonlinearity="relu")
    theirs, _ = module(torch.from_numpy(x).permute(2, 1, 0))
    _close(ours, theirs.permute(2, 1, 0), "out")


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
def test_grads_to_torch_with_projection(bi):
    module = _module("proj", 2, bi, seed=13)
    x, h0, c0 = _inputs(module, seed=14)
    out, h_n, c_n = _torch_run(module, x, h0, c0, None)
    cots = _cotangents(out, h_n, c_n, seed=15)
    _loss((out, h_n, c_n), cots).backward()
    want = {name: p.grad.clone() for name, p in module.named_parameters()}
    for p in module.parameters():
        p.grad = None
    layers = prnn.to_backend(from_torch(module), "numpy")
    *_, g = _ours(layers, torch_options(module), x, h0, c0, None, cots)
    grads_to_torch(g, module)
    for name, p in module.named_parameters():
        assert_close(p.grad.numpy(), want[name].numpy(), err_msg=name, **TOL)
    assert {n for n in want if n.startswith("weight_hr")}  # the projection got its gradient
    missing = [{k: v for k, v in lg.items() if k != "dWp"} for lg in g["layers"]]
    with pytest.raises(prnn.MissingParameterError, match="'dWp'"):
        grads_to_torch(missing, module)
