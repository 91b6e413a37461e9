"""Variable-length sequences (issue 13) against PyTorch's packed sequences, the outside oracle.

For RNN (tanh), LSTM and GRU, one and two layers, one and two directions, with lengths that
hold 1, T_x and a mix in no order ([3, 5, 1, 4] at T_x = 5) and with every sequence full:
the outputs, the final states and every gradient (inputs, initial states, each weight and
bias) equal ``torch.nn.RNN/LSTM/GRU`` run on ``pack_padded_sequence(...,
enforce_sorted=False)`` and ``pad_packed_sequence(total_length=T_x)`` with autograd, in
float64 to the suite's float64 tolerances, on every backend. The loss is
``sum(out * dout) + sum(h_n * dh_n) [+ sum(c_n * dc_n)]`` with random weights, so ours is
fed the same ``dout``, ``da_n`` and ``dc_n`` (random also at padded steps: they must be
ignored). Padded outputs must be exactly zero.

Covered: `portable_rnn.multilayer_forward`/`multilayer_backward` (column dialect), the
single-layer column functions (``rnn_forward``... and their backwards; PyTorch's ``h_n`` is
`portable_rnn.last_state` of ours) and the rows dialect (`portable_rnn.rnn_layers`). PyTorch
refuses a length of 0, so a 0-length example is checked apart: the other examples against
PyTorch run without it, the empty one against what it must be (initial state, zero outputs,
zero ``dx``, ``da0`` equal to the ``da_n`` it was given).
"""

from __future__ import annotations

import copy
import functools
import zlib

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn.interop import from_torch
from portable_rnn.testing import assert_close, to_numpy

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of these tests")
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
CELLS = ["rnn", "lstm", "gru"]
N_X, N_A, M, T = 3, 4, 4, 5
#: unsorted, with 1 and T_x among them; and every sequence full
LENGTHS = {"mixed": (3, 5, 1, 4), "full": (5, 5, 5, 5)}
#: a 0-length example among others (PyTorch is run on the others only)
WITH_EMPTY = (3, 0, 5, 2)

COLUMN_FORWARD = {"rnn": prnn.rnn_forward, "lstm": prnn.lstm_forward, "gru": prnn.gru_forward}
COLUMN_BACKWARD = {
    "rnn": prnn.rnn_backward,
    "lstm": prnn.lstm_backward,
    "gru": prnn.gru_backward,
}
ROWS_KEYS = ("Wx", "Wh", "b", "bhn")


# -- PyTorch's side ---------------------------------------------------------------------


@functools.cache
def _reference(cell, num_layers, bidirectional, lengths, *, feed_c_n=True, batch_first=False):
    """PyTorch on packed sequences: inputs, results and gradients, time-major NumPy float64.

    Arrays: ``x`` and ``dx`` ``(T, m, n_x)``; ``out`` and ``dout`` ``(T, m, D * n_a)``;
    ``h0``, ``dh0``, ``h_n``, ``dh_n`` (and ``c*`` for the LSTM) ``(L * D, m, n_a)``.
    ``params``: `from_torch` of the module (a list of dicts of tensors, one per layer and
    direction); ``grads``: PyTorch's parameter gradients in the same layout (see
    `_grad_module`). ``feed_c_n=False`` leaves ``c_n`` out of the loss (the single-layer
    backwards take no gradient of it). ``batch_first`` builds the module for the rows
    dialect (the arrays stay time-major) and starts the LSTM from ``c0 = 0``, as the rows
    dialect's LSTM does.
    """
    D = 2 if bidirectional else 1
    key = f"{cell}{num_layers}{bidirectional}{lengths}{feed_c_n}{batch_first}".encode()
    torch.manual_seed(zlib.crc32(key))
    m = len(lengths)
    module = MODULES[cell](
        N_X,
        N_A,
        num_layers=num_layers,
        bidirectional=bidirectional,
        batch_first=batch_first,
        dtype=torch.float64,
    )
    x = torch.randn(T, m, N_X, dtype=torch.float64)
    x = (x.transpose(0, 1) if batch_first else x).clone().requires_grad_(True)
    h0 = torch.randn(num_layers * D, m, N_A, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(num_layers * D, m, N_A, dtype=torch.float64)
    c0 = (torch.zeros_like(c0) if batch_first else c0).requires_grad_(True)
    packed = pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
    )
    out_packed, state = module(packed, (h0, c0) if cell == "lstm" else h0)
    out, _ = pad_packed_sequence(out_packed, batch_first=batch_first, total_length=T)
    h_n, c_n = state if cell == "lstm" else (state, None)
    dout, dh_n = torch.randn_like(out), torch.randn_like(h_n)
    loss = (out * dout).sum() + (h_n * dh_n).sum()
    if cell == "lstm":
        dc_n = torch.randn_like(c_n) if feed_c_n else torch.zeros_like(c_n)
        loss = loss + (c_n * dc_n).sum()
    loss.backward()

    def time_major(t):
        t = t.detach()
        return (t.transpose(0, 1) if batch_first else t).numpy().copy()

    dialect = "rows" if batch_first else "column"
    params = from_torch(module, dialect=dialect)
    grads = from_torch(_grad_module(cell, module), dialect=dialect)
    ref = {
        "x": time_major(x),
        "dx": time_major(x.grad),
        "out": time_major(out),
        "dout": time_major(dout),
        "h0": h0.detach().numpy().copy(),
        "dh0": h0.grad.numpy().copy(),
        "h_n": h_n.detach().numpy().copy(),
        "dh_n": dh_n.numpy().copy(),
        "params": params if isinstance(params, list) else [params],
        "grads": [
            {k: v.numpy().copy() for k, v in g.items()}
            for g in (grads if isinstance(grads, list) else [grads])
        ],
    }
    if cell == "lstm":
        ref.update(
            c0=c0.detach().numpy().copy(),
            dc0=c0.grad.numpy().copy(),
            c_n=c_n.detach().numpy().copy(),
            dc_n=dc_n.numpy().copy(),
        )
    return ref


def _grad_module(cell, module):
    """A copy of ``module`` holding its gradients, so that `from_torch` maps them as weights.

    Ours has one bias where PyTorch has ``bias_ih + bias_hh``; the gradient of that sum is
    ``bias_ih``'s, so ``bias_hh``'s part of it is zeroed. The GRU's ``b_hn`` is a bias of
    its own (``bhn``) and keeps its gradient.
    """
    holder = copy.deepcopy(module)
    with torch.no_grad():
        for name, p in holder.named_parameters():
            grad = getattr(module, name).grad.clone()
            if name.startswith("bias_hh"):
                grad[: 2 * N_A if cell == "gru" else grad.shape[0]] = 0
            p.copy_(grad)
    return holder


# -- helpers ----------------------------------------------------------------------------


def _col_seq(arr):
    """``(T, m, F)`` -> the column dialect's ``(F, m, T)``."""
    return np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))


def _col_states(arr):
    """``(L * D, m, n_a)`` -> ``(L * D, n_a, m)``."""
    return np.ascontiguousarray(np.transpose(arr, (0, 2, 1)))


def _rows_seq(arr):
    """``(T, m, F)`` -> the rows dialect's ``(m, T, F)``."""
    return np.ascontiguousarray(np.transpose(arr, (1, 0, 2)))


def _lengths_array(xp, lengths, dtype="int64"):
    return xp.asarray(np.asarray(lengths, dtype=dtype))


def _close(xp, actual, desired, what):
    assert_close(actual, desired, xp=xp, dtype="float64", device=xp.array_device, err_msg=what)


def _padding_is_zero(arr, lengths, what, *, time_axis=-1, batch_axis=1):
    """Every padded step of ``arr`` (a backend array) is exactly zero."""
    host = np.moveaxis(to_numpy(arr), (batch_axis, time_axis), (0, 1))  # (m, T, ...)
    for j, n in enumerate(lengths):
        padded = host[j, n:]
        assert np.all(padded == 0), f"{what}: example {j} (length {n}) not zero after step {n}"


def _column_params(xp, ref):
    return [prnn.to_backend(p, xp.backend, xp.device) for p in ref["params"]]


def _check_layer_grads(xp, ours, theirs, where):
    assert sorted(ours) == sorted("d" + k for k in theirs), where
    for key, value in theirs.items():
        _close(xp, ours["d" + key], value, f"{where} d{key}")


def _check_rows_grads(xp, ours, theirs):
    """The rows dialect's weight gradients (``dWx, dWh, db[, dbhn]``) against PyTorch's."""
    keys = [k for k in ROWS_KEYS if k in theirs]
    for key, value in zip(keys, ours, strict=True):
        _close(xp, value, theirs[key], f"d{key}")


def _last_step_grad(dout_tm, dh_n, lengths):
    """``dout`` with ``dh_n`` added at each example's last real step: the gradient on every
    hidden state of a single layer whose loss also reads ``h_n`` (time-major in and out)."""
    da = dout_tm.copy()
    for j, n in enumerate(lengths):
        if n:
            da[n - 1, j, :] += dh_n[j, :]
    return da


# -- multilayer_forward / multilayer_backward ------------------------------------------


@pytest.mark.parametrize("lengths_name", sorted(LENGTHS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_multilayer_matches_packed_torch(xp, cell, num_layers, bidirectional, lengths_name):
    lengths = LENGTHS[lengths_name]
    ref = _reference(cell, num_layers, bidirectional, lengths)
    lstm = cell == "lstm"
    x = xp.asarray(_col_seq(ref["x"]))
    kw = {"c0": xp.asarray(_col_states(ref["c0"]))} if lstm else {}
    out, a_n, c_n, cache = prnn.multilayer_forward(
        x,
        _column_params(xp, ref),
        cell=cell,
        bidirectional=bidirectional,
        a0=xp.asarray(_col_states(ref["h0"])),
        lengths=_lengths_array(xp, lengths),
        **kw,
    )
    _close(xp, out, _col_seq(ref["out"]), "out")
    _padding_is_zero(out, lengths, "out")
    _close(xp, a_n, _col_states(ref["h_n"]), "a_n")
    if lstm:
        _close(xp, c_n, _col_states(ref["c_n"]), "c_n")
    else:
        assert c_n is None

    bkw = {"dc_n": xp.asarray(_col_states(ref["dc_n"]))} if lstm else {}
    g = prnn.multilayer_backward(
        xp.asarray(_col_seq(ref["dout"])),
        cache,
        da_n=xp.asarray(_col_states(ref["dh_n"])),
        **bkw,
    )
    _close(xp, g["dx"], _col_seq(ref["dx"]), "dx")
    _padding_is_zero(g["dx"], lengths, "dx")
    _close(xp, g["da0"], _col_states(ref["dh0"]), "da0")
    if lstm:
        _close(xp, g["dc0"], _col_states(ref["dc0"]), "dc0")
    else:
        assert "dc0" not in g
    assert len(g["layers"]) == len(ref["grads"])
    for k, (ours, theirs) in enumerate(zip(g["layers"], ref["grads"], strict=True)):
        _check_layer_grads(xp, ours, theirs, f"layers[{k}]")


# -- the single-layer column functions ---------------------------------------------------


@pytest.mark.parametrize("as_list", [False, True], ids=["array", "list"])
@pytest.mark.parametrize("lengths_name", sorted(LENGTHS))
@pytest.mark.parametrize("cell", CELLS)
def test_column_sequence_matches_packed_torch(xp, cell, lengths_name, as_list):
    lengths = LENGTHS[lengths_name]
    ref = _reference(cell, 1, False, lengths, feed_c_n=False)
    lstm = cell == "lstm"
    # an output layer too: y at real steps is softmax(Wy a + by), zero at padded steps
    rng = np.random.default_rng(7)
    Wy, by = rng.standard_normal((2, N_A)), rng.standard_normal((2, 1))
    Wy_key = "Wya" if cell == "rnn" else "Wy"  # the seed notebooks' names
    params = {**_column_params(xp, ref)[0], Wy_key: xp.asarray(Wy), "by": xp.asarray(by)}
    given = list(lengths) if as_list else _lengths_array(xp, lengths, "int32")
    args = (xp.asarray(_col_seq(ref["x"])), xp.asarray(ref["h0"][0].T), params)
    kw = {"c0": xp.asarray(ref["c0"][0].T)} if lstm else {}
    if lstm:
        a, y, c, caches = prnn.lstm_forward(*args, lengths=given, **kw)
    else:
        a, y, caches = COLUMN_FORWARD[cell](*args, lengths=given)
    a_ref = _col_seq(ref["out"])
    _close(xp, a, a_ref, "a")
    _close(xp, prnn.last_state(a, given), ref["h_n"][0].T, "last_state(a) vs h_n")
    z = np.einsum("ya,amt->ymt", Wy, a_ref) + by[:, :, None]
    y_ref = np.exp(z - z.max(axis=0)) / np.exp(z - z.max(axis=0)).sum(axis=0)
    for j, n in enumerate(lengths):
        y_ref[:, j, n:] = 0
    _close(xp, y, y_ref, "y")
    for name, arr in (("a", a), ("y", y), *((("c", c),) if lstm else ())):
        _padding_is_zero(arr, lengths, name)
    if lstm:
        _close(xp, prnn.last_state(c, given), ref["c_n"][0].T, "last_state(c) vs c_n")

    da = _last_step_grad(ref["dout"], ref["dh_n"][0], lengths)
    g = COLUMN_BACKWARD[cell](xp.asarray(_col_seq(da)), caches, lengths=given)
    _close(xp, g["dx"], _col_seq(ref["dx"]), "dx")
    _padding_is_zero(g["dx"], lengths, "dx")
    _close(xp, g["da0"], ref["dh0"][0].T, "da0")
    if lstm:
        _close(xp, g["dc0"], ref["dc0"][0].T, "dc0")
    layer = {k: v for k, v in g.items() if k not in ("dx", "da0", "dc0", "dWy", "dWya", "dby")}
    _check_layer_grads(xp, layer, ref["grads"][0], cell)


# -- the rows dialect --------------------------------------------------------------------


@pytest.mark.parametrize("lengths_name", sorted(LENGTHS))
@pytest.mark.parametrize("cell", CELLS)
def test_rows_dialect_matches_packed_torch(xp, cell, lengths_name):
    lengths = LENGTHS[lengths_name]
    ref = _reference(cell, 1, False, lengths, feed_c_n=False, batch_first=True)
    p = prnn.to_backend(ref["params"][0], xp.backend, xp.device)
    weights = [p[k] for k in ROWS_KEYS if k in p]
    h, cache = getattr(rnn_layers, f"{cell}_forward")(
        xp.asarray(_rows_seq(ref["x"])),
        xp.asarray(ref["h0"][0]),
        *weights,
        lengths=_lengths_array(xp, lengths),
    )
    _close(xp, h, _rows_seq(ref["out"]), "h")
    _padding_is_zero(h, lengths, "h", time_axis=1, batch_axis=0)
    dh = _rows_seq(_last_step_grad(ref["dout"], ref["dh_n"][0], lengths))
    dx, dh0, *dw = getattr(rnn_layers, f"{cell}_backward")(xp.asarray(dh), cache)
    _close(xp, dx, _rows_seq(ref["dx"]), "dx")
    _padding_is_zero(dx, lengths, "dx", time_axis=1, batch_axis=0)
    _close(xp, dh0, ref["dh0"][0], "dh0")
    _check_rows_grads(xp, dw, ref["grads"][0])


# -- a 0-length example (PyTorch refuses it: run on the others, the empty one checked apart) --

EMPTY = WITH_EMPTY.index(0)
OTHERS = tuple(n for n in WITH_EMPTY if n)


def _insert(arr, value, axis=1):
    """``arr`` (the examples other than the empty one) with ``value`` (a scalar, or an array
    of ``arr``'s shape without ``axis``) inserted as the empty example, along ``axis``."""
    rest = arr.shape[:axis] + arr.shape[axis + 1 :]
    column = np.expand_dims(np.broadcast_to(value, rest), axis)
    before, after = np.split(arr, [EMPTY], axis=axis)
    return np.concatenate([before, column, after], axis=axis)


def _random_example(rng, arr, axis=1):
    """Random values for the empty example of ``arr`` (its shape without ``axis``)."""
    return rng.standard_normal(arr.shape[:axis] + arr.shape[axis + 1 :])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_multilayer_empty_example(xp, cell, bidirectional):
    ref = _reference(cell, 2, bidirectional, OTHERS)
    rng = np.random.default_rng(13)
    lstm = cell == "lstm"
    fields = ["x", "h0", "dout", "dh_n", *(["c0", "dc_n"] if lstm else [])]
    own = {k: _random_example(rng, ref[k]) for k in fields}  # the empty example's values
    full = {k: _insert(ref[k], own[k]) for k in fields}
    kw = {"c0": xp.asarray(_col_states(full["c0"]))} if lstm else {}
    out, a_n, c_n, cache = prnn.multilayer_forward(
        xp.asarray(_col_seq(full["x"])),
        _column_params(xp, ref),
        cell=cell,
        bidirectional=bidirectional,
        a0=xp.asarray(_col_states(full["h0"])),
        lengths=_lengths_array(xp, WITH_EMPTY),
        **kw,
    )
    # the empty example: outputs zero, final states its initial ones
    _close(xp, out, _col_seq(_insert(ref["out"], 0.0)), "out")
    _padding_is_zero(out, WITH_EMPTY, "out")
    _close(xp, a_n, _col_states(_insert(ref["h_n"], own["h0"])), "a_n")
    if lstm:
        _close(xp, c_n, _col_states(_insert(ref["c_n"], own["c0"])), "c_n")
    bkw = {"dc_n": xp.asarray(_col_states(full["dc_n"]))} if lstm else {}
    g = prnn.multilayer_backward(
        xp.asarray(_col_seq(full["dout"])),
        cache,
        da_n=xp.asarray(_col_states(full["dh_n"])),
        **bkw,
    )
    # its dx zero, its da0 (dc0) the da_n (dc_n) it was given; the weights' as without it
    _close(xp, g["dx"], _col_seq(_insert(ref["dx"], 0.0)), "dx")
    _padding_is_zero(g["dx"], WITH_EMPTY, "dx")
    _close(xp, g["da0"], _col_states(_insert(ref["dh0"], own["dh_n"])), "da0")
    if lstm:
        _close(xp, g["dc0"], _col_states(_insert(ref["dc0"], own["dc_n"])), "dc0")
    for k, (ours, theirs) in enumerate(zip(g["layers"], ref["grads"], strict=True)):
        _check_layer_grads(xp, ours, theirs, f"layers[{k}]")


@pytest.mark.parametrize("cell", CELLS)
def test_column_sequence_empty_example(xp, cell):
    ref = _reference(cell, 1, False, OTHERS, feed_c_n=False)
    rng = np.random.default_rng(14)
    lstm = cell == "lstm"
    fields = ["x", "h0", "dout", "dh_n", *(["c0"] if lstm else [])]
    full = {k: _insert(ref[k], _random_example(rng, ref[k])) for k in fields}
    args = (
        xp.asarray(_col_seq(full["x"])),
        xp.asarray(full["h0"][0].T),
        _column_params(xp, ref)[0],
    )
    kw = {"c0": xp.asarray(full["c0"][0].T)} if lstm else {}
    lengths = _lengths_array(xp, WITH_EMPTY)
    if lstm:
        a, y, c, caches = prnn.lstm_forward(*args, lengths=lengths, **kw)
        _padding_is_zero(c, WITH_EMPTY, "c")
    else:
        a, y, caches = COLUMN_FORWARD[cell](*args, lengths=lengths)
    assert y is None
    _close(xp, a, _col_seq(_insert(ref["out"], 0.0)), "a")
    _padding_is_zero(a, WITH_EMPTY, "a")
    # every gradient sent to the empty example lands on padding: all of it is ignored
    da = _last_step_grad(full["dout"], full["dh_n"][0], WITH_EMPTY)
    g = COLUMN_BACKWARD[cell](xp.asarray(_col_seq(da)), caches)
    _close(xp, g["dx"], _col_seq(_insert(ref["dx"], 0.0)), "dx")
    _close(xp, g["da0"], _insert(ref["dh0"], 0.0)[0].T, "da0")
    if lstm:
        _close(xp, g["dc0"], _insert(ref["dc0"], 0.0)[0].T, "dc0")
    layer = {k: v for k, v in g.items() if k not in ("dx", "da0", "dc0")}
    _check_layer_grads(xp, layer, ref["grads"][0], cell)


@pytest.mark.parametrize("cell", CELLS)
def test_rows_dialect_empty_example(xp, cell):
    ref = _reference(cell, 1, False, OTHERS, feed_c_n=False, batch_first=True)
    rng = np.random.default_rng(15)
    full = {k: _insert(ref[k], _random_example(rng, ref[k])) for k in ("x", "h0", "dout", "dh_n")}
    p = prnn.to_backend(ref["params"][0], xp.backend, xp.device)
    h, cache = getattr(rnn_layers, f"{cell}_forward")(
        xp.asarray(_rows_seq(full["x"])),
        xp.asarray(full["h0"][0]),
        *[p[k] for k in ROWS_KEYS if k in p],
        lengths=list(WITH_EMPTY),
    )
    _close(xp, h, _rows_seq(_insert(ref["out"], 0.0)), "h")
    _padding_is_zero(h, WITH_EMPTY, "h", time_axis=1, batch_axis=0)
    dh = _rows_seq(_last_step_grad(full["dout"], full["dh_n"][0], WITH_EMPTY))
    dx, dh0, *dw = getattr(rnn_layers, f"{cell}_backward")(xp.asarray(dh), cache)
    _close(xp, dx, _rows_seq(_insert(ref["dx"], 0.0)), "dx")
    _close(xp, dh0, _insert(ref["dh0"], 0.0)[0], "dh0")
    _check_rows_grads(xp, dw, ref["grads"][0])
