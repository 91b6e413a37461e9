"""PyTorch as an outside oracle: the same weights give the same outputs and gradients.

Forward outputs and every gradient (ours by hand, PyTorch's by autograd) must agree
in float64 to 1e-10, for all three cells, their torch.nn.*Cell modules, several
shapes, the rows dialect, and two-layer bidirectional stacks.
"""

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn._core.spec import cell_spec
from portable_rnn.interop import _column, from_torch, grads_to_torch, to_torch
from portable_rnn.testing import assert_close, to_numpy

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")
TOL = {"rtol": 1e-10, "atol": 1e-10}
MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
CELLS = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
SHAPES = [(3, 5, 2, 4), (1, 1, 1, 1), (7, 4, 5, 9)]  # n_x, n_a, m, T
FORWARD = {"rnn": prnn.rnn_forward, "lstm": prnn.lstm_forward, "gru": prnn.gru_forward}
BACKWARD = {"rnn": prnn.rnn_backward, "lstm": prnn.lstm_backward, "gru": prnn.gru_backward}


def _close(ours, theirs, what):
    assert_close(ours, theirs.detach(), err_msg=what, **TOL)


def _grads_as_columns(kind, module, suffix=""):
    """PyTorch's parameter gradients mapped like the weights: (from bias_ih, from bias_hh)."""
    g = {
        n: getattr(module, f"{n}{suffix}").grad
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    z = torch.zeros_like(g["bias_ih"])
    xp = prnn.testing.Backend("torch", "torch", "cpu").xp
    spec = cell_spec(kind)
    from_ih = _column(spec, xp, g["weight_ih"], g["weight_hh"], g["bias_ih"], z)
    from_hh = _column(spec, xp, g["weight_ih"], g["weight_hh"], z, g["bias_hh"])
    return from_ih, from_hh


def _check_param_grads(kind, ours, module, suffix=""):
    """Weights: ours == PyTorch's mapped; biases: b = b_ih + b_hh, so each equals ours."""
    from_ih, from_hh = _grads_as_columns(kind, module, suffix)
    for key in from_ih:
        if key.startswith("W"):
            _close(ours["d" + key], from_ih[key], key)
        elif key == "bn":  # GRU: b_in only on the input side
            _close(ours["dbn"], from_ih["bn"], "bn")
        elif key == "bhn":  # GRU: b_hn only on the hidden side
            _close(ours["dbhn"], from_hh["bhn"], "bhn")
        else:
            _close(ours["d" + key], from_ih[key], key + " (bias_ih)")
            _close(ours["d" + key], from_hh[key], key + " (bias_hh)")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("shape", SHAPES)
def test_sequence_matches_torch(kind, shape):
    n_x, n_a, m, T = shape
    torch.manual_seed(0)
    module = MODULES[kind](n_x, n_a, dtype=torch.float64)
    params = from_torch(module)
    x = torch.randn(T, m, n_x, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, m, n_a, dtype=torch.float64, requires_grad=True)
    state = (h0, torch.zeros_like(h0)) if kind == "lstm" else h0
    out, _ = module(x, state)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()

    x_col = x.detach().permute(2, 1, 0)  # (T, m, n_x) -> (n_x, m, T)
    a, y, *_, caches = FORWARD[kind](x_col, h0.detach()[0].T, params)
    assert y is None  # PyTorch modules have no output layer
    _close(a, out.permute(2, 1, 0), "a")
    g = BACKWARD[kind](dout.permute(2, 1, 0), caches)
    _close(g["dx"], x.grad.permute(2, 1, 0), "dx")
    _close(g["da0"], h0.grad[0].T, "da0")
    _check_param_grads(kind, g, module, "_l0")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cell_modules_match_torch(kind):
    torch.manual_seed(1)
    n_x, n_a, m = 4, 6, 3
    module = CELLS[kind](n_x, n_a, dtype=torch.float64)
    params = from_torch(module)
    x = torch.randn(m, n_x, dtype=torch.float64, requires_grad=True)
    h = torch.randn(m, n_a, dtype=torch.float64, requires_grad=True)
    c = torch.randn(m, n_a, dtype=torch.float64, requires_grad=True)
    dh, dc = torch.randn(m, n_a, dtype=torch.float64), torch.randn(m, n_a, dtype=torch.float64)
    if kind == "lstm":
        h1, c1 = module(x, (h, c))
        ((h1 * dh).sum() + (c1 * dc).sum()).backward()
        a_next, c_next, _, cache = prnn.lstm_cell_forward(
            x.detach().T, h.detach().T, c.detach().T, params
        )
        _close(c_next, c1.T, "c_next")
        g = prnn.lstm_cell_backward(dh.T, dc.T, cache)
        _close(g["dc_prev"], c.grad.T, "dc_prev")
    else:
        h1 = module(x, h)
        (h1 * dh).sum().backward()
        fwd = prnn.rnn_cell_forward if kind == "rnn" else prnn.gru_cell_forward
        bwd = prnn.rnn_cell_backward if kind == "rnn" else prnn.gru_cell_backward
        a_next, _, cache = fwd(x.detach().T, h.detach().T, params)
        g = bwd(dh.T, cache)
    _close(a_next, h1.T, "a_next")
    _close(g["dxt"], x.grad.T, "dxt")
    _close(g["da_prev"], h.grad.T, "da_prev")
    _check_param_grads(kind, g, module)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_rows_dialect_matches_torch(kind):
    torch.manual_seed(2)
    N, T, D, H = 3, 4, 5, 6
    module = MODULES[kind](D, H, batch_first=True, dtype=torch.float64)
    p = from_torch(module, dialect="rows")
    x = torch.randn(N, T, D, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, N, H, dtype=torch.float64, requires_grad=True)
    state = (h0, torch.zeros_like(h0)) if kind == "lstm" else h0
    out, _ = module(x, state)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    args = [p[k] for k in ("Wx", "Wh", "b", "bhn") if k in p]
    forward = getattr(rnn_layers, f"{kind}_forward")
    h, cache = forward(x.detach(), h0.detach()[0], *args)
    _close(h, out, "h")
    dx, dh0, *_ = getattr(rnn_layers, f"{kind}_backward")(dout, cache)
    _close(dx, x.grad, "dx")
    _close(dh0, h0.grad[0], "dh0")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_two_layer_bidirectional_matches_torch(kind):
    torch.manual_seed(3)
    n_x, n_a, m, T, L = 3, 4, 2, 5, 2
    module = MODULES[kind](n_x, n_a, num_layers=L, bidirectional=True, dtype=torch.float64)
    layers = from_torch(module)
    assert isinstance(layers, list) and len(layers) == 2 * L
    x = torch.randn(T, m, n_x, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2 * L, m, n_a, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2 * L, m, n_a, dtype=torch.float64, requires_grad=True)
    if kind == "lstm":
        out, (h_n, c_n) = module(x, (h0, c0))
    else:
        out, h_n = module(x, h0)
    dout, dh_n = torch.randn_like(out), torch.randn_like(h_n)
    loss = (out * dout).sum() + (h_n * dh_n).sum()
    if kind == "lstm":
        dc_n = torch.randn_like(c_n)
        loss = loss + (c_n * dc_n).sum()
    loss.backward()

    kw = {"c0": c0.detach().permute(0, 2, 1)} if kind == "lstm" else {}
    ours, a_n, c_n_ours, cache = prnn.multilayer_forward(
        x.detach().permute(2, 1, 0),
        layers,
        cell=kind,
        bidirectional=True,
        a0=h0.detach().permute(0, 2, 1),
        **kw,
    )
    _close(ours, out.permute(2, 1, 0), "out")
    _close(a_n, h_n.permute(0, 2, 1), "a_n")
    bkw = {"dc_n": dc_n.permute(0, 2, 1)} if kind == "lstm" else {}
    if kind == "lstm":
        _close(c_n_ours, c_n.permute(0, 2, 1), "c_n")
    g = prnn.multilayer_backward(dout.permute(2, 1, 0), cache, da_n=dh_n.permute(0, 2, 1), **bkw)
    _close(g["dx"], x.grad.permute(2, 1, 0), "dx")
    _close(g["da0"], h0.grad.permute(0, 2, 1), "da0")
    if kind == "lstm":
        _close(g["dc0"], c0.grad.permute(0, 2, 1), "dc0")
    for k, grads in enumerate(g["layers"]):
        suffix = f"_l{k // 2}" + ("_reverse" if k % 2 else "")
        _check_param_grads(kind, grads, module, suffix)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dialect", ["column", "rows"])
def test_to_torch_round_trip(kind, dialect):
    torch.manual_seed(4)
    module = MODULES[kind](3, 4, batch_first=dialect == "rows", dtype=torch.float64)
    params = from_torch(module, dialect=dialect)
    back = to_torch(prnn.to_backend(params, "numpy"))  # from another backend
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    assert back.batch_first == (dialect == "rows")
    _close(back(x)[0], module(x)[0], "output")


def test_to_torch_multilayer_from_init():
    layers = prnn.init_multilayer_params("gru", 3, 4, num_layers=2, bidirectional=True, seed=0)
    module = to_torch(layers, bidirectional=True)
    assert module.num_layers == 2 and module.bidirectional
    x = np.random.default_rng(0).standard_normal((3, 2, 5))
    ours, *_ = prnn.multilayer_forward(x, layers, cell="gru", bidirectional=True)
    theirs, _ = module(torch.from_numpy(x).permute(2, 1, 0))
    _close(torch.from_numpy(ours), theirs.permute(2, 1, 0), "out")


def test_unsupported_modules_are_refused_naming_the_attribute():
    # the relu RNN and the projection are carried in the column dialect (test_variants_torch)
    with pytest.raises(ValueError, match="module.proj_size is 2"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2, batch_first=True), dialect="rows")
    with pytest.raises(ValueError, match="module.nonlinearity is 'relu'"):
        from_torch(torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True), dialect="rows")
    with pytest.raises(ValueError, match="module.batch_first is False"):
        from_torch(torch.nn.GRU(3, 4), dialect="rows")
    with pytest.raises(ValueError, match="module.num_layers is 2"):
        from_torch(torch.nn.LSTM(3, 4, num_layers=2, batch_first=True), dialect="rows")
    with pytest.raises(TypeError, match="got Linear"):
        from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="dialect must be"):
        from_torch(torch.nn.GRU(3, 4), dialect="cs231n")
    with pytest.raises(ValueError, match="cannot tell the cell"):
        to_torch({"W": np.zeros((2, 2))})


def test_bad_parameters_and_modules_are_named(xp):
    """Issue 17: to_torch([]), a missing key, a None or a list where an array goes, and
    from_torch(None) were IndexError, KeyError 'Wi', "'NoneType' object is not
    subscriptable" and "from_torch takes ..."; each now names what is wrong."""
    p = {k: xp.asarray(to_numpy(v)) for k, v in prnn.init_lstm_params(3, 4, 2, seed=0).items()}
    with pytest.raises(
        TypeError,
        match="^parameters must be a dict or a non-empty list of dicts, got an empty list",
    ):
        to_torch([])
    with pytest.raises(
        TypeError, match="^parameters must be a dict or a non-empty list of dicts, got NoneType"
    ):
        to_torch(None)
    with pytest.raises(TypeError, match=r"^parameters\[1\] must be a dict of arrays, got str"):
        to_torch([p, "layer"])
    missing = {k: v for k, v in p.items() if k != "Wi"}
    with pytest.raises(prnn.MissingParameterError, match="^parameters is missing the key.* 'Wi'"):
        to_torch(missing)
    with pytest.raises(prnn.MissingParameterError, match=r"^parameters\[1\] is missing .* 'Wi'"):
        to_torch([p, missing])
    with pytest.raises(TypeError, match=r"^parameters\['Wi'\] must be an array .*got None"):
        to_torch(dict(p, Wi=None))
    with pytest.raises(TypeError, match=r"^parameters\['bo'\] must be an array .*got list"):
        to_torch(dict(p, bo=[[0.0]] * 4))
    rows = {"Wx": np.zeros((3, 12)), "Wh": np.zeros((4, 12))}
    with pytest.raises(prnn.MissingParameterError, match="^parameters is missing the key.* 'b'"):
        to_torch(rows)
    with pytest.raises(TypeError, match=r"^parameters\['Wh'\] must be an array"):
        to_torch({"Wx": np.zeros((3, 12)), "Wh": None, "b": np.zeros(12)})
    with pytest.raises(TypeError, match="^module must be a torch.nn.RNN, .*, got None$"):
        from_torch(None)
    assert isinstance(to_torch(p), torch.nn.LSTM)  # the output layer (Wy, by) is left out


def test_module_without_bias_gives_zero_biases():
    module = torch.nn.LSTM(3, 4, bias=False, dtype=torch.float64)
    p = from_torch(module)
    assert float(torch.abs(p["bf"]).max()) == 0.0


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_torch_weights_agree_on_every_backend(xp, kind, record_diff):
    """from_torch, moved to each backend: outputs and gradients equal PyTorch's to 1e-10."""
    torch.manual_seed(5)
    n_x, n_a, m, T, L = 3, 4, 2, 5, 2
    module = MODULES[kind](n_x, n_a, num_layers=L, bidirectional=True, dtype=torch.float64)
    x = torch.randn(T, m, n_x, dtype=torch.float64, requires_grad=True)
    out, _ = module(x)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()

    layers = prnn.to_backend(from_torch(module), xp.backend, xp.device)
    X = xp.asarray(x.detach().permute(2, 1, 0).numpy())
    ours, _, _, cache = prnn.multilayer_forward(X, layers, cell=kind, bidirectional=True)
    g = prnn.multilayer_backward(xp.asarray(dout.permute(2, 1, 0).numpy()), cache)
    kw = {"xp": xp, "dtype": "float64", "device": xp.array_device, **TOL}
    want_out = out.detach().permute(2, 1, 0).numpy()
    assert_close(ours, want_out, **kw)
    record_diff(xp.name, "float64", ours, want_out)
    assert_close(g["dx"], x.grad.permute(2, 1, 0).numpy(), **kw)
    for k, grads in enumerate(g["layers"]):
        suffix = f"_l{k // 2}" + ("_reverse" if k % 2 else "")
        from_ih, _ = _grads_as_columns(kind, module, suffix)
        for key, value in from_ih.items():
            if key.startswith("W"):
                assert_close(grads["d" + key], value.numpy(), err_msg=key, **kw)


# --- dropout is a keyword, not in the dicts; gradients back into a module (grads_to_torch)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_from_torch_warns_that_dropout_is_not_in_the_dicts(kind):
    module = MODULES[kind](3, 4, num_layers=2, dropout=0.25)
    with pytest.warns(
        UserWarning,
        match=r"dropout is 0\.25; the dropout is not part of the parameter dicts: pass "
        r"dropout=module\.dropout, seed=\.\.\. to portable_rnn\.multilayer_forward",
    ):
        layers = from_torch(module)
    assert len(layers) == 2
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning without dropout
        from_torch(MODULES[kind](3, 4, num_layers=2))


def _fresh_copy(module):
    """The same module with no gradients."""
    import copy

    other = copy.deepcopy(module)
    for p in other.parameters():
        p.grad = None
    return other


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_grads_to_torch_equals_autograd_two_layers_bidirectional(kind, backend):
    torch.manual_seed(5)
    n_x, n_a, m, T, L = 3, 4, 2, 5, 2
    module = MODULES[kind](n_x, n_a, num_layers=L, bidirectional=True, dtype=torch.float64)
    target = _fresh_copy(module)
    x = torch.randn(T, m, n_x, dtype=torch.float64)
    out, states = module(x)
    h_n = states[0] if kind == "lstm" else states
    dout, dh_n = torch.randn_like(out), torch.randn_like(h_n)
    ((out * dout).sum() + (h_n * dh_n).sum()).backward()

    layers = prnn.to_backend(from_torch(module), backend)
    x_col = prnn.to_backend(x.permute(2, 1, 0).contiguous(), backend)
    *_, cache = prnn.multilayer_forward(x_col, layers, cell=kind, bidirectional=True)
    g = prnn.multilayer_backward(
        prnn.to_backend(dout.permute(2, 1, 0).contiguous(), backend),
        cache,
        da_n=prnn.to_backend(dh_n.permute(0, 2, 1).contiguous(), backend),
    )
    assert grads_to_torch(g["layers"], target) is target
    names = [n for n, _ in module.named_parameters()]
    assert len(names) == 4 * 2 * L
    for (name, theirs), ours in zip(module.named_parameters(), target.parameters(), strict=True):
        assert ours.grad is not None, name
        assert ours.grad.dtype == theirs.dtype and ours.grad.shape == theirs.shape
        _close(ours.grad, theirs.grad, name)
    # the whole dict of multilayer_backward works too, and accumulate adds
    grads_to_torch(g, target, accumulate=True)
    for (name, theirs), ours in zip(module.named_parameters(), target.parameters(), strict=True):
        _close(ours.grad, 2 * theirs.grad, name + " (accumulated)")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_grads_to_torch_rows_dialect_and_cells(kind):
    torch.manual_seed(6)
    module = MODULES[kind](3, 4, batch_first=True, dtype=torch.float64)
    target = _fresh_copy(module)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out, _ = module(x)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    p = from_torch(module, dialect="rows")
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    if kind == "gru":
        h, cache = rnn_layers.gru_forward(x, h0, p["Wx"], p["Wh"], p["b"], p["bhn"])
        _, _, dWx, dWh, db, dbhn = rnn_layers.gru_backward(dout, cache)
        g = {"dWx": dWx, "dWh": dWh, "db": db, "dbhn": dbhn}
    else:
        h, cache = getattr(rnn_layers, f"{kind}_forward")(x, h0, p["Wx"], p["Wh"], p["b"])
        _, _, dWx, dWh, db = getattr(rnn_layers, f"{kind}_backward")(dout, cache)
        g = {"dWx": dWx, "dWh": dWh, "db": db}
    _close(h, out, "h")
    grads_to_torch(g, target)
    for (name, theirs), ours in zip(module.named_parameters(), target.parameters(), strict=True):
        _close(ours.grad, theirs.grad, name)

    cell = CELLS[kind](3, 4, dtype=torch.float64)  # one step of a cell, column dialect
    cell_target = _fresh_copy(cell)
    xt, a_prev = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    pc = from_torch(cell)
    if kind == "lstm":
        c_prev = torch.randn(2, 4, dtype=torch.float64)
        h1, c1 = cell(xt, (a_prev, c_prev))
        da, dc = torch.randn_like(h1), torch.randn_like(c1)
        ((h1 * da).sum() + (c1 * dc).sum()).backward()
        *_, cache = prnn.lstm_cell_forward(xt.T, a_prev.T, c_prev.T, pc)
        gc = prnn.lstm_cell_backward(da.T, dc.T, cache)
    else:
        h1 = cell(xt, a_prev)
        da = torch.randn_like(h1)
        (h1 * da).sum().backward()
        *_, cache = getattr(prnn, f"{kind}_cell_forward")(xt.T, a_prev.T, pc)
        gc = getattr(prnn, f"{kind}_cell_backward")(da.T, cache)
    grads_to_torch(gc, cell_target)
    for (name, theirs), ours in zip(cell.named_parameters(), cell_target.parameters(), strict=True):
        _close(ours.grad, theirs.grad, "cell " + name)


def test_grads_to_torch_refuses_what_does_not_fit():
    module = torch.nn.GRU(3, 4, num_layers=2, dtype=torch.float64)
    g = prnn.init_multilayer_params("gru", 3, 4, num_layers=2, seed=0)
    grads = [{"d" + k: v for k, v in p.items()} for p in g]
    with pytest.raises(ValueError, match=r"grads holds 1 gradient dict\(s\) but the module has 2"):
        grads_to_torch(grads[:1], module)
    with pytest.raises(KeyError, match="dbhn"):
        grads_to_torch([grads[0], {k: v for k, v in grads[1].items() if k != "dbhn"}], module)
    with pytest.raises(ValueError, match="weight_ih_l1"):
        grads_to_torch([grads[0], grads[0]], torch.nn.GRU(3, 4, num_layers=2))
    with pytest.raises(TypeError, match="module must be"):
        grads_to_torch(grads, None)
    with pytest.raises(TypeError, match=r"grads\[1\]\['dWr'\] must be an array"):
        grads_to_torch([grads[0], {**grads[1], "dWr": None}], module)
    # nothing is written before every dict is checked: layer 0 was fine every time
    assert all(p.grad is None for p in module.parameters())
