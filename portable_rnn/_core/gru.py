"""The GRU's step and step backward (column layout, unchecked; PyTorch/cuDNN equations).

With ``xw = W_x @ x<t> + b`` and ``ha = W_a @ a<t-1>`` (both ``(3 n_a, m)``, gates r, z, n)::

    r, z = sigmoid(xw_r + ha_r), sigmoid(xw_z + ha_z)
    n = tanh(xw_n + r * (ha_n + bhn));   a<t> = (1 - z) * n + z * a<t-1>

With ``Options.reset_after`` off (Keras ``reset_after=False``, ONNX's
``linear_before_reset=0``) the reset gate acts before the candidate's recurrent product:
``n = tanh(xw_n + W_na @ (r * a<t-1>) + bhn)``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from .._backend.seam import elementwise
from .activations import sigmoid
from .sequence import Cell, Weights
from .spec import CLASSIC, GRU, Options

__all__ = [
    "CELL",
    "Carry",
    "Step",
    "StepBefore",
    "activate",
    "cell",
    "pre_activation_grads",
    "step",
    "step_backward",
]


class Carry(NamedTuple):
    """The state carried from step to step."""

    a: Any  #: (n_a, m)


class Step(NamedTuple):
    """The values of one step, each ``(n_a, m)``."""

    r: Any  #: reset gate
    z: Any  #: update gate
    n: Any  #: candidate
    hn: Any  #: W_na @ a<t-1> + bhn
    a: Any  #: hidden state


class StepBefore(NamedTuple):
    """The values of one step with the reset before the product, each ``(n_a, m)``."""

    r: Any  #: reset gate
    z: Any  #: update gate
    n: Any  #: candidate
    hn: Any  #: W_na @ (r * a<t-1>) + bhn
    a: Any  #: hidden state
    ra: Any  #: r * a<t-1>


def activate(xp, xw, ha, bhn, a_prev, n_a: int) -> Step:
    """One step from ``xw = W_x @ x + b`` and ``ha = W_a @ a_prev`` (both ``(3 n_a, m)``)."""
    rz = sigmoid(xp, xw[: 2 * n_a, :] + ha[: 2 * n_a, :])  # r and z in one pass
    r, z = rz[:n_a, :], rz[n_a:, :]
    n, hn, a = _cell(xp, xw[2 * n_a :, :], ha[2 * n_a :, :], bhn, r, z, a_prev)
    return Step(r, z, n, hn, a)


@elementwise
def _cell(xp, xwn, han, bhn, r, z, a_prev):
    """Candidate ``n``, ``hn = W_na @ a_prev + bhn`` and the new state of one step."""
    hn = han + bhn
    n = xp.tanh(xwn + r * hn)
    return n, hn, (1.0 - z) * n + z * a_prev


def pre_activation_grads(xp, da, r, z, n, hn, a_prev):
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


def step(xp, w: Weights, xw, carry: Carry, options: Options = CLASSIC):
    """One step from the input part ``xw (3 n_a, m)`` and the previous carry."""
    a_prev = carry.a
    n_a = a_prev.shape[0]
    if options.reset_after:
        values = activate(xp, xw, w.Wa @ a_prev, w.bhn, a_prev, n_a)
        return Carry(values.a), values
    rz = sigmoid(xp, xw[: 2 * n_a, :] + w.Wa[: 2 * n_a, :] @ a_prev)
    r, z = rz[:n_a, :], rz[n_a:, :]
    ra = r * a_prev
    hn = w.Wa[2 * n_a :, :] @ ra + w.bhn
    n = xp.tanh(xw[2 * n_a :, :] + hn)
    a = (1.0 - z) * n + z * a_prev
    return Carry(a), StepBefore(r, z, n, hn, a, ra)


def step_backward(xp, w: Weights, dcarry: Carry, saved, prev, options: Options = CLASSIC):
    """``da<t-1>`` and ``(dxw, dha)`` of one step; ``saved = (r, z, n, hn)`` (and ``ra``).

    With the reset before the product, ``dha``'s candidate block is the gradient at
    ``W_na @ (r * a<t-1>)``, whose weight gradient reads ``ra`` (`_finish_reset_before`).
    """
    da = dcarry.a
    (a_prev,) = prev
    if options.reset_after:
        r, z, n, hn = saved
        dxw, dha, direct = pre_activation_grads(xp, da, r, z, n, hn, a_prev)
        return Carry(w.WaT @ dha + direct), (dxw, dha)
    r, z, n, _, _ = saved
    n_a = a_prev.shape[0]
    dn = da * (1.0 - z) * (1.0 - n * n)
    dzp = da * (a_prev - n) * z * (1.0 - z)
    dra = w.WaT[:, 2 * n_a :] @ dn  # at r * a<t-1>
    drp = dra * a_prev * r * (1.0 - r)
    drz = xp.concat([drp, dzp], axis=0)
    da_prev = w.WaT[:, : 2 * n_a] @ drz + dra * r + da * z
    dpre = xp.concat([drz, dn], axis=0)  # at xw and at the recurrent products alike
    return Carry(da_prev), (dpre, dpre)


def _finish_reset_before(xp, w: Weights, dw: Weights, dpre, states, prev, init) -> Weights:
    """The candidate block of ``dWa`` reads ``r * a<t-1>``, not ``a<t-1>``."""
    n_a = w.Wa.shape[1]
    dA = dpre.last_axis(xp, 1)
    _, m, T = dA.shape
    dN = xp.reshape(dA[2 * n_a :, :, :], (n_a, m * T))
    RA = xp.reshape(states.last_axis(xp, "ra"), (n_a, m * T))
    return dw._replace(Wa=xp.concat([dw.Wa[: 2 * n_a, :], dN @ RA.T], axis=0))


@functools.cache
def cell(options: Options) -> Cell:
    """The GRU's math for ``options`` (one object per variant: a static of JAX's caches)."""
    bound = {"options": options}
    fwd, bwd = functools.partial(step, **bound), functools.partial(step_backward, **bound)
    # the backward step reads r, z, n, hn (and ra) of its step, and the hidden state before it
    saved = ("r", "z", "n", "hn") if options.reset_after else ("r", "z", "n", "hn", "ra")
    finish = None if options.reset_after else _finish_reset_before
    kind = Step if options.reset_after else StepBefore
    return Cell(GRU, Carry, kind, fwd, bwd, saved, ("a",), options, pre=2, finish=finish)


#: the GRU of PyTorch and cuDNN (reset after the recurrent product)
CELL = cell(CLASSIC)
