"""One description per cell: its parameter keys and shapes, its gates and their orders.

Every part of portable_rnn that needs a fact about a cell reads it here: the math
(`portable_rnn._core`), the dialects' checks, parameter creation, PyTorch interop, the
language model, the conformance check and the benchmarks. No other module spells a
parameter key list or a gate order. Data only: nothing here imports an array library.

Gate letters: the LSTM's ``f`` (forget), ``i`` (input/update), ``c`` (candidate, PyTorch's
and CS231n's ``g``), ``o`` (output); the GRU's ``r`` (reset), ``z`` (update), ``n``
(candidate). Dimension letters: ``n_x`` inputs, ``n_a`` hidden units, ``n_y`` outputs;
``n_a+n_x`` is their sum (gate weights act on ``[a<t-1>; x<t>]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["CELLS", "GRU", "LSTM", "RNN", "CellSpec", "cell_spec"]


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """The facts of one cell, as the column dialect (deeplearning.ai) names its parameters.

    Attributes
    ----------
    name : str
        ``"rnn"``, ``"lstm"`` or ``"gru"``.
    torch_module : str
        The ``torch.nn`` class of the sequence module (``"LSTM"``); its cell adds ``Cell``.
    keys : tuple of str
        Every parameter key, output layer included, in the order of the parameter dicts
        (and the order `init_lstm_params` and friends draw them).
    output_keys : tuple of str
        The optional output layer (weight, bias): both or neither may be given.
    shapes : mapping of str to str
        Key -> dimension letters of its shape, in the order the checks run.
    gates : tuple of str
        The gate letters in the order of the parameter dicts; empty for the RNN.
    stacked : tuple of str
        The order of the gate blocks in the fused weights the math uses (the LSTM puts
        its three sigmoid gates first, so that one sigmoid serves them).
    torch_order, rows_order : tuple of str
        The gate blocks of PyTorch's fused weights, and of the rows (CS231n) dialect's.
    hidden_biases : mapping of str to str
        Gates whose recurrent-side bias is its own parameter (the GRU's candidate keeps
        ``bhn`` inside the reset product): gate -> key.
    separate : tuple of str
        For the RNN, whose input and recurrent weights are separate parameters: the keys
        of the input weight, recurrent weight and bias. Empty for the gated cells, whose
        gate weights act on the concatenation ``[a<t-1>; x<t>]``.
    carry : tuple of str
        The state carried from step to step: ``("a",)``, or ``("a", "c")`` for the LSTM.
    """

    name: str
    torch_module: str
    keys: tuple[str, ...]
    output_keys: tuple[str, str]
    shapes: Mapping[str, str]
    gates: tuple[str, ...] = ()
    stacked: tuple[str, ...] = ()
    torch_order: tuple[str, ...] = ()
    rows_order: tuple[str, ...] = ()
    hidden_biases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    separate: tuple[str, ...] = ()
    carry: tuple[str, ...] = ("a",)

    @property
    def layer_keys(self) -> tuple[str, ...]:
        """The keys of the recurrent layer (without the output layer), in dict order."""
        return tuple(k for k in self.keys if k not in self.output_keys)

    @property
    def n_blocks(self) -> int:
        """Blocks of ``n_a`` rows in the fused weights: 1 (RNN), 4 (LSTM), 3 (GRU)."""
        return max(len(self.stacked), 1)

    def shape(self, key: str, n_x: int, n_a: int, n_y: int) -> tuple[int, ...]:
        """The shape of parameter ``key`` for the sizes given (``"n_a n_a+n_x"`` -> ints)."""
        sizes = {"n_x": n_x, "n_a": n_a, "n_y": n_y}
        return tuple(
            int(t) if t.isdigit() else sum(sizes[part] for part in t.split("+"))
            for t in self.shapes[key].split()
        )

    def permutation(self, source: tuple[str, ...], target: tuple[str, ...]) -> tuple[int, ...]:
        """Block ``k`` in ``target`` order is block ``result[k]`` in ``source`` order."""
        return tuple(source.index(g) for g in target)


def _gated(name, torch_module, *, carry=("a",), hidden_biases=None, **orders) -> CellSpec:
    """A cell whose gate ``g`` has ``W{g}`` (n_a, n_a + n_x) and ``b{g}`` (n_a, 1).

    ``orders``: ``gates``, ``stacked``, ``torch_order`` and ``rows_order``.
    """
    gates, hidden_biases = orders["gates"], dict(hidden_biases or {})
    extra = [hidden_biases[g] for g in gates if g in hidden_biases]
    keys = [key for g in gates for key in (f"W{g}", f"b{g}")] + extra
    shapes = {f"W{g}": "n_a n_a+n_x" for g in gates}
    shapes.update({key: "n_a 1" for key in (*(f"b{g}" for g in gates), *extra)})
    shapes.update({"Wy": "n_y n_a", "by": "n_y 1"})
    output = ("Wy", "by")
    layout = {"keys": (*keys, *output), "output_keys": output, "shapes": shapes, "carry": carry}
    return CellSpec(name, torch_module, **layout, hidden_biases=hidden_biases, **orders)


#: ``a<t> = tanh(Wax @ x<t> + Waa @ a<t-1> + ba)``
RNN = CellSpec(
    name="rnn",
    torch_module="RNN",
    keys=("Wax", "Waa", "Wya", "ba", "by"),
    output_keys=("Wya", "by"),
    shapes={"Waa": "n_a n_a", "Wax": "n_a n_x", "ba": "n_a 1", "Wya": "n_y n_a", "by": "n_y 1"},
    separate=("Wax", "Waa", "ba"),
)

#: Gates f, i, c, o; fused f, i, o, c (sigmoids first); PyTorch i, f, g, o; CS231n i, f, o, g.
LSTM = _gated(
    "lstm",
    "LSTM",
    gates=("f", "i", "c", "o"),
    stacked=("f", "i", "o", "c"),
    torch_order=("i", "f", "c", "o"),
    rows_order=("i", "f", "o", "c"),
    carry=("a", "c"),
)

#: Gates r, z, n in every layout (PyTorch's); the candidate's recurrent bias is ``bhn``.
GRU = _gated(
    "gru",
    "GRU",
    gates=("r", "z", "n"),
    stacked=("r", "z", "n"),
    torch_order=("r", "z", "n"),
    rows_order=("r", "z", "n"),
    hidden_biases={"n": "bhn"},
)

#: name -> spec, in the order messages list them
CELLS: dict[str, CellSpec] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def cell_spec(cell) -> CellSpec:
    """The spec of a cell name, or a ``ValueError`` listing the valid ones."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(CELLS)}")
    return CELLS[cell]
