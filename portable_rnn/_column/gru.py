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

from typing import NamedTuple

from .._backend.seam import snapshot, zeros_like_state
from .._core import gru as core
from .._core import sequence
from .._core.activations import softmax
from .._core.sequence import zero_padded
from .._core.spec import GRU, check_flag
from .._validate import Dims, check_arrays, float32_inside
from .caches import (
    StepCaches,
    check_da,
    in_time_order,
    run_backward,
    run_forward,
    sequence_caches,
)
from .checks import check_inputs, check_sequence, check_state, column_params

__all__ = ["gru_backward", "gru_cell_backward", "gru_cell_forward", "gru_forward"]


class GRUCellCache(NamedTuple):
    """What `gru_cell_forward` caches for `gru_cell_backward`."""

    a_next: object
    a_prev: object
    rt: object
    zt: object
    nt: object
    hnt: object
    xt: object
    parameters: object


# -- cell -------------------------------------------------------------------


@float32_inside(returns_cache=True)
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
    p = column_params(GRU, parameters)
    xp = check_arrays({"xt": xt, "a_prev": a_prev, **p})
    dims = Dims()
    check_inputs(dims, GRU, "xt", xt, "n_x m", p)
    check_state(dims, "a_prev", a_prev, "n_a m")
    n_a = dims["n_a"]
    W, b = sequence.stack_gates(xp, GRU, p)
    xw = W[:, n_a:] @ xt + b
    s = core.activate(xp, xw, W[:, :n_a] @ a_prev, p["bhn"], a_prev, n_a)
    yt_pred = softmax(xp, p["Wy"] @ s.a + p["by"], axis=0) if "Wy" in p else None
    return s.a, yt_pred, GRUCellCache(s.a, a_prev, s.r, s.z, s.n, s.hn, xt, parameters)


@float32_inside(caches="cache")
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
    if not (isinstance(cache, (tuple, list)) and len(cache) == len(GRUCellCache._fields)):
        raise TypeError(
            f"cache must be the ({', '.join(GRUCellCache._fields)}) tuple of gru_cell_forward"
        )
    *arrays, parameters = cache
    p = column_params(GRU, parameters, "cache[7] (parameters)")
    names = [f"cache[{k}] ({field})" for k, field in enumerate(GRUCellCache._fields[:-1])]
    named = dict(zip(names, arrays, strict=True))
    xp = check_arrays({"da_next": da_next, **named, **p})
    dims = Dims()
    check_inputs(dims, GRU, names[-1], named[names[-1]], "n_x m", p)
    for name in names[:-1]:
        dims.check(name, named[name], "n_a m")
    dims.check("da_next", da_next, "n_a m")
    n_a = dims["n_a"]
    _, a_prev, r, z, n, hn, xt = arrays
    dxw, dha, direct = core.pre_activation_grads(xp, da_next, r, z, n, hn, a_prev)
    W, _ = sequence.stack_gates(xp, GRU, p)
    grads = {
        "dxt": W[:, n_a:].T @ dxw,
        "da_prev": W[:, :n_a].T @ dha + direct,
    }
    dW = xp.concat([dha @ a_prev.T, dxw @ xt.T], axis=1)
    db = xp.sum(dxw, axis=1, keepdims=True)
    dbhn = xp.sum(dha[2 * n_a :, :], axis=1, keepdims=True)
    dw = sequence.Weights(None, None, db, W=dW, bhn=dbhn)
    grads.update(sequence.unfuse(xp, GRU, dw, prefix="d"))
    return grads


# -- sequence ---------------------------------------------------------------


class _StepCaches(StepCaches):
    forward = "gru_forward"

    def cell_cache(self, t: int) -> GRUCellCache:
        a_prev = self.init.a if t == 0 else self.states[t - 1].a
        s = self.states[t]
        return GRUCellCache(s.a, a_prev, s.r, s.z, s.n, s.hn, self.x[:, :, t], self.parameters)


@float32_inside(returns_cache=True)
def gru_forward(x, a0, parameters, *, lengths=None, reverse=False):
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
    caches : tuple
        ``(step_caches, x)`` for `gru_backward`; ``step_caches[t]`` is the cache
        `gru_cell_forward` would return at step ``t``. Otherwise opaque.
        The backward gives the gradients of this forward as it ran: the outputs
        share no memory with the caches, and changing ``x``, ``a0`` or the parameters
        afterwards does not change them (see "Aliasing" in the conventions).
    """
    reverse = check_flag("reverse", reverse)
    xp, p, dims, lengths, mask = check_sequence(GRU, x, a0, parameters, lengths=lengths)
    if a0 is None:
        a0 = zeros_like_state(xp, (dims["n_a"], dims["m"]), x)
    else:
        a0 = snapshot(xp, a0)
    init = core.Carry(a0)
    w = sequence.fuse(xp, GRU, p, keep=True)
    x_run, mask_run, states = run_forward(xp, core.CELL, w, x, init, mask, reverse)
    a = in_time_order(xp, zero_padded(xp, states.last_axis(xp, "a"), mask_run), reverse)
    y = zero_padded(xp, sequence.outputs(xp, p["Wy"], p["by"], a), mask) if "Wy" in p else None
    steps = _StepCaches(x_run, init, states, w, parameters, lengths=lengths, reverse=reverse)
    return a, y, (steps, x)


@float32_inside(caches="caches")
def gru_backward(da, caches, *, lengths=None):
    """Backpropagation through time for the GRU.

    Parameters
    ----------
    da : array, shape (n_a, m, T_x)
        Gradient of the loss with respect to every hidden state ``a<t>``.
    caches : tuple
        The caches returned by `gru_forward`.
    lengths : array of int, shape (m,), or list of int, optional, keyword-only
        Read from the caches; if given, it must equal the forward's. With lengths, the
        gradients ``da`` at padded steps are ignored and ``dx`` is zero there.

    Returns
    -------
    gradients : dict
        ``dx`` (n_x, m, T_x), ``da0`` (n_a, m); ``dWr``, ``dWz``, ``dWn``
        (n_a, n_a + n_x); ``dbr``, ``dbz``, ``dbn``, ``dbhn`` (n_a, 1); summed
        over all steps.
    """
    run = sequence_caches(caches, _StepCaches)
    if run is None:
        raise TypeError(
            "caches must be the caches returned by gru_forward (the GRU has no seed-style "
            "list of cell caches)"
        )
    xp = check_da(da, run)
    g = run_backward(xp, core.CELL, run, da, lengths, "gru_backward", "gru_forward")
    return {"dx": g.dx, "da0": g.dinit.a, **sequence.unfuse(xp, GRU, g.dw, prefix="d")}
