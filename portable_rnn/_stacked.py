"""Multi-layer and bidirectional sequences of RNN, LSTM or GRU cells (column dialect).

Layout, as ``torch.nn.RNN/LSTM/GRU``: ``layers`` is a list of
``num_layers * num_directions`` parameter dicts, in the order layer 0
forward, layer 0 reverse, layer 1 forward, ... (the reverse dicts only when
``bidirectional``). Layer 0 reads ``x`` (``n_x`` features); every later layer
reads the outputs of the layer below, both directions stacked
(``num_directions * n_a`` features, forward rows first). The reverse direction
runs over the time steps backwards, and its outputs are put back in forward
order. Dicts need no output layer (``Wy``/``Wya``, ``by``); any given is ignored.

Written once against the array API: every layer runs the same cell and
sequence code as `portable_rnn.lstm_forward` and friends.
"""

from __future__ import annotations

from . import _gru, _lstm, _rnn
from ._backend import zeros_like_state
from ._validate import Dims, check_arrays, get_params

__all__ = ["multilayer_backward", "multilayer_forward"]


class _Cell:
    """The three cells' cores behind one interface (internal)."""

    def __init__(self, name, keys, shapes, fuse, forward, backward):
        self.name, self.keys, self.shapes = name, keys, shapes
        self.fuse, self.forward, self.backward = fuse, forward, backward


def _rnn_backward(xp, da, run, da_n, dc_n):
    x, a0, _, states, a, (Wax, Waa, _) = run
    return _rnn._backward(xp, da, states, a, a0, x, Wax, Waa, da_n)


def _lstm_backward(xp, da, run, da_n, dc_n):
    x, a0, c0, states, a, (W, _) = run
    g = _lstm._backward(xp, da, states, a, a0, c0, x, W, da_n, dc_n)
    dW, db = g.pop("dW"), g.pop("db")
    g.update(_lstm._split_gate_grads(xp, dW, db, a0.shape[0]))
    return g


def _gru_backward(xp, da, run, da_n, dc_n):
    x, a0, _, states, a, (W, _, _) = run
    g = _gru._backward(xp, da, states, a, a0, x, W, da_n)
    dW, db, dbhn = g.pop("dW"), g.pop("db"), g.pop("dbhn")
    g.update(_gru._split_grads(dW, db, dbhn, a0.shape[0]))
    return g


_GATED = "n_a n_a+n_x"
CELLS = {
    "rnn": _Cell(
        "rnn",
        ("Wax", "Waa", "ba"),
        {"Waa": "n_a n_a", "Wax": "n_a n_x", "ba": "n_a 1"},
        lambda xp, p: (p["Wax"], p["Waa"], p["ba"]),
        lambda xp, x, a0, c0, f: (*_rnn._forward(xp, x, a0, *f), None),
        _rnn_backward,
    ),
    "lstm": _Cell(
        "lstm",
        tuple(f"{w}{g}" for g in _lstm.GATES for w in "Wb"),
        {**{f"W{g}": _GATED for g in _lstm.GATES}, **{f"b{g}": "n_a 1" for g in _lstm.GATES}},
        _lstm._fused,
        lambda xp, x, a0, c0, f: _lstm._forward(xp, x, a0, c0, *f),
        _lstm_backward,
    ),
    "gru": _Cell(
        "gru",
        (*(f"{w}{g}" for g in _gru.GATES for w in "Wb"), "bhn"),
        {
            **{f"W{g}": _GATED for g in _gru.GATES},
            **{f"b{g}": "n_a 1" for g in _gru.GATES},
            "bhn": "n_a 1",
        },
        lambda xp, p: (*_gru._fused(xp, p), p["bhn"]),
        lambda xp, x, a0, c0, f: (*_gru._forward(xp, x, a0, *f), None),
        _gru_backward,
    ),
}


def _get_cell(cell) -> _Cell:
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(CELLS)}")
    return CELLS[cell]


def _check_layers(cell: _Cell, layers, n_x: int, directions: int):
    """Per-layer parameter dicts, checked; returns ``(params, n_a, num_layers)``."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"layers must be a non-empty list of parameter dicts, got {type(layers).__name__}"
        )
    if len(layers) % directions:
        raise ValueError(
            f"layers must hold num_layers * {directions} dicts (bidirectional), got {len(layers)}"
        )
    params, n_a = [], None
    for k, layer in enumerate(layers):
        where = f"layers[{k}]"
        p = get_params(layer, cell.keys, where)
        dims = Dims()
        n_in = n_x if k < directions else directions * n_a
        dims.define("n_x", n_in, "x" if k < directions else f"the layer below ({directions} * n_a)")
        if n_a is not None:
            dims.define("n_a", n_a, "layers[0]")
        first = p[cell.keys[0]]
        if getattr(first, "ndim", None) == 2 and n_a is None:
            dims.define("n_a", first.shape[0], f"{where}['{cell.keys[0]}']")
        if "n_a" in dims.size:
            dims.define("n_a+n_x", dims["n_a"] + dims["n_x"], "n_a + n_x")
        for key, letters in cell.shapes.items():
            dims.check(f"{where}['{key}']", p[key], letters)
        n_a = dims["n_a"]
        params.append(p)
    return params, n_a, len(layers) // directions


def multilayer_forward(x, layers, *, cell, bidirectional=False, a0=None, c0=None):
    """Run a stack of RNN, LSTM or GRU layers, optionally bidirectional.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs of every time step.
    layers : list of dict
        ``num_layers * num_directions`` parameter dicts in PyTorch's order
        (layer 0 forward, [layer 0 reverse,] layer 1 forward, ...), each with the
        keys of the cell (``Wax``, ``Waa``, ``ba``; or the LSTM's or GRU's gate
        weights and biases). Layer 0 has ``n_x`` inputs, later layers
        ``num_directions * n_a``.
    cell : {"rnn", "lstm", "gru"}, keyword-only
        The cell of every layer.
    bidirectional : bool, keyword-only
        Also run every layer over the reversed sequence (``num_directions = 2``).
    a0 : array, shape (num_layers * num_directions, n_a, m), optional
        Initial hidden states (PyTorch's ``h_0`` with the batch as last axis);
        zeros when omitted.
    c0 : array, shape (num_layers * num_directions, n_a, m), optional
        Initial cell states (LSTM only); zeros when omitted.

    Returns
    -------
    out : array, shape (num_directions * n_a, m, T_x)
        Hidden states of the last layer, both directions stacked (forward first).
    a_n : array, shape (num_layers * num_directions, n_a, m)
        Final hidden state of every layer and direction.
    c_n : array, shape (num_layers * num_directions, n_a, m), or None
        Final cell states (LSTM only).
    cache : object
        For `multilayer_backward`; opaque.
    """
    c = _get_cell(cell)
    D = 2 if bidirectional else 1
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"layers must be a non-empty list of parameter dicts, got {type(layers).__name__}"
        )
    named = {"x": x, "a0": a0, "c0": c0}
    for k, layer in enumerate(layers):
        named.update(
            {
                f"layers[{k}]['{key}']": v
                for key, v in get_params(layer, c.keys, f"layers[{k}]").items()
            }
        )
    xp = check_arrays(named)
    dims = Dims()
    dims.check("x", x, "n_x m T_x")
    dims.require_steps("T_x", "x", x)
    params, n_a, L = _check_layers(c, layers, dims["n_x"], D)
    dims.define("n_a", n_a, "layers[0]")
    dims.define("L*D", L * D, "len(layers)")
    if a0 is not None:
        dims.check("a0", a0, "L*D n_a m")
    if c0 is not None:
        if c.name != "lstm":
            raise ValueError(f"c0 is for the LSTM's cell state; cell {cell!r} has none")
        dims.check("c0", c0, "L*D n_a m")
    zeros = zeros_like_state(xp, (n_a, dims["m"]), x)

    runs, a_n, c_n = [], [], []
    inp = x
    for layer in range(L):
        outs = []
        for d in range(D):
            k = layer * D + d
            fused = c.fuse(xp, params[k])
            a0_k = zeros if a0 is None else a0[k, :, :]
            c0_k = zeros if c0 is None else c0[k, :, :]
            x_k = inp if d == 0 else xp.flip(inp, axis=-1)
            states, a, cs = c.forward(xp, x_k, a0_k, c0_k, fused)
            runs.append((x_k, a0_k, c0_k, states, a, fused))
            a_n.append(a[:, :, -1])
            if cs is not None:
                c_n.append(cs[:, :, -1])
            outs.append(a if d == 0 else xp.flip(a, axis=-1))
        inp = outs[0] if D == 1 else xp.concat(outs, axis=0)
    cache = {"cell": c, "runs": runs, "D": D, "L": L, "n_a": n_a, "x": x}
    c_n = xp.stack(c_n, axis=0) if c_n else None
    return inp, xp.stack(a_n, axis=0), c_n, cache


def multilayer_backward(dout, cache, *, da_n=None, dc_n=None):
    """Backpropagation through time through a stack from `multilayer_forward`.

    Parameters
    ----------
    dout : array, shape (num_directions * n_a, m, T_x)
        Gradient of the loss with respect to ``out``.
    cache : object
        From `multilayer_forward`.
    da_n : array, shape (num_layers * num_directions, n_a, m), optional, keyword-only
        Gradient with respect to ``a_n``.
    dc_n : array, shape (num_layers * num_directions, n_a, m), optional, keyword-only
        Gradient with respect to ``c_n`` (LSTM only).

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x); ``da0`` (num_layers * num_directions, n_a, m);
        ``dc0`` likewise for the LSTM; ``layers``: a list of gradient dicts, one
        per parameter dict, with each key prefixed by ``d`` (``dWf``, ``dbf``...).
    """
    if not (isinstance(cache, dict) and "runs" in cache):
        raise TypeError("cache must be the cache returned by multilayer_forward")
    c, runs, D, L, n_a, x = (cache[k] for k in ("cell", "runs", "D", "L", "n_a", "x"))
    if dc_n is not None and c.name != "lstm":
        raise ValueError(f"dc_n is for the LSTM's cell state; cell {c.name!r} has none")
    xp = check_arrays({"dout": dout, "x": x, "da_n": da_n, "dc_n": dc_n})
    dims = Dims()
    dims.check("x", x, "n_x m T_x")
    dims.define("D*n_a", D * n_a, "the forward")
    dims.define("n_a", n_a, "the forward")
    dims.define("L*D", L * D, "the forward")
    dims.check("dout", dout, "D*n_a m T_x")
    for name, arr in (("da_n", da_n), ("dc_n", dc_n)):
        if arr is not None:
            dims.check(name, arr, "L*D n_a m")

    grads, da0, dc0 = [None] * (L * D), [None] * (L * D), [None] * (L * D)
    dinp = dout
    for layer in reversed(range(L)):
        dx = None
        for d in range(D):
            k = layer * D + d
            da = dinp[d * n_a : (d + 1) * n_a, :, :]
            da = da if d == 0 else xp.flip(da, axis=-1)
            g = c.backward(
                xp,
                da,
                runs[k],
                None if da_n is None else da_n[k, :, :],
                None if dc_n is None else dc_n[k, :, :],
            )
            dx_k = g.pop("dx")
            dx_k = dx_k if d == 0 else xp.flip(dx_k, axis=-1)
            dx = dx_k if dx is None else dx + dx_k
            da0[k] = g.pop("da0")
            dc0[k] = g.pop("dc0", None)
            grads[k] = g
        dinp = dx
    out = {"dx": dinp, "da0": xp.stack(da0, axis=0)}
    if c.name == "lstm":
        out["dc0"] = xp.stack(dc0, axis=0)
    out["layers"] = grads
    return out
