"""The CS231n dialect (rows), as in seed 001: thin layers over the shared cell code.

Dimension letters: ``N`` examples in the batch (one per row), ``T`` time
steps, ``D`` input features, ``H`` hidden units.

* RNN: ``next_h = tanh(x @ Wx + prev_h @ Wh + b)`` with ``Wx (D, H)``,
  ``Wh (H, H)``, ``b (H,)``.
* LSTM: ``a = x @ Wx + prev_h @ Wh + b`` with fused ``Wx (D, 4H)``,
  ``Wh (H, 4H)``, ``b (4H,)``, gate order **i, f, o, g** along the ``4H`` axis;
  ``next_c = f * prev_c + i * g`` and ``next_h = o * tanh(next_c)``.

Every function here transposes its arguments into the column layout and calls
the same cell and sequence code as `portable_rnn.rnn_forward` and
`portable_rnn.lstm_forward` (one implementation of the math; transposes are
views or fused by the backends). Forwards return ``(out, cache)``; backwards
take ``(dout, cache)`` and return the gradients in the order of the forward's
inputs. Caches are opaque, and each backward gives the gradients of its forward
as it ran: no output shares memory with a cache, and the inputs the backward
reads are copied into the cache on backends whose arrays can change in place
(see "Aliasing" in ``docs/conventions.md``).

* Temporal affine (``x (N, T, D) @ w (D, M) + b``), ``temporal_softmax_loss(x, y, mask)``
  (scores ``(N, T, V)``, labels ``(N, T)`` in ``[0, V)``, loss summed over unmasked steps
  and divided by ``N``), word embeddings (``x (N, T)`` indices into ``W (V, D)``).
* GRU (not in CS231n; PyTorch's equations): ``Wx (D, 3H)``, ``Wh (H, 3H)``,
  ``b (3H,)``, ``bhn (H,)``, gate order **r, z, n**.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._backend import pytrees as _pytrees
from ._backend import seam as _seam
from ._core import gru as _gru
from ._core import lstm as _lstm
from ._core import rnn as _rnn
from ._core import sequence as _sequence
from ._core import spec as _spec
from ._temporal import (
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)
from ._validate import Dims as _Dims
from ._validate import check_arrays as _check_arrays
from ._validate import check_backward_lengths as _check_backward_lengths
from ._validate import check_lengths as _check_lengths
from ._validate import float32_inside as _float32_inside

__all__ = [
    "gru_backward",
    "gru_forward",
    "gru_step_backward",
    "gru_step_forward",
    "last_state",
    "lstm_backward",
    "lstm_forward",
    "lstm_step_backward",
    "lstm_step_forward",
    "rnn_backward",
    "rnn_forward",
    "rnn_step_backward",
    "rnn_step_forward",
    "temporal_affine_backward",
    "temporal_affine_forward",
    "temporal_softmax_loss",
    "word_embedding_backward",
    "word_embedding_forward",
]


def _col(xp, b):
    """A bias ``(k,)`` as a column ``(k, 1)``."""
    return xp.reshape(b, (b.shape[0], 1))


def _to_col_seq(xp, x):
    """``(N, T, D)`` -> ``(D, N, T)``."""
    return xp.permute_dims(x, (2, 0, 1))


def _to_row_seq(xp, a):
    """``(H, N, T)`` -> ``(N, T, H)``."""
    return xp.permute_dims(a, (1, 2, 0))


class _RNNStepCache(NamedTuple):
    """What `rnn_step_forward` keeps for `rnn_step_backward` (opaque to users)."""

    x: Any
    prev_h: Any
    Wx: Any
    Wh: Any
    next_h: Any


@_pytrees.node(children=("x", "prev", "W", "values"), static=("cell", "H"))
class _GatedStepCache(NamedTuple):
    """What `lstm_step_forward` / `gru_step_forward` keep for their backward."""

    cell: _spec.CellSpec
    x: Any  #: [prev_h.T; x.T] (H + D, N) for the LSTM; x (N, D) for the GRU
    prev: Any  #: the previous cell state (LSTM) or hidden state (GRU), column layout
    W: Any  #: the core's fused weights (G H, H + D)
    values: tuple  #: the step's values that the backward reads
    H: int


@_pytrees.node(
    children=("x", "init", "states", "w", "lengths"), static=("cell", "H", "math", "reverse")
)
class _SequenceCache(NamedTuple):
    """What a sequence forward keeps for its backward (opaque to users)."""

    cell: _spec.CellSpec
    x: Any  #: the inputs, column layout (D, N, T)
    init: Any  #: the initial carry, column layout
    states: Any
    w: _sequence.Weights
    H: int
    lengths: Any = None  #: the forward's checked lengths (N,), or None
    math: Any = None  #: the cell's math (`portable_rnn._core.sequence.Cell`) with its options
    reverse: bool = False  #: whether the forward ran from the last step to the first


def _made_by(cache) -> str:
    """The forward that made ``cache``, in words, for error messages."""
    if isinstance(cache, _RNNStepCache):
        return "the cache of rnn_step_forward"
    if isinstance(cache, _GatedStepCache):
        return f"the cache of {cache.cell.name}_step_forward"
    if isinstance(cache, _SequenceCache):
        return f"the cache of {cache.cell.name}_forward"
    return "None" if cache is None else f"a {type(cache).__name__}"


def _cache(cache, kind: type, cell: _spec.CellSpec, what: str):
    """``cache`` if ``what`` returned it, else a ``TypeError`` saying what it must be."""
    if not (isinstance(cache, kind) and getattr(cache, "cell", cell) is cell):
        raise TypeError(f"cache must be the cache returned by {what}, got {_made_by(cache)}")
    return cache


def _step_dims(shape):
    """The sizes ``N``, ``H`` of a step forward, from the shape of a state in its cache."""
    dims = _Dims()
    dims.define("N", shape[0], "cache")
    dims.define("H", shape[1], "cache")
    return dims


def _forward_mask(xp, lengths, x, dims):
    """``(lengths, mask)`` of a sequence forward of ``x (N, T, D)``: ``lengths`` checked and
    its step mask (`portable_rnn._core.sequence.step_mask`), or ``(None, None)``."""
    lengths = _check_lengths(lengths, _to_col_seq(xp, x), dims["N"], dims["T"])
    return lengths, _sequence.step_mask(xp, lengths, dims["T"])


def _hidden_states(xp, states, mask):
    """The hidden states ``h (N, T, H)`` of a sequence forward, zero at padded steps."""
    return _to_row_seq(xp, _sequence.zero_padded(xp, states.last_axis(xp, "a"), mask))


def _backward_mask(xp, run: _SequenceCache, lengths, what: str):
    """The step mask of ``run``'s forward, after checking the backward's ``lengths``."""
    backward = what.replace("_forward", "_backward")
    _check_backward_lengths(xp, run.x, run.lengths, lengths, backward, what)
    return _sequence.step_mask(xp, run.lengths, run.x.shape[-1])


def _run(xp, cell: _sequence.Cell, w, x_col, init, mask, reverse: bool):
    """`sequence.forward`, over the flipped sequence (and mask) with ``reverse``:
    ``(x_run, mask_run, states)``."""
    if reverse:
        x_col = xp.flip(x_col, axis=-1)
        mask = None if mask is None else xp.flip(mask, axis=0)
    return x_col, mask, _sequence.forward(xp, cell, w, x_col, init, mask)


def _in_time_order(xp, h, reverse: bool):
    """Row hidden states ``(N, T, H)`` of a run put back in the input's time order."""
    return xp.flip(h, axis=1) if reverse else h


def _run_backward(xp, run: _SequenceCache, dh, lengths, what: str):
    """`sequence.backward` of ``run``'s forward, ``dh`` and ``dx`` in time order."""
    mask = _backward_mask(xp, run, lengths, what)
    da = _to_col_seq(xp, dh)
    if run.reverse:
        da, mask = xp.flip(da, axis=-1), None if mask is None else xp.flip(mask, axis=0)
    g = _sequence.backward(xp, run.math, run.w, run.x, run.init, run.states, da, mask=mask)
    return g._replace(dx=xp.flip(g.dx, axis=-1) if run.reverse else g.dx)


@_float32_inside()
def last_state(h, lengths, h0=None):
    """Each sequence's hidden state after its last real step: the rows twin of
    `portable_rnn.last_state`.

    Parameters
    ----------
    h : array, shape (N, T, H)
        Hidden states of every step, from `rnn_forward`, `lstm_forward` or `gru_forward`.
    lengths : array of int, shape (N,), or list of int
        Each sequence's number of real steps (``0 .. T``), as given to the forward.
    h0 : array, shape (N, H), optional
        The initial hidden state, the final state of a sequence of length 0 (zeros when
        omitted).

    Returns
    -------
    h_n : array, shape (N, H)
        ``h[n, lengths[n] - 1, :]`` for every ``n`` (``h0[n]`` where ``lengths[n] == 0``).
    """
    xp = _check_arrays({"h": h, "h0": h0}, optional=("h0",))
    dims = _Dims()
    dims.check("h", h, "N T H")
    if h0 is not None:
        dims.check("h0", h0, "N H")
    lengths = _check_lengths(
        lengths, _to_col_seq(xp, h), dims["N"], dims["T"], x_name="h", optional=False
    )
    first = None if h0 is None else h0.T
    return _sequence.last_of(xp, xp.permute_dims(h, (2, 0, 1)), lengths, first).T


def _sequence_dims(run: _SequenceCache):
    """The sizes ``N``, ``T``, ``H`` of a sequence forward, read from its cache."""
    dims = _Dims()
    _, N, T = run.x.shape
    dims.define("N", N, "cache")
    dims.define("T", T, "cache")
    dims.define("H", run.H, "cache")
    return dims


# -- vanilla RNN ------------------------------------------------------------


def _rnn_dims(x_name, x, x_letters, h_name, h, Wx, Wh, b):
    dims = _Dims()
    dims.check(x_name, x, x_letters)
    dims.check("Wh", Wh, "H H")
    dims.check("Wx", Wx, "D H")
    dims.check("b", b, "H")
    dims.check(h_name, h, "N H")
    return dims


@_float32_inside(returns_cache=True)
def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla RNN step, ``next_h = tanh(x @ Wx + prev_h @ Wh + b)``.

    Parameters
    ----------
    x : array, shape (N, D)
        Input of this step.
    prev_h : array, shape (N, H)
        Previous hidden state.
    Wx : array, shape (D, H)
        Input-to-hidden weights.
    Wh : array, shape (H, H)
        Hidden-to-hidden weights.
    b : array, shape (H,)
        Biases.

    Returns
    -------
    next_h : array, shape (N, H)
        Next hidden state.
    cache : tuple
        For `rnn_step_backward`.
    """
    xp = _check_arrays({"x": x, "prev_h": prev_h, "Wx": Wx, "Wh": Wh, "b": b})
    _rnn_dims("x", x, "N D", "prev_h", prev_h, Wx, Wh, b)
    next_h = _rnn.activate(xp, (x @ Wx + b).T, Wh.T @ prev_h.T).T
    kept = (_seam.snapshot(xp, v) for v in (x, prev_h, Wx, Wh, next_h))
    return next_h, _RNNStepCache(*kept)


@_float32_inside(caches="cache")
def rnn_step_backward(dnext_h, cache):
    """Backward pass of one vanilla RNN step.

    Parameters
    ----------
    dnext_h : array, shape (N, H)
        Gradient of the loss with respect to ``next_h``.
    cache : tuple
        From `rnn_step_forward`.

    Returns
    -------
    dx : array, shape (N, D)
    dprev_h : array, shape (N, H)
    dWx : array, shape (D, H)
    dWh : array, shape (H, H)
    db : array, shape (H,)
    """
    x, prev_h, Wx, Wh, next_h = _cache(cache, _RNNStepCache, _spec.RNN, "rnn_step_forward")
    xp = _check_arrays({"dnext_h": dnext_h, "cache (the forward's next_h)": next_h})
    _step_dims(next_h.shape).check("dnext_h", dnext_h, "N H")
    dz = _rnn.tanh_grad(xp, dnext_h.T, next_h.T)  # (H, N)
    dprev = Wh.T.T @ dz
    return (Wx @ dz).T, dprev.T, (dz @ x).T, (dz @ prev_h).T, xp.sum(dz, axis=1)


@_float32_inside(returns_cache=True)
def rnn_forward(x, h0, Wx, Wh, b, *, lengths=None, nonlinearity="tanh", reverse=False):
    """Run a vanilla RNN over a whole sequence.

    Parameters
    ----------
    x : array, shape (N, T, D)
        Inputs of every step (``T >= 1``).
    h0 : array, shape (N, H)
        Initial hidden state.
    Wx : array, shape (D, H)
    Wh : array, shape (H, H)
    b : array, shape (H,)
    lengths : array of int, shape (N,), or list of int, optional, keyword-only
        Each sequence's number of real steps (``0 .. T``; PyTorch's packed sequences):
        steps ``t >= lengths[n]`` of sequence ``n`` are padding, where its state is
        carried unchanged and ``h`` is exactly zero. ``None``: every sequence is ``T``
        steps long. See "Variable-length sequences" in the conventions.
    nonlinearity : {"tanh", "relu"}, keyword-only
        The activation (PyTorch's ``nonlinearity``).
    reverse : bool, keyword-only
        Run from the last step to the first (outputs in time order; with ``lengths`` each
        sequence starts at its own last real step): Keras ``go_backwards`` with the order
        restored, ONNX ``direction="reverse"``.

    Returns
    -------
    h : array, shape (N, T, H)
        Hidden states of every step.
    cache : tuple
        For `rnn_backward`.
    """
    math = _rnn.cell(_spec.check_options(_spec.RNN, nonlinearity=nonlinearity))
    reverse = _spec.check_flag("reverse", reverse)
    xp = _check_arrays({"x": x, "h0": h0, "Wx": Wx, "Wh": Wh, "b": b})
    dims = _rnn_dims("x", x, "N T D", "h0", h0, Wx, Wh, b)
    dims.require_steps("T", "x", x)
    lengths, mask = _forward_mask(xp, lengths, x, dims)
    x, h0, Wx, Wh, b = (_seam.snapshot(xp, v) for v in (x, h0, Wx, Wh, b))  # for the cache
    x_col, init = _to_col_seq(xp, x), _rnn.Carry(h0.T)
    w = _sequence.separate_weights(Wx.T, Wh.T, _col(xp, b))
    x_col, mask, states = _run(xp, math, w, x_col, init, mask, reverse)
    cache = _SequenceCache(_spec.RNN, x_col, init, states, w, dims["H"], lengths, math, reverse)
    return _in_time_order(xp, _hidden_states(xp, states, mask), reverse), cache


@_float32_inside(caches="cache")
def rnn_backward(dh, cache, *, lengths=None):
    """Backpropagation through time for the vanilla RNN.

    Parameters
    ----------
    dh : array, shape (N, T, H)
        Upstream gradients of all hidden states.
    cache : tuple
        From `rnn_forward`.
    lengths : array of int, shape (N,), or list of int, optional, keyword-only
        Read from the cache; if given, it must equal the forward's. With lengths, the
        gradients ``dh`` at padded steps are ignored and ``dx`` is zero there.

    Returns
    -------
    dx : array, shape (N, T, D)
    dh0 : array, shape (N, H)
    dWx : array, shape (D, H)
    dWh : array, shape (H, H)
    db : array, shape (H,)
    """
    run = _cache(cache, _SequenceCache, _spec.RNN, "rnn_forward")
    xp = _check_arrays({"dh": dh, "cache (the forward's x)": run.x})
    _sequence_dims(run).check("dh", dh, "N T H")
    g = _run_backward(xp, run, dh, lengths, "rnn_forward")
    return (
        _to_row_seq(xp, g.dx),
        g.dinit.a.T,
        g.dw.Wx.T,
        g.dw.Wa.T,
        g.dw.b[:, 0],
    )


# -- the gated cells: LSTM (CS231n gate order i, f, o, g) and GRU (r, z, n) -----------------
# The rows dialect's fused weights are the column core's transposed, with the gate blocks
# in the dialect's order (spec.rows_order) instead of the core's (spec.stacked):
#   W (G H, H + D) = [Wh.T | Wx.T] with the blocks reordered, b (G H, 1) likewise.


def _reorder(xp, spec: _spec.CellSpec, M, H: int, *, to_rows: bool = False):
    """Gate blocks of ``H`` rows of ``M`` from the rows dialect's order to the core's (or back)."""
    src, dst = (spec.stacked, spec.rows_order) if to_rows else (spec.rows_order, spec.stacked)
    order = spec.permutation(src, dst)
    if order == tuple(range(len(order))):
        return M
    return xp.concat([M[k * H : (k + 1) * H, ...] for k in order], axis=0)


def _fused_col(xp, spec: _spec.CellSpec, Wx, Wh, b, H: int):
    """Rows ``Wx (D, G H)``, ``Wh (H, G H)``, ``b (G H,)`` -> the core's ``W (G H, H + D)``,
    ``b (G H, 1)``."""
    W = _reorder(xp, spec, xp.concat([Wh.T, Wx.T], axis=1), H)
    return W, _reorder(xp, spec, _col(xp, b), H)


def _weight_grads(xp, spec: _spec.CellSpec, dW, db, H: int):
    """The core's ``dW (G H, H + D)``, ``db (G H, 1)`` -> rows ``dWx (D, G H)``,
    ``dWh (H, G H)``, ``db (G H,)``."""
    dW = _reorder(xp, spec, dW, H, to_rows=True)
    return dW[:, H:].T, dW[:, :H].T, _reorder(xp, spec, db, H, to_rows=True)[:, 0]


def _gated_dims(spec: _spec.CellSpec, x_name, x, x_letters, h_name, h, Wx, Wh, b, bhn=None):
    GH = f"{spec.n_blocks}H"
    dims = _Dims()
    dims.check(x_name, x, x_letters)
    dims.check(h_name, h, "N H")
    dims.define(GH, spec.n_blocks * dims["H"], f"{spec.n_blocks} * H from {h_name}")
    dims.check("Wx", Wx, f"D {GH}")
    dims.check("Wh", Wh, f"H {GH}")
    dims.check("b", b, GH)
    if bhn is not None:
        dims.check("bhn", bhn, "H")
    return dims


def _gated_forward(cell: _sequence.Cell, x, h0, Wx, Wh, b, bhn=None, lengths=None, reverse=False):
    """The LSTM's or GRU's sequence forward: checks, then the column core."""
    spec = cell.spec
    reverse = _spec.check_flag("reverse", reverse)
    named = {"x": x, "h0": h0, "Wx": Wx, "Wh": Wh, "b": b}
    xp = _check_arrays(named if not spec.hidden_biases else {**named, "bhn": bhn})
    dims = _gated_dims(spec, "x", x, "N T D", "h0", h0, Wx, Wh, b, bhn)
    dims.require_steps("T", "x", x)
    lengths, mask = _forward_mask(xp, lengths, x, dims)
    H = dims["H"]
    # the cache's own copies of what the backward reads (W is a new array: fused below)
    x, h0, b = (_seam.snapshot(xp, v) for v in (x, h0, b))
    bhn = None if bhn is None else _seam.snapshot(xp, bhn)
    W, bc = _fused_col(xp, spec, Wx, Wh, b, H)
    x_col, h0_col = _to_col_seq(xp, x), h0.T
    zeros = [_seam.zeros_like_state(xp, h0_col.shape, h0_col) for _ in spec.carry[1:]]
    init = cell.Carry(h0_col, *zeros)  # the LSTM's cell state starts at zero
    w = _sequence.stacked_weights(W, bc, H, None if bhn is None else _col(xp, bhn))
    x_col, mask, states = _run(xp, cell, w, x_col, init, mask, reverse)
    cache = _SequenceCache(spec, x_col, init, states, w, H, lengths, cell, reverse)
    return _in_time_order(xp, _hidden_states(xp, states, mask), reverse), cache


def _gated_backward(cell: _sequence.Cell, dh, cache, what: str, lengths=None):
    """The LSTM's or GRU's BPTT: ``dx, dh0, dWx, dWh, db`` (and the GRU's ``dbhn``)."""
    run = _cache(cache, _SequenceCache, cell.spec, what)
    xp = _check_arrays({"dh": dh, "cache (the forward's x)": run.x})
    _sequence_dims(run).check("dh", dh, "N T H")
    g = _run_backward(xp, run, dh, lengths, what)
    dW = xp.concat([g.dw.Wa, g.dw.Wx], axis=1)
    dWx, dWh, db = _weight_grads(xp, cell.spec, dW, g.dw.b, run.H)
    grads = (_to_row_seq(xp, g.dx), g.dinit.a.T, dWx, dWh, db)
    return grads if g.dw.bhn is None else (*grads, g.dw.bhn[:, 0])


@_float32_inside(returns_cache=True)
def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step (CS231n gate order i, f, o, g).

    Parameters
    ----------
    x : array, shape (N, D)
        Input of this step.
    prev_h : array, shape (N, H)
        Previous hidden state.
    prev_c : array, shape (N, H)
        Previous cell state.
    Wx : array, shape (D, 4H)
        Input-to-hidden weights, gates i, f, o, g.
    Wh : array, shape (H, 4H)
        Hidden-to-hidden weights, gates i, f, o, g.
    b : array, shape (4H,)
        Biases, gates i, f, o, g.

    Returns
    -------
    next_h : array, shape (N, H)
    next_c : array, shape (N, H)
    cache : tuple
        For `lstm_step_backward`.
    """
    named = {"x": x, "prev_h": prev_h, "prev_c": prev_c, "Wx": Wx, "Wh": Wh, "b": b}
    xp = _check_arrays(named)
    dims = _gated_dims(_spec.LSTM, "x", x, "N D", "prev_h", prev_h, Wx, Wh, b)
    dims.check("prev_c", prev_c, "N H")
    H = dims["H"]
    W, bc = _fused_col(xp, _spec.LSTM, Wx, Wh, b, H)
    concat = xp.concat([prev_h.T, x.T], axis=0)
    s = _lstm.activate(xp, W @ concat + bc, prev_c.T, H)
    values = (s.f, s.i, s.cc, s.o, s.tc)
    c_prev = _seam.snapshot(xp, prev_c).T  # concat and W are new arrays already
    _pytrees.ensure()
    return s.a.T, s.c.T, _GatedStepCache(_spec.LSTM, concat, c_prev, W, values, H)


@_float32_inside(caches="cache")
def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward pass of one LSTM step.

    Parameters
    ----------
    dnext_h : array, shape (N, H)
        Gradient of the loss with respect to ``next_h``.
    dnext_c : array, shape (N, H)
        Gradient of the loss with respect to ``next_c``.
    cache : tuple
        From `lstm_step_forward`.

    Returns
    -------
    dx : array, shape (N, D)
    dprev_h : array, shape (N, H)
    dprev_c : array, shape (N, H)
    dWx : array, shape (D, 4H)
    dWh : array, shape (H, 4H)
    db : array, shape (4H,)
    """
    run = _cache(cache, _GatedStepCache, _spec.LSTM, "lstm_step_forward")
    concat, c_prev, W, (f, i, cc, o, tc), H = run.x, run.prev, run.W, run.values, run.H
    xp = _check_arrays({"dnext_h": dnext_h, "dnext_c": dnext_c, "cache (the forward's W)": W})
    dims = _step_dims(c_prev.T.shape)
    dims.check("dnext_h", dnext_h, "N H")
    dims.check("dnext_c", dnext_c, "N H")
    dz, dc_prev = _lstm.pre_activation_grads(xp, dnext_h.T, dnext_c.T, f, i, cc, o, c_prev, tc)
    dconcat = W.T @ dz
    dWx, dWh, db = _weight_grads(
        xp, _spec.LSTM, dz @ concat.T, xp.sum(dz, axis=1, keepdims=True), H
    )
    return dconcat[H:, :].T, dconcat[:H, :].T, dc_prev.T, dWx, dWh, db


@_float32_inside(returns_cache=True)
def lstm_forward(x, h0, Wx, Wh, b, *, lengths=None, reverse=False):
    """Run an LSTM over a whole sequence; the cell state starts at zero.

    Parameters
    ----------
    x : array, shape (N, T, D)
        Inputs of every step (``T >= 1``).
    h0 : array, shape (N, H)
        Initial hidden state.
    Wx : array, shape (D, 4H)
    Wh : array, shape (H, 4H)
    b : array, shape (4H,)
    lengths : array of int, shape (N,), or list of int, optional, keyword-only
        Each sequence's number of real steps (``0 .. T``; PyTorch's packed sequences):
        steps ``t >= lengths[n]`` of sequence ``n`` are padding, where its state is
        carried unchanged and ``h`` is exactly zero. ``None``: every sequence is ``T``
        steps long. See "Variable-length sequences" in the conventions.
    reverse : bool, keyword-only
        Run from the last step to the first (outputs in time order; with ``lengths`` each
        sequence starts at its own last real step): Keras ``go_backwards`` with the order
        restored, ONNX ``direction="reverse"``.

    Returns
    -------
    h : array, shape (N, T, H)
        Hidden states of every step.
    cache : tuple
        For `lstm_backward`.
    """
    return _gated_forward(_lstm.CELL, x, h0, Wx, Wh, b, lengths=lengths, reverse=reverse)


@_float32_inside(caches="cache")
def lstm_backward(dh, cache, *, lengths=None):
    """Backpropagation through time for the LSTM.

    Parameters
    ----------
    dh : array, shape (N, T, H)
        Upstream gradients of all hidden states.
    cache : tuple
        From `lstm_forward`.
    lengths : array of int, shape (N,), or list of int, optional, keyword-only
        Read from the cache; if given, it must equal the forward's. With lengths, the
        gradients ``dh`` at padded steps are ignored and ``dx`` is zero there.

    Returns
    -------
    dx : array, shape (N, T, D)
    dh0 : array, shape (N, H)
    dWx : array, shape (D, 4H)
    dWh : array, shape (H, 4H)
    db : array, shape (4H,)
    """
    return _gated_backward(_lstm.CELL, dh, cache, "lstm_forward", lengths)


# -- GRU: the column GRU (PyTorch equations, gate order r, z, n along 3H) -----------------
#   Wx (D, 3H) = weight_ih.T, Wh (H, 3H) = weight_hh.T,
#   b (3H,) = [b_ir + b_hr, b_iz + b_hz, b_in], bhn (H,) = b_hn.


@_float32_inside(returns_cache=True)
def gru_step_forward(x, prev_h, Wx, Wh, b, bhn):
    """One GRU step, PyTorch equations, gate order r, z, n.

    ``r = sigmoid(x @ Wx_r + prev_h @ Wh_r + b_r)``, ``z`` likewise,
    ``n = tanh(x @ Wx_n + b_n + r * (prev_h @ Wh_n + bhn))``,
    ``next_h = (1 - z) * n + z * prev_h``.

    Parameters
    ----------
    x : array, shape (N, D)
        Input of this step.
    prev_h : array, shape (N, H)
        Previous hidden state.
    Wx : array, shape (D, 3H)
        Input weights, gates r, z, n (PyTorch's ``weight_ih`` transposed).
    Wh : array, shape (H, 3H)
        Hidden weights, gates r, z, n (``weight_hh`` transposed).
    b : array, shape (3H,)
        Biases ``[b_ir + b_hr, b_iz + b_hz, b_in]``.
    bhn : array, shape (H,)
        Hidden-side bias of the candidate, inside the reset product (``b_hn``).

    Returns
    -------
    next_h : array, shape (N, H)
    cache : tuple
        For `gru_step_backward`.
    """
    named = {"x": x, "prev_h": prev_h, "Wx": Wx, "Wh": Wh, "b": b, "bhn": bhn}
    xp = _check_arrays(named)
    dims = _gated_dims(_spec.GRU, "x", x, "N D", "prev_h", prev_h, Wx, Wh, b, bhn)
    H = dims["H"]
    W, bc = _fused_col(xp, _spec.GRU, Wx, Wh, b, H)
    a_prev = prev_h.T
    s = _gru.activate(xp, W[:, H:] @ x.T + bc, W[:, :H] @ a_prev, _col(xp, bhn), a_prev, H)
    x, a_prev = _seam.snapshot(xp, x), _seam.snapshot(xp, prev_h).T  # W is new already
    _pytrees.ensure()
    return s.a.T, _GatedStepCache(_spec.GRU, x, a_prev, W, (s.r, s.z, s.n, s.hn), H)


@_float32_inside(caches="cache")
def gru_step_backward(dnext_h, cache):
    """Backward pass of one GRU step.

    Parameters
    ----------
    dnext_h : array, shape (N, H)
        Gradient of the loss with respect to ``next_h``.
    cache : tuple
        From `gru_step_forward`.

    Returns
    -------
    dx : array, shape (N, D)
    dprev_h : array, shape (N, H)
    dWx : array, shape (D, 3H)
    dWh : array, shape (H, 3H)
    db : array, shape (3H,)
    dbhn : array, shape (H,)
    """
    run = _cache(cache, _GatedStepCache, _spec.GRU, "gru_step_forward")
    x, a_prev, W, (r, z, n, hn), H = run.x, run.prev, run.W, run.values, run.H
    xp = _check_arrays({"dnext_h": dnext_h, "cache (the forward's W)": W})
    _step_dims(a_prev.T.shape).check("dnext_h", dnext_h, "N H")
    dxw, dha, direct = _gru.pre_activation_grads(xp, dnext_h.T, r, z, n, hn, a_prev)
    dprev = W[:, :H].T @ dha + direct
    dW = xp.concat([dha @ a_prev.T, dxw @ x], axis=1)
    dWx, dWh, db = _weight_grads(xp, _spec.GRU, dW, xp.sum(dxw, axis=1, keepdims=True), H)
    dbhn = xp.sum(dha[2 * H :, :], axis=1, keepdims=True)
    return ((W[:, H:].T @ dxw).T, dprev.T, dWx, dWh, db, dbhn[:, 0])


@_float32_inside(returns_cache=True)
def gru_forward(x, h0, Wx, Wh, b, bhn, *, lengths=None, reset_after=True, reverse=False):
    """Run a GRU over a whole sequence (PyTorch equations, gate order r, z, n).

    Parameters
    ----------
    x : array, shape (N, T, D)
        Inputs of every step (``T >= 1``).
    h0 : array, shape (N, H)
        Initial hidden state.
    Wx : array, shape (D, 3H)
    Wh : array, shape (H, 3H)
    b : array, shape (3H,)
    bhn : array, shape (H,)
    lengths : array of int, shape (N,), or list of int, optional, keyword-only
        Each sequence's number of real steps (``0 .. T``; PyTorch's packed sequences):
        steps ``t >= lengths[n]`` of sequence ``n`` are padding, where its state is
        carried unchanged and ``h`` is exactly zero. ``None``: every sequence is ``T``
        steps long. See "Variable-length sequences" in the conventions.
    reset_after : bool, keyword-only
        ``False``: the reset gate acts before the candidate's recurrent product (Keras
        ``reset_after=False``, ONNX ``linear_before_reset=0``); see "Cell variants".
    reverse : bool, keyword-only
        Run from the last step to the first (outputs in time order; with ``lengths`` each
        sequence starts at its own last real step): Keras ``go_backwards`` with the order
        restored, ONNX ``direction="reverse"``.

    Returns
    -------
    h : array, shape (N, T, H)
        Hidden states of every step.
    cache : tuple
        For `gru_backward`.
    """
    math = _gru.cell(_spec.check_options(_spec.GRU, reset_after=reset_after))
    return _gated_forward(math, x, h0, Wx, Wh, b, bhn, lengths, reverse)


@_float32_inside(caches="cache")
def gru_backward(dh, cache, *, lengths=None):
    """Backpropagation through time for the GRU.

    Parameters
    ----------
    dh : array, shape (N, T, H)
        Upstream gradients of all hidden states.
    cache : tuple
        From `gru_forward`.
    lengths : array of int, shape (N,), or list of int, optional, keyword-only
        Read from the cache; if given, it must equal the forward's. With lengths, the
        gradients ``dh`` at padded steps are ignored and ``dx`` is zero there.

    Returns
    -------
    dx : array, shape (N, T, D)
    dh0 : array, shape (N, H)
    dWx : array, shape (D, 3H)
    dWh : array, shape (H, 3H)
    db : array, shape (3H,)
    dbhn : array, shape (H,)
    """
    return _gated_backward(_gru.CELL, dh, cache, "gru_forward", lengths)
