"""GRU, column dialect: forward and hand-written backward (BPTT), PyTorch/cuDNN equations.

Dimension letters: ``n_x`` input features, ``n_a`` hidden units, ``n_y`` output
classes, ``m`` examples (one per column), ``T_x`` time steps.

Equations, for every step ``t``, with ``Wr``, ``Wz``, ``Wn`` of shape
``(n_a, n_a + n_x)`` split as ``W = [W_a | W_x]`` (hidden-state columns first,
as the LSTM's ``concat = [a<t-1>; x<t>]``)::

    r<t> = sigmoid(Wr_x @ x<t> + Wr_a @ a<t-1> + br)                reset gate
    z<t> = sigmoid(Wz_x @ x<t> + Wz_a @ a<t-1> + bz)                update gate
    n<t> = tanh(Wn_x @ x<t> + bn + r<t> * (Wn_a @ a<t-1> + bhn))    candidate
    a<t> = (1 - z<t>) * n<t> + z<t> * a<t-1>
    y<t> = softmax(Wy @ a<t> + by)                                  (per column)

``bhn`` is the hidden-side bias of the candidate, inside the reset product
(PyTorch's ``b_hn``, Keras ``reset_after=True``); the other gates need only
the sum of their two biases. Mapping, for a one-layer ``torch.nn.GRU``
(``weight_ih_l0`` rows r, z, n; ``weight_hh_l0`` likewise)::

    Wr = [weight_hh[0:H]  | weight_ih[0:H]],   br  = bias_ih[0:H]  + bias_hh[0:H]
    Wz = [weight_hh[H:2H] | weight_ih[H:2H]],  bz  = bias_ih[H:2H] + bias_hh[H:2H]
    Wn = [weight_hh[2H:]  | weight_ih[2H:]],   bn  = bias_ih[2H:], bhn = bias_hh[2H:]

Keras ``GRU(reset_after=True)``: ``kernel (n_x, 3H)`` and ``recurrent_kernel
(H, 3H)`` in gate order z, r, h, transposed; ``bias[0]`` input biases,
``bias[1]`` recurrent biases. Flax ``GRUCell``: ``ir``, ``iz``, ``in`` (input,
kernels ``(n_x, H)``) and ``hr``, ``hz``, ``hn`` (hidden, ``(H, H)``), transposed;
``br = hr.bias``, ``bz = hz.bias``, ``bn = in.bias``, ``bhn = hn.bias``.

Internally the three gate matrices are stacked, r, z, n, into ``(3 n_a, n_a + n_x)``:
one recurrent product per step, one input product for all steps before the
loop, and the weight gradients one product each after the backward loop.
"""

from __future__ import annotations

from ._activations import _sigmoid, _softmax
from ._backend import elementwise, time_loop, zeros_like_state
from ._sequence import (
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

__all__ = ["gru_backward", "gru_cell_backward", "gru_cell_forward", "gru_forward"]

GATES = ("r", "z", "n")
GRU_KEYS = ("Wr", "br", "Wz", "bz", "Wn", "bn", "bhn", "Wy", "by")
OUTPUT_KEYS = ("Wy", "by")  # the output layer is optional: without it y is None


def _check_inputs(dims: Dims, x_name: str, x, letters: str, p: dict) -> None:
    """Check ``x``/``xt``, then the parameters against it (``n_a`` from ``Wr``)."""
    dims.check(x_name, x, letters)
    Wr = p["Wr"]
    if getattr(Wr, "ndim", None) == 2:
        dims.define("n_a", Wr.shape[0], "Wr")
        dims.define("n_a+n_x", dims["n_a"] + dims["n_x"], f"n_a from Wr and n_x from {x_name}")
    for g in GATES:
        dims.check(f"W{g}", p[f"W{g}"], "n_a n_a+n_x")
    for g in GATES:
        dims.check(f"b{g}", p[f"b{g}"], "n_a 1")
    dims.check("bhn", p["bhn"], "n_a 1")
    if "Wy" in p:
        dims.check("Wy", p["Wy"], "n_y n_a")
        dims.check("by", p["by"], "n_y 1")


def _fused(xp, p):
    """Stacked ``W (3 n_a, n_a + n_x)`` and input-side biases ``b (3 n_a, 1)``."""
    W = xp.concat([p[f"W{g}"] for g in GATES], axis=0)
    b = xp.concat([p[f"b{g}"] for g in GATES], axis=0)
    return W, b


# -- the math, unchecked, shared by the cell, sequence and dialect functions ----------


def _step(xp, xw, ha, bhn, a_prev, n_a):
    """One step from ``xw = W_x @ x + b`` and ``ha = W_a @ a_prev`` (both ``(3 n_a, m)``).

    Returns ``(r, z, n, hn, a)`` where ``hn = W_na @ a_prev + bhn``.
    """
    rz = _sigmoid(xp, xw[: 2 * n_a, :] + ha[: 2 * n_a, :])  # r and z in one pass
    r, z = rz[:n_a, :], rz[n_a:, :]
    n, hn, a = _cell(xp, xw[2 * n_a :, :], ha[2 * n_a :, :], bhn, r, z, a_prev)
    return r, z, n, hn, a


@elementwise
def _cell(xp, xwn, han, bhn, r, z, a_prev):
    """Candidate ``n``, ``hn = W_na @ a_prev + bhn`` and the new state of one step."""
    hn = han + bhn
    n = xp.tanh(xwn + r * hn)
    return n, hn, (1.0 - z) * n + z * a_prev


def _step_backward(xp, da, r, z, n, hn, a_prev):
    """Gradients at ``xw`` and at ``ha`` (each ``(3 n_a, m)``), and the direct
    part of ``da_prev`` (through ``z * a_prev``), for total gradient ``da``."""
    drp, dzp, dn, dhn, direct = _gate_grads(xp, da, r, z, n, hn, a_prev)
    dxw = xp.concat([drp, dzp, dn], axis=0)
    dha = xp.concat([drp, dzp, dhn], axis=0)
    return dxw, dha, direct


@elementwise
def _gate_grads(xp, da, r, z, n, hn, a_prev):
    """Gradients at the pre-activations of r, z and n, at ``hn``, and ``da * z``."""
    dn = da * (1.0 - z) * (1.0 - n * n)  # at n's pre-activation
    dzp = da * (a_prev - n) * z * (1.0 - z)
    return dn * hn * r * (1.0 - r), dzp, dn, dn * r, da * z


def _forward(xp, x, a0, W, b, bhn):
    """Run the recurrence; per-step tuples ``(r, z, n, hn, a)`` and the stacked ``a``."""
    n_a = a0.shape[0]
    Wa = W[:, :n_a]

    def step(carry, x_t):
        out = _step(xp, x_t[0], Wa @ carry[0], bhn, carry[0], n_a)
        return (out[4],), out

    xs = StackedSteps((project(xp, W[:, n_a:], b, x),))
    _, states = time_loop(xp, step, (a0,), xs)
    return states, states.last_axis(xp, 4)


def _backward(xp, da, states, a, a0, x, W, da_n=None):
    """BPTT core: ``dx``, ``da0``, ``dW (3 n_a, n_a + n_x)``, ``db (3 n_a, 1)``, ``dbhn``.

    ``da_n`` is an extra gradient at the final state (or ``None``).
    """
    n_x, m, T = x.shape
    n_a = a0.shape[0]
    Wa_T = W[:, :n_a].T

    def step(carry, x_t):
        da_t, r, z, n, hn, prev = x_t
        dxw, dha, direct = _step_backward(xp, da_t + carry[0], r, z, n, hn, prev)
        return (Wa_T @ dha + direct,), (dxw, dha)

    first = zeros_like_state(xp, (n_a, m), da) if da_n is None else da_n
    # step t: (da<t>, r, z, n, hn, a<t-1>)
    xs = zip_steps(time_major(xp, da), select(states, (0, 1, 2, 3)), previous(xp, states, 4, a0))
    (da_prev,), ys = time_loop(xp, step, (first,), xs, reverse=True)
    dxw = xp.reshape(ys.last_axis(xp, 0), (3 * n_a, m * T))
    dha = xp.reshape(ys.last_axis(xp, 1), (3 * n_a, m * T))
    dWa = dha @ xp.reshape(previous_states(xp, a0, a), (n_a, m * T)).T
    dWx = dxw @ xp.reshape(x, (n_x, m * T)).T
    return {
        "dx": xp.reshape(W[:, n_a:].T @ dxw, (n_x, m, T)),
        "da0": da_prev,
        "dW": xp.concat([dWa, dWx], axis=1),
        "db": xp.sum(dxw, axis=1, keepdims=True),
        "dbhn": xp.sum(dha[2 * n_a :, :], axis=1, keepdims=True),
    }


def _split_grads(dW, db, dbhn, n_a):
    grads = {}
    for k, g in enumerate(GATES):
        grads[f"dW{g}"] = dW[k * n_a : (k + 1) * n_a, :]
        grads[f"db{g}"] = db[k * n_a : (k + 1) * n_a, :]
    grads["dbhn"] = dbhn
    return grads


# -- cell -------------------------------------------------------------------


def gru_cell_forward(xt, a_prev, parameters):
    """One step of the GRU (PyTorch/cuDNN equations, see the module docs).

    Parameters
    ----------
    xt : array, shape (n_x, m)
        Input at this time step, one example per column.
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    parameters : dict
        ``Wr``, ``Wz``, ``Wn`` (n_a, n_a + n_x) acting on ``[a_prev; xt]``;
        ``br``, ``bz``, ``bn``, ``bhn`` (n_a, 1); ``Wy`` (n_y, n_a); ``by`` (n_y, 1).
        The output layer (``Wy``, ``by``) may be left out, both together;
        the predictions are then ``None``.

    Returns
    -------
    a_next : array, shape (n_a, m)
        ``(1 - z) * n + z * a_prev``.
    yt_pred : array, shape (n_y, m)
        ``softmax(Wy @ a_next + by)``, per column.
    cache : tuple
        ``(a_next, a_prev, rt, zt, nt, hnt, xt, parameters)`` for `gru_cell_backward`,
        where ``hnt = Wn_a @ a_prev + bhn``.

    Raises
    ------
    TypeError
        Arrays of different backends, non-floating or mixed dtypes.
    ValueError
        Wrong shapes, arrays on different devices.
    KeyError
        A missing parameter.
    """
    p = get_params(parameters, GRU_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"xt": xt, "a_prev": a_prev, **p})
    dims = Dims()
    _check_inputs(dims, "xt", xt, "n_x m", p)
    dims.check("a_prev", a_prev, "n_a m")
    n_a = dims["n_a"]
    W, b = _fused(xp, p)
    xw = W[:, n_a:] @ xt + b
    r, z, n, hn, a_next = _step(xp, xw, W[:, :n_a] @ a_prev, p["bhn"], a_prev, n_a)
    yt_pred = _softmax(xp, p["Wy"] @ a_next + p["by"], axis=0) if "Wy" in p else None
    return a_next, yt_pred, (a_next, a_prev, r, z, n, hn, xt, parameters)


def gru_cell_backward(da_next, cache):
    """Backward pass of one GRU step.

    Parameters
    ----------
    da_next : array, shape (n_a, m)
        Gradient of the loss with respect to ``a_next``.
    cache : tuple
        The cache returned by `gru_cell_forward`.

    Returns
    -------
    gradients : dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m); ``dWr``, ``dWz``, ``dWn``
        (n_a, n_a + n_x); ``dbr``, ``dbz``, ``dbn``, ``dbhn`` (n_a, 1).
    """
    if not (isinstance(cache, (tuple, list)) and len(cache) == 8):
        raise TypeError(
            "cache must be the (a_next, a_prev, rt, zt, nt, hnt, xt, parameters) "
            "tuple of gru_cell_forward"
        )
    *arrays, parameters = cache
    p = get_params(parameters, GRU_KEYS, "cache[7] (parameters)", OUTPUT_KEYS)
    names = ("a_next", "a_prev", "rt", "zt", "nt", "hnt", "xt")
    named = dict(zip(names, arrays, strict=True))
    xp = check_arrays({"da_next": da_next, **named, **p})
    dims = Dims()
    _check_inputs(dims, "xt", named["xt"], "n_x m", p)
    for name in names[:-1]:
        dims.check(name, named[name], "n_a m")
    dims.check("da_next", da_next, "n_a m")
    n_a = dims["n_a"]
    _, a_prev, r, z, n, hn, xt = arrays
    dxw, dha, direct = _step_backward(xp, da_next, r, z, n, hn, a_prev)
    W, _ = _fused(xp, p)
    grads = {
        "dxt": W[:, n_a:].T @ dxw,
        "da_prev": W[:, :n_a].T @ dha + direct,
    }
    dW = xp.concat([dha @ a_prev.T, dxw @ xt.T], axis=1)
    db = xp.sum(dxw, axis=1, keepdims=True)
    dbhn = xp.sum(dha[2 * n_a :, :], axis=1, keepdims=True)
    grads.update(_split_grads(dW, db, dbhn, n_a))
    return grads


# -- sequence ---------------------------------------------------------------


def _make_step(steps, t):
    a_prev = steps.a0 if t == 0 else steps.states[t - 1][4]
    r, z, n, hn, a = steps.states[t]
    return (a, a_prev, r, z, n, hn, steps.x[:, :, t], steps.parameters)


def gru_forward(x, a0, parameters):
    """Run the GRU over a whole sequence.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs of every time step (``T_x >= 1``).
    a0 : array, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros (of ``x``'s dtype and device).
    parameters : dict
        As for `gru_cell_forward`.
        The output layer (``Wy``, ``by``) may be left out, both together;
        the predictions are then ``None``.

    Returns
    -------
    a : array, shape (n_a, m, T_x)
        Hidden state of every step.
    y : array, shape (n_y, m, T_x)
        Softmax prediction of every step.
    caches : tuple
        ``(step_caches, x)`` for `gru_backward`; ``step_caches[t]`` is the cache
        `gru_cell_forward` would return at step ``t``. Otherwise opaque.
    """
    p = get_params(parameters, GRU_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"x": x, "a0": a0, **p})
    dims = Dims()
    _check_inputs(dims, "x", x, "n_x m T_x", p)
    dims.require_steps("T_x", "x", x)
    if a0 is None:
        a0 = zeros_like_state(xp, (dims["n_a"], dims["m"]), x)
    else:
        dims.check("a0", a0, "n_a m")
    W, b = _fused(xp, p)
    states, a = _forward(xp, x, a0, W, b, p["bhn"])
    y = outputs(xp, p["Wy"], p["by"], a) if "Wy" in p else None
    steps = StepCaches(
        _make_step, len(states), states=states, a=a, a0=a0, x=x, parameters=parameters
    )
    return a, y, (steps, x)


def gru_backward(da, caches):
    """Backpropagation through time for the GRU.

    Parameters
    ----------
    da : array, shape (n_a, m, T_x)
        Gradient of the loss with respect to every hidden state ``a<t>``.
    caches : tuple
        The caches returned by `gru_forward`.

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x), ``da0`` (n_a, m); ``dWr``, ``dWz``, ``dWn``
        (n_a, n_a + n_x); ``dbr``, ``dbz``, ``dbn``, ``dbhn`` (n_a, 1); summed
        over all steps.
    """
    steps, x = steps_and_x(caches)
    if not (isinstance(steps, StepCaches) and steps._make_step is _make_step):
        raise TypeError("caches must be the caches returned by gru_forward")
    p = get_params(steps.parameters, GRU_KEYS, optional=OUTPUT_KEYS)
    xp = check_arrays({"da": da, "x": x, "a0": steps.a0, **p})
    dims = Dims()
    _check_inputs(dims, "x", x, "n_x m T_x", p)
    dims.check("a0", steps.a0, "n_a m")
    dims.check("da", da, "n_a m T_x")
    W, _ = _fused(xp, p)
    g = _backward(xp, da, steps.states, steps.a, steps.a0, x, W)
    grads = {"dx": g["dx"], "da0": g["da0"]}
    grads.update(_split_grads(g["dW"], g["db"], g["dbhn"], dims["n_a"]))
    return grads
