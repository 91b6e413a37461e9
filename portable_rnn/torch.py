"""PyTorch autograd through portable_rnn's hand-written backward.

``import portable_rnn.torch as pt`` gives

* functions on PyTorch tensors that autograd differentiates with portable_rnn's own
  backpropagation through time (a ``torch.autograd.Function`` whose forward is
  `portable_rnn.multilayer_forward` and whose backward is
  `portable_rnn.multilayer_backward`): `multilayer_forward`, and the column dialect's
  `rnn_forward`, `gru_forward`, `lstm_forward` without caches;
* the modules `RNN`, `LSTM`, `GRU`: drop-in ``torch.nn.RNN/LSTM/GRU`` (they are
  subclasses, with the same constructor, parameter names, shapes, default initialisation
  and state dicts) whose ``forward`` runs those functions, in PyTorch's layouts, packed
  sequences included.

The forward runs under ``torch.no_grad`` on detached tensors and keeps portable_rnn's
cache; the backward maps the gradients of ``x``, every layer's parameters and the
initial states back to the tensors given. It is once differentiable (no double
backward). The LSTM functions return the *final* cell state ``c_n``, not every step's:
the hand-written backward takes gradients at every hidden state and at the final
states only.

The modules' parameters become portable_rnn's column dicts with differentiable torch
operations (`portable_rnn.interop`'s mapping), so autograd carries the gradients of
the column dicts back to ``weight_ih_l0``, ``bias_hh_l0``, ...
"""

from __future__ import annotations

from typing import Any

from ._backend import compat as _compat
from ._column import stacked as _stacked
from ._column.checks import one_layer as _one_layer_of
from ._core import spec as _cells
from ._validate import check_arrays as _check_arrays
from ._validate import float32_inside as _float32_inside
from ._validate import get_params as _get_params
from .interop import _column

try:
    import torch
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
except ImportError:  # pragma: no cover - torch is a test dependency
    raise ImportError("portable_rnn.torch needs PyTorch: pip install portable_rnn[torch]") from None

__all__ = ["GRU", "LSTM", "RNN", "gru_forward", "lstm_forward", "multilayer_forward", "rnn_forward"]


# ---------------------------------------------------------------------------------------
# the autograd.Function


class _Stack(torch.autograd.Function):
    """`multilayer_forward` forward, `multilayer_backward` backward.

    Arguments: ``meta = (cell, bidirectional, keys, n_layers, lengths, options)``
    (``options``: a dict of `portable_rnn.multilayer_forward`'s other keywords, the cell's
    variants and ``dropout``/``seed``), then ``x``, ``a0``, ``c0`` (``None`` allowed) and
    every layer's tensors in ``keys`` order, layer after layer. Outputs ``out, a_n`` and,
    for the LSTM, ``c_n``.
    """

    @staticmethod
    def forward(ctx: Any, meta, x, a0, c0, *flat):  # pyright: ignore[reportIncompatibleMethodOverride]
        cell, bidirectional, keys, n_layers, lengths, options = meta
        ctx.set_materialize_grads(False)
        n = len(keys)
        layers = [
            {key: flat[k * n + j].detach() for j, key in enumerate(keys)} for k in range(n_layers)
        ]
        out, a_n, c_n, cache = _stacked.multilayer_forward(
            x.detach(),
            layers,
            cell=cell,
            bidirectional=bidirectional,
            a0=None if a0 is None else a0.detach(),
            c0=None if c0 is None else c0.detach(),
            lengths=lengths,
            **options,
        )
        ctx.cache = cache
        ctx.keys = keys
        ctx.given = (a0 is not None, c0 is not None)
        ctx.out_like = (tuple(out.shape), out.dtype, out.device)
        return (out, a_n) if c_n is None else (out, a_n, c_n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dout, da_n, dc_n=None):  # pyright: ignore[reportIncompatibleMethodOverride]
        if dout is None:  # only the final states are used
            shape, dtype, device = ctx.out_like
            dout = torch.zeros(shape, dtype=dtype, device=device)
        g = _stacked.multilayer_backward(dout, ctx.cache, da_n=da_n, dc_n=dc_n)
        has_a0, has_c0 = ctx.given
        flat = [layer["d" + key] for layer in g["layers"] for key in ctx.keys]
        return (
            None,
            g["dx"],
            g["da0"] if has_a0 else None,
            g.get("dc0") if has_c0 else None,
            *flat,
        )


def _require_torch(xp, name: str) -> None:
    """Refuse arrays of another backend: these functions are for PyTorch tensors."""
    got = _compat.backend_name(xp)
    if got != "torch":
        raise TypeError(
            f"{name} must be a PyTorch tensor (portable_rnn.torch), got a {got} array; "
            "portable_rnn's own functions take any backend"
        )


def _apply(spec: _cells.CellSpec, x, layers, bidirectional, a0, c0, lengths, options=None):
    """Call `_Stack` on checked-enough arguments; ``layers`` are dicts of tensors (with the
    cell's keys and the optional ``Wp``, ``Pi``... of `_stacked.option_keys`); ``options``
    the other keywords of `portable_rnn.multilayer_forward`."""
    keys = spec.layer_keys + _stacked.option_keys(spec, layers)
    flat = [layer[key] for layer in layers for key in keys]
    meta = (spec.name, bool(bidirectional), keys, len(layers), lengths, dict(options or {}))
    outs = _Stack.apply(meta, x, a0, c0, *flat)
    if len(outs) == 2:
        return outs[0], outs[1], None
    return outs[0], outs[1], outs[2]


def _stack_layers(spec: _cells.CellSpec, layers) -> list:
    """The dicts of ``layers`` with the cell's keys and the optional ones they hold (``Wp``,
    ``Pi``...; named errors for anything else)."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"layers must be a non-empty list of parameter dicts, got {type(layers).__name__}"
        )
    for k, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise TypeError(f"layers[{k}] must be a dict of tensors, got {type(layer).__name__}")
    keys = spec.layer_keys + _stacked.option_keys(spec, layers)
    return [_get_params(layer, keys, f"layers[{k}]") for k, layer in enumerate(layers)]


@_float32_inside()
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
    """`portable_rnn.multilayer_forward` on PyTorch tensors, differentiable by autograd.

    The gradients are those of `portable_rnn.multilayer_backward` (the hand-written
    backpropagation through time), for ``x``, every tensor of every layer dict, ``a0``
    and ``c0``. Once differentiable.

    Parameters
    ----------
    x : torch.Tensor, shape (n_x, m, T_x)
        Inputs of every time step.
    layers : list of dict of torch.Tensor
        ``num_layers * num_directions`` parameter dicts in PyTorch's order (layer 0
        forward, [layer 0 reverse,] layer 1 forward, ...), each with the cell's keys and,
        for the LSTM, optionally the peepholes ``Pi``, ``Pf``, ``Po`` (n_a, 1) and the
        projection ``Wp`` (n_p, n_a) (then the hidden states and ``a0`` have ``n_p`` rows,
        the gate weights ``n_p + n_in`` columns); layer 0 has ``n_x`` inputs, later layers
        ``num_directions * n_a`` (``num_directions * n_p``). Other keys (an output layer)
        are ignored; every tensor, ``Wp`` included, gets its gradient.
    cell : {"rnn", "lstm", "gru"}, keyword-only
        The cell of every layer.
    bidirectional : bool, keyword-only
        Also run every layer over the reversed sequence (``num_directions = 2``).
    a0 : torch.Tensor, shape (num_layers * num_directions, n_a, m), optional
        Initial hidden states; zeros when omitted.
    c0 : torch.Tensor, shape (num_layers * num_directions, n_a, m), optional
        Initial cell states (LSTM only); zeros when omitted.
    lengths : torch.Tensor of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps, as in `portable_rnn.multilayer_forward`.
    nonlinearity, reset_after, clip, input_forget, reverse : keyword-only
        The cell variants, as in `portable_rnn.multilayer_forward`.
    dropout : float, keyword-only
        Dropout between layers, in ``[0, 1)``, as in `portable_rnn.multilayer_forward`
        (PyTorch's placement); the backward uses the forward's masks.
    seed : int, optional, keyword-only
        The masks' seed, required with ``dropout``.

    Returns
    -------
    out : torch.Tensor, shape (num_directions * n_a, m, T_x)
        Hidden states of the last layer, both directions stacked (forward first).
    a_n : torch.Tensor, shape (num_layers * num_directions, n_a, m)
        Final hidden state of every layer and direction.
    c_n : torch.Tensor, shape (num_layers * num_directions, n_a, m), or None
        Final cell states (LSTM only).
    """
    spec = _cells.cell_spec(cell)
    params = _stack_layers(spec, layers)
    named = {"x": x, "a0": a0, "c0": c0}
    for k, p in enumerate(params):
        named.update({f"layers[{k}]['{key}']": v for key, v in p.items()})
    _require_torch(_check_arrays(named, optional=("a0", "c0")), "x")
    # every other check (shapes, lengths, c0 for a cell without one, the options and
    # dropout) runs in portable_rnn.multilayer_forward, before any arithmetic
    options = {
        "nonlinearity": nonlinearity,
        "reset_after": reset_after,
        "clip": clip,
        "input_forget": input_forget,
        "reverse": reverse,
        "dropout": dropout,
        "seed": seed,
    }
    return _apply(spec, x, params, bidirectional, a0, c0, lengths, options)


def _one_layer(spec: _cells.CellSpec, x, a0, parameters, c0, lengths, reverse=False):
    """The one-layer case: checks as the column forward, `_Stack`, then the output layer."""

    def stack(x, layers, a0, c0, lengths):
        return _apply(spec, x, layers, False, a0, c0, lengths, {"reverse": reverse})

    def require(xp, named):
        _require_torch(xp, "x")

    return _one_layer_of(spec, x, a0, c0, parameters, lengths, stack, require)


@_float32_inside()
def rnn_forward(x, a0, parameters, *, lengths=None, reverse=False):
    """`portable_rnn.rnn_forward` on PyTorch tensors, differentiable by autograd.

    The recurrence's gradients are `portable_rnn.multilayer_backward`'s; the output
    layer's (``Wya``, ``by``) are autograd's own.

    Parameters
    ----------
    x : torch.Tensor, shape (n_x, m, T_x)
        Inputs of every time step.
    a0 : torch.Tensor, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros.
    parameters : dict of torch.Tensor
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``ba`` (n_a, 1); optionally the output
        layer ``Wya`` (n_y, n_a), ``by`` (n_y, 1), both or neither.
    lengths : torch.Tensor of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps; see `portable_rnn.rnn_forward`.
    reverse : bool, keyword-only
        Run from the last step to the first, outputs in time order; see
        `portable_rnn.rnn_forward`.

    Returns
    -------
    a : torch.Tensor, shape (n_a, m, T_x)
        Hidden state of every step (zero at padded steps).
    y : torch.Tensor, shape (n_y, m, T_x), or None
        Softmax prediction of every step; ``None`` without an output layer.
    """
    a, y, _ = _one_layer(_cells.RNN, x, a0, parameters, None, lengths, reverse)
    return a, y


@_float32_inside()
def gru_forward(x, a0, parameters, *, lengths=None, reverse=False):
    """`portable_rnn.gru_forward` on PyTorch tensors, differentiable by autograd.

    The recurrence's gradients are `portable_rnn.multilayer_backward`'s; the output
    layer's (``Wy``, ``by``) are autograd's own.

    Parameters
    ----------
    x : torch.Tensor, shape (n_x, m, T_x)
        Inputs of every time step.
    a0 : torch.Tensor, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros.
    parameters : dict of torch.Tensor
        ``Wr``, ``Wz``, ``Wn`` (n_a, n_a + n_x); ``br``, ``bz``, ``bn``, ``bhn``
        (n_a, 1); optionally ``Wy`` (n_y, n_a), ``by`` (n_y, 1), both or neither.
    lengths : torch.Tensor of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps; see `portable_rnn.gru_forward`.
    reverse : bool, keyword-only
        Run from the last step to the first, outputs in time order; see
        `portable_rnn.gru_forward`.

    Returns
    -------
    a : torch.Tensor, shape (n_a, m, T_x)
        Hidden state of every step (zero at padded steps).
    y : torch.Tensor, shape (n_y, m, T_x), or None
        Softmax prediction of every step; ``None`` without an output layer.
    """
    a, y, _ = _one_layer(_cells.GRU, x, a0, parameters, None, lengths, reverse)
    return a, y


@_float32_inside()
def lstm_forward(x, a0, parameters, *, c0=None, lengths=None, reverse=False):
    """`portable_rnn.lstm_forward` on PyTorch tensors, differentiable by autograd.

    Unlike `portable_rnn.lstm_forward`, the third result is the **final** cell state
    ``c_n`` (n_a, m), not every step's ``c``: the hand-written backward takes gradients
    at every hidden state and at the final states only. The recurrence's gradients are
    `portable_rnn.multilayer_backward`'s; the output layer's (``Wy``, ``by``) are
    autograd's own.

    Parameters
    ----------
    x : torch.Tensor, shape (n_x, m, T_x)
        Inputs of every time step.
    a0 : torch.Tensor, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros.
    parameters : dict of torch.Tensor
        ``Wf``, ``Wi``, ``Wc``, ``Wo`` (n_a, n_a + n_x); ``bf``, ``bi``, ``bc``,
        ``bo`` (n_a, 1); optionally ``Wy`` (n_y, n_a), ``by`` (n_y, 1), both or neither.
    c0 : torch.Tensor, shape (n_a, m), optional, keyword-only
        Initial cell state; zeros when omitted.
    lengths : torch.Tensor of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps; see `portable_rnn.lstm_forward`.
    reverse : bool, keyword-only
        Run from the last step to the first, outputs in time order; see
        `portable_rnn.lstm_forward`.

    Returns
    -------
    a : torch.Tensor, shape (n_a, m, T_x)
        Hidden state of every step (zero at padded steps).
    y : torch.Tensor, shape (n_y, m, T_x), or None
        Softmax prediction of every step; ``None`` without an output layer.
    c_n : torch.Tensor, shape (n_a, m)
        Cell state after each example's last real step.
    """
    return _one_layer(_cells.LSTM, x, a0, parameters, c0, lengths, reverse)


# ---------------------------------------------------------------------------------------
# the modules


class _Module:
    """The ``forward`` shared by `RNN`, `LSTM` and `GRU` (a mixin of ``torch.nn.RNNBase``)."""

    _cell: _cells.CellSpec

    def _layers(self) -> list:
        """The parameters as portable_rnn column dicts, built with differentiable ops."""
        m: Any = self
        xp = _compat.namespace_for("torch")
        D = 2 if m.bidirectional else 1
        layers = []
        for layer in range(m.num_layers):
            for d in range(D):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                W_ih = getattr(m, f"weight_ih{suffix}")
                W_hh = getattr(m, f"weight_hh{suffix}")
                if m.bias:
                    b_ih = getattr(m, f"bias_ih{suffix}")
                    b_hh = getattr(m, f"bias_hh{suffix}")
                else:
                    b_ih = b_hh = torch.zeros_like(W_ih[:, 0])
                W_hr = getattr(m, f"weight_hr{suffix}") if self._proj() else None
                layers.append(_column(self._cell, xp, W_ih, W_hh, b_ih, b_hh, W_hr))
        return layers

    def _proj(self) -> int:
        """The LSTM's ``proj_size`` (0: none)."""
        return int(getattr(self, "proj_size", 0))

    def _options(self) -> dict:
        """The keywords of `portable_rnn.multilayer_forward` beyond the layers: the RNN's
        ``nonlinearity``; in training mode with ``dropout``, the dropout and a seed drawn
        from PyTorch's default generator (so that ``torch.manual_seed`` repeats a run)."""
        m: Any = self
        options = {}
        if self._cell.name == "rnn":
            options["nonlinearity"] = m.nonlinearity
        if m.training and m.dropout and m.num_layers > 1:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            options.update(dropout=float(m.dropout), seed=seed)
        return options

    def _check_input(self, x, name: str) -> None:
        m: Any = self
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor or a PackedSequence, got {type(x).__name__}"
            )
        if x.dim() not in (2, 3):
            raise ValueError(
                f"{name} must be 3-D (batched) or 2-D (unbatched), got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != m.input_size:
            raise ValueError(
                f"{name} must have {m.input_size} features (input_size) in its last axis, "
                f"got shape {tuple(x.shape)}"
            )
        steps = x.shape[0] if (x.dim() == 2 or not m.batch_first) else x.shape[1]
        if steps < 1:
            raise ValueError(f"{name} must have at least one time step, got shape {x.shape}")
        dtype = m.weight_ih_l0.dtype
        if x.dtype != dtype:
            raise TypeError(
                f"{name} has dtype {x.dtype} but the module's parameters have dtype {dtype}; "
                "convert one of them"
            )
        if x.device != m.weight_ih_l0.device:
            raise ValueError(
                f"{name} is on device {x.device} but the module's parameters are on "
                f"{m.weight_ih_l0.device}"
            )

    def _check_state(self, state, name: str, batch: int | None, size: int | None = None) -> None:
        m: Any = self
        LD = m.num_layers * (2 if m.bidirectional else 1)
        size = m.hidden_size if size is None else size
        what = "hidden_size" if size == m.hidden_size else "proj_size"
        want = (LD, size) if batch is None else (LD, batch, size)
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(state).__name__}")
        if tuple(state.shape) != want:
            layout = "(L*D, H)" if batch is None else "(L*D, N, H)"
            raise ValueError(
                f"{name} must have shape {layout} = {want} (num_layers * num_directions, "
                f"{'' if batch is None else 'batch, '}{what}), got {tuple(state.shape)}"
            )
        if state.dtype != m.weight_ih_l0.dtype:
            raise TypeError(
                f"{name} has dtype {state.dtype} but the module's parameters have dtype "
                f"{m.weight_ih_l0.dtype}"
            )
        if state.device != m.weight_ih_l0.device:
            raise ValueError(
                f"{name} is on device {state.device} but the module's parameters are on "
                f"{m.weight_ih_l0.device}"
            )

    def _states(self, hx, batch: int | None):
        """``(h0, c0)`` from ``hx``, checked; ``c0`` is ``None`` but for the LSTM."""
        if hx is None:
            return None, None
        if "c" in self._cell.carry:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    f"hx must be a tuple (h_0, c_0) for an LSTM, got {type(hx).__name__}"
                )
            self._check_state(hx[0], "hx[0] (h_0)", batch, self._proj() or None)
            self._check_state(hx[1], "hx[1] (c_0)", batch)
            return hx[0], hx[1]
        self._check_state(hx, "hx", batch)
        return hx, None

    def _run(self, input, hx=None):
        """The shared ``forward``: PyTorch's layouts around `_Stack`."""
        m: Any = self
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            self._check_input(input.data, "input.data")
            x, lengths = pad_packed_sequence(input)  # (T, N, H_in), the caller's order
            lengths = lengths.to(x.device)
            batched, time_major = True, True
        else:
            self._check_input(input, "input")
            batched, time_major = input.dim() == 3, (input.dim() == 2 or not m.batch_first)
            x = input if batched else input[:, None, :]
        h0, c0 = self._states(hx, None if not batched else x.shape[1 if time_major else 0])
        if not batched:  # unbatched states (L*D, H): a batch of one
            h0, c0 = (None if s is None else s[:, None, :] for s in (h0, c0))
        x_col = x.permute(2, 1, 0) if time_major else x.permute(2, 0, 1)  # (H_in, N, T)
        out, a_n, c_n = _apply(
            self._cell,
            x_col,
            self._layers(),
            m.bidirectional,
            None if h0 is None else h0.permute(0, 2, 1),
            None if c0 is None else c0.permute(0, 2, 1),
            lengths,
            self._options(),
        )
        h_n = a_n.permute(0, 2, 1)  # (L*D, N, H)
        c_n = None if c_n is None else c_n.permute(0, 2, 1)
        if packed:
            output = _packed_like(input, out.permute(2, 1, 0), lengths)
        else:
            output = (out.permute(2, 1, 0) if time_major else out.permute(1, 2, 0)).contiguous()
            if not batched:
                output = output[:, 0, :]
        if not batched:
            h_n = h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        h_n = h_n.contiguous()
        if c_n is None:
            return output, h_n
        return output, (h_n, c_n.contiguous())


def _packed_like(packed, padded, lengths):
    """``padded`` (T, N, H), in the caller's batch order, packed as ``packed`` is."""
    if packed.sorted_indices is not None:
        padded = padded.index_select(1, packed.sorted_indices)
        lengths = lengths.index_select(0, packed.sorted_indices)
    data = pack_padded_sequence(padded, lengths.cpu(), enforce_sorted=True).data
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


class RNN(_Module, torch.nn.RNN):
    """``torch.nn.RNN`` (tanh or relu) whose forward and backward are portable_rnn's.

    A subclass of ``torch.nn.RNN``: the same constructor, parameters (``weight_ih_l0``
    (H, H_in), ``weight_hh_l0`` (H, H), ``bias_ih_l0``, ``bias_hh_l0`` (H,), ``_reverse``
    and later layers likewise), default initialisation and state dict, so state dicts load
    both ways. ``forward(input, hx=None)`` takes and returns PyTorch's layouts: ``input``
    (T, N, H_in), (N, T, H_in) with ``batch_first``, (T, H_in) unbatched, or a
    ``PackedSequence``; ``hx`` (L*D, N, H) or (L*D, H) unbatched; it returns ``output``
    (T, N, D*H) (batch first: (N, T, D*H); packed: a ``PackedSequence`` packed as the
    input) and ``h_n`` (L*D, N, H), ``L = num_layers``, ``D = 2`` if bidirectional else 1.

    Parameters
    ----------
    input_size : int
        ``H_in``, the input features.
    hidden_size : int
        ``H``, the hidden units.
    num_layers : int
        Stacked layers.
    nonlinearity : {"tanh", "relu"}
        The activation (``multilayer_forward``'s ``nonlinearity``).
    bias : bool
        Whether the layers have ``bias_ih``/``bias_hh``.
    batch_first : bool
        Batch-major ``input`` and ``output``; the states stay (L*D, N, H).
    dropout : float
        Dropout on the outputs of every layer but the last, in training mode only
        (``module.train()``, as PyTorch): the masks are portable_rnn's, drawn from a seed
        taken from PyTorch's default generator at every call (``torch.manual_seed`` repeats
        them), not PyTorch's own masks; ``eval()`` applies none.
    bidirectional : bool
        Also run every layer over the reversed sequence.
    device, dtype : optional
        Of the parameters, as in PyTorch.
    """

    _cell = _cells.RNN

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        nonlinearity="tanh",
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers=num_layers,
            nonlinearity=nonlinearity,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            device=device,
            dtype=dtype,
        )

    def forward(self, input, hx=None):  # pyright: ignore[reportIncompatibleMethodOverride]
        """Run the stack: ``(output, h_n)`` in PyTorch's layouts (see the class).

        Parameters
        ----------
        input : torch.Tensor or PackedSequence
            (T, N, H_in); (N, T, H_in) with ``batch_first``; (T, H_in) unbatched.
        hx : torch.Tensor, optional
            ``h_0`` (L*D, N, H), or (L*D, H) unbatched; zeros when omitted.

        Returns
        -------
        output : torch.Tensor or PackedSequence
            (T, N, D*H); (N, T, D*H) with ``batch_first``; (T, D*H) unbatched.
        h_n : torch.Tensor
            (L*D, N, H), or (L*D, H) unbatched.
        """
        return self._run(input, hx)


class LSTM(_Module, torch.nn.LSTM):
    """``torch.nn.LSTM`` whose forward and backward are portable_rnn's.

    A subclass of ``torch.nn.LSTM``: the same constructor, parameters (``weight_ih_l0``
    (4H, H_in), ``weight_hh_l0`` (4H, H), ``bias_ih_l0``, ``bias_hh_l0`` (4H,), gates i,
    f, g, o; ``_reverse`` and later layers likewise), default initialisation and state
    dict, so state dicts load both ways. ``forward(input, hx=None)`` takes and returns
    PyTorch's layouts: ``input`` (T, N, H_in), (N, T, H_in) with ``batch_first``,
    (T, H_in) unbatched, or a ``PackedSequence``; ``hx = (h_0, c_0)``, each (L*D, N, H)
    or (L*D, H) unbatched; it returns ``output`` (T, N, D*H) (batch first: (N, T, D*H);
    packed: a ``PackedSequence`` packed as the input) and ``(h_n, c_n)``, each
    (L*D, N, H). With ``proj_size = P``, ``h_0``, ``h_n`` and ``output`` have P where they
    have H (D*P for ``output``), ``c_0`` and ``c_n`` keep H.

    Parameters
    ----------
    input_size : int
        ``H_in``, the input features.
    hidden_size : int
        ``H``, the hidden units.
    num_layers : int
        Stacked layers.
    bias : bool
        Whether the layers have ``bias_ih``/``bias_hh``.
    batch_first : bool
        Batch-major ``input`` and ``output``; the states stay (L*D, N, H).
    dropout : float
        Dropout on the outputs of every layer but the last, in training mode only
        (``module.train()``, as PyTorch): the masks are portable_rnn's, drawn from a seed
        taken from PyTorch's default generator at every call (``torch.manual_seed`` repeats
        them), not PyTorch's own masks; ``eval()`` applies none.
    bidirectional : bool
        Also run every layer over the reversed sequence.
    proj_size : int
        ``P``: with ``0 < P < H``, every layer projects its hidden state,
        ``h = W_hr (o * tanh(c))`` (``weight_hr_l0`` (P, H), portable_rnn's ``Wp``); ``h_0``,
        ``h_n`` are then (L*D, N, P), ``output`` (T, N, D*P), ``weight_hh_l0`` (4H, P) and
        the layers above the first read D*P features. 0: none.
    device, dtype : optional
        Of the parameters, as in PyTorch.
    """

    _cell = _cells.LSTM

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            proj_size=proj_size,
            device=device,
            dtype=dtype,
        )

    def forward(self, input, hx=None):  # pyright: ignore[reportIncompatibleMethodOverride]
        """Run the stack: ``(output, (h_n, c_n))`` in PyTorch's layouts (see the class).

        Parameters
        ----------
        input : torch.Tensor or PackedSequence
            (T, N, H_in); (N, T, H_in) with ``batch_first``; (T, H_in) unbatched.
        hx : tuple of torch.Tensor, optional
            ``(h_0, c_0)``, each (L*D, N, H), or (L*D, H) unbatched; zeros when omitted.

        Returns
        -------
        output : torch.Tensor or PackedSequence
            (T, N, D*H); (N, T, D*H) with ``batch_first``; (T, D*H) unbatched.
        states : tuple of torch.Tensor
            ``(h_n, c_n)``, each (L*D, N, H), or (L*D, H) unbatched.
        """
        return self._run(input, hx)


class GRU(_Module, torch.nn.GRU):
    """``torch.nn.GRU`` whose forward and backward are portable_rnn's.

    A subclass of ``torch.nn.GRU``: the same constructor, parameters (``weight_ih_l0``
    (3H, H_in), ``weight_hh_l0`` (3H, H), ``bias_ih_l0``, ``bias_hh_l0`` (3H,), gates r,
    z, n; ``_reverse`` and later layers likewise), default initialisation and state dict,
    so state dicts load both ways. ``forward(input, hx=None)`` takes and returns
    PyTorch's layouts: ``input`` (T, N, H_in), (N, T, H_in) with ``batch_first``,
    (T, H_in) unbatched, or a ``PackedSequence``; ``hx`` (L*D, N, H) or (L*D, H)
    unbatched; it returns ``output`` (T, N, D*H) (batch first: (N, T, D*H); packed: a
    ``PackedSequence`` packed as the input) and ``h_n`` (L*D, N, H).

    Parameters
    ----------
    input_size : int
        ``H_in``, the input features.
    hidden_size : int
        ``H``, the hidden units.
    num_layers : int
        Stacked layers.
    bias : bool
        Whether the layers have ``bias_ih``/``bias_hh``.
    batch_first : bool
        Batch-major ``input`` and ``output``; the states stay (L*D, N, H).
    dropout : float
        Dropout on the outputs of every layer but the last, in training mode only
        (``module.train()``, as PyTorch): the masks are portable_rnn's, drawn from a seed
        taken from PyTorch's default generator at every call (``torch.manual_seed`` repeats
        them), not PyTorch's own masks; ``eval()`` applies none.
    bidirectional : bool
        Also run every layer over the reversed sequence.
    device, dtype : optional
        Of the parameters, as in PyTorch.
    """

    _cell = _cells.GRU

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            device=device,
            dtype=dtype,
        )

    def forward(self, input, hx=None):  # pyright: ignore[reportIncompatibleMethodOverride]
        """Run the stack: ``(output, h_n)`` in PyTorch's layouts (see the class).

        Parameters
        ----------
        input : torch.Tensor or PackedSequence
            (T, N, H_in); (N, T, H_in) with ``batch_first``; (T, H_in) unbatched.
        hx : torch.Tensor, optional
            ``h_0`` (L*D, N, H), or (L*D, H) unbatched; zeros when omitted.

        Returns
        -------
        output : torch.Tensor or PackedSequence
            (T, N, D*H); (N, T, D*H) with ``batch_first``; (T, D*H) unbatched.
        h_n : torch.Tensor
            (L*D, N, H), or (L*D, H) unbatched.
        """
        return self._run(input, hx)
