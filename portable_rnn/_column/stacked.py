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

from typing import cast

from .._backend.seam import snapshot
from .._core import sequence
from .._core import stacked as core
from .._core.spec import CellSpec, cell_spec
from .._validate import (
    Dims,
    check_arrays,
    check_backward_lengths,
    check_lengths,
    float32_inside,
    get_params,
)
from .checks import check_state, input_width, refuse_batch_major

__all__ = ["multilayer_backward", "multilayer_forward"]


def _layer_list(layers) -> None:
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"layers must be a non-empty list of parameter dicts, got {type(layers).__name__}"
        )


def _fits(spec: CellSpec, layers, n_x: int, directions: int) -> bool:
    """Whether the dicts' weights have the input widths of a stack of ``directions``."""
    if len(layers) % directions:
        return False
    ps = [get_params(layer, spec.layer_keys, f"layers[{k}]") for k, layer in enumerate(layers)]
    widths = [input_width(spec, p) for p in ps]
    if any(w is None for w in widths):
        return False
    n_a = int(ps[0][spec.layer_keys[0]].shape[0])
    expected = [n_x if k < directions else directions * n_a for k in range(len(layers))]
    return [cast(tuple, w)[0] for w in widths] == expected


def _check_layers(spec: CellSpec, layers, n_x: int, directions: int):
    """Per-layer parameter dicts, checked; returns ``(params, n_a, num_layers)``.

    A list made for the other ``bidirectional`` (e.g. `portable_rnn.interop.from_torch` of
    a bidirectional module run without ``bidirectional=True``) gets that hint."""
    try:
        return _checked_layers(spec, layers, n_x, directions)
    except ValueError as err:
        other = 2 if directions == 1 else 1
        if isinstance(layers, (list, tuple)) and layers and _fits(spec, layers, n_x, other):
            hint = "True" if other == 2 else "False"
            raise ValueError(
                f"{err}; the dicts fit a {'bidirectional' if other == 2 else 'unidirectional'}"
                f" stack: pass bidirectional={hint}"
            ) from None
        raise


def _checked_layers(spec: CellSpec, layers, n_x: int, directions: int):
    _layer_list(layers)
    if len(layers) % directions:
        raise ValueError(
            f"layers must hold num_layers * {directions} dicts (bidirectional), got {len(layers)}"
        )
    first_key = spec.layer_keys[0]
    shapes = {k: v for k, v in spec.shapes.items() if k not in spec.output_keys}
    params, n_a = [], None
    for k, layer in enumerate(layers):
        where = f"layers[{k}]"
        p = get_params(layer, spec.layer_keys, where)
        dims = Dims()
        n_in = n_x if k < directions else directions * cast(int, n_a)  # set by the layers before
        dims.define("n_x", n_in, "x" if k < directions else f"the layer below ({directions} * n_a)")
        if n_a is not None:
            dims.define("n_a", n_a, "layers[0]")
        first = p[first_key]
        if getattr(first, "ndim", None) == 2 and n_a is None:
            dims.define("n_a", first.shape[0], f"{where}['{first_key}']")
        if "n_a" in dims.size:
            dims.define("n_a+n_x", dims["n_a"] + dims["n_x"], "n_a + n_x")
        for key, letters in shapes.items():
            dims.check(f"{where}['{key}']", p[key], letters)
        n_a = dims["n_a"]
        params.append(p)
    assert n_a is not None  # layers is not empty: every layer sets it
    return params, n_a, len(layers) // directions


@float32_inside(returns_cache=True)
def multilayer_forward(x, layers, *, cell, bidirectional=False, a0=None, c0=None, lengths=None):
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
    lengths : array of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps (``0 .. T_x``), as PyTorch's packed
        sequences: steps ``t >= lengths[j]`` of example ``j`` are padding, its outputs
        there are exactly zero, ``a_n`` and ``c_n`` hold its state after its own last
        real step, and a reverse direction starts at that step. ``None`` (the default):
        every example is ``T_x`` steps long. See "Variable-length sequences" in the
        conventions.

    Returns
    -------
    out : array, shape (num_directions * n_a, m, T_x)
        Hidden states of the last layer, both directions stacked (forward first);
        zero at padded steps.
    a_n : array, shape (num_layers * num_directions, n_a, m)
        Final hidden state of every layer and direction (with ``lengths``: each
        example's state after its last real step; for a reverse direction, after step 0).
    c_n : array, shape (num_layers * num_directions, n_a, m), or None
        Final cell states (LSTM only).
    cache : object
        For `multilayer_backward`; opaque. The backward gives the gradients of this
        forward as it ran: the outputs share no memory with the cache, and changing
        ``x``, ``a0``, ``c0`` or ``layers`` afterwards does not change them (see
        "Aliasing" in the conventions).
    """
    spec = cell_spec(cell)
    D = 2 if bidirectional else 1
    _layer_list(layers)
    named = {"x": x, "a0": a0, "c0": c0}
    for k, layer in enumerate(layers):
        named.update(
            {
                f"layers[{k}]['{key}']": v
                for key, v in get_params(layer, spec.layer_keys, f"layers[{k}]").items()
            }
        )
    xp = check_arrays(named, optional=("a0", "c0"))
    dims = Dims()
    refuse_batch_major("x", x, input_width(spec, get_params(layers[0], spec.layer_keys)))
    dims.check("x", x, "n_x m T_x")
    dims.require_steps("T_x", "x", x)
    params, n_a, L = _check_layers(spec, layers, dims["n_x"], D)
    dims.define("n_a", n_a, "layers[0]")
    dims.define("L*D", L * D, "len(layers)")
    if a0 is not None:
        check_state(dims, "a0", a0, "L*D n_a m")
    if c0 is not None:
        if "c" not in spec.carry:
            raise ValueError(f"c0 is for the LSTM's cell state; cell {cell!r} has none")
        check_state(dims, "c0", c0, "L*D n_a m")
    lengths = check_lengths(lengths, x, dims["m"], dims["T_x"])

    # the cache keeps what the backward reads as the forward read it (see `snapshot`)
    weights = [sequence.fuse(xp, spec, p, keep=True) for p in params]
    inits = tuple(None if s is None else snapshot(xp, s) for s in (a0, c0)[: len(spec.carry)])
    x_run = snapshot(xp, x)
    out, finals, cache = core.forward(xp, core.CELLS[spec.name], weights, x_run, D, inits, lengths)
    return out, finals[0], finals[1] if len(finals) > 1 else None, cache


@float32_inside(caches="cache")
def multilayer_backward(dout, cache, *, da_n=None, dc_n=None, lengths=None):
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
    lengths : array of int, shape (m,), or list of int, optional, keyword-only
        Read from the cache; if given, it must equal the forward's. With lengths, the
        gradients ``dout`` at padded steps are ignored and ``dx`` is zero there.

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x); ``da0`` (num_layers * num_directions, n_a, m);
        ``dc0`` likewise for the LSTM; ``layers``: a list of gradient dicts, one
        per parameter dict, with each key prefixed by ``d`` (``dWf``, ``dbf``...).
    """
    if not isinstance(cache, core.StackCache):
        raise TypeError("cache must be the cache returned by multilayer_forward")
    spec, D, L, n_a, x = cache.cell.spec, cache.D, cache.L, cache.n_a, cache.x
    if dc_n is not None and "c" not in spec.carry:
        raise ValueError(f"dc_n is for the LSTM's cell state; cell {spec.name!r} has none")
    xp = check_arrays(
        {"dout": dout, "cache (the forward's x)": x, "da_n": da_n, "dc_n": dc_n},
        optional=("da_n", "dc_n"),
    )
    dims = Dims()
    dims.check("cache (the forward's x)", x, "n_x m T_x")
    dims.define("D*n_a", D * n_a, "the forward")
    dims.define("n_a", n_a, "the forward")
    dims.define("L*D", L * D, "the forward")
    dims.check("dout", dout, "D*n_a m T_x")
    for name, arr in (("da_n", da_n), ("dc_n", dc_n)):
        if arr is not None:
            dims.check(name, arr, "L*D n_a m")

    what = ("multilayer_backward", "multilayer_forward")
    check_backward_lengths(xp, x, cache.lengths, lengths, *what)
    dx, dinits, grads = core.backward(xp, cache, dout, (da_n, dc_n)[: len(spec.carry)])
    out = {"dx": dx, "da0": dinits[0]}
    if "c" in spec.carry:
        out["dc0"] = dinits[1]
    out["layers"] = [sequence.unfuse(xp, spec, g, prefix="d") for g in grads]
    return out
