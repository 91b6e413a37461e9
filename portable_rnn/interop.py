"""PyTorch and ONNX interop: the weights of ``torch.nn.RNN/LSTM/GRU`` (and their cells) as
portable_rnn parameters, and back; `to_onnx` and `from_onnx` do the same with ONNX's
``RNN``/``LSTM``/``GRU`` operators (see "Deploying with ONNX" in the documentation).

`from_torch` returns arrays of PyTorch (detached copies, on the module's device
and in its dtype); move them anywhere with `portable_rnn.to_backend`.
`to_torch` builds a module from parameters of any backend. `grads_to_torch` writes
portable_rnn gradients (of any backend) into a module's ``.grad``, the mapping below
inverted: a summed bias gives its gradient to both ``bias_ih`` and ``bias_hh``.

Mapping (``H`` hidden units; PyTorch gate rows: RNN one block, LSTM i, f, g, o,
GRU r, z, n; ``[A | B]`` joins columns, hidden-state columns first):

| portable_rnn column dialect | from PyTorch |
|---|---|
| RNN ``Wax``, ``Waa``, ``ba`` | ``weight_ih``, ``weight_hh``, ``bias_ih + bias_hh`` |
| LSTM ``W{f,i,c,o}`` | ``[weight_hh[g] \\| weight_ih[g]]`` for gate f, i, g, o |
| LSTM ``b{f,i,c,o}`` | ``bias_ih[g] + bias_hh[g]`` |
| GRU ``W{r,z,n}`` | ``[weight_hh[g] \\| weight_ih[g]]`` |
| GRU ``br``, ``bz``, ``bn``, ``bhn`` | ``b_ir + b_hr``, ``b_iz + b_hz``, ``b_in``, ``b_hn`` |
| LSTM ``Wp`` (``proj_size``) | ``weight_hr`` |

An ``nn.RNN(nonlinearity="relu")`` maps as the tanh one (its activation is the keyword
``nonlinearity="relu"`` of `portable_rnn.multilayer_forward`); an ``nn.LSTM(proj_size=p)``
adds ``Wp`` (p, H) to every dict, whose hidden states then have ``p`` rows (gate weights
``(H, p + H_in)``). `torch_options` gives the keywords that run a module's dicts.

In the rows (CS231n) dialect: RNN ``Wx = weight_ih.T``, ``Wh = weight_hh.T``,
``b = bias_ih + bias_hh``; LSTM the same with the gate blocks reordered to
CS231n's i, f, o, g; GRU ``Wx``, ``Wh`` transposed (gates r, z, n),
``b = [b_ir + b_hr, b_iz + b_hz, b_in]``, ``bhn = b_hn``.

PyTorch modules have no output layer, so the dicts have none either: the
column forwards then return ``y = None``.
"""

from __future__ import annotations

import warnings
from typing import Any

from . import _creation, _onnx
from ._backend import compat as _compat
from ._core import spec as _spec
from ._validate import check_is_array as _check_is_array
from ._validate import get_params as _get_params

__all__ = ["from_onnx", "from_torch", "grads_to_torch", "to_onnx", "to_torch", "torch_options"]


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a test dependency
        raise ImportError(
            "portable_rnn.interop needs PyTorch: pip install portable_rnn[torch]"
        ) from None
    return torch


def _kind(module):
    """``(spec, is_cell)`` of a PyTorch recurrent module or cell."""
    nn = _torch().nn
    for spec in (_spec.CELLS["lstm"], _spec.CELLS["gru"], _spec.CELLS["rnn"]):
        if isinstance(module, getattr(nn, spec.torch_module)):
            return spec, False
        if isinstance(module, getattr(nn, spec.torch_module + "Cell")):
            return spec, True
    raise TypeError(
        "module must be a torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell, "
        f"got {'None' if module is None else type(module).__name__}"
    )


def _blocks(xp, M, H, order):
    return xp.concat([M[k * H : (k + 1) * H, ...] for k in order], axis=0)


def _column(spec: _spec.CellSpec, xp, W_ih, W_hh, b_ih, b_hh, W_hr=None):
    """One layer's column-dialect dict from PyTorch's four tensors (and an LSTM's
    ``weight_hr``, its projection ``Wp``, whose rows are the width of ``weight_hh``)."""
    H = W_hh.shape[0] // spec.n_blocks
    if spec.separate:
        kx, ka, kb = spec.separate
        return {kx: W_ih, ka: W_hh, kb: xp.reshape(b_ih + b_hh, (H, 1))}
    p = {}
    for g in spec.gates:
        k = spec.torch_order.index(g)
        rows = slice(k * H, (k + 1) * H)
        p[f"W{g}"] = xp.concat([W_hh[rows, :], W_ih[rows, :]], axis=1)
        if g in spec.hidden_biases:  # kept apart, inside the reset product
            p[f"b{g}"] = xp.reshape(b_ih[rows], (H, 1))
            p[spec.hidden_biases[g]] = xp.reshape(b_hh[rows], (H, 1))
        else:
            p[f"b{g}"] = xp.reshape(b_ih[rows] + b_hh[rows], (H, 1))
    if W_hr is not None:
        p["Wp"] = W_hr
    return p


def _rows(spec: _spec.CellSpec, xp, W_ih, W_hh, b_ih, b_hh):
    """One layer's rows-dialect (CS231n) dict from PyTorch's four tensors."""
    H = W_hh.shape[1]
    order = spec.permutation(spec.torch_order, spec.rows_order)
    if order != tuple(range(len(order))):
        W_ih, W_hh = _blocks(xp, W_ih, H, order), _blocks(xp, W_hh, H, order)
        b_ih, b_hh = _blocks(xp, b_ih, H, order), _blocks(xp, b_hh, H, order)
    if not spec.hidden_biases:
        return {"Wx": W_ih.T, "Wh": W_hh.T, "b": b_ih + b_hh}
    b = xp.concat([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]], axis=0)
    return {"Wx": W_ih.T, "Wh": W_hh.T, "b": b, "bhn": b_hh[2 * H :]}


def _tensors(module, suffix, zeros_like):
    """``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` of one layer, detached, and
    ``weight_hr`` for an LSTM with ``proj_size`` (else ``None``)."""
    W_ih = getattr(module, f"weight_ih{suffix}").detach().clone()
    W_hh = getattr(module, f"weight_hh{suffix}").detach().clone()
    if module.bias:
        b_ih = getattr(module, f"bias_ih{suffix}").detach().clone()
        b_hh = getattr(module, f"bias_hh{suffix}").detach().clone()
    else:
        b_ih = b_hh = zeros_like(W_ih[:, 0])
    W_hr = None
    if getattr(module, "proj_size", 0):
        W_hr = getattr(module, f"weight_hr{suffix}").detach().clone()
    return W_ih, W_hh, b_ih, b_hh, W_hr


def from_torch(module, dialect="column"):
    """The parameters of a PyTorch recurrent module, in portable_rnn's layout.

    Parameters
    ----------
    module : torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell
        Any ``nonlinearity`` (``"tanh"`` or ``"relu"``: run the dicts with the keywords of
        `torch_options`) and, for the ``LSTM``, any ``proj_size`` (its ``weight_hr`` becomes
        ``Wp``). Any ``num_layers`` and ``bidirectional`` in the column dialect; one
        unidirectional layer in the rows dialect, which has neither the relu RNN nor the
        projection.
    dialect : {"column", "rows"}
        ``"column"``: dicts for `portable_rnn.rnn_forward`, `lstm_forward`,
        `gru_forward` (and their cells) or, for several layers or directions,
        the list for `portable_rnn.multilayer_forward`. ``"rows"``: a dict of
        the arguments of `portable_rnn.rnn_layers` (``Wx``, ``Wh``, ``b``, and
        ``bhn`` for the GRU); needs ``batch_first=True`` on sequence modules,
        since the rows dialect takes ``(N, T, D)`` inputs.

    Returns
    -------
    parameters : dict, or list of dict
        PyTorch tensors (detached copies, same device and dtype); see the module
        docs for the mapping. ``Wax`` (H, H_in), ``Waa`` (H, H), ``ba`` (H, 1); gate
        weights ``(H, H + H_in)`` and biases ``(H, 1)`` in the column dialect. With
        ``proj_size = p``: gate weights ``(H, p + H_in)`` and ``Wp`` (p, H) in every dict
        (``H_in`` is ``D * p`` above layer 0).

    Raises
    ------
    TypeError
        Not one of the supported modules.
    ValueError
        An attribute the rows dialect cannot represent (``nonlinearity="relu"``,
        ``proj_size``, ``batch_first=False``, ``num_layers``, ``bidirectional``), named.

    Warns
    -----
    UserWarning
        The module has ``dropout != 0``: the dropout between layers (training mode only) is
        not part of the dicts; pass ``dropout=module.dropout, seed=...`` to
        `portable_rnn.multilayer_forward` to train with it (same placement as PyTorch's,
        other random masks).
    """
    torch = _torch()
    if dialect not in ("column", "rows"):
        raise ValueError(f"dialect must be 'column' or 'rows', got {dialect!r}")
    spec, is_cell = _kind(module)
    if dialect == "rows":
        if spec.name == "rnn" and module.nonlinearity != "tanh":
            raise ValueError(
                f"module.nonlinearity is {module.nonlinearity!r}; the rows dialect's RNN "
                "(portable_rnn.rnn_layers) is tanh: use dialect='column' with "
                "nonlinearity='relu' (see torch_options)"
            )
        if spec.name == "lstm" and not is_cell and module.proj_size:
            raise ValueError(
                f"module.proj_size is {module.proj_size}; the rows dialect has no LSTM "
                "projection: use dialect='column' (the projection is the key 'Wp')"
            )
    if not is_cell and module.dropout:
        warnings.warn(
            f"module.dropout is {module.dropout}; the dropout is not part of the parameter "
            "dicts: pass dropout=module.dropout, seed=... to portable_rnn.multilayer_forward "
            "to train with it (evaluation, as module.eval(), uses none)",
            UserWarning,
            stacklevel=2,
        )
    xp = _compat.namespace_for("torch")
    if is_cell:
        tensors = _tensors(module, "", torch.zeros_like)
        if dialect == "column":
            return _column(spec, xp, *tensors)
        return _rows(spec, xp, *tensors[:4])
    D = 2 if module.bidirectional else 1
    if dialect == "rows":
        if not module.batch_first:
            raise ValueError(
                "module.batch_first is False, but the rows dialect takes (N, T, D) inputs; "
                "use a module with batch_first=True, or dialect='column'"
            )
        if module.num_layers != 1 or D != 1:
            raise ValueError(
                f"module.num_layers is {module.num_layers} and module.bidirectional is "
                f"{module.bidirectional}; the rows dialect has one unidirectional layer "
                "(use dialect='column' with portable_rnn.multilayer_forward)"
            )
        return _rows(spec, xp, *_tensors(module, "_l0", torch.zeros_like)[:4])
    layers = []
    for layer in range(module.num_layers):
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            layers.append(_column(spec, xp, *_tensors(module, suffix, torch.zeros_like)))
    return layers[0] if len(layers) == 1 else layers


def torch_options(module):
    """The keywords that make `portable_rnn.multilayer_forward` compute what a PyTorch
    module computes from `from_torch`'s dicts.

    ``multilayer_forward(x, from_torch(module), **torch_options(module))`` runs the module
    as ``module.eval()`` does (for one layer and direction, wrap the dict in a list). The
    projection of ``nn.LSTM(proj_size=p)`` needs no keyword: it is the key ``Wp`` of the
    dicts. The dropout between layers is not included, being for training only: pass
    ``dropout=module.dropout, seed=...`` yourself to train with it.

    Parameters
    ----------
    module : torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell
        The module.

    Returns
    -------
    options : dict
        ``cell`` (``"rnn"``, ``"lstm"`` or ``"gru"``), ``bidirectional`` (bool; ``False``
        for a cell module) and, for the RNN and RNNCell, ``nonlinearity`` (``"tanh"`` or
        ``"relu"``). `to_torch` takes the same keywords, so that
        ``to_torch(from_torch(module), **torch_options(module))`` rebuilds the module.

    Raises
    ------
    TypeError
        Not one of the supported modules.
    """
    spec, is_cell = _kind(module)
    options = {"cell": spec.name, "bidirectional": False if is_cell else module.bidirectional}
    if spec.name == "rnn":
        options["nonlinearity"] = module.nonlinearity
    return options


def _marker(spec: _spec.CellSpec) -> str:
    """The key that tells a column-dialect dict of this cell: ``Waa``, ``Wf``, ``Wr``."""
    return spec.separate[1] if spec.separate else spec.layer_keys[0]


def _layer_dicts(parameters, what: str = "parameters") -> list:
    """The dicts of ``parameters`` (one dict, or a non-empty list of them), with their names
    (``what`` names the argument)."""
    if isinstance(parameters, dict):
        return [(what, parameters)]
    if isinstance(parameters, (list, tuple)) and parameters:
        for k, p in enumerate(parameters):
            if not isinstance(p, dict):
                raise TypeError(f"{what}[{k}] must be a dict of arrays, got {type(p).__name__}")
        return [(f"{what}[{k}]", p) for k, p in enumerate(parameters)]
    got = "an empty list" if isinstance(parameters, (list, tuple)) else type(parameters).__name__
    raise TypeError(f"{what} must be a dict or a non-empty list of dicts, got {got}")


def _extra_keys(spec: _spec.CellSpec, named) -> tuple[str, ...]:
    """The optional keys (``Pi``, ``Pf``, ``Po``; ``Wp``) the column-dialect dicts hold, read
    from the first; every dict must hold the same (named otherwise)."""
    found: list[str] = []
    for keys in spec.option_keys.values():
        found += [k for k in keys if k in named[0][1]]
    for name, p in named[1:]:
        mine = [k for keys in spec.option_keys.values() for k in keys if k in p]
        if mine != found:
            raise ValueError(
                f"{name} holds the optional keys {mine or 'none'} but {named[0][0]} holds "
                f"{found or 'none'}: every layer of a stack has the same cell"
            )
    return tuple(found)


def _infer(parameters):
    """``(spec, dialect, layers)`` of a parameter dict or list: the cell and dialect read
    from the first dict's keys, and every dict's arrays, checked (keys and arrays named);
    the optional keys of the column dialect (``Wp``, ``Pi``...) are kept."""
    named = _layer_dicts(parameters)
    first = named[0][1]
    found = None
    for spec in _spec.CELLS.values():
        if _marker(spec) in first:
            found = spec, "column"
            break
    else:
        if "Wx" in first and "Wh" in first:
            _check_is_array(f"{named[0][0]}['Wh']", first["Wh"])
            H = first["Wh"].shape[0]
            ratio = first["Wh"].shape[1] // H if H else 0
            found = next(
                ((spec, "rows") for spec in _spec.CELLS.values() if spec.n_blocks == ratio), None
            )
    if found is None:
        keys = ", ".join(f"{_marker(spec)} ({spec.torch_module})" for spec in _spec.CELLS.values())
        raise ValueError(
            f"cannot tell the cell from the keys {sorted(first)} of {named[0][0]}; "
            f"expected {keys}, or Wx/Wh/b (rows)"
        )
    spec, dialect = found
    if dialect == "column":
        keys = spec.layer_keys + _extra_keys(spec, named)
    else:
        keys = ("Wx", "Wh", "b", *spec.hidden_biases.values())
    layers = []
    for name, p in named:
        p = _get_params(p, keys, name)
        for key, value in p.items():
            _check_is_array(f"{name}[{key!r}]", value)
        layers.append(p)
    return spec, dialect, layers


def _to_torch_tensors(spec: _spec.CellSpec, dialect, xp, p):
    """PyTorch's ``(weight_ih, weight_hh, bias_ih, bias_hh)`` for one layer."""
    if dialect == "rows":
        W_ih, W_hh = p["Wx"].T, p["Wh"].T
        H = W_hh.shape[1]
        if spec.hidden_biases:
            b_ih = p["b"]
            b_hh = xp.concat([xp.zeros_like(p["b"][: 2 * H]), p["bhn"]], axis=0)
        else:
            b_ih, b_hh = p["b"], xp.zeros_like(p["b"])
        order = spec.permutation(spec.rows_order, spec.torch_order)
        if order != tuple(range(len(order))):
            W_ih, W_hh = _blocks(xp, W_ih, H, order), _blocks(xp, W_hh, H, order)
            b_ih, b_hh = _blocks(xp, b_ih, H, order), _blocks(xp, b_hh, H, order)
        return W_ih, W_hh, b_ih, b_hh
    if spec.separate:
        kx, ka, kb = spec.separate
        return p[kx], p[ka], p[kb][:, 0], xp.zeros_like(p[kb][:, 0])
    H = p[f"W{spec.gates[0]}"].shape[0]
    n_h = p["Wp"].shape[0] if "Wp" in p else H  # the hidden state's width: [a; x] columns
    names = spec.torch_order  # ours, in PyTorch's gate order
    W_hh = xp.concat([p[f"W{g}"][:, :n_h] for g in names], axis=0)
    W_ih = xp.concat([p[f"W{g}"][:, n_h:] for g in names], axis=0)
    b_ih = xp.concat([p[f"b{g}"][:, 0] for g in names], axis=0)
    b_hh = xp.zeros_like(b_ih)
    if spec.hidden_biases:
        b_hh = xp.concat([xp.zeros_like(b_ih[: 2 * H]), p["bhn"][:, 0]], axis=0)
    return W_ih, W_hh, b_ih, b_hh


def _no_torch_module(spec: _spec.CellSpec, options, layers) -> None:
    """Refuse what no ``torch.nn`` module computes, naming the key or keyword."""
    peep = [k for k in spec.option_keys.get("peepholes", ()) if k in layers[0]]
    if peep:
        raise ValueError(
            f"the dicts hold the LSTM's peepholes ({', '.join(map(repr, peep))}); torch.nn.LSTM "
            "has no peephole connections, so there is no PyTorch module for them"
        )
    for option, what in (
        (
            "reset_after",
            "reset_after=False (the reset gate before the recurrent product); "
            "torch.nn.GRU resets after it",
        ),
        ("clip", "clip (the cell clip); torch.nn.LSTM has none"),
        ("input_forget", "input_forget=True (coupled gates); torch.nn.LSTM has none"),
    ):
        if option in options.changed():
            raise ValueError(f"no PyTorch module computes {what}")


def to_torch(
    parameters,
    *,
    bidirectional=False,
    batch_first=None,
    nonlinearity="tanh",
    cell=None,
    reset_after=True,
    clip=None,
    input_forget=False,
    reverse=False,
):
    """A PyTorch module holding portable_rnn parameters (of any backend).

    Takes the keywords `torch_options` gives (``to_torch(from_torch(m),
    **torch_options(m))`` rebuilds ``m``) and those of `portable_rnn.multilayer_forward`
    that describe the cell; a variant no ``torch.nn`` module computes is refused.

    Parameters
    ----------
    parameters : dict or list of dict
        One layer's dict in the column dialect (``Wax``... / ``Wf``... / ``Wr``...)
        or the rows dialect (``Wx``, ``Wh``, ``b``[, ``bhn``]), or the list of
        `portable_rnn.multilayer_forward` (column dialect). The output layer,
        if any, is not part of a PyTorch recurrent module and is left out. LSTM dicts
        holding ``Wp`` (p, H) (gate weights (H, p + H_in)) give ``proj_size=p`` and
        ``weight_hr``; dicts holding peepholes (``Pi``, ``Pf``, ``Po``) are refused.
    bidirectional : bool, keyword-only
        How to read a list: PyTorch's order, two dicts per layer.
    batch_first : bool, optional, keyword-only
        The module's ``batch_first``; default ``True`` for the rows dialect,
        ``False`` for the column dialect.
    nonlinearity : {"tanh", "relu"}, keyword-only
        The RNN's ``nonlinearity``; another value than ``"tanh"`` for an LSTM or GRU is a
        ``ValueError``.
    cell : {"rnn", "lstm", "gru"}, optional, keyword-only
        When given, must be the cell the dicts' keys tell (a check, as from
        `torch_options`).
    reset_after, clip, input_forget, reverse : keyword-only
        As in `portable_rnn.multilayer_forward`; only their defaults have a PyTorch module
        (``reset_after=False``, a ``clip``, ``input_forget=True`` or ``reverse=True`` is a
        ``ValueError``).

    Returns
    -------
    module : torch.nn.RNN, LSTM or GRU
        On the parameters' device (CPU when they are not PyTorch tensors), in
        their dtype. ``module.state_dict()`` gives the state dict.

    Raises
    ------
    ValueError
        A variant without a PyTorch module (named), a keyword of another cell, dicts that
        do not fit one module (named), a ``cell`` other than the dicts'.
    TypeError
        Parameters that are not dicts of arrays.
    """
    torch = _torch()
    spec, dialect, layers = _infer(parameters)
    if cell is not None and _spec.cell_spec(cell) is not spec:
        raise ValueError(f"cell={cell!r}, but the dicts' keys are those of cell {spec.name!r}")
    options = _spec.check_options(
        spec,
        nonlinearity=nonlinearity,
        reset_after=reset_after,
        clip=clip,
        input_forget=input_forget,
    )
    if _spec.check_flag("reverse", reverse):
        raise ValueError(
            "no PyTorch module computes reverse=True (a unidirectional stack run backwards); "
            "reverse x in time instead"
        )
    _no_torch_module(spec, options, layers)
    if dialect == "rows" and options.nonlinearity != "tanh":
        raise ValueError("nonlinearity='relu' needs the column dialect (Wax, Waa, ba)")
    layers = [_creation.to_backend(p, "torch", _torch_device(p)) for p in layers]
    D = 2 if bidirectional else 1
    if len(layers) % D:
        raise ValueError(f"a bidirectional stack needs two dicts per layer, got {len(layers)}")
    if dialect == "rows" and len(layers) != 1:
        raise ValueError("the rows dialect holds one layer; pass one dict")
    xp = _compat.namespace_for("torch")
    tensors = [_to_torch_tensors(spec, dialect, xp, p) for p in layers]
    W_ih0, W_hh0 = tensors[0][0], tensors[0][1]
    cls = getattr(torch.nn, spec.torch_module)
    kwargs = {}
    if spec.name == "rnn":
        kwargs["nonlinearity"] = options.nonlinearity
    proj = "Wp" in layers[0]
    if proj:
        n_p, H = int(layers[0]["Wp"].shape[0]), int(W_hh0.shape[0]) // spec.n_blocks
        if not 0 < n_p < H:
            raise ValueError(
                f"the projection Wp has {n_p} rows, the gates {H}: PyTorch's proj_size must be "
                "in [1, hidden_size)"
            )
        kwargs["proj_size"] = n_p
    module = cls(
        W_ih0.shape[1],
        W_hh0.shape[0] // spec.n_blocks,
        num_layers=len(layers) // D,
        bidirectional=bool(bidirectional),
        batch_first=(dialect == "rows") if batch_first is None else batch_first,
        device=W_ih0.device,
        dtype=W_ih0.dtype,
        **kwargs,
    )
    with torch.no_grad():
        for k, (W_ih, W_hh, b_ih, b_hh) in enumerate(tensors):
            suffix = f"_l{k // D}" + ("_reverse" if k % D else "")
            named = [("weight_ih", W_ih), ("weight_hh", W_hh), ("bias_ih", b_ih)]
            named.append(("bias_hh", b_hh))
            if proj:
                named.append(("weight_hr", layers[k]["Wp"]))
            for name, value in named:
                target = getattr(module, name + suffix)
                if tuple(target.shape) != tuple(value.shape):
                    raise ValueError(
                        f"layer {k}: {name} would have shape {tuple(value.shape)}, "
                        f"the module expects {tuple(target.shape)}"
                    )
                target.copy_(value)
    return module


def _torch_device(p):
    """Keep PyTorch tensors where they are; anything else goes to the CPU."""
    arr = next(iter(p.values()))
    if _compat.backend_name(_compat.array_namespace(arr)) == "torch":
        return _compat.device(arr)
    return "cpu"


def _grad_keys(spec: _spec.CellSpec, g, proj: bool = False) -> tuple[str, ...]:
    """The keys of a gradient dict: the rows dialect's when it has ``dWx``, else the column
    dialect's (``dWax``... / ``dWf``... / ``dWr``..., and ``dWp`` for a projection)."""
    if "dWx" in g:
        return ("dWx", "dWh", "db", *(f"d{k}" for k in spec.hidden_biases.values()))
    return tuple(f"d{k}" for k in spec.layer_keys) + (("dWp",) if proj else ())


def _grad_tensors(spec: _spec.CellSpec, xp, g, H: int):
    """PyTorch's ``(weight_ih, weight_hh, bias_ih, bias_hh)`` gradients from one checked
    gradient dict with the keys `_grad_keys` gives."""
    if "dWx" in g:  # the rows dialect
        order = spec.permutation(spec.rows_order, spec.torch_order)
        gW_ih, gW_hh, gb = g["dWx"].T, g["dWh"].T, g["db"]
        gb_hh = gb
        if spec.hidden_biases:  # db = [r, z, n (b_in only)]; dbhn the hidden side of n
            gb_hh = xp.concat([gb[: 2 * H], g["dbhn"]], axis=0)
        blocks = [gW_ih, gW_hh, gb, gb_hh]
        if order != tuple(range(len(order))):
            blocks = [_blocks(xp, t, H, order) for t in blocks]
        return blocks[0], blocks[1], blocks[2], blocks[3]
    if spec.separate:
        kx, ka, kb = (f"d{k}" for k in spec.separate)
        return g[kx], g[ka], g[kb][:, 0], g[kb][:, 0]
    names = spec.torch_order
    gW_hh = xp.concat([g[f"dW{k}"][:, :H] for k in names], axis=0)
    gW_ih = xp.concat([g[f"dW{k}"][:, H:] for k in names], axis=0)
    gb_ih = xp.concat([g[f"db{k}"][:, 0] for k in names], axis=0)
    hidden = [
        g["d" + spec.hidden_biases[k]] if k in spec.hidden_biases else g[f"db{k}"] for k in names
    ]
    gb_hh = xp.concat([b[:, 0] for b in hidden], axis=0)
    return gW_ih, gW_hh, gb_ih, gb_hh


def grads_to_torch(grads, module, *, accumulate=False):
    """Write portable_rnn gradients into a PyTorch module's ``.grad``: `from_torch`'s
    mapping, inverted.

    ``module.weight_ih_l0.grad`` and friends then hold what PyTorch's autograd would
    have left there for the same loss, so that a ``torch.optim`` optimizer can step
    with gradients from portable_rnn's hand-written backward (of any backend).

    Parameters
    ----------
    grads : dict, or list of dict
        Gradient dicts as the backwards return them, for every layer and direction in
        PyTorch's order (layer 0 forward, [layer 0 reverse,] layer 1 forward, ...):
        the column dialect's ``dWax``, ``dWaa``, ``dba`` (RNN), ``dW{f,i,c,o}``
        (H, H + H_in) and ``db{f,i,c,o}`` (H, 1) (LSTM; with ``proj_size = p`` the
        ``dW{f,i,c,o}`` are (H, p + H_in) and ``dWp`` (p, H) is required), ``dW{r,z,n}``,
        ``db{r,z,n}``, ``dbhn`` (GRU); or the rows dialect's ``dWx`` (H_in, nH), ``dWh``
        (H, nH),
        ``db`` (nH,)[, ``dbhn`` (H,)]. The dict `portable_rnn.multilayer_backward`
        returns may be given as it is (its ``layers`` are used); other keys (``dx``,
        ``da0``...) are ignored. Any backend: the gradients are moved to the module's
        device and dtype.
    module : torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell
        The module whose parameters the gradients are of.
    accumulate : bool, keyword-only
        Add to the ``.grad`` already there (as ``loss.backward()`` does) instead of
        replacing it.

    Returns
    -------
    module : torch.nn.Module
        The same module, its parameters' ``.grad`` set: ``weight_ih`` (nH, H_in),
        ``weight_hh`` (nH, H), ``bias_ih`` and ``bias_hh`` (nH,) of every layer (and
        ``weight_hr`` (p, H) from ``dWp`` with a projection; ``weight_hh`` is then (nH, p)). A
        summed bias (``b = bias_ih + bias_hh``) gives its gradient to both; the GRU's
        ``bn`` goes to ``bias_ih``'s n block only and ``bhn`` to ``bias_hh``'s.

    Raises
    ------
    TypeError
        Not a supported module, or gradients that are not dicts of arrays.
    ValueError
        The wrong number of dicts for the module's layers and directions, or a gradient
        of the wrong shape (layer and parameter named).
    KeyError
        A gradient dict without a key the cell needs (a `MissingParameterError`).
    """
    torch = _torch()
    spec, is_cell = _kind(module)
    if isinstance(grads, dict) and "layers" in grads:
        grads = grads["layers"]
    named = _layer_dicts(grads, "grads")
    n = 1 if is_cell else module.num_layers * (2 if module.bidirectional else 1)
    if len(named) != n:
        raise ValueError(
            f"grads holds {len(named)} gradient dict(s) but the module has {n} layer(s) "
            "and direction(s)"
        )
    ref = module.weight_hh if is_cell else module.weight_hh_l0
    xp = _compat.namespace_for("torch")
    H = ref.shape[1]  # the hidden state's width: the [a; x] split (proj_size with one)
    proj = bool(getattr(module, "proj_size", 0))
    dtype = _compat.dtype_name(ref.dtype)
    D = 1 if is_cell else n // module.num_layers
    writes = []  # everything is checked before the first .grad is written
    for k, (name, g) in enumerate(named):
        g = _get_params(g, _grad_keys(spec, g, proj), name)
        for key, value in g.items():
            _check_is_array(f"{name}[{key!r}]", value)
        g = _creation.to_backend(g, "torch", ref.device, dtype=dtype)
        suffix = "" if is_cell else f"_l{k // D}" + ("_reverse" if k % D else "")
        pairs: list[tuple[str, Any]] = list(
            zip(
                ("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                _grad_tensors(spec, xp, g, H),
                strict=True,
            )
        )
        if proj:
            pairs.append(("weight_hr", g["dWp"]))
        for pname, value in pairs:
            param = getattr(module, pname + suffix, None)
            if param is None:  # bias=False: nothing to write
                continue
            if tuple(param.shape) != tuple(value.shape):
                raise ValueError(
                    f"{name}: the gradient of {pname}{suffix} would have shape "
                    f"{tuple(value.shape)}, the module's is {tuple(param.shape)}"
                )
            writes.append((param, torch.as_tensor(value).detach().clone()))
    with torch.no_grad():
        for param, value in writes:
            if accumulate and param.grad is not None:
                param.grad.add_(value)
            else:
                param.grad = value
    return module


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
    opset=_onnx.DEFAULT_OPSET,
):
    """An ONNX model of a stack of RNN, LSTM or GRU layers: one ONNX ``RNN``/``LSTM``/``GRU``
    operator per layer, holding the parameters.

    The model computes what `portable_rnn.multilayer_forward` computes with the same
    parameters and keywords, in ONNX's time-major layout (``layout=0``): the column
    dialect's ``x`` (n_x, m, T) is the model's ``x.transpose(2, 1, 0)``, its ``out``
    (D*n_a, m, T) the model's ``y.transpose(2, 1, 0)``, its states (L*D, n_a, m) the
    model's ``h_n.transpose(0, 2, 1)``. Time steps and batch are dynamic.

    Parameters
    ----------
    layers : dict or list of dict
        One column-dialect dict per layer and direction, in PyTorch's order (layer 0
        forward, [layer 0 reverse,] layer 1 forward, ...), as `portable_rnn.multilayer_forward`
        takes them: ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``ba`` (n_a, 1) (RNN);
        ``W{f,i,c,o}`` (n_a, n_a + n_x), ``b{f,i,c,o}`` (n_a, 1) and optionally the peepholes
        ``Pi``, ``Pf``, ``Po`` (n_a, 1) in every dict (LSTM); ``W{r,z,n}``
        (n_a, n_a + n_x), ``b{r,z,n}``, ``bhn`` (n_a, 1) (GRU). Later layers read
        ``D * n_a`` inputs. Arrays of any backend (copied to the host); an output layer
        (``Wy``/``by``) is ignored. An LSTM projection (``Wp``) has no ONNX operator and is
        refused.
    cell : {"rnn", "lstm", "gru"}, keyword-only
        The cell of every layer.
    bidirectional : bool, keyword-only
        Two dicts per layer (``direction="bidirectional"``, forward first).
    reverse : bool, keyword-only
        A unidirectional stack run backwards in time (``direction="reverse"``).
    nonlinearity : {"tanh", "relu"}, keyword-only
        The RNN's activation (``activations``: ``Tanh`` or ``Relu``).
    reset_after : bool, keyword-only
        The GRU's reset gate applied after the recurrent product (PyTorch's GRU,
        ``linear_before_reset=1``) or before it (``linear_before_reset=0``).
    clip : float, optional, keyword-only
        The LSTM's cell clip (ONNX ``clip``): gate pre-activations clipped to
        ``[-clip, clip]``.
    input_forget : bool, keyword-only
        The LSTM's coupled input and forget gates (ONNX ``input_forget=1``).
    dtype : {"float32", "float64"}, keyword-only
        The model's dtype; the parameters are converted. ONNX Runtime's CPU recurrent
        operators run float32 only.
    initial_state : bool, keyword-only
        Add the inputs ``h0`` (L*D, batch, n_a) and, for the LSTM, ``c0`` (L*D, batch, n_a);
        without them the states start at zero.
    variable_lengths : bool, keyword-only
        Add the input ``sequence_lens`` (batch,) int32: ``multilayer_forward``'s
        ``lengths`` (outputs zero past each example's length, final states at its last real
        step, a reverse direction starting there).
    opset : int, keyword-only
        The ONNX opset, 14 (where the recurrent operators got their ``layout``
        attribute) to the onnx package's newest; default 17.

    Returns
    -------
    model : onnx.ModelProto
        Checked with ``onnx.checker.check_model``. Inputs ``x`` (T, batch, n_x) [, ``h0``,
        ``c0`` (L*D, batch, n_a)] [, ``sequence_lens`` (batch,) int32]; outputs ``y``
        (T, batch, D*n_a), ``h_n`` (L*D, batch, n_a) and, for the LSTM, ``c_n``
        (L*D, batch, n_a). Save it with ``onnx.save(model, path)``.

    Raises
    ------
    ValueError
        A bad keyword or one for another cell (named), a projection ``Wp``, peepholes on a
        cell other than the LSTM, a parameter of the wrong shape (named).
    TypeError
        ``layers`` not a dict or list of dicts of arrays, a keyword of the wrong type.
    KeyError
        A dict without a key the cell needs (a `portable_rnn.MissingParameterError`).
    ImportError
        The onnx package is not installed (``pip install portable_rnn[onnx]``).
    """
    return _onnx.to_onnx(
        layers,
        cell=cell,
        bidirectional=bidirectional,
        reverse=reverse,
        nonlinearity=nonlinearity,
        reset_after=reset_after,
        clip=clip,
        input_forget=input_forget,
        dtype=dtype,
        initial_state=initial_state,
        variable_lengths=variable_lengths,
        opset=opset,
    )


def from_onnx(model):
    """The parameters of the ONNX ``RNN``/``LSTM``/``GRU`` operators of a model, and the
    keywords that make `portable_rnn.multilayer_forward` compute what the model computes.

    Reads models of `to_onnx`, of ``torch.onnx.export`` (TorchScript exporter) and
    hand-built ones: one or more recurrent operators of one kind (a stack, in graph order),
    joined only by ``Transpose``, ``Reshape``, ``Slice``, ``Concat``, ``Identity``,
    ``Squeeze``, ``Unsqueeze`` or ``Constant`` (and ``Shape``, ``Gather`` of a shape,
    ``Expand``, ``ConstantOfShape`` building zero initial states), their weights stored in
    the model (initializers or ``Constant``).

    Parameters
    ----------
    model : onnx.ModelProto, str or path-like
        The model, or the path of a ``.onnx`` file.

    Returns
    -------
    layers : list of dict
        One column-dialect dict per layer and direction, in PyTorch's order, as NumPy
        arrays of the model's dtype: ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``ba``
        (n_a, 1) (RNN); ``W{f,i,c,o}`` (n_a, n_a + n_x), ``b{f,i,c,o}`` (n_a, 1) and,
        when the operator has ``P``, the peepholes ``Pi``, ``Pf``, ``Po`` (n_a, 1) (LSTM);
        ``W{r,z,n}`` (n_a, n_a + n_x), ``b{r,z,n}``, ``bhn`` (n_a, 1) (GRU). A bias is
        ``Wb + Rb`` (the GRU's ``bn`` is ``Wbh``, ``bhn`` is ``Rbh``); a model of
        `to_onnx` gives its parameters back bit for bit.
    options : dict
        ``cell`` and ``bidirectional``, and only where the model differs from the
        default: ``reverse=True`` (``direction="reverse"``), ``nonlinearity="relu"``,
        ``reset_after=False`` (a GRU with ``linear_before_reset=0``, ONNX's default),
        ``clip`` (float), ``input_forget=True``. ``multilayer_forward(x, layers,
        **options)`` runs the model (``x`` (n_x, m, T) is the model's input transposed).

    Raises
    ------
    ValueError
        Anything portable_rnn does not compute, named: an operator other than the
        recurrent ones and the glue above, recurrent operators of two kinds, an attribute
        of the operator that is not supported (``activations`` other than the defaults or
        the RNN's ``Relu``, ``activation_alpha``/``activation_beta``, ``layout=1``,
        ``clip`` on an RNN or GRU), a ``hidden_size`` that does not match ``W``, an input
        ``W``/``R``/``B``/``P`` of the wrong shape or not stored in the model, layers with
        different options, a file that is not an ONNX model.
    TypeError
        ``model`` is neither a ``ModelProto`` nor a path.
    ImportError
        The onnx package is not installed (``pip install portable_rnn[onnx]``).
    """
    return _onnx.from_onnx(model)
