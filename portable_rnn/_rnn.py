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

from ._activations import _softmax
from ._backend import elementwise, time_loop, zeros_like_state
from ._sequence import (
    ListSteps,
    StackedSteps,
    StepCaches,
    outputs,
    previous_states,
    project,
    steps_and_x,
    time_major,
    zip_steps,
)
from ._validate import Dims, check_arrays, get_params

__all__ = ["rnn_backward", "rnn_cell_backward", "rnn_cell_forward", "rnn_forward"]

RNN_KEYS = ("Wax", "Waa", "Wya", "ba", "by")
OUTPUT_KEYS = ("Wya", "by")  # the output layer is optional: without it y_pred is None


def _check(dims: Dims, p: dict) -> None:
    dims.check("Waa", p["Waa"], "n_a n_a")
    dims.check("Wax", p["Wax"], "n_a n_x")
    dims.check("ba", p["ba"], "n_a 1")
    if "Wya" in p:
        dims.check("Wya", p["Wya"], "n_y n_a")
        dims.check("by", p["by"], "n_y 1")


# -- the math, unchecked, shared by the cell and the sequence functions -------


def _step(xp, xw, a_prev, Waa):
    """``a_next = tanh(xw + Waa @ a_prev)``, where ``xw = Wax @ xt + ba``."""
    return _activate(xp, xw, Waa @ a_prev)


@elementwise
def _activate(xp, xw, wa):
    """``tanh(xw + wa)``: the new hidden state from the input and recurrent parts."""
    return xp.tanh(xw + wa)


def _step_backward(xp, da, a_next, Waa):
    """Gradient at the pre-activation, and ``da_prev``, of one step."""
    dz = _tanh_grad(xp, da, a_next)
    return dz, Waa.T @ dz


@elementwise
def _tanh_grad(xp, da, a):
    """``da * (1 - a**2)``: the gradient at ``z`` of ``a = tanh(z)``."""
    return da * (1.0 - a * a)


def _forward(xp, x, a0, Wax, Waa, ba):
    """Hidden states: per-step ``(a<t>,)`` tuples (`ListSteps`/`StackedSteps`), and the
    stacked ``(n_a, m, T_x)``."""

    def step(carry, x_t):
        a = _step(xp, x_t[0], carry[0], Waa)
        return (a,), (a,)

    xs = StackedSteps((project(xp, Wax, ba, x),))  # Wax @ x<t> + ba for all t in one product
    _, states = time_loop(xp, step, (a0,), xs)
    return states, states.last_axis(xp, 0)


# -- cell -------------------------------------------------------------------


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
    p = get_params(parameters, RNN_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"xt": xt, "a_prev": a_prev, **p})
    dims = Dims()
    dims.check("xt", xt, "n_x m")
    _check(dims, p)
    dims.check("a_prev", a_prev, "n_a m")
    a_next = _step(xp, p["Wax"] @ xt + p["ba"], a_prev, p["Waa"])
    yt_pred = _softmax(xp, p["Wya"] @ a_next + p["by"], axis=0) if "Wya" in p else None
    return a_next, yt_pred, (a_next, a_prev, xt, parameters)


def _cell_cache(cache, name="cache"):
    if not (isinstance(cache, (tuple, list)) and len(cache) == 4):
        raise TypeError(
            f"{name} must be the (a_next, a_prev, xt, parameters) tuple of rnn_cell_forward"
        )
    a_next, a_prev, xt, parameters = cache
    return (
        a_next,
        a_prev,
        xt,
        get_params(parameters, RNN_KEYS, f"{name}[3] (parameters)", OUTPUT_KEYS),
    )


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
    a_next, a_prev, xt, p = _cell_cache(cache)
    xp = check_arrays({"da_next": da_next, "a_next": a_next, "a_prev": a_prev, "xt": xt, **p})
    dims = Dims()
    dims.check("xt", xt, "n_x m")
    _check(dims, p)
    dims.check("a_next", a_next, "n_a m")
    dims.check("a_prev", a_prev, "n_a m")
    dims.check("da_next", da_next, "n_a m")
    dz, da_prev = _step_backward(xp, da_next, a_next, p["Waa"])
    return {
        "dxt": p["Wax"].T @ dz,
        "da_prev": da_prev,
        "dWax": dz @ xt.T,
        "dWaa": dz @ a_prev.T,
        "dba": xp.sum(dz, axis=1, keepdims=True),
    }


# -- sequence ---------------------------------------------------------------


def _make_step(steps, t):
    a_prev = steps.a0 if t == 0 else steps.states[t - 1][0]
    return (steps.states[t][0], a_prev, steps.x[:, :, t], steps.parameters)


def rnn_forward(x, a0, parameters):
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

    Returns
    -------
    a : array, shape (n_a, m, T_x)
        Hidden state of every step.
    y_pred : array, shape (n_y, m, T_x)
        Softmax prediction of every step.
    caches : tuple
        ``(step_caches, x)`` for `rnn_backward`; ``step_caches[t]`` is the
        cache `rnn_cell_forward` would return at step ``t``. Otherwise opaque.

    Notes
    -----
    The input product ``Wax @ x`` and the output product ``Wya @ a`` are each
    one matrix product over all steps; only ``Waa @ a<t-1>`` runs per step.
    """
    p = get_params(parameters, RNN_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"x": x, "a0": a0, **p})
    dims = Dims()
    dims.check("x", x, "n_x m T_x")
    dims.require_steps("T_x", "x", x)
    _check(dims, p)
    if a0 is None:
        a0 = zeros_like_state(xp, (dims["n_a"], dims["m"]), x)
    else:
        dims.check("a0", a0, "n_a m")

    states, a = _forward(xp, x, a0, p["Wax"], p["Waa"], p["ba"])
    y_pred = outputs(xp, p["Wya"], p["by"], a) if "Wya" in p else None
    steps = StepCaches(
        _make_step, len(states), states=states, a=a, a0=a0, x=x, parameters=parameters
    )
    return a, y_pred, (steps, x)


def _sequence_cache(caches):
    """``(states, a, a0, x, parameters)`` from our caches or seed-style ones."""
    steps, x = steps_and_x(caches)
    if isinstance(steps, StepCaches) and steps._make_step is _make_step:
        return steps.states, steps.a, steps.a0, x, steps.parameters
    # A seed-style list of rnn_cell_forward caches: (a_next, a_prev, xt, parameters).
    cells = [_cell_cache(c, f"caches[0][{t}]") for t, c in enumerate(steps)]
    states = ListSteps([(c[0],) for c in cells])
    xp = check_arrays({"caches[0][0][0]": cells[0][0]})
    return states, states.last_axis(xp, 0), cells[0][1], x, steps[0][3]


def rnn_backward(da, caches):
    """Backpropagation through time for the vanilla RNN.

    Parameters
    ----------
    da : array, shape (n_a, m, T_x)
        Gradient of the loss with respect to every hidden state ``a<t>``
        (from the layers above; the gradient flowing back through time from
        later steps is added here).
    caches : tuple
        The caches returned by `rnn_forward`.

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x), ``da0`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1); weight gradients are summed
        over all steps.
    """
    states, a, a0, x, parameters = _sequence_cache(caches)
    p = get_params(parameters, RNN_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"da": da, "x": x, "a0": a0, **p})
    dims = Dims()  # the caches are the reference; da is checked against them
    dims.check("x", x, "n_x m T_x")
    _check(dims, p)
    dims.check("a0", a0, "n_a m")
    dims.check("da", da, "n_a m T_x")
    if len(states) != dims["T_x"]:
        raise ValueError(f"caches hold {len(states)} steps but da has T_x = {dims['T_x']}")

    return _backward(xp, da, states, a, a0, x, p["Wax"], p["Waa"])


def _backward(xp, da, states, a, a0, x, Wax, Waa, da_n=None):
    """BPTT core: ``dx``, ``da0``, ``dWax``, ``dWaa``, ``dba`` (column layout).

    ``da_n`` is an extra gradient at the final state ``a<T_x>`` (or ``None``).
    """
    n_x, m, T = x.shape
    n_a = Waa.shape[0]

    def step(carry, x_t):
        da_t, a_t = x_t
        dz, da_prev = _step_backward(xp, da_t + carry[0], a_t, Waa)
        return (da_prev,), (dz,)

    first = zeros_like_state(xp, (n_a, m), da) if da_n is None else da_n
    xs = zip_steps(time_major(xp, da), states)  # step t: (da<t>, a<t>)
    (da_prev,), dzs = time_loop(xp, step, (first,), xs, reverse=True)
    # Weight gradients: one product over all steps, after the loop.
    dz = xp.reshape(dzs.last_axis(xp, 0), (n_a, m * T))
    return {
        "dx": xp.reshape(Wax.T @ dz, (n_x, m, T)),
        "da0": da_prev,
        "dWax": dz @ xp.reshape(x, (n_x, m * T)).T,
        "dWaa": dz @ xp.reshape(previous_states(xp, a0, a), (n_a, m * T)).T,
        "dba": xp.sum(dz, axis=1, keepdims=True),
    }
