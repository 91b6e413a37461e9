"""The column dialect's parameter checks, read from each cell's `CellSpec`."""

from __future__ import annotations

from .._core import sequence
from .._core.spec import CellSpec
from .._validate import Dims, check_lengths, get_params

__all__ = ["check_inputs", "check_layer", "column_params", "forward_lengths"]


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
    dims.check(x_name, x, letters)
    check_layer(dims, spec, p, x_name)


def forward_lengths(xp, lengths, x, dims: Dims):
    """``(lengths, mask)`` of a sequence forward: ``lengths`` checked against ``x``
    (``(n_x, m, T_x)``, sizes in ``dims``) and its `sequence.step_mask`; ``(None, None)``
    without lengths."""
    checked = check_lengths(lengths, x, dims["m"], dims["T_x"])
    return checked, sequence.step_mask(xp, checked, dims["T_x"])
