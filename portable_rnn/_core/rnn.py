"""The vanilla RNN's step and step backward (column layout, unchecked).

    a<t> = tanh(Wax @ x<t> + Waa @ a<t-1> + ba)

In `Weights` terms ``Wx = Wax``, ``Wa = Waa``, ``b = ba`` (one block: ``G = 1``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._backend.seam import elementwise
from .sequence import Cell, Weights
from .spec import RNN

__all__ = ["CELL", "Carry", "Step", "activate", "step", "step_backward", "tanh_grad"]


class Carry(NamedTuple):
    """The state carried from step to step."""

    a: Any  #: (n_a, m)


class Step(NamedTuple):
    """The values of one step."""

    a: Any  #: (n_a, m)


@elementwise
def activate(xp, xw, wa):
    """``tanh(xw + wa)``: the new hidden state from the input and recurrent parts."""
    return xp.tanh(xw + wa)


@elementwise
def tanh_grad(xp, da, a):
    """``da * (1 - a**2)``: the gradient at ``z`` of ``a = tanh(z)``."""
    return da * (1.0 - a * a)


def step(xp, w: Weights, xw, carry: Carry):
    """``a<t> = tanh(xw + Waa @ a<t-1>)``, where ``xw = Wax @ x<t> + ba``."""
    a = activate(xp, xw, w.Wa @ carry.a)
    return Carry(a), Step(a)


def step_backward(xp, w: Weights, dcarry: Carry, saved, prev):
    """Gradient at the pre-activation (``(dz,)``), and at ``a<t-1>``, of one step."""
    (a,) = saved
    dz = tanh_grad(xp, dcarry.a, a)
    return Carry(w.WaT @ dz), (dz,)


#: the backward step reads the hidden state of its step only
CELL = Cell(RNN, Carry, Step, step, step_backward, ("a",), ())
