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

import dataclasses
from typing import cast

from .._backend.compat import array_namespace, backend_name, dtype_name, is_array
from .._backend.devices import dropout_masks
from .._backend.seam import snapshot
from .._core import sequence
from .._core import stacked as core
from .._core.spec import OPTION_SHAPES, CellSpec, cell_spec, check_flag, check_options
from .._validate import (
    Dims,
    check_arrays,
    check_backward_lengths,
    check_lengths,
    float32_inside,
    get_params,
)
from .checks import check_state, input_width, refuse_batch_major

__all__ = ["check_dropout", "multilayer_backward", "multilayer_forward", "option_keys"]


def _layer_list(layers) -> None:
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"layers must be a non-empty list of parameter dicts, got {type(layers).__name__}"
        )


def option_keys(spec: CellSpec, layers) -> tuple[str, ...]:
    """The optional keys (peepholes ``Pi``, ``Pf``, ``Po``; projection ``Wp``) the dicts
    hold, read from ``layers[0]``: every group all or none, the same in every dict."""
    found: list[str] = []
    for option, keys in spec.option_keys.items():
        first = [k for k in keys if k in layers[0]]
        if first and len(first) < len(keys):
            missing = ", ".join(repr(k) for k in keys if k not in first)
            raise ValueError(
                f"layers[0] has {', '.join(map(repr, first))} but not {missing}: the {option} "
                f"keys ({', '.join(keys)}) go together"
            )
        for k, layer in enumerate(layers):
            has = [key for key in keys if key in layer]
            if bool(has) != bool(first):
                what = "has" if has else "lacks"
                raise ValueError(
                    f"layers[{k}] {what} the {option} keys ({', '.join(keys)}) that layers[0] "
                    f"{'lacks' if has else 'has'}: every layer of a stack has the same cell"
                )
        found += first
    return tuple(found)


def _fits(spec: CellSpec, layers, n_x: int, directions: int) -> bool:
    """Whether the dicts' weights have the input widths of a stack of ``directions``."""
    if len(layers) % directions:
        return False
    keys = spec.layer_keys + option_keys(spec, layers)
    ps = [get_params(layer, keys, f"layers[{k}]") for k, layer in enumerate(layers)]
    widths = [input_width(spec, p) for p in ps]
    if any(w is None for w in widths):
        return False
    n_a = int(ps[0]["Wp" if "Wp" in keys else spec.layer_keys[0]].shape[0])
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
    """``(params, n_a, num_layers, n_h)``: ``n_h`` is the hidden state's size (``n_p`` with a
    projection, else ``n_a``)."""
    _layer_list(layers)
    if len(layers) % directions:
        raise ValueError(
            f"layers must hold num_layers * {directions} dicts (bidirectional), got {len(layers)}"
        )
    extra = option_keys(spec, layers)
    proj = "Wp" in extra
    first_key = spec.layer_keys[0]
    shapes = {k: v for k, v in spec.shapes.items() if k not in spec.output_keys}
    if proj:  # the gates act on [a (n_p rows); x]
        shapes = {k: v.replace("n_a+n_x", "n_p+n_x") for k, v in shapes.items()}
    shapes.update({k: OPTION_SHAPES[k] for k in extra})
    h = "n_p" if proj else "n_a"
    params, n_a, n_p = [], None, None
    for k, layer in enumerate(layers):
        where = f"layers[{k}]"
        p = get_params(layer, spec.layer_keys + extra, where)
        dims = Dims()
        # the layers before set n_a (and n_p)
        n_in = n_x if k < directions else directions * cast(int, n_p if proj else n_a)
        dims.define("n_x", n_in, "x" if k < directions else f"the layer below ({directions} * {h})")
        if n_a is not None:
            dims.define("n_a", n_a, "layers[0]")
        first = p[first_key]
        if getattr(first, "ndim", None) == 2 and n_a is None:
            dims.define("n_a", first.shape[0], f"{where}['{first_key}']")
        if proj:
            if n_p is not None:
                dims.define("n_p", n_p, "layers[0]['Wp']")
            elif getattr(p["Wp"], "ndim", None) == 2:
                dims.define("n_p", p["Wp"].shape[0], f"{where}['Wp']")
                if "n_a" in dims.size and dims["n_p"] >= dims["n_a"]:
                    raise ValueError(
                        f"{where}['Wp'] has {dims['n_p']} rows (the projected size n_p), but a "
                        f"projection needs n_p < n_a = {dims['n_a']} (PyTorch: proj_size < "
                        "hidden_size)"
                    )
            if "n_p" in dims.size:
                dims.define("n_p+n_x", dims["n_p"] + dims["n_x"], "n_p + n_x")
        elif "n_a" in dims.size:
            dims.define("n_a+n_x", dims["n_a"] + dims["n_x"], "n_a + n_x")
        for key, letters in shapes.items():
            dims.check(f"{where}['{key}']", p[key], letters)
        n_a = dims["n_a"]
        n_p = dims["n_p"] if proj else None
        params.append(p)
    assert n_a is not None  # layers is not empty: every layer sets it
    return params, n_a, len(layers) // directions, cast(int, n_p if proj else n_a)


def check_dropout(dropout, seed):
    """``dropout`` in [0, 1) and, when on, an int ``seed``; returns ``(p, seed)``."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if dropout and seed is None:
        raise ValueError(
            "dropout needs seed= (an int): the masks are drawn from it, so that a backward "
            "uses the forward's masks and a run is the same on every backend; pass "
            "dropout=0 to evaluate"
        )
    if seed is not None and not _jax_scalar(seed):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise TypeError(
                f"seed must be a non-negative int (or a JAX integer scalar), got {seed!r}"
            )
    return float(dropout), seed


def _jax_scalar(seed) -> bool:
    """Whether ``seed`` is a 0-d integer JAX array (a traced seed of a compiled step)."""
    if not is_array(seed) or backend_name(array_namespace(seed)) != "jax":
        return False
    return seed.ndim == 0 and "int" in dtype_name(seed.dtype)


@float32_inside(returns_cache=True)
def multilayer_forward(
    x,
    layers,
    *,
    cell,
    bidirectional=False,
    a0=None,
    c0=None,
    lengths=None,
    nonlinearity="tanh",
    reset_after=True,
    clip=None,
    input_forget=False,
    reverse=False,
    dropout=0.0,
    seed=None,
):
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
        ``num_directions * n_a``. The LSTM's peepholes and projection are parameters:
        every dict may hold ``Pi``, ``Pf``, ``Po`` (each ``(n_a, 1)``; ONNX's ``P``) and
        ``Wp`` (``(n_p, n_a)``, ``n_p < n_a``; PyTorch's ``weight_hr``). With ``Wp`` the
        hidden states have ``n_p`` rows (``a0``, ``a_n``, ``out``: ``n_p`` for ``n_a``;
        the gate weights ``n_p + n_in`` columns), the cell states ``n_a``. See "Cell
        variants" in the conventions.
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
    nonlinearity : {"tanh", "relu"}, keyword-only
        The RNN's activation (PyTorch's ``nonlinearity``).
    reset_after : bool, keyword-only
        The GRU's candidate: ``True`` (PyTorch's) resets after the recurrent product,
        ``False`` (Keras ``reset_after=False``, ONNX ``linear_before_reset=0``) before it.
    clip : float, optional, keyword-only
        The LSTM's cell clip (ONNX): gate pre-activations clipped to ``[-clip, clip]``.
    input_forget : bool, keyword-only
        The LSTM's coupled gates (ONNX): ``f = 1 - i``.
    reverse : bool, keyword-only
        Run every layer of a unidirectional stack from the last step to the first
        (outputs in time order; ONNX ``direction="reverse"``). With ``lengths``, each
        example starts at its own last real step.
    dropout : float, keyword-only
        Dropout probability on the inputs of every layer but the first (PyTorch's
        placement), in ``[0, 1)``; ``0`` (the default, and for evaluation): none.
    seed : int, optional, keyword-only
        The dropout masks' seed, required with ``dropout``: the same seed gives the same
        masks on every backend and device, and the backward uses the forward's. On JAX it
        may also be a 0-d integer JAX array (traced inside ``jax.jit``: one compilation
        for every seed); the masks are then drawn by ``jax.random``.

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
    options = check_options(
        spec,
        nonlinearity=nonlinearity,
        reset_after=reset_after,
        clip=clip,
        input_forget=input_forget,
    )
    if check_flag("reverse", reverse) and bidirectional:
        raise ValueError(
            "reverse=True is for a unidirectional stack; a bidirectional one already runs both ways"
        )
    extra = option_keys(spec, layers)
    options = dataclasses.replace(options, peepholes="Pf" in extra, proj="Wp" in extra)
    named = {"x": x, "a0": a0, "c0": c0}
    for k, layer in enumerate(layers):
        named.update(
            {
                f"layers[{k}]['{key}']": v
                for key, v in get_params(layer, spec.layer_keys + extra, f"layers[{k}]").items()
            }
        )
    xp = check_arrays(named, optional=("a0", "c0"))
    dims = Dims()
    first = get_params(layers[0], spec.layer_keys + extra)
    refuse_batch_major("x", x, input_width(spec, first))
    dims.check("x", x, "n_x m T_x")
    dims.require_steps("T_x", "x", x)
    params, n_a, L, n_h = _check_layers(spec, layers, dims["n_x"], D)
    p_drop, seed = check_dropout(dropout, seed)
    dims.define("n_a", n_a, "layers[0]")
    dims.define("n_p", n_h, "layers[0]['Wp']")
    dims.define("L*D", L * D, "len(layers)")
    if a0 is not None:
        check_state(dims, "a0", a0, "L*D n_p m" if options.proj else "L*D n_a m")
    if c0 is not None:
        if "c" not in spec.carry:
            raise ValueError(f"c0 is for the LSTM's cell state; cell {cell!r} has none")
        check_state(dims, "c0", c0, "L*D n_a m")
    lengths = check_lengths(lengths, x, dims["m"], dims["T_x"])

    # the cache keeps what the backward reads as the forward read it (see `snapshot`)
    weights = [sequence.fuse(xp, spec, p, keep=True) for p in params]
    inits = tuple(None if s is None else snapshot(xp, s) for s in (a0, c0)[: len(spec.carry)])
    x_run = snapshot(xp, x)
    masks = None
    if p_drop and L > 1:
        shape = (D * n_h, dims["m"], dims["T_x"])
        if _jax_scalar(seed) and backend_name(xp) != "jax":
            raise TypeError("seed is a JAX array, but x is not: pass an int seed")
        masks = dropout_masks(seed, p_drop, [shape] * (L - 1), x_run)
    math = core.math(spec.name, options)
    out, finals, cache = core.forward(
        xp, math, weights, x_run, D, inits, lengths, reverse=reverse, dropout=masks
    )
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
    dims.define("n_c", cache.runs[0].w.b.shape[0] // spec.n_blocks, "the forward")
    for name, arr in (("da_n", da_n), ("dc_n", dc_n)):
        if arr is not None:
            dims.check(name, arr, "L*D n_c m" if name == "dc_n" else "L*D n_a m")

    what = ("multilayer_backward", "multilayer_forward")
    check_backward_lengths(xp, x, cache.lengths, lengths, *what)
    dx, dinits, grads = core.backward(xp, cache, dout, (da_n, dc_n)[: len(spec.carry)])
    out = {"dx": dx, "da0": dinits[0]}
    if "c" in spec.carry:
        out["dc0"] = dinits[1]
    out["layers"] = [sequence.unfuse(xp, spec, g, prefix="d") for g in grads]
    return out
