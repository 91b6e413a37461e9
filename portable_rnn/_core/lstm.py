"""The LSTM's step and step backward (column layout, unchecked).

With ``z`` the pre-activations of the four gates, stacked in the order f, i, o, c
(`portable_rnn._core.spec.LSTM`: the three sigmoid gates first, so one sigmoid over the
first ``3 n_a`` rows serves them all)::

    f, i, o = sigmoid(z_f), sigmoid(z_i), sigmoid(z_o);   cc = tanh(z_c)
    c<t> = f * c<t-1> + i * cc;   a<t> = o * tanh(c<t>)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._backend.seam import elementwise
from .activations import sigmoid
from .sequence import Cell, Weights
from .spec import LSTM

__all__ = ["CELL", "Carry", "Step", "activate", "pre_activation_grads", "step", "step_backward"]


class Carry(NamedTuple):
    """The state carried from step to step."""

    a: Any  #: hidden state (n_a, m)
    c: Any  #: cell state (n_a, m)


class Step(NamedTuple):
    """The values of one step, each ``(n_a, m)``."""

    f: Any  #: forget gate
    i: Any  #: input (update) gate
    cc: Any  #: candidate cell state
    o: Any  #: output gate
    c: Any  #: cell state
    tc: Any  #: tanh(c)
    a: Any  #: hidden state


def activate(xp, z, c_prev, n_a: int) -> Step:
    """Gates and states of one step from the pre-activations ``z (4 n_a, m)``."""
    s = sigmoid(xp, z[: 3 * n_a, :])  # f, i, o in one pass
    f, i, o = s[:n_a, :], s[n_a : 2 * n_a, :], s[2 * n_a :, :]
    cc, c, tc, a = _cell(xp, z[3 * n_a :, :], f, i, o, c_prev)
    return Step(f, i, cc, o, c, tc, a)


@elementwise
def _cell(xp, zc, f, i, o, c_prev):
    """Candidate ``cc``, cell state ``c``, ``tanh(c)`` and hidden state ``a`` of one step."""
    cc = xp.tanh(zc)
    c = f * c_prev + i * cc
    tc = xp.tanh(c)
    return cc, c, tc, o * tc


def pre_activation_grads(xp, da, dc, f, i, cc, o, c_prev, tc):
    """Pre-activation gradient ``dz (4 n_a, m)`` and ``dc_prev`` of one step.

    ``da`` and ``dc`` are the total gradients at ``a<t>`` and ``c<t>`` (from
    above and from step ``t + 1``).
    """
    *dz, dc_prev = _gate_grads(xp, da, dc, f, i, cc, o, c_prev, tc)
    return xp.concat(dz, axis=0), dc_prev


@elementwise
def _gate_grads(xp, da, dc, f, i, cc, o, c_prev, tc):
    """The four gates' pre-activation gradients (stacked order f, i, o, c), then ``dc_prev``."""
    dc = dc + da * o * (1.0 - tc * tc)
    return (
        dc * c_prev * f * (1.0 - f),
        dc * cc * i * (1.0 - i),
        da * tc * o * (1.0 - o),
        dc * i * (1.0 - cc * cc),
        dc * f,
    )


def step(xp, w: Weights, xw, carry: Carry):
    """One step from the input part ``xw (4 n_a, m)`` and the previous carry."""
    values = activate(xp, xw + w.Wa @ carry.a, carry.c, carry.a.shape[0])
    return Carry(values.a, values.c), values


def step_backward(xp, w: Weights, dcarry: Carry, saved, prev):
    """``(da<t-1>, dc<t-1>)`` and ``(dz,)`` of one step; ``saved = (f, i, cc, o, tc)``."""
    f, i, cc, o, tc = saved
    (c_prev,) = prev
    dz, dc_prev = pre_activation_grads(xp, dcarry.a, dcarry.c, f, i, cc, o, c_prev, tc)
    return Carry(w.WaT @ dz, dc_prev), (dz,)


#: the backward step reads f, i, cc, o, tanh(c) of its step, and the cell state before it
CELL = Cell(LSTM, Carry, Step, step, step_backward, ("f", "i", "cc", "o", "tc"), ("c",))
