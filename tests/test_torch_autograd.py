"""`portable_rnn.torch`: PyTorch autograd through portable_rnn's hand-written backward.

PyTorch is the oracle: `pt.RNN/LSTM/GRU` given the state dict of ``torch.nn.RNN/LSTM/GRU``
must give the same outputs, final states, parameter gradients and input gradients, in
float64 to 1e-10, in every layout PyTorch has (time or batch first, unbatched, packed
sequences sorted or not, with or without initial states, one or two layers, one or two
directions). The functional forms pass ``torch.autograd.gradcheck``, and their gradients
equal autograd's through portable_rnn's own (differentiable) forward. A counting test
proves the gradients come from `portable_rnn.multilayer_backward`.
"""

import itertools

import pytest

import portable_rnn as prnn
from portable_rnn._column import stacked

torch = pytest.importorskip("torch", reason="portable_rnn.torch needs PyTorch")
pt = pytest.importorskip("portable_rnn.torch")
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

TOL = {"rtol": 1e-10, "atol": 1e-10}
F64 = torch.float64
OURS = {"rnn": pt.RNN, "lstm": pt.LSTM, "gru": pt.GRU}
THEIRS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
N_X, N_A, M, T = 3, 4, 3, 5
LENGTHS = {"sorted": [5, 4, 2], "unsorted": [4, 5, 2]}


def _close(ours, theirs, what):
    torch.testing.assert_close(ours, theirs, msg=lambda m: f"{what}: {m}", **TOL)


def _pair(kind, **kw):
    """Our module and PyTorch's, PyTorch's loaded with our state dict (strict)."""
    torch.manual_seed(0)
    ours = OURS[kind](N_X, N_A, dtype=F64, **kw)
    theirs = THEIRS[kind](N_X, N_A, dtype=F64, **kw)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def _leaf(*shape):
    return torch.randn(*shape, dtype=F64).requires_grad_()


def _run(module, x, hx, lengths, enforce_sorted, batch_first):
    """Forward, then backward of a loss of the output and every final state."""
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(
            x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted
        )
    out, states = module(inp, hx)
    states = states if isinstance(states, tuple) else (states,)
    data = out.data if isinstance(out, PackedSequence) else out
    gen = torch.Generator().manual_seed(1)
    loss = (data * torch.randn(data.shape, dtype=F64, generator=gen)).sum()
    for s in states:
        loss = loss + (s * torch.randn(s.shape, dtype=F64, generator=gen)).sum()
    loss.backward()
    return out, states


def _grads_of(tensors):
    grads = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return grads


CASES = list(
    itertools.product(
        ["rnn", "lstm", "gru"],
        [1, 2],  # num_layers
        [False, True],  # bidirectional
        [False, True],  # batch_first
        [False, True],  # with hx
        [None, "sorted", "unsorted"],  # packed sequence
    )
)


@pytest.mark.parametrize(("kind", "layers", "bidir", "batch_first", "with_hx", "packed"), CASES)
def test_module_matches_torch(kind, layers, bidir, batch_first, with_hx, packed):
    kw = {"num_layers": layers, "bidirectional": bidir, "batch_first": batch_first}
    ours, theirs = _pair(kind, **kw)
    LD = layers * (2 if bidir else 1)
    torch.manual_seed(2)
    x = _leaf(M, T, N_X) if batch_first else _leaf(T, M, N_X)
    hx, leaves = None, [x]
    if with_hx:
        states = [_leaf(LD, M, N_A) for _ in range(2 if kind == "lstm" else 1)]
        hx = tuple(states) if kind == "lstm" else states[0]
        leaves += states
    lengths = None if packed is None else torch.tensor(LENGTHS[packed])
    sort = packed == "sorted"

    out_o, st_o = _run(ours, x, hx, lengths, sort, batch_first)
    g_o = _grads_of(leaves)
    p_o = _grads_of(list(ours.parameters()))
    out_t, st_t = _run(theirs, x, hx, lengths, sort, batch_first)
    g_t = _grads_of(leaves)
    p_t = _grads_of(list(theirs.parameters()))

    if packed is None:
        _close(out_o, out_t, "output")
    else:
        assert isinstance(out_o, PackedSequence)
        _close(out_o.data, out_t.data, "output.data")
        assert torch.equal(out_o.batch_sizes, out_t.batch_sizes)
        for name in ("sorted_indices", "unsorted_indices"):
            a, b = getattr(out_o, name), getattr(out_t, name)
            assert (a is None) == (b is None), name
            assert a is None or torch.equal(a, b), name
    assert len(st_o) == len(st_t)
    for k, (a, b) in enumerate(zip(st_o, st_t, strict=True)):
        _close(a, b, f"state {k}")
    for k, (a, b) in enumerate(zip(g_o, g_t, strict=True)):
        _close(a, b, "input grad" if k == 0 else f"hx grad {k}")
    names = [n for n, _ in ours.named_parameters()]
    assert names == [n for n, _ in theirs.named_parameters()]
    for name, a, b in zip(names, p_o, p_t, strict=True):
        _close(a, b, f"{name}.grad")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("with_hx", [False, True])
def test_unbatched_input_matches_torch(kind, with_hx):
    ours, theirs = _pair(kind, num_layers=2, bidirectional=True)
    x = _leaf(T, N_X)
    hx, leaves = None, [x]
    if with_hx:
        states = [_leaf(4, N_A) for _ in range(2 if kind == "lstm" else 1)]
        hx = tuple(states) if kind == "lstm" else states[0]
        leaves += states
    out_o, st_o = _run(ours, x, hx, None, True, False)
    g_o = _grads_of(leaves)
    out_t, st_t = _run(theirs, x, hx, None, True, False)
    g_t = _grads_of(leaves)
    assert out_o.shape == out_t.shape == (T, 2 * N_A)
    _close(out_o, out_t, "output")
    for a, b in zip([*st_o, *g_o], [*st_t, *g_t], strict=True):
        assert a.shape == b.shape
        _close(a, b, "state or gradient")
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        _close(a.grad, b.grad, f"{name}.grad")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_module_without_bias_matches_torch(kind):
    ours, theirs = _pair(kind, bias=False, num_layers=2)
    assert "bias_ih_l0" not in ours.state_dict()
    x = _leaf(T, M, N_X)
    out_o, _ = _run(ours, x, None, None, True, False)
    out_t, _ = _run(theirs, x, None, None, True, False)
    _close(out_o, out_t, "output")
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        _close(a.grad, b.grad, f"{name}.grad")


# --- the state dict, both ways -------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_state_dict_round_trip_both_ways(kind):
    kw = {"num_layers": 2, "bidirectional": True, "dtype": F64}
    theirs = THEIRS[kind](N_X, N_A, **kw)
    ours = OURS[kind](N_X, N_A, **kw)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    other = THEIRS[kind](N_X, N_A, **kw)
    fresh = OURS[kind](N_X, N_A, **kw)  # new random weights, loaded into PyTorch's
    other.load_state_dict(fresh.state_dict(), strict=True)
    assert list(other.state_dict()) == list(fresh.state_dict())
    for key, value in fresh.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_default_init_is_pytorchs(kind):
    """Same seed, same weights: PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)), in its order."""
    torch.manual_seed(7)
    ours = OURS[kind](N_X, N_A, num_layers=2, bidirectional=True)
    torch.manual_seed(7)
    theirs = THEIRS[kind](N_X, N_A, num_layers=2, bidirectional=True)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b), name
        assert float(a.detach().abs().max()) <= N_A**-0.5


def test_from_torch_reads_our_modules():
    """They are torch.nn modules, so interop.from_torch takes them."""
    from portable_rnn.interop import from_torch

    ours, theirs = _pair("lstm", num_layers=2)
    for a, b in zip(from_torch(ours), from_torch(theirs), strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key


# --- the functional forms --------------------------------------------------------------


def _layers(cell, n_x, n_a, num_layers, bidirectional):
    with prnn.config_context(backend="torch", dtype="float64"):
        layers = prnn.init_multilayer_params(
            cell, n_x, n_a, num_layers=num_layers, bidirectional=bidirectional, seed=3
        )
    return [{k: v.clone().requires_grad_() for k, v in p.items()} for p in layers]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_multilayer_forward_gradcheck(cell, with_lengths):
    layers = _layers(cell, 2, 2, 2, True)
    keys = list(layers[0])
    torch.manual_seed(4)
    x, a0 = _leaf(2, 2, 3), _leaf(4, 2, 2)
    c0 = _leaf(4, 2, 2) if cell == "lstm" else None
    lengths = [3, 2] if with_lengths else None

    def f(x, a0, c0, *flat):
        ls = [
            dict(zip(keys, flat[k * len(keys) : (k + 1) * len(keys)], strict=True))
            for k in range(4)
        ]
        out, a_n, c_n = pt.multilayer_forward(
            x, ls, cell=cell, bidirectional=True, a0=a0, c0=c0, lengths=lengths
        )
        return (out, a_n) if c_n is None else (out, a_n, c_n)

    flat = [p[k] for p in layers for k in keys]
    # fast mode: random projections of the Jacobian (every input and output at once)
    assert torch.autograd.gradcheck(f, (x, a0, c0, *flat), fast_mode=True)


def _with_output_layer(cell, n_x, n_a, n_y):
    init = {"rnn": prnn.init_rnn_params, "lstm": prnn.init_lstm_params, "gru": prnn.init_gru_params}
    with prnn.config_context(backend="torch", dtype="float64"):
        p = init[cell](n_x=n_x, n_a=n_a, n_y=n_y, seed=5)
    return {k: v.clone().requires_grad_() for k, v in p.items()}


SEQUENCE = {"rnn": pt.rnn_forward, "lstm": pt.lstm_forward, "gru": pt.gru_forward}
PLAIN = {"rnn": prnn.rnn_forward, "lstm": prnn.lstm_forward, "gru": prnn.gru_forward}


def _call(cell, fn, x, a0, p, c0, lengths):
    if cell == "lstm":
        return fn(x, a0, p, c0=c0, lengths=lengths)
    return fn(x, a0, p, lengths=lengths)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_sequence_forward_gradcheck(cell, with_lengths):
    p = _with_output_layer(cell, 2, 3, 2)
    keys = list(p)
    torch.manual_seed(6)
    x, a0 = _leaf(2, 2, 3), _leaf(3, 2)
    c0 = _leaf(3, 2) if cell == "lstm" else None
    lengths = [3, 1] if with_lengths else None

    def f(x, a0, c0, *values):
        res = _call(cell, SEQUENCE[cell], x, a0, dict(zip(keys, values, strict=True)), c0, lengths)
        return tuple(r for r in res if r is not None)

    assert torch.autograd.gradcheck(f, (x, a0, c0, *p.values()))


# portable_rnn's forward copies its inputs for its cache with clone (differentiated, and
# without torch.asarray's requires_grad warning: any warning here is an error)
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_sequence_forward_matches_autograd_through_our_forward(cell, with_lengths):
    """The same results and gradients (output layer included) as autograd differentiating
    portable_rnn's plain forward on torch tensors."""
    p = _with_output_layer(cell, N_X, N_A, 2)
    torch.manual_seed(8)
    x, a0 = _leaf(N_X, M, T), _leaf(N_A, M)
    c0 = _leaf(N_A, M) if cell == "lstm" else None
    lengths = LENGTHS["unsorted"] if with_lengths else None
    leaves = [x, a0, *([c0] if c0 is not None else []), *p.values()]
    gen = torch.Generator().manual_seed(9)
    wa, wy = (torch.randn(s, dtype=F64, generator=gen) for s in ((N_A, M, T), (2, M, T)))

    res = _call(cell, SEQUENCE[cell], x, a0, p, c0, lengths)
    a, y = res[0], res[1]
    loss = (a * wa).sum() + (y * wy).sum()
    if cell == "lstm":
        c_n = res[2]
        assert c_n.shape == (N_A, M)
        loss = loss + (c_n * 0.5).sum()
    loss.backward()
    ours = _grads_of(leaves)

    ref = _call(cell, PLAIN[cell], x, a0, p, c0, lengths)
    loss = (ref[0] * wa).sum() + (ref[1] * wy).sum()
    if cell == "lstm":
        c_all = ref[2]
        idx = torch.tensor(lengths if lengths else [T] * M) - 1
        c_last = c_all[:, torch.arange(M), idx]  # each example's last real step
        _close(c_n, c_last, "c_n")
        loss = loss + (c_last * 0.5).sum()
    _close(a, ref[0], "a")
    _close(y, ref[1], "y")
    loss.backward()
    theirs = _grads_of(leaves)
    for k, (g1, g2) in enumerate(zip(ours, theirs, strict=True)):
        _close(g1, g2, f"gradient {k}")


def test_sequence_forward_without_output_layer_gives_no_y():
    p = _with_output_layer("gru", N_X, N_A, 2)
    del p["Wy"], p["by"]
    a, y = pt.gru_forward(torch.randn(N_X, M, T, dtype=F64), None, p)
    assert y is None
    assert a.shape == (N_A, M, T)


# --- the backward is ours ----------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch):
    """Count the calls of portable_rnn's stack forward and backward."""
    calls = {"forward": 0, "backward": 0}
    fwd, bwd = stacked.multilayer_forward, stacked.multilayer_backward

    def forward(*args, **kw):
        calls["forward"] += 1
        return fwd(*args, **kw)

    def backward(*args, **kw):
        calls["backward"] += 1
        return bwd(*args, **kw)

    monkeypatch.setattr(stacked, "multilayer_forward", forward)
    monkeypatch.setattr(stacked, "multilayer_backward", backward)
    return calls


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_the_module_backward_is_portable_rnns(kind, counted):
    ours, _ = _pair(kind, num_layers=2, bidirectional=True)
    x = _leaf(T, M, N_X)
    out, _ = ours(x)
    assert counted == {"forward": 1, "backward": 0}
    out.sum().backward()
    assert counted == {"forward": 1, "backward": 1}
    assert x.grad is not None
    assert all(p.grad is not None for p in ours.parameters())


def test_the_functional_backward_is_portable_rnns(counted, monkeypatch):
    p = _with_output_layer("lstm", N_X, N_A, 2)
    x = _leaf(N_X, M, T)
    a, y, c_n = pt.lstm_forward(x, None, p)
    (a.sum() + y.sum() + c_n.sum()).backward()
    assert counted == {"forward": 1, "backward": 1}
    # and the gradients are what the backward returns: scale them, see them scaled
    bwd = stacked.multilayer_backward

    def doubled(*args, **kw):
        g = bwd(*args, **kw)
        g["dx"] = 2 * g["dx"]
        return g

    first = x.grad.clone()
    x.grad = None
    monkeypatch.setattr(stacked, "multilayer_backward", doubled)
    a, y, c_n = pt.lstm_forward(x, None, p)
    (a.sum() + y.sum() + c_n.sum()).backward()
    _close(x.grad, 2 * first, "dx through the patched backward")


def test_only_final_states_used(counted):
    """An unused output gets no gradient: the backward runs with zeros or None there."""
    ours, theirs = _pair("lstm", num_layers=2)
    x = _leaf(T, M, N_X)
    _, (h, _) = ours(x)
    h.sum().backward()
    g = x.grad.clone()
    x.grad = None
    _, (h, _) = theirs(x)
    h.sum().backward()
    _close(g, x.grad, "dx from h_n alone")
    assert counted["backward"] == 1


# --- bad input ---------------------------------------------------------------------------


def _one_line(excinfo, *words):
    text = str(excinfo.value)
    assert "\n" not in text
    for w in words:
        assert w in text, (w, text)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [  # PyTorch's own constructor checks, which the subclasses keep
        (lambda: pt.RNN(3, 4, nonlinearity="sigmoid"), ValueError, ["nonlinearity", "sigmoid"]),
        (lambda: pt.LSTM(3, 4, proj_size=4), ValueError, ["proj_size"]),
        (lambda: pt.GRU(3, 4, num_layers=2, dropout=1.5), ValueError, ["dropout"]),
    ],
)
def test_unsupported_constructor_arguments_are_named(make, error, words):
    with pytest.raises(error) as excinfo:
        make()
    _one_line(excinfo, *words)


@pytest.mark.parametrize(
    ("kind", "call", "error", "words"),
    [
        ("gru", lambda m: m(torch.randn(T, M, 2, dtype=F64)), ValueError, ["input", "input_size"]),
        ("rnn", lambda m: m(torch.randn(M, T, N_X, 1, dtype=F64)), ValueError, ["input", "3-D"]),
        ("rnn", lambda m: m(torch.randn(T, M, N_X)), TypeError, ["input", "dtype"]),
        ("gru", lambda m: m([[1.0]]), TypeError, ["input"]),
        ("gru", lambda m: m(torch.randn(0, M, N_X, dtype=F64)), ValueError, ["input", "time step"]),
        (
            "gru",
            lambda m: m(torch.randn(T, M, N_X, dtype=F64), torch.zeros(1, M + 1, N_A, dtype=F64)),
            ValueError,
            ["hx", "(1, 3, 4)"],
        ),
        (
            "rnn",
            lambda m: m(torch.randn(T, N_X, dtype=F64), torch.zeros(1, M, N_A, dtype=F64)),
            ValueError,
            ["hx", "(1, 4)"],
        ),
        (
            "lstm",
            lambda m: m(torch.randn(T, M, N_X, dtype=F64), torch.zeros(1, M, N_A, dtype=F64)),
            TypeError,
            ["hx", "tuple"],
        ),
        (
            "lstm",
            lambda m: m(
                torch.randn(T, M, N_X, dtype=F64),
                (torch.zeros(1, M, N_A, dtype=F64), torch.zeros(2, M, N_A, dtype=F64)),
            ),
            ValueError,
            ["hx[1]", "c_0"],
        ),
        (
            "lstm",
            lambda m: m(
                torch.randn(T, M, N_X, dtype=F64),
                (torch.zeros(1, M, N_A), torch.zeros(1, M, N_A, dtype=F64)),
            ),
            TypeError,
            ["hx[0]", "dtype"],
        ),
    ],
)
def test_bad_module_input_is_named_before_any_work(kind, call, error, words, counted):
    module = OURS[kind](N_X, N_A, dtype=F64)
    with pytest.raises(error) as excinfo:
        call(module)
    _one_line(excinfo, *words)
    assert counted["forward"] == 0


def test_bad_functional_input_is_named_before_any_work(counted):
    p = _with_output_layer("lstm", N_X, N_A, 2)
    x = torch.randn(N_X, M, T, dtype=F64)
    with pytest.raises(ValueError) as excinfo:
        pt.lstm_forward(x, torch.zeros(N_A, M + 1, dtype=F64), p)
    _one_line(excinfo, "a0")
    with pytest.raises(TypeError) as excinfo:
        pt.lstm_forward(x.numpy(), None, {k: v.detach().numpy() for k, v in p.items()})
    _one_line(excinfo, "x", "PyTorch")
    with pytest.raises(KeyError) as excinfo:
        pt.multilayer_forward(x, [{"Wf": p["Wf"]}], cell="lstm")
    _one_line(excinfo, "layers[0]")
    assert counted["forward"] == 0
    # the rest is portable_rnn.multilayer_forward's own checks, before its arithmetic
    with pytest.raises(ValueError) as excinfo:
        pt.multilayer_forward(x, _layers("gru", N_X, N_A, 1, False), cell="gru", c0=x[:1])
    _one_line(excinfo, "c0")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_float32_module_matches_torch(kind):
    torch.manual_seed(0)
    ours = OURS[kind](N_X, N_A, num_layers=2, bidirectional=True)
    theirs = THEIRS[kind](N_X, N_A, num_layers=2, bidirectional=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(T, M, N_X).requires_grad_()
    out_o, _ = ours(x)
    out_o.sum().backward()
    (g_o,) = _grads_of([x])
    out_t, _ = theirs(x)
    out_t.sum().backward()
    (g_t,) = _grads_of([x])
    assert out_o.dtype == g_o.dtype == torch.float32
    torch.testing.assert_close(out_o, out_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_o, g_t, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5, msg=name)


# --- the variants: relu, proj_size, dropout ---------------------------------------------

VARIANT_CASES = list(
    itertools.product(
        [("rnn", {"nonlinearity": "relu"}), ("lstm", {"proj_size": 2})],
        [1, 2],  # num_layers
        [False, True],  # bidirectional
        [None, "unsorted"],  # packed sequence
    )
)


@pytest.mark.parametrize(("variant", "layers", "bidir", "packed"), VARIANT_CASES)
def test_variant_module_matches_torch(variant, layers, bidir, packed):
    kind, extra = variant
    ours, theirs = _pair(kind, num_layers=layers, bidirectional=bidir, **extra)
    LD, n_h = layers * (2 if bidir else 1), extra.get("proj_size", N_A)
    torch.manual_seed(2)
    x = _leaf(T, M, N_X)
    states = [_leaf(LD, M, n_h)] + ([_leaf(LD, M, N_A)] if kind == "lstm" else [])
    hx = tuple(states) if kind == "lstm" else states[0]
    lengths = None if packed is None else torch.tensor(LENGTHS[packed])
    out_o, st_o = _run(ours, x, hx, lengths, False, False)
    g_o = _grads_of([x, *states])
    p_o = _grads_of(list(ours.parameters()))
    out_t, st_t = _run(theirs, x, hx, lengths, False, False)
    g_t = _grads_of([x, *states])
    p_t = _grads_of(list(theirs.parameters()))
    data_o = out_o.data if packed else out_o
    data_t = out_t.data if packed else out_t
    assert data_o.shape[-1] == (2 if bidir else 1) * n_h
    _close(data_o, data_t, "output")
    for k, (a, b) in enumerate(zip([*st_o, *g_o], [*st_t, *g_t], strict=True)):
        _close(a, b, f"state or gradient {k}")
    names = [n for n, _ in ours.named_parameters()]
    assert names == [n for n, _ in theirs.named_parameters()]
    assert kind != "lstm" or "weight_hr_l0" in names
    for name, a, b in zip(names, p_o, p_t, strict=True):
        _close(a, b, f"{name}.grad")


def test_relu_and_proj_functional_forward_pass_weights_through():
    """`pt.multilayer_forward` takes ``nonlinearity`` and dicts with ``Wp``, and autograd
    reaches ``Wp``: its gradient equals the module's ``weight_hr_l0.grad``."""
    from portable_rnn.interop import from_torch, torch_options

    _, theirs = _pair("lstm", num_layers=2, proj_size=3)
    layers = [{k: v.requires_grad_() for k, v in p.items()} for p in from_torch(theirs)]
    x = _leaf(T, M, N_X)
    out, _, _ = pt.multilayer_forward(x.permute(2, 1, 0), layers, **torch_options(theirs))
    out.sum().backward()
    out_t, _ = theirs(x)
    out_t.sum().backward()
    _close(out.permute(2, 1, 0), out_t, "output")
    for k in range(2):
        _close(layers[k]["Wp"].grad, getattr(theirs, f"weight_hr_l{k}").grad, f"Wp {k}")
    _, relu = _pair("rnn", nonlinearity="relu")
    x = _leaf(N_X, M, T)
    ours, _, _ = pt.multilayer_forward(x, [from_torch(relu)], cell="rnn", nonlinearity="relu")
    _close(ours.permute(2, 1, 0), relu(x.detach().permute(2, 1, 0))[0], "relu output")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_module_dropout_is_seeded_by_torch_and_off_in_eval(kind):
    ours, theirs = _pair(kind, num_layers=3, dropout=0.5)
    x = torch.randn(T, M, N_X, dtype=F64)
    ours.train()
    torch.manual_seed(10)
    first, _ = ours(x)
    torch.manual_seed(10)
    again, _ = ours(x)
    assert torch.equal(first, again)  # torch.manual_seed repeats the masks
    other, _ = ours(x)  # the generator moved on: other masks
    assert not torch.equal(first, other)
    ours.eval()
    theirs.eval()
    _close(ours(x)[0], theirs(x)[0], "eval output")
    assert not torch.allclose(first, ours(x)[0])


def test_module_dropout_uses_the_seed_it_draws():
    """In training, the module's forward is `multilayer_forward` with ``dropout`` and the
    seed drawn from PyTorch's generator; its gradients are that call's backward."""
    ours, _ = _pair("lstm", num_layers=2, proj_size=2, dropout=0.3, bidirectional=True)
    ours.train()
    from portable_rnn.interop import from_torch

    x = _leaf(T, M, N_X)
    torch.manual_seed(21)
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    torch.manual_seed(21)
    out, _ = ours(x)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    with pytest.warns(UserWarning, match="dropout"):
        found = from_torch(ours)
    layers = [{k: v.numpy() for k, v in p.items()} for p in found]
    want, _, _, cache = prnn.multilayer_forward(
        x.detach().permute(2, 1, 0).numpy(),
        layers,
        cell="lstm",
        bidirectional=True,
        dropout=0.3,
        seed=seed,
    )
    _close(out.detach().permute(2, 1, 0), torch.from_numpy(want), "output")
    g = prnn.multilayer_backward(dout.permute(2, 1, 0).numpy(), cache)
    _close(x.grad.permute(2, 1, 0), torch.from_numpy(g["dx"]), "dx")
    _close(ours.weight_hr_l1_reverse.grad, torch.from_numpy(g["layers"][3]["dWp"]), "dWp")


def test_proj_module_unbatched_and_batch_first_match_torch():
    ours, theirs = _pair("lstm", num_layers=2, bidirectional=True, proj_size=3)
    x = _leaf(T, N_X)
    hx = (_leaf(4, 3), _leaf(4, N_A))  # h (L*D, P) and c (L*D, H), unbatched
    out_o, st_o = _run(ours, x, hx, None, True, False)
    g_o = _grads_of([x, *hx])
    out_t, st_t = _run(theirs, x, hx, None, True, False)
    g_t = _grads_of([x, *hx])
    assert out_o.shape == (T, 6)
    _close(out_o, out_t, "output")
    for a, b in zip([*st_o, *g_o], [*st_t, *g_t], strict=True):
        assert a.shape == b.shape
        _close(a, b, "state or gradient")
    with pytest.raises(ValueError) as excinfo:  # h with hidden_size rows: named
        ours(x, (torch.zeros(4, N_A, dtype=F64), hx[1]))
    _one_line(excinfo, "hx[0]", "proj_size", "(4, 3)")
    ours, theirs = _pair("rnn", nonlinearity="relu", batch_first=True, num_layers=2)
    x = _leaf(M, T, N_X)
    out_o, _ = _run(ours, x, None, None, True, True)
    out_t, _ = _run(theirs, x, None, None, True, True)
    _close(out_o, out_t, "relu output, batch first")
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        _close(a.grad, b.grad, f"{name}.grad")
