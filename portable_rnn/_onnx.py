"""ONNX both ways: portable_rnn parameters as ONNX ``RNN``/``LSTM``/``GRU`` operators, and back.

`to_onnx` writes a stack of layers (`portable_rnn.multilayer_forward`'s list of column-dialect
dicts) as a model of one ONNX recurrent operator per layer, chained by ``Transpose`` and
``Reshape``; `from_onnx` reads such operators' weights back (from our models or hand-built
ones) and the keywords that make `multilayer_forward` compute what the model computes.
`char_model_to_onnx` exports the language model of `portable_rnn.train` (``portable-rnn
export``). The public entry points are `portable_rnn.interop.to_onnx` and ``from_onnx``.

Mapping, for ``H`` hidden units and ``D`` directions (ONNX's gate orders: LSTM ``i, o, f, c``,
GRU ``z, r, h``; ``W`` (D, G*H, n_x), ``R`` (D, G*H, H), ``B`` (D, 2*G*H) = ``[Wb | Rb]``):

| portable_rnn | ONNX |
|---|---|
| RNN ``Wax``, ``Waa``, ``ba`` | ``W``, ``R``, ``Wb`` (``Rb`` = 0) |
| LSTM ``W{g}[:, H:]``, ``W{g}[:, :H]``, ``b{g}`` | ``W``, ``R``, ``Wb`` of gate g (``Rb`` = 0) |
| LSTM ``Pi``, ``Po``, ``Pf`` (peepholes) | ``P`` (D, 3*H), order i, o, f |
| GRU ``W{g}[:, H:]``, ``W{g}[:, :H]`` | ``W``, ``R`` rows of gate g (``n`` is ONNX's ``h``) |
| GRU ``bz``, ``br``, ``bn``, ``bhn`` | ``Wb`` = ``[bz, br, bn]``, ``Rb`` = ``[0, 0, bhn]`` |

Reading back, a bias is ``Wb + Rb`` (``Wb`` itself when ``Rb`` is zero, so that our own models
come back bit for bit), the GRU's ``bn`` is ``Wbh`` and ``bhn`` is ``Rbh``.

The ``onnx`` package is imported only when a function runs (``pip install
portable_rnn[onnx]``); nothing here needs ONNX Runtime.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, cast

import numpy as np

from ._backend.devices import to_numpy
from ._core import spec as _spec
from ._validate import check_is_array, get_params

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "char_model_to_onnx",
    "from_onnx",
    "save_model_atomic",
    "to_onnx",
]

#: The opset `to_onnx` writes by default (ONNX 1.12 and later, ONNX Runtime 1.12 and later).
DEFAULT_OPSET = 17
#: The oldest opset `to_onnx` writes (where the recurrent operators got ``layout``).
MIN_OPSET = 14

#: ONNX's operator of each cell, and its gate blocks in our letters.
_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_CELL_OF_OP = {op: cell for cell, op in _OP.items()}
_ORDER = {"rnn": ("",), "lstm": ("i", "o", "f", "c"), "gru": ("z", "r", "n")}
_PEEPHOLES = ("Pi", "Po", "Pf")  # ONNX's P order: i, o, f
_DTYPES = {"float32": 1, "float64": 11}  # onnx.TensorProto.FLOAT, DOUBLE
#: Operators `from_onnx` passes over: the glue between layers, never arithmetic.
_GLUE = ("Concat", "Constant", "Identity", "Reshape", "Slice", "Squeeze", "Transpose", "Unsqueeze")
#: Operators that compute shapes or fill a tensor with one value (PyTorch's exporter builds
#: zero initial states with them); ``Gather`` only of a shape.
_SHAPE_GLUE = ("ConstantOfShape", "Expand", "Gather", "Shape")
#: The default activations of each operator, per direction.
_DEFAULT_ACTIVATIONS = {
    "RNN": ["Tanh"],
    "LSTM": ["Sigmoid", "Tanh", "Tanh"],
    "GRU": ["Sigmoid", "Tanh"],
}
#: Every attribute of each operator (ONNX 1.23); `from_onnx` refuses any other.
_COMMON = ("activation_alpha", "activation_beta", "activations", "clip", "direction")
_ATTRIBUTES = {
    "RNN": {*_COMMON, "hidden_size", "layout"},
    "LSTM": {*_COMMON, "hidden_size", "layout", "input_forget"},
    "GRU": {*_COMMON, "hidden_size", "layout", "linear_before_reset"},
}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "ONNX export and import need the onnx package: pip install portable_rnn[onnx]"
        ) from None
    return onnx


# --------------------------------------------------------------------------- checks


def _check_choice(name, value, choices):
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _check_opset(opset):
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int, got {type(opset).__name__}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be in [{MIN_OPSET}, {newest}] (this onnx package's newest), got {opset}"
        )


def _check_options(spec, *, bidirectional, reverse, nonlinearity, reset_after, clip, input_forget):
    """The cell options, checked; returns the operator's attributes (besides ``hidden_size``)."""
    _check_bool("bidirectional", bidirectional)
    _check_bool("reverse", reverse)
    _check_bool("reset_after", reset_after)
    _check_bool("input_forget", input_forget)
    _check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    if reverse and bidirectional:
        raise ValueError("reverse=True is for a unidirectional stack; bidirectional is True")
    if nonlinearity != "tanh" and spec.name != "rnn":
        raise ValueError(f"nonlinearity is for cell 'rnn'; cell is {spec.name!r}")
    if not reset_after and spec.name != "gru":
        raise ValueError(f"reset_after is for cell 'gru'; cell is {spec.name!r}")
    if input_forget and spec.name != "lstm":
        raise ValueError(f"input_forget is for cell 'lstm'; cell is {spec.name!r}")
    if clip is not None:
        if spec.name != "lstm":
            raise ValueError(f"clip is for cell 'lstm'; cell is {spec.name!r}")
        if isinstance(clip, bool) or not isinstance(clip, (int, float, np.floating, np.integer)):
            raise TypeError(f"clip must be a positive number or None, got {clip!r}")
        if not (math.isfinite(clip) and 0 < clip <= float(np.finfo(np.float32).max)):
            raise ValueError(
                f"clip must be a finite number > 0 (a float32 attribute in ONNX), or None, "
                f"got {clip!r}"
            )
    D = 2 if bidirectional else 1
    attrs: dict[str, Any] = {
        "direction": "bidirectional" if bidirectional else "reverse" if reverse else "forward"
    }
    if spec.name == "rnn":
        attrs["activations"] = [nonlinearity.capitalize()] * D
    if spec.name == "gru":
        attrs["linear_before_reset"] = int(reset_after)
    if clip is not None:
        attrs["clip"] = float(clip)
    if input_forget:
        attrs["input_forget"] = 1
    return attrs


def _layer_list(layers, what="layers"):
    if isinstance(layers, dict):
        return [(what, layers)]
    if isinstance(layers, (list, tuple)) and layers:
        for k, p in enumerate(layers):
            if not isinstance(p, dict):
                raise TypeError(f"{what}[{k}] must be a dict of arrays, got {type(p).__name__}")
        return [(f"{what}[{k}]", p) for k, p in enumerate(layers)]
    got = "an empty list" if isinstance(layers, (list, tuple)) else type(layers).__name__
    raise TypeError(f"{what} must be a dict or a non-empty list of dicts, got {got}")


def _default_label(name, key):
    return f"{name}[{key!r}]"


def _host_layers(spec, named, D, dtype, what="layers", label=_default_label):
    """Every layer dict as NumPy arrays of ``dtype``, checked: ``(layers, n_x, H, peepholes)``.

    ``label(name, key)`` names an array in errors (``layers[1]['Wf']``)."""
    if len(named) % D:
        raise ValueError(
            f"{what} must hold num_layers * 2 dicts for a bidirectional stack, got {len(named)}"
        )
    peep = any(k in p for _, p in named for k in _PEEPHOLES)
    if peep and spec.name != "lstm":
        raise ValueError(
            f"peepholes (Pi, Pf, Po) are the LSTM's; cell is {spec.name!r} "
            f"({named[0][0]} has {sorted(k for k in named[0][1] if k in _PEEPHOLES)})"
        )
    keys = spec.layer_keys + (_PEEPHOLES if peep else ())
    out, n_x, H = [], None, None
    for k, (name, p) in enumerate(named):
        if "Wp" in p:
            raise ValueError(
                f"{label(name, 'Wp')}: an LSTM with a projection (proj_size) has no ONNX operator; "
                "to_onnx cannot export it"
            )
        p = get_params(p, keys, name)
        for key, value in p.items():
            check_is_array(label(name, key), value)
        host = {key: np.asarray(to_numpy(v)).astype(dtype) for key, v in p.items()}
        first = host[spec.layer_keys[0]]
        if first.ndim != 2:
            raise ValueError(
                f"{label(name, spec.layer_keys[0])} must be 2-D, got shape {first.shape}"
            )
        if H is None:
            H = int(host[spec.separate[1]].shape[0] if spec.separate else first.shape[0])
            width = int(first.shape[1]) - (0 if spec.separate else H)
            n_x = width
        n_in = n_x if k < D else D * H
        for key, value in host.items():
            shape = (H, 1) if key in _PEEPHOLES else spec.shape(key, n_in, H, 0)
            if value.shape != shape:
                below = "n_x" if k < D else f"{D} * n_a of the layer below"
                raise ValueError(
                    f"{label(name, key)} has shape {value.shape}, expected {shape} "
                    f"(n_a = {H}, inputs = {n_in}: {below})"
                )
        out.append(host)
    return out, n_x, H, peep


# --------------------------------------------------------------------------- writing


def _onnx_arrays(spec, p, H, peep):
    """One direction's ``(W (G*H, n_in), R (G*H, H), B (2*G*H,), P (3*H,) or None)``."""
    if spec.separate:
        kx, ka, kb = spec.separate
        b = p[kb][:, 0]
        return p[kx], p[ka], np.concatenate([b, np.zeros_like(b)]), None
    order = _ORDER[spec.name]
    W = np.concatenate([p[f"W{g}"][:, H:] for g in order], axis=0)
    R = np.concatenate([p[f"W{g}"][:, :H] for g in order], axis=0)
    Wb = np.concatenate([p[f"b{g}"][:, 0] for g in order])
    Rb = np.concatenate(
        [
            p[spec.hidden_biases[g]][:, 0] if g in spec.hidden_biases else np.zeros_like(Wb[:H])
            for g in order
        ]
    )
    P = np.concatenate([p[k][:, 0] for k in _PEEPHOLES]) if peep else None
    return W, R, np.concatenate([Wb, Rb]), P


class _Graph:
    """Nodes and initializers of a graph being built, with unique names."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.inits = onnx, [], []

    def init(self, name, array):
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, outputs, name, **attrs):
        while inputs and inputs[-1] == "":  # trailing optional inputs left out
            inputs = inputs[:-1]
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs


def _add_stack(g, spec, layers, D, H, peep, attrs, x, *, h0=None, c0=None, lengths=None):
    """Append one recurrent operator per layer to ``g``; ``x`` is (T, batch, n_x).

    Returns the names of ``y`` (T, batch, D*H) and of the final states (L*D, batch, H).
    """
    L = len(layers) // D
    op = _OP[spec.name]
    DH = g.init("stack.shape_T_batch_DH", np.array([0, 0, D * H], np.int64))
    hs, cs = [], []
    for k in range(L):
        dirs = [_onnx_arrays(spec, p, H, peep) for p in layers[k * D : (k + 1) * D]]
        pre = f"layer{k}"
        W = g.init(f"{pre}.W", np.stack([d[0] for d in dirs]))
        R = g.init(f"{pre}.R", np.stack([d[1] for d in dirs]))
        B = g.init(f"{pre}.B", np.stack([d[2] for d in dirs]))
        P = g.init(f"{pre}.P", np.stack([cast(Any, d[3]) for d in dirs])) if peep else ""
        states = []
        for s in (h0, c0):
            if s is None or L == 1:
                states.append(s or "")
                continue
            starts = g.init(f"{pre}.{s}_start", np.array([k * D], np.int64))
            ends = g.init(f"{pre}.{s}_end", np.array([(k + 1) * D], np.int64))
            axes = g.init(f"{pre}.{s}_axis", np.array([0], np.int64))
            states.append(
                g.node("Slice", [s, starts, ends, axes], [f"{pre}.{s}"], f"{pre}.slice_{s}")[0]
            )
        inputs = [x, W, R, B, lengths or "", states[0]]
        outputs = [f"{pre}.Y", f"{pre}.Y_h"]
        if spec.name == "lstm":
            inputs += [states[1], P]
            outputs.append(f"{pre}.Y_c")
        g.node(op, inputs, outputs, f"{pre}.{op}", hidden_size=H, **attrs)
        hs.append(outputs[1])
        if spec.name == "lstm":
            cs.append(outputs[2])
        # Y (T, D, batch, H) -> (T, batch, D, H) -> (T, batch, D*H), forward first
        t = g.node("Transpose", [outputs[0]], [f"{pre}.Y_t"], f"{pre}.transpose", perm=[0, 2, 1, 3])
        x = g.node("Reshape", [t[0], DH], [f"{pre}.out"], f"{pre}.reshape")[0]
    return x, hs, cs


def _joined(g, names, out):
    if len(names) == 1:
        return g.node("Identity", names, [out], f"{out}.identity")[0]
    return g.node("Concat", names, [out], f"{out}.concat", axis=0)[0]


def _model(g, inputs, outputs, opset, doc, metadata=None):
    onnx = g.onnx
    helper = onnx.helper
    graph = helper.make_graph(g.nodes, "portable_rnn", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="portable_rnn",
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=doc,
    )
    model.producer_version = _version()
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model


def _version():
    try:
        from importlib.metadata import version

        return version("portable_rnn")
    except Exception:  # pragma: no cover - not installed (running from a checkout)
        return "unknown"


def to_onnx(
    layers,
    *,
    cell,
    bidirectional=False,
    reverse=False,
    nonlinearity="tanh",
    reset_after=True,
    clip=None,
    input_forget=False,
    dtype="float32",
    initial_state=False,
    variable_lengths=False,
    opset=DEFAULT_OPSET,
):
    """See `portable_rnn.interop.to_onnx`."""
    onnx = _onnx()
    spec = _spec.cell_spec(cell)
    _check_choice("dtype", dtype, tuple(_DTYPES))
    _check_bool("initial_state", initial_state)
    _check_bool("variable_lengths", variable_lengths)
    _check_opset(opset)
    attrs = _check_options(
        spec,
        bidirectional=bidirectional,
        reverse=reverse,
        nonlinearity=nonlinearity,
        reset_after=reset_after,
        clip=clip,
        input_forget=input_forget,
    )
    D = 2 if bidirectional else 1
    host, n_x, H, peep = _host_layers(spec, _layer_list(layers), D, dtype)
    assert H is not None  # _layer_list refuses an empty list
    L = len(host) // D
    helper, elem = onnx.helper, _DTYPES[dtype]
    g = _Graph(onnx)
    inputs = [helper.make_tensor_value_info("x", elem, ["T", "batch", n_x])]
    h0 = c0 = lengths = None
    if initial_state:
        h0 = "h0"
        inputs.append(helper.make_tensor_value_info("h0", elem, [L * D, "batch", H]))
        if spec.name == "lstm":
            c0 = "c0"
            inputs.append(helper.make_tensor_value_info("c0", elem, [L * D, "batch", H]))
    if variable_lengths:
        lengths = "sequence_lens"
        inputs.append(helper.make_tensor_value_info(lengths, 6, ["batch"]))  # int32
    y, hs, cs = _add_stack(g, spec, host, D, H, peep, attrs, "x", h0=h0, c0=c0, lengths=lengths)
    g.node("Identity", [y], ["y"], "y.identity")
    outputs = [
        helper.make_tensor_value_info("y", elem, ["T", "batch", D * H]),
        helper.make_tensor_value_info(_joined(g, hs, "h_n"), elem, [L * D, "batch", H]),
    ]
    if cs:
        outputs.append(
            helper.make_tensor_value_info(_joined(g, cs, "c_n"), elem, [L * D, "batch", H])
        )
    doc = (
        f"portable_rnn {spec.torch_module}: {L} layer(s), {attrs['direction']}, "
        f"{H} hidden units, {n_x} inputs. x (T, batch, n_x) -> y (T, batch, D*H), "
        "h_n (L*D, batch, H)" + (", c_n (L*D, batch, H)" if cs else "")
    )
    return _model(g, inputs, outputs, opset, doc)


# --------------------------------------------------------------------------- reading


def _load(model):
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return onnx, model
    if isinstance(model, (str, os.PathLike)):
        if not Path(model).is_file():
            raise ValueError(f"model {str(model)!r} is not a file")
        try:
            return onnx, onnx.load(os.fspath(model))
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ValueError(f"model {str(model)!r} is not an ONNX model: {exc}") from None
    raise TypeError(f"model must be an onnx.ModelProto or a path, got {type(model).__name__}")


def _constants(onnx, graph):
    """Every initializer and ``Constant`` output of ``graph``: name -> NumPy array."""
    found = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    found[node.output[0]] = onnx.numpy_helper.to_array(a.t)
    return found


def _input(node, k):
    return node.input[k] if len(node.input) > k and node.input[k] else None


def _weights(node, constants, where, key, k, required=True):
    name = _input(node, k)
    if name is None:
        if required:
            raise ValueError(f"{where}: input {key} is missing")
        return None
    if name not in constants:
        raise ValueError(
            f"{where}: input {key} ({name!r}) is not an initializer or Constant; "
            "from_onnx reads weights stored in the model"
        )
    arr = constants[name]
    if arr.dtype.name not in _DTYPES:
        raise ValueError(f"{where}: input {key} has dtype {arr.dtype}; float32 or float64 only")
    return arr


def _node_options(onnx, node, where):
    """``(attributes, options)`` of one recurrent node, every unsupported attribute refused."""
    op = node.op_type
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    for name in attrs:
        if name not in _ATTRIBUTES[op]:
            raise ValueError(f"{where}: attribute {name!r} is not one of {op}'s")
    for name in ("activation_alpha", "activation_beta"):
        if name in attrs:
            raise ValueError(
                f"{where}: attribute {name} is not supported (default activations only)"
            )
    if attrs.get("layout", 0) != 0:
        raise ValueError(
            f"{where}: attribute layout={attrs['layout']} (batch first) is not supported; "
            "from_onnx reads layout=0 (time first)"
        )
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"{where}: attribute direction={direction!r} is not an ONNX direction")
    D = 2 if direction == "bidirectional" else 1
    options: dict[str, Any] = {"bidirectional": D == 2}
    if direction == "reverse":
        options["reverse"] = True
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    default = _DEFAULT_ACTIVATIONS[op] * D
    if op == "RNN" and acts == ["Relu"] * D:
        options["nonlinearity"] = "relu"
    elif acts and acts != default:
        allowed = " or ['Relu'] * D" if op == "RNN" else ""
        raise ValueError(
            f"{where}: attribute activations={acts} is not supported; {op} reads {default}{allowed}"
        )
    if "clip" in attrs:
        if op != "LSTM":
            raise ValueError(f"{where}: attribute clip is supported on LSTM only")
        # a float32 attribute: read as the shortest decimal of that float32 (0.7, not
        # 0.699999988), which is what to_onnx was given
        options["clip"] = float(str(np.float32(attrs["clip"])))
    if attrs.get("input_forget", 0):
        options["input_forget"] = True
    if op == "GRU" and not attrs.get("linear_before_reset", 0):
        options["reset_after"] = False
    return attrs, options, D


def _our_layer(cell, W, R, B, P, H):
    """One direction's column-dialect dict from ONNX's ``W`` (G*H, n_x), ``R``, ``B``, ``P``."""
    spec = _spec.CELLS[cell]
    G = spec.n_blocks
    Wb, Rb = B[: G * H], B[G * H :]

    def bias(k):
        w, r = Wb[k * H : (k + 1) * H], Rb[k * H : (k + 1) * H]
        return (w.copy() if not np.any(r) else w + r).reshape(H, 1)

    if spec.separate:
        kx, ka, kb = spec.separate
        return {kx: W.copy(), ka: R.copy(), kb: bias(0)}
    p = {}
    for k, g in enumerate(_ORDER[cell]):
        p[f"W{g}"] = np.concatenate([R[k * H : (k + 1) * H], W[k * H : (k + 1) * H]], axis=1)
        if g in spec.hidden_biases:
            p[f"b{g}"] = Wb[k * H : (k + 1) * H].reshape(H, 1).copy()
            p[spec.hidden_biases[g]] = Rb[k * H : (k + 1) * H].reshape(H, 1).copy()
        else:
            p[f"b{g}"] = bias(k)
    ordered = {key: p[key] for key in spec.layer_keys}
    if P is not None:
        for k, key in enumerate(_PEEPHOLES):
            ordered[key] = P[k * H : (k + 1) * H].reshape(H, 1).copy()
    return ordered


def from_onnx(model):
    """See `portable_rnn.interop.from_onnx`."""
    onnx, model = _load(model)
    graph = model.graph
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 7:
            raise ValueError(f"model opset {opset.version} is older than 7 (the RNN operators')")
    constants = _constants(onnx, graph)
    recurrent, shapes, fills = [], set(), {}  # fills: tensors of one value -> the values
    for k, node in enumerate(graph.node):
        where = f"node {k} ({node.name or node.op_type!r})"
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{where}: operator {node.domain}.{op} is not supported")
        if op in _CELL_OF_OP:
            recurrent.append((where, node))
        elif op == "Shape" or (op == "Gather" and node.input[0] in shapes):
            shapes.add(node.output[0])
        elif op == "Expand" and node.input[0] in constants:
            fills[node.output[0]] = constants[node.input[0]]
        elif op == "ConstantOfShape":
            value = [onnx.numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
            fills[node.output[0]] = value[0] if value else np.zeros(1)
        elif op not in _GLUE:
            raise ValueError(
                f"{where}: operator {op}{' (not of a shape)' if op == 'Gather' else ''} is not "
                f"supported; from_onnx reads RNN, LSTM and GRU operators joined by "
                f"{', '.join(_GLUE)}, and {', '.join(_SHAPE_GLUE)} building their shapes"
                + (" (Expand of a constant)" if op == "Expand" else "")
            )
    if not recurrent:
        raise ValueError("the model has no RNN, LSTM or GRU operator")
    ops = sorted({node.op_type for _, node in recurrent})
    if len(ops) > 1:
        raise ValueError(f"the model mixes operators {ops}; one stack has one cell")
    op = ops[0]
    cell = _CELL_OF_OP[op]
    G = _spec.CELLS[cell].n_blocks
    layers, options, dtype, H = [], None, None, None
    for index, (where, node) in enumerate(recurrent):
        attrs, opts, D = _node_options(onnx, node, where)
        if options is None:
            options = opts
        elif opts != options:
            raise ValueError(
                f"{where}: options {opts} differ from the first layer's {options}; "
                "portable_rnn stacks run one set of options"
            )
        for k, key in ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c")):
            name = _input(node, k)
            zeros = key != "sequence_lens" and name in fills and not np.any(fills[name])
            if (name in constants or name in fills) and not zeros:
                raise ValueError(
                    f"{where}: input {key} is stored in the model; from_onnx reads parameters "
                    "only (pass states and lengths to multilayer_forward as a0, c0, lengths)"
                )
        W = _weights(node, constants, where, "W", 1)
        R = _weights(node, constants, where, "R", 2)
        B = _weights(node, constants, where, "B", 3, required=False)
        P = _weights(node, constants, where, "P", 7, required=False) if op == "LSTM" else None
        assert W is not None and R is not None  # required: _weights raised if missing
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] % G:
            raise ValueError(f"{where}: W has shape {W.shape}, expected ({D}, {G} * H, n_x)")
        h = W.shape[1] // G
        if "hidden_size" in attrs and attrs["hidden_size"] != h:
            raise ValueError(
                f"{where}: attribute hidden_size={attrs['hidden_size']} but W has {G} * {h} rows"
            )
        if R.shape != (D, G * h, h):
            raise ValueError(f"{where}: R has shape {R.shape}, expected {(D, G * h, h)}")
        if B is None:
            B = np.zeros((D, 2 * G * h), W.dtype)
        if B.shape != (D, 2 * G * h):
            raise ValueError(f"{where}: B has shape {B.shape}, expected {(D, 2 * G * h)}")
        if P is not None and P.shape != (D, 3 * h):
            raise ValueError(f"{where}: P has shape {P.shape}, expected {(D, 3 * h)}")
        if index and (P is None) != (layers[0].get("Pi") is None):
            raise ValueError(f"{where}: P is given on some layers only")
        if {W.dtype, R.dtype, B.dtype} | ({P.dtype} if P is not None else set()) != {W.dtype}:
            raise ValueError(f"{where}: W, R, B and P must share one dtype")
        if dtype is None:
            dtype, H = W.dtype, h
        elif W.dtype != dtype or h != H:
            raise ValueError(
                f"{where}: dtype {W.dtype} and hidden size {h} differ from the first layer's "
                f"({dtype}, {H})"
            )
        assert H is not None  # set or checked equal to h just above
        if index and W.shape[2] != D * H:
            raise ValueError(
                f"{where}: W reads {W.shape[2]} inputs; a stacked layer reads the "
                f"{D} * {H} outputs of the layer below"
            )
        for d in range(D):
            layers.append(_our_layer(cell, W[d], R[d], B[d], None if P is None else P[d], H))
    assert options is not None  # recurrent is not empty
    return layers, {"cell": cell, **options}


# --------------------------------------------------------------------------- the language model


def _char_model_layers(params):
    """``(cell, layers)`` of a language model's flat parameters (``layer{k}.{key}``)."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    for key in params:
        if key.endswith(".Wp"):
            raise ValueError(
                f"params[{key!r}]: an LSTM with a projection (proj_size) has no ONNX operator; "
                "the model cannot be exported"
            )
    cells = [c for c, s in _spec.CELLS.items() if f"layer0.{s.layer_keys[0]}" in params]
    if len(cells) != 1:
        raise ValueError(
            f"params must hold one stack (layer0.Wax, layer0.Wf or layer0.Wr), got {sorted(params)}"
        )
    cell = cells[0]
    spec = _spec.CELLS[cell]
    layers = []
    while f"layer{len(layers)}.{spec.layer_keys[0]}" in params:
        k = len(layers)
        prefix = f"layer{k}."
        layers.append(
            {key[len(prefix) :]: v for key, v in params.items() if key.startswith(prefix)}
        )
    for key in ("embed", "Wy", "by"):
        if key not in params:
            raise ValueError(f"params lacks {key!r} (a model of portable_rnn.train has it)")
    return cell, layers


def char_model_to_onnx(params, vocab, *, dtype="float32", opset=DEFAULT_OPSET, nonlinearity="tanh"):
    """The character language model of `portable_rnn.train` as an ONNX model.

    Parameters
    ----------
    params : dict
        The model's flat parameters (a checkpoint's ``params``): ``embed`` (V, E),
        ``layer{k}.{key}`` (the column dialect), ``Wy`` (V, H), ``by`` (V, 1); any backend.
    vocab : str
        The characters, index ``k`` is ``vocab[k]`` (``len(vocab) == V``).
    dtype : {"float32", "float64"}, keyword-only
        The model's float dtype (ONNX Runtime's CPU recurrent operators run float32 only).
    opset : int, keyword-only
        The ONNX opset, `MIN_OPSET` to the onnx package's newest.
    nonlinearity : {"tanh", "relu"}, keyword-only
        The activation of an RNN model, as it was trained (a run's checkpoint keeps it in
        its header's ``config``): the RNN operators' ``activations`` (``["Relu"]``).

    Returns
    -------
    model : onnx.ModelProto
        Inputs ``chars`` int64 (batch, T), ``h0`` (layers, batch, H) and, for the LSTM,
        ``c0`` (layers, batch, H) (zeros to start). Outputs ``logits`` (batch, T, V), ``probs``
        (batch, T, V) (their softmax: the distribution of the next character after every
        input), ``h_n`` (layers, batch, H) and, for the LSTM, ``c_n``. ``metadata_props``:
        ``vocab`` (the characters), ``cell``, ``layers``, ``hidden`` and, for the RNN,
        ``nonlinearity``.

    Raises
    ------
    ValueError
        Not a language model of `portable_rnn.train`, a projection (``Wp``), a vocabulary of
        another size, a bad ``dtype`` or ``opset``, a ``nonlinearity`` other than tanh for
        another cell than the RNN.
    """
    onnx = _onnx()
    _check_choice("dtype", dtype, tuple(_DTYPES))
    _check_opset(opset)
    if not isinstance(vocab, str) or not vocab:
        raise TypeError(f"vocab must be a non-empty str of characters, got {type(vocab).__name__}")
    cell, stack = _char_model_layers(params)
    spec = _spec.CELLS[cell]
    named = [(f"params['layer{k}.*']", p) for k, p in enumerate(stack)]
    attrs = _check_options(
        spec,
        bidirectional=False,
        reverse=False,
        nonlinearity=nonlinearity,
        reset_after=True,
        clip=None,
        input_forget=False,
    )
    host, E, H, peep = _host_layers(  # errors name params['layer1.Wz']
        spec, named, 1, dtype, "params", lambda name, key: name.replace("*", key)
    )
    for key in ("embed", "Wy", "by"):
        check_is_array(f"params[{key!r}]", params[key])
    embed, Wy, by = (np.asarray(to_numpy(params[k])).astype(dtype) for k in ("embed", "Wy", "by"))
    V = len(vocab)
    for key, arr, shape in (("embed", embed, (V, E)), ("Wy", Wy, (V, H)), ("by", by, (V, 1))):
        if arr.shape != shape:
            raise ValueError(
                f"params[{key!r}] has shape {arr.shape}, expected {shape} "
                f"(V = {V} characters of vocab, E = {E}, H = {H})"
            )
    L, elem, helper = len(host), _DTYPES[dtype], onnx.helper
    g = _Graph(onnx)
    g.init("embed", embed)
    g.node("Gather", ["embed", "chars"], ["embedded"], "embedding", axis=0)  # (batch, T, E)
    g.node("Transpose", ["embedded"], ["x"], "time_first", perm=[1, 0, 2])  # (T, batch, E)
    c0 = "c0" if spec.name == "lstm" else None
    y, hs, cs = _add_stack(g, spec, host, 1, H, peep, attrs, "x", h0="h0", c0=c0)
    g.init("Wy_T", np.ascontiguousarray(Wy.T))
    g.init("by_row", by[:, 0])
    g.node("MatMul", [y, "Wy_T"], ["scores"], "output_matmul")  # (T, batch, V)
    g.node("Add", ["scores", "by_row"], ["scores_b"], "output_bias")
    g.node("Transpose", ["scores_b"], ["logits"], "batch_first", perm=[1, 0, 2])
    g.node("Softmax", ["logits"], ["probs"], "softmax", axis=-1)
    state = [L, "batch", H]
    inputs = [
        helper.make_tensor_value_info("chars", 7, ["batch", "T"]),  # int64
        helper.make_tensor_value_info("h0", elem, state),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", elem, ["batch", "T", V]),
        helper.make_tensor_value_info("probs", elem, ["batch", "T", V]),
        helper.make_tensor_value_info(_joined(g, hs, "h_n"), elem, state),
    ]
    if c0:
        inputs.append(helper.make_tensor_value_info("c0", elem, state))
        outputs.append(helper.make_tensor_value_info(_joined(g, cs, "c_n"), elem, state))
    doc = (
        f"portable_rnn character language model: embedding ({V} characters, {E} wide) -> "
        f"{L} {spec.torch_module} layer(s) of {H} -> affine -> softmax. chars (batch, T) int64, "
        "h0" + (", c0" if c0 else "") + " (layers, batch, H) -> logits, probs (batch, T, V), "
        "h_n" + (", c_n" if c0 else "") + ". metadata_props 'vocab': index k is vocab[k]."
    )
    meta = {
        "vocab": vocab,
        "vocab_json": json.dumps(vocab),
        "cell": cell,
        "layers": str(L),
        "hidden": str(H),
    }
    if spec.name == "rnn":
        meta["nonlinearity"] = nonlinearity
    return _model(g, inputs, outputs, opset, doc, meta)


def save_model_atomic(model, path) -> Path:
    """Write ``model`` to ``path`` through a temporary file in its directory, then rename.

    An interrupted write leaves no partial file at ``path`` (and removes its temporary).
    """
    import tempfile

    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; the file gets the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
