"""The column dialect's parameter checks, read from each cell's `CellSpec`."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._core import sequence
from .._core.spec import CellSpec
from .._validate import Dims, check_arrays, check_lengths, get_params

__all__ = [
    "SequenceArgs",
    "check_inputs",
    "check_layer",
    "check_sequence",
    "check_state",
    "column_params",
    "forward_lengths",
    "input_width",
    "one_layer",
    "refuse_batch_major",
]


def column_params(spec: CellSpec, parameters, name: str = "parameters") -> dict:
    """``{key: array}`` of a cell's parameter dict; the output layer may be left out."""
    return get_params(parameters, spec.keys, name, optional=spec.output_keys)


def check_layer(dims: Dims, spec: CellSpec, p: dict, x_name: str) -> None:
    """Check the parameters ``p`` of one layer against the sizes ``dims`` knows.

    Gate weights act on ``[a; x]``: ``n_a`` is read from the rows of the first gate's
    weight, and every gate weight must have ``n_a + n_x`` columns (with ``n_x`` from
    ``x_name``), so that an error names the weight that is wrong.
    """
    if not spec.separate:
        first = f"W{spec.gates[0]}"
        W = p[first]
        if getattr(W, "ndim", None) == 2:
            dims.define("n_a", W.shape[0], first)
            dims.define(
                "n_a+n_x", dims["n_a"] + dims["n_x"], f"n_a from {first} and n_x from {x_name}"
            )
    for key, letters in spec.shapes.items():
        if key in p:
            dims.check(key, p[key], letters)


def check_inputs(dims: Dims, spec: CellSpec, x_name: str, x, letters: str, p: dict) -> None:
    """Check the input ``x`` (``letters``: ``"n_x m"`` or ``"n_x m T_x"``), then the layer."""
    refuse_batch_major(x_name, x, input_width(spec, p))
    dims.check(x_name, x, letters)
    check_layer(dims, spec, p, x_name)


def input_width(spec: CellSpec, p: dict) -> tuple[int, str] | None:
    """``(n_x, source)``: the input width a layer's weights expect, and where it was read;
    ``None`` when the weights are not 2-D (their own check names them)."""
    key = "Wax" if spec.separate else f"W{spec.gates[0]}"  # the RNN's Wax is (n_a, n_x)
    shape = getattr(p.get(key), "shape", ())
    if len(shape) != 2:
        return None
    if spec.separate:
        return int(shape[1]), key
    proj = getattr(p.get("Wp"), "shape", ())
    if len(proj) == 2:  # a projected LSTM's gates act on [a (n_p rows); x]
        return int(shape[1]) - int(proj[0]), f"{key} (n_p + n_x columns)"
    return int(shape[1]) - int(shape[0]), f"{key} (n_a + n_x columns)"


def refuse_batch_major(x_name: str, x, width: tuple[int, str] | None) -> None:
    """An input whose features are on the last axis, not the first, named with a hint.

    The column dialect takes ``(n_x, m)`` steps and ``(n_x, m, T_x)`` sequences; the
    batch-major ``(m, T_x, n_x)`` of the rows dialect and PyTorch's ``batch_first``, and
    PyTorch's default ``(T_x, m, n_x)``, would otherwise be blamed on a weight.
    """
    shape = tuple(int(s) for s in getattr(x, "shape", ()))
    if width is None or len(shape) not in (2, 3) or shape[0] == width[0]:
        return
    n_x, source = width
    if shape[-1] != n_x:
        return
    if len(shape) == 2:
        raise ValueError(
            f"{x_name} has shape {shape}, features last, but the column dialect takes "
            f"(n_x, m) with n_x = {n_x} (from {source}): pass its transpose"
        )
    raise ValueError(
        f"{x_name} has shape {shape}, features last, but the column dialect takes "
        f"(n_x, m, T_x) with n_x = {n_x} (from {source}): from batch-major (m, T_x, n_x) "
        "that is x.transpose(2, 0, 1) in NumPy, from PyTorch's (T_x, m, n_x) "
        "x.transpose(2, 1, 0); or use portable_rnn.rnn_layers (batch-major) or "
        "portable_rnn.LSTM/GRU/RNN (PyTorch's layouts)"
    )


def check_state(dims: Dims, name: str, state, letters: str) -> None:
    """``dims.check`` of a state (``"n_a m"``, or ``"L*D n_a m"`` in a stack), with a hint
    when its last two axes are swapped: PyTorch's states put the batch before the hidden
    units (``(L*D, N, H)``), the column dialect after. When ``n_a == m`` the shapes cannot
    tell them apart (see "PyTorch's layouts" in the conventions)."""
    try:
        dims.check(name, state, letters)
    except ValueError as err:
        spec = letters.split()
        shape = tuple(int(s) for s in state.shape)
        wanted = tuple(dims[k] if k in dims.size else None for k in spec)
        swapped = (*wanted[:-2], wanted[-1], wanted[-2])
        if len(shape) == len(spec) and None not in wanted and shape == swapped:
            raise ValueError(
                f"{err}: its last two axes look swapped, as in PyTorch's (..., N, H) state "
                f"layout; the column dialect puts the batch last ({', '.join(spec)}): swap them "
                f"({name}.swapaxes(-1, -2) in NumPy)"
            ) from None
        raise


def forward_lengths(xp, lengths, x, dims: Dims):
    """``(lengths, mask)`` of a sequence forward: ``lengths`` checked against ``x``
    (``(n_x, m, T_x)``, sizes in ``dims``) and its `sequence.step_mask`; ``(None, None)``
    without lengths."""
    checked = check_lengths(lengths, x, dims["m"], dims["T_x"])
    return checked, sequence.step_mask(xp, checked, dims["T_x"])


class SequenceArgs(NamedTuple):
    """What `check_sequence` read from a column sequence forward's arguments."""

    xp: Any  #: the arrays' namespace
    p: dict  #: the parameter dict, checked (output layer included when given)
    dims: Dims  #: ``n_x``, ``m``, ``T_x``, ``n_a`` (and ``n_y``)
    lengths: Any  #: checked ``lengths``, or ``None``
    mask: Any  #: its `sequence.step_mask` ``(T_x, 1, m)``, or ``None``


def check_sequence(spec: CellSpec, x, a0, parameters, c0=None, lengths=None) -> SequenceArgs:
    """Every check of a column sequence forward (`rnn_forward`, `lstm_forward`,
    `gru_forward`, and their `portable_rnn.jax` and `portable_rnn.torch` versions), in
    order: the parameter keys, the arrays' backend, dtype and device, ``x`` (a
    features-last ``x`` named with its transpose) and the layer's shapes, at least one
    step, the states (``c0`` for the LSTM only), and ``lengths``."""
    p = column_params(spec, parameters)
    states = {"a0": a0, "c0": c0} if "c" in spec.carry else {"a0": a0}
    xp = check_arrays({"x": x, **states, **p}, optional=tuple(states))
    dims = Dims()
    check_inputs(dims, spec, "x", x, "n_x m T_x", p)
    dims.require_steps("T_x", "x", x)
    for name, state in states.items():
        if state is not None:
            check_state(dims, name, state, "n_a m")
    checked, mask = forward_lengths(xp, lengths, x, dims)
    return SequenceArgs(xp, p, dims, checked, mask)


def one_layer(spec: CellSpec, x, a0, c0, parameters, lengths, stack, require):
    """A column sequence forward as the one-layer case of a differentiable stack:
    ``(a, y, c_n)``, for `portable_rnn.jax` (its custom VJP) and `portable_rnn.torch` (its
    autograd Function).

    Checks as the plain forward does (`check_sequence`), then ``require(xp, named)``
    (the framework's own refusal of other backends); runs
    ``stack(x, [layer], a0[None], c0[None], lengths) -> (out, a_n, c_n)``; and computes
    the output layer ``y`` (when the parameters have one) from ``a`` outside the stack,
    by the plain forward's code, so that the framework differentiates it.
    """
    xp, p, _, lengths, mask = check_sequence(spec, x, a0, parameters, c0, lengths)
    require(xp, {"x": x, "a0": a0, "c0": c0, **p})
    layer = {key: p[key] for key in spec.layer_keys}
    a0_s, c0_s = (None if s is None else s[None, :, :] for s in (a0, c0))
    a, _, c_n = stack(x, [layer], a0_s, c0_s, lengths)
    w_key, b_key = spec.output_keys
    y = None
    if w_key in p:
        y = sequence.zero_padded(xp, sequence.outputs(xp, p[w_key], p[b_key], a), mask)
    return a, y, None if c_n is None else c_n[0, :, :]
