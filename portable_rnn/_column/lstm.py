"""LSTM, column dialect: forward and hand-written backward (BPTT).

Dimension letters (used in every docstring of this module):

* ``n_x`` input features, ``n_a`` hidden units, ``n_y`` output classes,
* ``m`` examples in the batch (one per column), ``T_x`` time steps.

Equations, for every step ``t``, with ``concat = [a<t-1>; x<t>]`` of shape
``(n_a + n_x, m)`` (hidden state rows first, as in the deeplearning.ai course)::

    f<t>  = sigmoid(Wf @ concat + bf)          forget gate
    i<t>  = sigmoid(Wi @ concat + bi)          update (input) gate
    cc<t> = tanh(Wc @ concat + bc)             candidate cell state
    o<t>  = sigmoid(Wo @ concat + bo)          output gate
    c<t>  = f<t> * c<t-1> + i<t> * cc<t>
    a<t>  = o<t> * tanh(c<t>)
    y<t>  = softmax(Wy @ a<t> + by)            (per column)

Internally the four gate matrices are stacked, in the order f, i, o, c (the
sigmoid gates first, so one sigmoid serves all three), into one
``(4 n_a, n_a + n_x)`` matrix, so that each step makes one recurrent
matrix product; the input product for all steps is one product before the
loop, and the weight gradients one product after the backward loop.
"""

from __future__ import annotations

from typing import NamedTuple

from .._backend.seam import snapshot, zeros_like_state
from .._backend.steps import ListSteps
from .._core import lstm as core
from .._core import sequence
from .._core.activations import softmax
from .._core.sequence import zero_padded
from .._core.spec import LSTM, check_flag
from .._validate import Dims, check_arrays, float32_inside
from .caches import (
    StepCaches,
    check_da,
    in_time_order,
    run_backward,
    run_forward,
    seed_style_caches,
    sequence_caches,
)
from .checks import check_inputs, check_sequence, check_state, column_params

__all__ = ["lstm_backward", "lstm_cell_backward", "lstm_cell_forward", "lstm_forward"]


class LSTMCellCache(NamedTuple):
    """What `lstm_cell_forward` caches for `lstm_cell_backward` (the seed's 10-tuple)."""

    a_next: object
    c_next: object
    a_prev: object
    c_prev: object
    ft: object
    it: object
    cct: object
    ot: object
    xt: object
    parameters: object


# -- cell -------------------------------------------------------------------


@float32_inside(returns_cache=True)
def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """One step of the LSTM.

    Parameters
    ----------
    xt : array, shape (n_x, m)
        Input at this time step, one example per column.
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    c_prev : array, shape (n_a, m)
        Cell (memory) state of the previous step.
    parameters : dict
        ``Wf``, ``Wi``, ``Wc``, ``Wo`` (n_a, n_a + n_x), acting on
        ``concat = [a_prev; xt]``; ``bf``, ``bi``, ``bc``, ``bo`` (n_a, 1);
        ``Wy`` (n_y, n_a); ``by`` (n_y, 1). Other keys are ignored.
        The output layer (``Wy``, ``by``) may be left out, both together;
        the predictions are then ``None``.

    Returns
    -------
    a_next : array, shape (n_a, m)
        Next hidden state.
    c_next : array, shape (n_a, m)
        Next cell state.
    yt_pred : array, shape (n_y, m)
        ``softmax(Wy @ a_next + by)``, per column.
    cache : tuple
        ``(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``
        for `lstm_cell_backward` (gates of shape (n_a, m)).

    Raises
    ------
    TypeError
        Arrays of different backends, non-floating or mixed dtypes.
    ValueError
        Wrong shapes, arrays on different devices.
    KeyError
        A missing parameter.
    """
    p = column_params(LSTM, parameters)
    xp = check_arrays({"xt": xt, "a_prev": a_prev, "c_prev": c_prev, **p})
    dims = Dims()
    check_inputs(dims, LSTM, "xt", xt, "n_x m", p)
    check_state(dims, "a_prev", a_prev, "n_a m")
    check_state(dims, "c_prev", c_prev, "n_a m")
    W, b = sequence.stack_gates(xp, LSTM, p)
    z = W @ xp.concat([a_prev, xt], axis=0) + b
    s = core.activate(xp, z, c_prev, dims["n_a"])
    yt_pred = softmax(xp, p["Wy"] @ s.a + p["by"], axis=0) if "Wy" in p else None
    cache = LSTMCellCache(s.a, s.c, a_prev, c_prev, s.f, s.i, s.cc, s.o, xt, parameters)
    return s.a, s.c, yt_pred, cache


def _cell_cache(cache, name="cache"):
    """The arrays of a `lstm_cell_forward` cache, named ``cache[k] (field)``, and its parameters."""
    if not (isinstance(cache, (tuple, list)) and len(cache) == len(LSTMCellCache._fields)):
        fields = ", ".join(LSTMCellCache._fields)
        raise TypeError(f"{name} must be the ({fields}) tuple of lstm_cell_forward")
    *arrays, parameters = cache
    names = [f"{name}[{k}] ({field})" for k, field in enumerate(LSTMCellCache._fields[:-1])]
    p = column_params(LSTM, parameters, f"{name}[9] (parameters)")
    return dict(zip(names, arrays, strict=True)), p


@float32_inside(caches="cache")
def lstm_cell_backward(da_next, dc_next, cache):
    """Backward pass of one LSTM step.

    Parameters
    ----------
    da_next : array, shape (n_a, m)
        Gradient of the loss with respect to ``a_next``.
    dc_next : array, shape (n_a, m)
        Gradient of the loss with respect to ``c_next`` (from the next step);
        the part that flows through ``a_next = ot * tanh(c_next)`` is added here.
    cache : tuple
        The cache returned by `lstm_cell_forward`.

    Returns
    -------
    gradients : dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m), ``dc_prev`` (n_a, m);
        ``dWf``, ``dWi``, ``dWc``, ``dWo`` (n_a, n_a + n_x);
        ``dbf``, ``dbi``, ``dbc``, ``dbo`` (n_a, 1).
    """
    named, p = _cell_cache(cache)
    names = list(named)
    xp = check_arrays({"da_next": da_next, "dc_next": dc_next, **named, **p})
    dims = Dims()
    check_inputs(dims, LSTM, names[-1], named[names[-1]], "n_x m", p)
    dims.check("da_next", da_next, "n_a m")
    dims.check("dc_next", dc_next, "n_a m")
    for name in names[:-1]:
        dims.check(name, named[name], "n_a m")
    n_a = dims["n_a"]
    _, c_next, a_prev, c_prev, f, i, cc, o, xt = named.values()
    dz, dc_prev = core.pre_activation_grads(
        xp, da_next, dc_next, f, i, cc, o, c_prev, xp.tanh(c_next)
    )
    W, _ = sequence.stack_gates(xp, LSTM, p)
    dW = dz @ xp.concat([a_prev, xt], axis=0).T
    dconcat = W.T @ dz
    grads = {"dxt": dconcat[n_a:, :], "da_prev": dconcat[:n_a, :], "dc_prev": dc_prev}
    db = xp.sum(dz, axis=1, keepdims=True)
    grads.update(sequence.unfuse(xp, LSTM, sequence.Weights(None, None, db, W=dW), prefix="d"))
    return grads


# -- sequence ---------------------------------------------------------------


class _StepCaches(StepCaches):
    forward = "lstm_forward"

    def cell_cache(self, t: int) -> LSTMCellCache:
        prev = self.init if t == 0 else self.states[t - 1]
        s = self.states[t]
        return LSTMCellCache(
            s.a, s.c, prev.a, prev.c, s.f, s.i, s.cc, s.o, self.x[:, :, t], self.parameters
        )


@float32_inside(returns_cache=True)
def lstm_forward(x, a0, parameters, *, c0=None, lengths=None, reverse=False):
    """Run the LSTM over a whole sequence.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs of every time step (``T_x >= 1``).
    a0 : array, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros (of ``x``'s dtype and device).
    parameters : dict
        ``Wf``, ``Wi``, ``Wc``, ``Wo`` (n_a, n_a + n_x); ``bf``, ``bi``,
        ``bc``, ``bo`` (n_a, 1); ``Wy`` (n_y, n_a); ``by`` (n_y, 1).
        The output layer (``Wy``, ``by``) may be left out, both together;
        the predictions are then ``None``.
    c0 : array, shape (n_a, m), optional
        Initial cell state; zeros when omitted. The cell state is carried from
        each step to the next.
    lengths : array of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps (``0 .. T_x``; PyTorch's packed sequences):
        steps ``t >= lengths[j]`` of example ``j`` are padding, where its state is carried
        unchanged and its outputs are exactly zero. ``None`` (the default): every example
        is ``T_x`` steps long. See "Variable-length sequences" in the conventions.
    reverse : bool, keyword-only
        Run from the last step to the first (Keras ``go_backwards`` with the outputs put
        back in time order; Flax ``reverse=True, keep_order=True``; ONNX
        ``direction="reverse"``). The outputs are in time order; with ``lengths`` each
        example starts at its own last real step. The caches' steps are in run order.

    Returns
    -------
    a : array, shape (n_a, m, T_x)
        Hidden state of every step.
    y : array, shape (n_y, m, T_x)
        Softmax prediction of every step.
    c : array, shape (n_a, m, T_x)
        Cell state of every step (its own array, never an alias of ``a``).
    caches : tuple
        ``(step_caches, x)`` for `lstm_backward`; ``step_caches[t]`` is the
        cache `lstm_cell_forward` would return at step ``t``. Otherwise opaque.
        The backward gives the gradients of this forward as it ran: the outputs
        share no memory with the caches, and changing ``x``, ``a0``, ``c0`` or the
        parameters afterwards does not change them (see "Aliasing" in the conventions).
    """
    reverse = check_flag("reverse", reverse)
    xp, p, dims, lengths, mask = check_sequence(LSTM, x, a0, parameters, c0, lengths)
    shape = (dims["n_a"], dims["m"])
    has_c0 = c0 is not None
    a0 = zeros_like_state(xp, shape, x) if a0 is None else snapshot(xp, a0)
    c0 = zeros_like_state(xp, shape, x) if c0 is None else snapshot(xp, c0)

    init = core.Carry(a0, c0)
    w = sequence.fuse(xp, LSTM, p, keep=True)
    x_run, mask_run, states = run_forward(xp, core.CELL, w, x, init, mask, reverse)
    a, c = (
        in_time_order(xp, zero_padded(xp, states.last_axis(xp, name), mask_run), reverse)
        for name in ("a", "c")
    )
    y = zero_padded(xp, sequence.outputs(xp, p["Wy"], p["by"], a), mask) if "Wy" in p else None
    steps = _StepCaches(
        x_run, init, states, w, parameters, has_c0=has_c0, lengths=lengths, reverse=reverse
    )
    return a, y, c, (steps, x)


def _sequence_cache(caches) -> StepCaches:
    """Our caches, or the same record built from a seed-style list of `lstm_cell_forward`
    caches (`seed_style_caches`)."""
    ours = sequence_caches(caches, _StepCaches)
    if ours is not None:
        return ours
    return seed_style_caches(caches, _StepCaches, LSTM, _cell_cache, _seed_steps)


def _seed_steps(xp, arrays):
    """Per-step values and initial carry from the arrays of `LSTMCellCache` s."""
    states = ListSteps(
        [core.Step(f, i, cc, o, c, xp.tanh(c), a) for a, c, _, _, f, i, cc, o, _ in arrays]
    )
    return states, core.Carry(arrays[0][2], arrays[0][3])


@float32_inside(caches="caches")
def lstm_backward(da, caches, *, lengths=None):
    """Backpropagation through time for the LSTM.

    Weight gradients are summed over all steps, and at each step the
    gradients ``da_prev`` and ``dc_prev`` are fed back into the step before
    (seed 002 overwrote the former and dropped the latter).

    Parameters
    ----------
    da : array, shape (n_a, m, T_x)
        Gradient of the loss with respect to every hidden state ``a<t>``
        (from the layers above).
    caches : tuple
        The caches returned by `lstm_forward` (or a seed-style pair
        ``(list of lstm_cell_forward caches, x)``).
    lengths : array of int, shape (m,), or list of int, optional, keyword-only
        Read from the caches; if given, it must equal the forward's. With lengths, the
        gradients ``da`` at padded steps are ignored and ``dx`` is zero there.

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x), ``da0`` (n_a, m); ``dWf``, ``dWi``, ``dWc``,
        ``dWo`` (n_a, n_a + n_x); ``dbf``, ``dbi``, ``dbc``, ``dbo`` (n_a, 1);
        and ``dc0`` (n_a, m) when the forward was given ``c0``.
    """
    run = _sequence_cache(caches)
    xp = check_da(da, run)
    g = run_backward(xp, core.CELL, run, da, lengths, "lstm_backward", "lstm_forward")
    grads = {"dx": g.dx, "da0": g.dinit.a}
    grads.update(sequence.unfuse(xp, LSTM, g.dw, prefix="d"))
    if run.has_c0:
        grads["dc0"] = g.dinit.c
    return grads
