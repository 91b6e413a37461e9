"""The GRU's step and step backward (column layout, unchecked; PyTorch/cuDNN equations).

With ``xw = W_x @ x<t> + b`` and ``ha = W_a @ a<t-1>`` (both ``(3 n_a, m)``, gates r, z, n)::

    r, z = sigmoid(xw_r + ha_r), sigmoid(xw_z + ha_z)
    n = tanh(xw_n + r * (ha_n + bhn));   a<t> = (1 - z) * n + z * a<t-1>
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._backend.seam import elementwise
from .activations import sigmoid
from .sequence import Cell, Weights
from .spec import GRU

__all__ = ["CELL", "Carry", "Step", "activate", "pre_activation_grads", "step", "step_backward"]


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


def step(xp, w: Weights, xw, carry: Carry):
    """One step from the input part ``xw (3 n_a, m)`` and the previous carry."""
    a_prev = carry.a
    values = activate(xp, xw, w.Wa @ a_prev, w.bhn, a_prev, a_prev.shape[0])
    return Carry(values.a), values


def step_backward(xp, w: Weights, dcarry: Carry, saved, prev):
    """``da<t-1>`` and ``(dxw, dha)`` of one step; ``saved = (r, z, n, hn)``."""
    r, z, n, hn = saved
    (a_prev,) = prev
    dxw, dha, direct = pre_activation_grads(xp, dcarry.a, r, z, n, hn, a_prev)
    return Carry(w.WaT @ dha + direct), (dxw, dha)


#: the backward step reads r, z, n, hn of its step, and the hidden state before it
CELL = Cell(GRU, Carry, Step, step, step_backward, ("r", "z", "n", "hn"), ("a",))
