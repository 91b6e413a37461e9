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

from ._activations import _sigmoid, _softmax
from ._backend import elementwise, time_loop, zeros_like_state
from ._sequence import (
    ListSteps,
    StackedSteps,
    StepCaches,
    outputs,
    previous,
    previous_states,
    project,
    select,
    steps_and_x,
    time_major,
    zip_steps,
)
from ._validate import Dims, check_arrays, get_params

__all__ = ["lstm_backward", "lstm_cell_backward", "lstm_cell_forward", "lstm_forward"]

GATES = ("f", "i", "c", "o")  # the order of the parameter and gradient dicts
# The order of the stacked weights: the three sigmoid gates first, so that one
# sigmoid over the first 3 n_a rows of the pre-activations serves them all.
FUSED = ("f", "i", "o", "c")
LSTM_KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "Wy", "by")
OUTPUT_KEYS = ("Wy", "by")  # the output layer is optional: without it y is None


def _check(dims: Dims, p: dict) -> None:
    for g in GATES:
        dims.check(f"W{g}", p[f"W{g}"], "n_a n_a+n_x")
    for g in GATES:
        dims.check(f"b{g}", p[f"b{g}"], "n_a 1")
    if "Wy" in p:
        dims.check("Wy", p["Wy"], "n_y n_a")
        dims.check("by", p["by"], "n_y 1")


def _check_inputs(dims: Dims, x_name: str, x, letters: str, p: dict) -> None:
    """Check ``x``/``xt``, then the parameters against it.

    ``n_a`` is read from the rows of ``Wf``, and the gate weights must have
    ``n_a + n_x`` columns, so that the error names the weight that is wrong.
    """
    dims.check(x_name, x, letters)
    Wf = p["Wf"]
    if getattr(Wf, "ndim", None) == 2:
        dims.define("n_a", Wf.shape[0], "Wf")
        dims.define("n_a+n_x", dims["n_a"] + dims["n_x"], f"n_a from Wf and n_x from {x_name}")
    _check(dims, p)


def _fused(xp, p):
    """Stacked gate weights ``W (4 n_a, n_a + n_x)`` and biases ``b (4 n_a, 1)``."""
    W = xp.concat([p[f"W{g}"] for g in FUSED], axis=0)
    b = xp.concat([p[f"b{g}"] for g in FUSED], axis=0)
    return W, b


# -- the math, unchecked, shared by the cell and the sequence functions -------


def _step(xp, z, c_prev, n_a):
    """Gates and states of one step from the pre-activations ``z (4 n_a, m)``."""
    s = _sigmoid(xp, z[: 3 * n_a, :])  # f, i, o in one pass
    f, i, o = s[:n_a, :], s[n_a : 2 * n_a, :], s[2 * n_a :, :]
    cc, c, tc, a = _cell(xp, z[3 * n_a :, :], f, i, o, c_prev)
    return f, i, cc, o, c, tc, a


@elementwise
def _cell(xp, zc, f, i, o, c_prev):
    """Candidate ``cc``, cell state ``c``, ``tanh(c)`` and hidden state ``a`` of one step."""
    cc = xp.tanh(zc)
    c = f * c_prev + i * cc
    tc = xp.tanh(c)
    return cc, c, tc, o * tc


def _step_backward(xp, da, dc, f, i, cc, o, c_prev, tc):
    """Pre-activation gradient ``dz (4 n_a, m)`` and ``dc_prev`` of one step.

    ``da`` and ``dc`` are the total gradients at ``a<t>`` and ``c<t>`` (from
    above and from step ``t + 1``).
    """
    *dz, dc_prev = _gate_grads(xp, da, dc, f, i, cc, o, c_prev, tc)
    return xp.concat(dz, axis=0), dc_prev


@elementwise
def _gate_grads(xp, da, dc, f, i, cc, o, c_prev, tc):
    """The four gates' pre-activation gradients (`FUSED` order), then ``dc_prev``."""
    dc = dc + da * o * (1.0 - tc * tc)
    return (
        dc * c_prev * f * (1.0 - f),
        dc * cc * i * (1.0 - i),
        da * tc * o * (1.0 - o),
        dc * i * (1.0 - cc * cc),
        dc * f,
    )


def _split_gate_grads(xp, dW, db, n_a):
    """``{"dWf": ..., "dbf": ...}`` (f, i, c, o) from stacked gradients (`FUSED` order)."""
    grads = {}
    for g in GATES:
        k = FUSED.index(g)
        grads[f"dW{g}"] = dW[k * n_a : (k + 1) * n_a, :]
        grads[f"db{g}"] = db[k * n_a : (k + 1) * n_a, :]
    return grads


def _forward(xp, x, a0, c0, W, b):
    """Run the recurrence with stacked weights ``W (4 n_a, n_a + n_x)``, ``b (4 n_a, 1)``.

    Returns the per-step tuples ``(f, i, cc, o, c, tanh(c), a)`` (`ListSteps` or
    `StackedSteps`) and the stacked ``a`` and ``c``, each ``(n_a, m, T_x)``.
    """
    n_a = a0.shape[0]
    Wa = W[:, :n_a]

    def step(carry, x_t):
        a_prev, c_prev = carry
        out = _step(xp, x_t[0] + Wa @ a_prev, c_prev, n_a)
        return (out[6], out[4]), out

    xs = StackedSteps((project(xp, W[:, n_a:], b, x),))  # input part of every step at once
    _, states = time_loop(xp, step, (a0, c0), xs)
    return states, states.last_axis(xp, 6), states.last_axis(xp, 4)


# -- cell -------------------------------------------------------------------


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
    p = get_params(parameters, LSTM_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"xt": xt, "a_prev": a_prev, "c_prev": c_prev, **p})
    dims = Dims()
    _check_inputs(dims, "xt", xt, "n_x m", p)
    dims.check("a_prev", a_prev, "n_a m")
    dims.check("c_prev", c_prev, "n_a m")
    W, b = _fused(xp, p)
    z = W @ xp.concat([a_prev, xt], axis=0) + b
    f, i, cc, o, c_next, _, a_next = _step(xp, z, c_prev, dims["n_a"])
    yt_pred = _softmax(xp, p["Wy"] @ a_next + p["by"], axis=0) if "Wy" in p else None
    cache = (a_next, c_next, a_prev, c_prev, f, i, cc, o, xt, parameters)
    return a_next, c_next, yt_pred, cache


_CACHE_FIELDS = "(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)"


def _cell_cache(cache, name="cache"):
    if not (isinstance(cache, (tuple, list)) and len(cache) == 10):
        raise TypeError(f"{name} must be the {_CACHE_FIELDS} tuple of lstm_cell_forward")
    *arrays, parameters = cache
    return arrays, get_params(parameters, LSTM_KEYS, f"{name}[9] (parameters)", OUTPUT_KEYS)


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
    arrays, p = _cell_cache(cache)
    names = ("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot", "xt")
    named = dict(zip(names, arrays, strict=True))
    xp = check_arrays({"da_next": da_next, "dc_next": dc_next, **named, **p})
    dims = Dims()
    _check_inputs(dims, "xt", named["xt"], "n_x m", p)
    dims.check("da_next", da_next, "n_a m")
    dims.check("dc_next", dc_next, "n_a m")
    for name in names[:-1]:
        dims.check(name, named[name], "n_a m")
    n_a = dims["n_a"]
    _, c_next, a_prev, c_prev, f, i, cc, o, xt = arrays
    dz, dc_prev = _step_backward(xp, da_next, dc_next, f, i, cc, o, c_prev, xp.tanh(c_next))
    W, _ = _fused(xp, p)
    dW = dz @ xp.concat([a_prev, xt], axis=0).T
    dconcat = W.T @ dz
    grads = {"dxt": dconcat[n_a:, :], "da_prev": dconcat[:n_a, :], "dc_prev": dc_prev}
    grads.update(_split_gate_grads(xp, dW, xp.sum(dz, axis=1, keepdims=True), n_a))
    return grads


# -- sequence ---------------------------------------------------------------


def _make_step(steps, t):
    a_prev = steps.a0 if t == 0 else steps.states[t - 1][6]
    c_prev = steps.c0 if t == 0 else steps.states[t - 1][4]
    f, i, cc, o, c, _, a = steps.states[t]
    return (a, c, a_prev, c_prev, f, i, cc, o, steps.x[:, :, t], steps.parameters)


def lstm_forward(x, a0, parameters, *, c0=None):
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
    """
    p = get_params(parameters, LSTM_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"x": x, "a0": a0, "c0": c0, **p})
    dims = Dims()
    _check_inputs(dims, "x", x, "n_x m T_x", p)
    dims.require_steps("T_x", "x", x)
    shape = (dims["n_a"], dims["m"])
    for name, state in (("a0", a0), ("c0", c0)):
        if state is not None:
            dims.check(name, state, "n_a m")
    has_c0 = c0 is not None
    a0 = zeros_like_state(xp, shape, x) if a0 is None else a0
    c0 = zeros_like_state(xp, shape, x) if c0 is None else c0

    W, b = _fused(xp, p)
    states, a, c = _forward(xp, x, a0, c0, W, b)
    y = outputs(xp, p["Wy"], p["by"], a) if "Wy" in p else None
    steps = StepCaches(
        _make_step,
        len(states),
        states=states,
        a=a,
        a0=a0,
        c0=c0,
        has_c0=has_c0,
        x=x,
        parameters=parameters,
    )
    return a, y, c, (steps, x)


def _sequence_cache(caches):
    """``(states, a, a0, c0, has_c0, x, parameters)`` from our or seed-style caches."""
    steps, x = steps_and_x(caches)
    if isinstance(steps, StepCaches) and steps._make_step is _make_step:
        return steps.states, steps.a, steps.a0, steps.c0, steps.has_c0, x, steps.parameters
    # A seed-style list of lstm_cell_forward caches.
    cells = [_cell_cache(cell, f"caches[0][{t}]")[0] for t, cell in enumerate(steps)]
    first = cells[0]
    xp = check_arrays({"caches[0][0][0]": first[0]})
    # stored per step: f, i, cc, o, c, tanh(c), a
    states = ListSteps([(f, i, cc, o, c, xp.tanh(c), a) for a, c, _, _, f, i, cc, o, _ in cells])
    a = states.last_axis(xp, 6)
    return states, a, first[2], first[3], False, x, steps[0][9]


def lstm_backward(da, caches):
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
        The caches returned by `lstm_forward`.

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x), ``da0`` (n_a, m); ``dWf``, ``dWi``, ``dWc``,
        ``dWo`` (n_a, n_a + n_x); ``dbf``, ``dbi``, ``dbc``, ``dbo`` (n_a, 1);
        and ``dc0`` (n_a, m) when the forward was given ``c0``.
    """
    states, a, a0, c0, has_c0, x, parameters = _sequence_cache(caches)
    p = get_params(parameters, LSTM_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"da": da, "x": x, "a0": a0, "c0": c0, **p})
    dims = Dims()  # the caches are the reference; da is checked against them
    _check_inputs(dims, "x", x, "n_x m T_x", p)
    dims.check("a0", a0, "n_a m")
    dims.check("da", da, "n_a m T_x")
    if len(states) != dims["T_x"]:
        raise ValueError(f"caches hold {len(states)} steps but da has T_x = {dims['T_x']}")

    W, _ = _fused(xp, p)
    grads = _backward(xp, da, states, a, a0, c0, x, W)
    dW, db, dc0 = grads.pop("dW"), grads.pop("db"), grads.pop("dc0")
    grads.update(_split_gate_grads(xp, dW, db, dims["n_a"]))
    if has_c0:
        grads["dc0"] = dc0
    return grads


def _backward(xp, da, states, a, a0, c0, x, W, da_n=None, dc_n=None):
    """BPTT core with stacked weights: ``dx``, ``da0``, ``dc0``, ``dW``, ``db``.

    ``dW`` is ``(4 n_a, n_a + n_x)`` and ``db`` ``(4 n_a, 1)``, gates in `FUSED` order.
    ``da_n`` and ``dc_n`` are extra gradients at the final states (or ``None``).
    """
    n_x, m, T = x.shape
    n_a = a0.shape[0]
    Wa_T = W[:, :n_a].T

    def step(carry, x_t):
        da_next, dc_next = carry
        da_t, f, i, cc, o, tc, c_prev = x_t
        dz, dc_prev = _step_backward(xp, da_t + da_next, dc_next, f, i, cc, o, c_prev, tc)
        return (Wa_T @ dz, dc_prev), (dz,)

    zeros = zeros_like_state(xp, (n_a, m), da)
    first = (zeros if da_n is None else da_n, zeros if dc_n is None else dc_n)
    # step t: (da<t>, f, i, cc, o, tanh(c<t>), c<t-1>)
    xs = zip_steps(time_major(xp, da), select(states, (0, 1, 2, 3, 5)), previous(xp, states, 4, c0))
    (da_prev, dc_prev), dzs = time_loop(xp, step, first, xs, reverse=True)
    # Weight and input gradients: one product each over all steps, after the loop.
    dz = xp.reshape(dzs.last_axis(xp, 0), (4 * n_a, m * T))
    dWa = dz @ xp.reshape(previous_states(xp, a0, a), (n_a, m * T)).T
    dWx = dz @ xp.reshape(x, (n_x, m * T)).T
    return {
        "dx": xp.reshape(W[:, n_a:].T @ dz, (n_x, m, T)),
        "da0": da_prev,
        "dc0": dc_prev,
        "dW": xp.concat([dWa, dWx], axis=1),
        "db": xp.sum(dz, axis=1, keepdims=True),
    }
