"""The vanilla RNN's step and step backward (column layout, unchecked).

    a<t> = tanh(Wax @ x<t> + Waa @ a<t-1> + ba)      (or relu: ``Options.nonlinearity``)

In `Weights` terms ``Wx = Wax``, ``Wa = Waa``, ``b = ba`` (one block: ``G = 1``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from .._backend.seam import elementwise
from .sequence import Cell, Weights
from .spec import CLASSIC, RNN, Options

__all__ = [
    "CELL",
    "Carry",
    "Step",
    "activate",
    "cell",
    "relu",
    "relu_grad",
    "step",
    "step_backward",
    "tanh_grad",
]


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


def relu(xp, z):
    """``max(z, 0)``, an exact select (no arithmetic on the kept values)."""
    return xp.where(z > 0.0, z, xp.zeros_like(z))


def relu_grad(xp, da, a):
    """``da`` where ``a = relu(z) > 0``, else 0: the gradient at ``z`` (0 at ``z = 0``, as
    PyTorch's)."""
    return xp.where(a > 0.0, da, xp.zeros_like(da))


def step(xp, w: Weights, xw, carry: Carry, options: Options = CLASSIC):
    """``a<t> = tanh(xw + Waa @ a<t-1>)`` (or relu), where ``xw = Wax @ x<t> + ba``."""
    if options.nonlinearity == "relu":
        a = relu(xp, xw + w.Wa @ carry.a)
    else:
        a = activate(xp, xw, w.Wa @ carry.a)
    return Carry(a), Step(a)


def step_backward(xp, w: Weights, dcarry: Carry, saved, prev, options: Options = CLASSIC):
    """Gradient at the pre-activation (``(dz,)``), and at ``a<t-1>``, of one step."""
    (a,) = saved
    grad = relu_grad if options.nonlinearity == "relu" else tanh_grad
    dz = grad(xp, dcarry.a, a)
    return Carry(w.WaT @ dz), (dz,)


@functools.cache
def cell(options: Options) -> Cell:
    """The RNN's math for ``options`` (one object per variant: a static of JAX's caches)."""
    bound = {"options": options}
    fwd, bwd = functools.partial(step, **bound), functools.partial(step_backward, **bound)
    # the backward step reads the hidden state of its step only
    return Cell(RNN, Carry, Step, fwd, bwd, ("a",), (), options)


#: the classic (tanh) RNN
CELL = cell(CLASSIC)
