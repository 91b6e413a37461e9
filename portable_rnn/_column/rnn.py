"""Vanilla RNN, column dialect: forward and hand-written backward (BPTT).

Dimension letters (used in every docstring of this module):

* ``n_x`` input features, ``n_a`` hidden units, ``n_y`` output classes,
* ``m`` examples in the batch (one per column), ``T_x`` time steps.

Equations, for every step ``t``::

    a<t> = tanh(Wax @ x<t> + Waa @ a<t-1> + ba)
    y<t> = softmax(Wya @ a<t> + by)        (per column)

Written once against the array API standard: the namespace comes from the
inputs, nothing is written in place, and results keep the inputs' backend,
device and dtype.
"""

from __future__ import annotations

from typing import NamedTuple

from .._backend.seam import snapshot, zeros_like_state
from .._backend.steps import ListSteps
from .._core import rnn as core
from .._core import sequence
from .._core.activations import softmax
from .._core.sequence import zero_padded
from .._core.spec import RNN, check_flag
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

__all__ = ["rnn_backward", "rnn_cell_backward", "rnn_cell_forward", "rnn_forward"]


class RNNCellCache(NamedTuple):
    """What `rnn_cell_forward` caches for `rnn_cell_backward` (the seed's 4-tuple)."""

    a_next: object
    a_prev: object
    xt: object
    parameters: object


# -- cell -------------------------------------------------------------------


@float32_inside(returns_cache=True)
def rnn_cell_forward(xt, a_prev, parameters):
    """One step of the vanilla RNN.

    Parameters
    ----------
    xt : array, shape (n_x, m)
        Input at this time step, one example per column.
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``Wya`` (n_y, n_a),
        ``ba`` (n_a, 1), ``by`` (n_y, 1). Other keys are ignored.
        The output layer (``Wya``, ``by``) may be left out, both together;
        the predictions are then ``None``.

    Returns
    -------
    a_next : array, shape (n_a, m)
        ``tanh(Wax @ xt + Waa @ a_prev + ba)``.
    yt_pred : array, shape (n_y, m)
        ``softmax(Wya @ a_next + by)``, per column.
    cache : tuple
        ``(a_next, a_prev, xt, parameters)``, for `rnn_cell_backward`.

    Raises
    ------
    TypeError
        Arrays of different backends, non-floating or mixed dtypes.
    ValueError
        Wrong shapes, arrays on different devices.
    KeyError
        A missing parameter.
    """
    p = column_params(RNN, parameters)
    xp = check_arrays({"xt": xt, "a_prev": a_prev, **p})
    dims = Dims()
    check_inputs(dims, RNN, "xt", xt, "n_x m", p)
    check_state(dims, "a_prev", a_prev, "n_a m")
    a_next = core.activate(xp, p["Wax"] @ xt + p["ba"], p["Waa"] @ a_prev)
    yt_pred = softmax(xp, p["Wya"] @ a_next + p["by"], axis=0) if "Wya" in p else None
    return a_next, yt_pred, RNNCellCache(a_next, a_prev, xt, parameters)


def _cell_cache(cache, name="cache"):
    """The arrays of a `rnn_cell_forward` cache, named ``cache[k] (field)``, and its parameters."""
    if not (isinstance(cache, (tuple, list)) and len(cache) == len(RNNCellCache._fields)):
        fields = ", ".join(RNNCellCache._fields)
        raise TypeError(f"{name} must be the ({fields}) tuple of rnn_cell_forward")
    *arrays, parameters = cache
    names = [f"{name}[{k}] ({field})" for k, field in enumerate(RNNCellCache._fields[:-1])]
    p = column_params(RNN, parameters, f"{name}[3] (parameters)")
    return dict(zip(names, arrays, strict=True)), p


@float32_inside(caches="cache")
def rnn_cell_backward(da_next, cache):
    """Backward pass of one RNN step.

    Parameters
    ----------
    da_next : array, shape (n_a, m)
        Gradient of the loss with respect to ``a_next``.
    cache : tuple
        The cache returned by `rnn_cell_forward`.

    Returns
    -------
    gradients : dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1).
    """
    named, p = _cell_cache(cache)
    n_next, n_prev, n_xt = named
    xp = check_arrays({"da_next": da_next, **named, **p})
    dims = Dims()
    check_inputs(dims, RNN, n_xt, named[n_xt], "n_x m", p)
    dims.check(n_next, named[n_next], "n_a m")
    dims.check(n_prev, named[n_prev], "n_a m")
    dims.check("da_next", da_next, "n_a m")
    a_next, a_prev, xt = named.values()
    dz = core.tanh_grad(xp, da_next, a_next)
    return {
        "dxt": p["Wax"].T @ dz,
        "da_prev": p["Waa"].T @ dz,
        "dWax": dz @ xt.T,
        "dWaa": dz @ a_prev.T,
        "dba": xp.sum(dz, axis=1, keepdims=True),
    }


# -- sequence ---------------------------------------------------------------


class _StepCaches(StepCaches):
    forward = "rnn_forward"

    def cell_cache(self, t: int) -> RNNCellCache:
        a_prev = self.init.a if t == 0 else self.states[t - 1].a
        return RNNCellCache(self.states[t].a, a_prev, self.x[:, :, t], self.parameters)


@float32_inside(returns_cache=True)
def rnn_forward(x, a0, parameters, *, lengths=None, reverse=False):
    """Run the vanilla RNN over a whole sequence.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs of every time step (``T_x >= 1``).
    a0 : array, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros (of ``x``'s dtype and device).
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``Wya`` (n_y, n_a),
        ``ba`` (n_a, 1), ``by`` (n_y, 1).
        The output layer (``Wya``, ``by``) may be left out, both together;
        the predictions are then ``None``.
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
    y_pred : array, shape (n_y, m, T_x)
        Softmax prediction of every step.
    caches : tuple
        ``(step_caches, x)`` for `rnn_backward`; ``step_caches[t]`` is the
        cache `rnn_cell_forward` would return at step ``t``. Otherwise opaque.
        The backward gives the gradients of this forward as it ran: the outputs
        share no memory with the caches, and changing ``x``, ``a0`` or the parameters
        afterwards does not change them (see "Aliasing" in the conventions).

    Notes
    -----
    The input product ``Wax @ x`` and the output product ``Wya @ a`` are each
    one matrix product over all steps; only ``Waa @ a<t-1>`` runs per step.
    """
    reverse = check_flag("reverse", reverse)
    xp, p, dims, lengths, mask = check_sequence(RNN, x, a0, parameters, lengths=lengths)
    if a0 is None:
        a0 = zeros_like_state(xp, (dims["n_a"], dims["m"]), x)
    else:
        a0 = snapshot(xp, a0)

    init = core.Carry(a0)
    w = sequence.fuse(xp, RNN, p, keep=True)
    x_run, mask_run, states = run_forward(xp, core.CELL, w, x, init, mask, reverse)
    a = in_time_order(xp, zero_padded(xp, states.last_axis(xp, "a"), mask_run), reverse)
    y_pred = (
        zero_padded(xp, sequence.outputs(xp, p["Wya"], p["by"], a), mask) if "Wya" in p else None
    )
    steps = _StepCaches(x_run, init, states, w, parameters, lengths=lengths, reverse=reverse)
    return a, y_pred, (steps, x)


def _sequence_cache(caches) -> StepCaches:
    """Our caches, or the same record built from a seed-style list of `rnn_cell_forward`
    caches (`seed_style_caches`)."""
    ours = sequence_caches(caches, _StepCaches)
    if ours is not None:
        return ours
    return seed_style_caches(caches, _StepCaches, RNN, _cell_cache, _seed_steps)


def _seed_steps(xp, arrays):
    """Per-step values and initial carry from the arrays of `RNNCellCache` s."""
    return ListSteps([core.Step(a_next) for a_next, _, _ in arrays]), core.Carry(arrays[0][1])


@float32_inside(caches="caches")
def rnn_backward(da, caches, *, lengths=None):
    """Backpropagation through time for the vanilla RNN.

    Parameters
    ----------
    da : array, shape (n_a, m, T_x)
        Gradient of the loss with respect to every hidden state ``a<t>``
        (from the layers above; the gradient flowing back through time from
        later steps is added here).
    caches : tuple
        The caches returned by `rnn_forward` (or a seed-style pair
        ``(list of rnn_cell_forward caches, x)``).
    lengths : array of int, shape (m,), or list of int, optional, keyword-only
        Read from the caches; if given, it must equal the forward's. With lengths, the
        gradients ``da`` at padded steps are ignored and ``dx`` is zero there.

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x), ``da0`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1); weight gradients are summed
        over all steps.
    """
    run = _sequence_cache(caches)
    xp = check_da(da, run)
    g = run_backward(xp, core.CELL, run, da, lengths, "rnn_backward", "rnn_forward")
    return {"dx": g.dx, "da0": g.dinit.a, **sequence.unfuse(xp, RNN, g.dw, prefix="d")}
