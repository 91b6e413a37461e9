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

__all__ = [
    "CELLS",
    "CLASSIC",
    "GRU",
    "LSTM",
    "NONLINEARITIES",
    "OPTION_SHAPES",
    "RNN",
    "CellSpec",
    "Options",
    "cell_spec",
    "check_flag",
    "check_options",
]


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
    options : tuple of str
        The fields of `Options` this cell has (the others must keep their defaults).
    option_keys : mapping of str to tuple of str
        Optional parameters: option -> the keys that turn it on (all of them, or none).
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
    options: tuple[str, ...] = ()
    option_keys: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

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


def _gated(
    name, torch_module, *, carry=("a",), hidden_biases=None, options=(), option_keys=None, **orders
) -> CellSpec:
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
    extra = {"options": options, "option_keys": dict(option_keys or {})}
    return CellSpec(name, torch_module, **layout, hidden_biases=hidden_biases, **orders, **extra)


#: ``a<t> = tanh(Wax @ x<t> + Waa @ a<t-1> + ba)``
RNN = CellSpec(
    name="rnn",
    torch_module="RNN",
    keys=("Wax", "Waa", "Wya", "ba", "by"),
    output_keys=("Wya", "by"),
    shapes={"Waa": "n_a n_a", "Wax": "n_a n_x", "ba": "n_a 1", "Wya": "n_y n_a", "by": "n_y 1"},
    separate=("Wax", "Waa", "ba"),
    options=("nonlinearity",),
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
    options=("peepholes", "proj", "clip", "input_forget"),
    option_keys={"peepholes": ("Pi", "Pf", "Po"), "proj": ("Wp",)},
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
    options=("reset_after",),
)

#: the shapes of the optional parameters (``n_p``: the LSTM's projected hidden size)
OPTION_SHAPES = {"Pi": "n_a 1", "Pf": "n_a 1", "Po": "n_a 1", "Wp": "n_p n_a"}

#: the nonlinearities of the RNN
NONLINEARITIES = ("tanh", "relu")


@dataclasses.dataclass(frozen=True)
class Options:
    """The variants of a cell, each a field, all off by default (the classic cells).

    Every part reads them from here: the math (`portable_rnn._core`) branches on them in
    Python (never on array values), the front-ends check them, interop maps them.

    Attributes
    ----------
    nonlinearity : {"tanh", "relu"}
        The RNN's activation (PyTorch's ``nonlinearity``; ONNX ``activations``).
    reset_after : bool
        The GRU's candidate: ``True`` (PyTorch, cuDNN, Keras' default, ONNX
        ``linear_before_reset=1``) applies the reset gate after the recurrent product,
        ``n = tanh(W_in x + b_in + r * (W_hn a + b_hn))``; ``False`` (Keras
        ``reset_after=False``, ONNX's default, TensorFlow 1) before it,
        ``n = tanh(W_in x + b_in + W_hn (r * a) + b_hn)``.
    peepholes : bool
        The LSTM's peephole connections (ONNX ``P``): ``i`` and ``f`` also read
        ``Pi * c<t-1>`` and ``Pf * c<t-1>``, ``o`` reads ``Po * c<t>`` (keys ``Pi``, ``Pf``,
        ``Po``, each ``(n_a, 1)``).
    proj : bool
        The LSTM's projection (PyTorch's ``proj_size``): ``a<t> = Wp @ (o * tanh(c<t>))``
        with ``Wp`` of shape ``(n_p, n_a)``, ``n_p < n_a``; the hidden state has ``n_p``
        rows, the cell state ``n_a``.
    clip : float or None
        The LSTM's cell clip (ONNX ``clip``): every gate's pre-activation is clipped to
        ``[-clip, clip]`` before its activation (the cell state itself is not).
    input_forget : bool
        The LSTM's coupled input and forget gates (ONNX ``input_forget``): ``f = 1 - i``;
        ``Wf`` and ``bf`` are kept but not read (their gradients are zero).
    """

    nonlinearity: str = "tanh"
    reset_after: bool = True
    peepholes: bool = False
    proj: bool = False
    clip: float | None = None
    input_forget: bool = False

    def changed(self) -> tuple[str, ...]:
        """The fields that are not at their defaults, in field order."""
        default = Options()
        return tuple(
            f.name
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        )


#: the classic cells: every option at its default
CLASSIC = Options()

#: name -> spec, in the order messages list them
CELLS: dict[str, CellSpec] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def cell_spec(cell) -> CellSpec:
    """The spec of a cell name, or a ``ValueError`` listing the valid ones."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(CELLS)}")
    return CELLS[cell]


#: option -> the cell that has it, for messages
_OWNER = {
    "nonlinearity": "the RNN's",
    "reset_after": "the GRU's",
    "peepholes": "the LSTM's",
    "proj": "the LSTM's",
    "clip": "the LSTM's",
    "input_forget": "the LSTM's",
}


def check_flag(name: str, value) -> bool:
    """A ``True``/``False`` argument (``reverse``, ``input_forget``...), or a ``TypeError``
    naming it (``1``, ``"yes"`` and ``None`` are refused: no truthiness)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_options(spec: CellSpec, names: Mapping[str, str] | None = None, **given) -> Options:
    """`Options` from keyword values, checked before any work.

    ``given`` holds the values a caller passed (``None`` values are left out: the default).
    A value other than the default for an option ``spec`` does not have is refused, naming
    the argument (``names`` maps an option to the caller's argument name, e.g.
    ``{"proj": "proj_size"}``), as is a wrong type or value.
    """
    names = dict(names or {})
    values = {}
    for option, value in given.items():
        arg = names.get(option, option)
        if value is None:
            continue
        if option not in spec.options:
            if value == getattr(CLASSIC, option):
                continue
            raise ValueError(
                f"{arg}={value!r} is {_OWNER[option]} option; cell {spec.name!r} has no {arg}"
            )
        if option == "nonlinearity":
            if value not in NONLINEARITIES:
                raise ValueError(
                    f"nonlinearity must be one of {', '.join(map(repr, NONLINEARITIES))}, "
                    f"got {value!r}"
                )
        elif option == "clip":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"clip must be a positive number or None, got {value!r}")
            if not value > 0 or value == float("inf"):
                raise ValueError(f"clip must be a positive finite number or None, got {value!r}")
            value = float(value)
        else:
            check_flag(arg, value)
        values[option] = value
    return Options(**values)
