"""The LSTM's step and step backward (column layout, unchecked).

With ``z`` the pre-activations of the four gates, stacked in the order f, i, o, c
(`portable_rnn._core.spec.LSTM`: the three sigmoid gates first, so one sigmoid over the
first ``3 n_a`` rows serves them all)::

    f, i, o = sigmoid(z_f), sigmoid(z_i), sigmoid(z_o);   cc = tanh(z_c)
    c<t> = f * c<t-1> + i * cc;   a<t> = o * tanh(c<t>)

The variants (`portable_rnn._core.spec.Options`), as ONNX and PyTorch define them::

    peepholes:     z_f += Pf * c<t-1>;  z_i += Pi * c<t-1>;  z_o += Po * c<t>
    clip:          every gate's pre-activation clipped to [-clip, clip] (c<t> is not)
    input_forget:  f = 1 - i
    proj:          a<t> = Wp @ (o * tanh(c<t>))     (Wp: (n_p, n_a); a<t> has n_p rows)
"""

from __future__ import annotations

import collections
import functools
from typing import Any, NamedTuple

from .._backend.seam import elementwise
from .activations import sigmoid
from .sequence import Cell, Weights
from .spec import CLASSIC, LSTM, Options

__all__ = [
    "CELL",
    "Carry",
    "Step",
    "activate",
    "cell",
    "pre_activation_grads",
    "step",
    "step_backward",
    "variant_step",
    "variant_step_backward",
    "variant_step_forward",
]


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


@functools.cache
def variant_step(clip: bool, proj: bool) -> type:
    """The named tuple of one step of a variant: `Step`'s fields, then ``keep`` (with a
    clip: 1 where a gate's pre-activation was inside it, else 0, ``(4 n_a, m)``) and ``m``
    (with a projection: ``o * tanh(c)`` before it, ``(n_a, m)``; ``a`` is then ``(n_p, m)``).
    One class per pair, so that JAX sees the same type at every step."""
    extra = (("keep",) if clip else ()) + (("m",) if proj else ())
    name = "StepVariant" + "".join(f.capitalize() for f in extra)
    return collections.namedtuple(name, (*Step._fields, *extra))


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
    values = activate(xp, xw + w.Wa @ carry.a, carry.c, carry.c.shape[0])
    return Carry(values.a, values.c), values


def variant_step_forward(xp, w: Weights, xw, carry: Carry, options: Options):
    """`step` of a variant (`Options`)."""
    return _variant_step(xp, w, xw + w.Wa @ carry.a, carry.c, options)


def _clipped(xp, z, clip):
    """``z`` clipped to ``[-clip, clip]`` and where it was inside (1.0) or not (0.0)."""
    return xp.clip(z, -clip, clip), xp.astype(xp.abs(z) <= clip, z.dtype)


def _variant_step(xp, w: Weights, z, c_prev, options: Options):
    """One step of a variant from the pre-activations ``z (4 n_a, m)`` (f, i, o, c)."""
    n_a = c_prev.shape[0]
    zf, zi, zo, zc = (z[k * n_a : (k + 1) * n_a, :] for k in range(4))
    if options.peepholes:
        zf, zi = zf + w.P[:n_a, :] * c_prev, zi + w.P[n_a : 2 * n_a, :] * c_prev
    keep = None
    if options.clip is not None:
        (zf, kf), (zi, ki), (zc, kc) = (_clipped(xp, v, options.clip) for v in (zf, zi, zc))
    i = sigmoid(xp, zi)
    f = 1.0 - i if options.input_forget else sigmoid(xp, zf)
    cc = xp.tanh(zc)
    c = f * c_prev + i * cc
    if options.peepholes:
        zo = zo + w.P[2 * n_a :, :] * c
    if options.clip is not None:
        zo, ko = _clipped(xp, zo, options.clip)
        keep = xp.concat([kf, ki, ko, kc], axis=0)
    o = sigmoid(xp, zo)
    tc = xp.tanh(c)
    m = o * tc
    a = w.Wp @ m if options.proj else m
    kind = variant_step(options.clip is not None, options.proj)
    extra = ((keep,) if keep is not None else ()) + ((m,) if options.proj else ())
    return Carry(a, c), kind(f, i, cc, o, c, tc, a, *extra)


def step_backward(xp, w: Weights, dcarry: Carry, saved, prev):
    """``(da<t-1>, dc<t-1>)`` and ``(dz,)`` of one step; ``saved = (f, i, cc, o, tc)``."""
    f, i, cc, o, tc = saved
    (c_prev,) = prev
    dz, dc_prev = pre_activation_grads(xp, dcarry.a, dcarry.c, f, i, cc, o, c_prev, tc)
    return Carry(w.WaT @ dz, dc_prev), (dz,)


def variant_step_backward(xp, w: Weights, dcarry: Carry, saved, prev, options: Options):
    """`step_backward` of a variant: ``saved = (f, i, cc, o, c, tc)`` (and ``keep`` with a
    clip); with a projection it also returns the gradient at ``a<t>`` (``(dz, da)``), whose
    product with ``m`` gives ``dWp``."""
    (c_prev,) = prev
    f, i, cc, o, _, tc, *rest = saved
    keep: Any = rest[0] if rest else None  # set with a clip
    n_a = c_prev.shape[0]
    da = dcarry.a
    dm = w.WpT @ da if options.proj else da  # at o * tanh(c)
    dzo = dm * tc * o * (1.0 - o)
    dc = dcarry.c + dm * o * (1.0 - tc * tc)
    if options.clip is not None:
        dzo = dzo * keep[2 * n_a : 3 * n_a, :]
    if options.peepholes:
        dc = dc + dzo * w.P[2 * n_a :, :]
    di = dc * cc
    if options.input_forget:  # f = 1 - i: the forget gate's gradient goes to i
        di = di - dc * c_prev
        dzf = xp.zeros_like(dc)
    else:
        dzf = dc * c_prev * f * (1.0 - f)
    dzi = di * i * (1.0 - i)
    dzc = dc * i * (1.0 - cc * cc)
    if options.clip is not None:
        dzf, dzi, dzc = dzf * keep[:n_a, :], dzi * keep[n_a : 2 * n_a, :], dzc * keep[3 * n_a :, :]
    dc_prev = dc * f
    if options.peepholes:
        dc_prev = dc_prev + dzf * w.P[:n_a, :] + dzi * w.P[n_a : 2 * n_a, :]
    dz = xp.concat([dzf, dzi, dzo, dzc], axis=0)
    return Carry(w.WaT @ dz, dc_prev), ((dz, da) if options.proj else (dz,))


def _finish(xp, w: Weights, dw: Weights, dpre, states, prev, init) -> Weights:
    """The peepholes' and the projection's gradients, from every step's values."""
    dz = dpre.last_axis(xp, 0)  # (4 n_a, m, T), zero at padded steps
    G, m, T = dz.shape
    n_a = G // 4
    dZ = xp.reshape(dz, (G, m * T))
    if w.P is not None:
        C = xp.reshape(states.last_axis(xp, "c"), (n_a, m * T))
        C_prev = xp.reshape(prev["c"].last_axis(xp, 0), (n_a, m * T))
        dw = dw._replace(
            P=xp.concat(
                [
                    xp.sum(dZ[:n_a, :] * C_prev, axis=1, keepdims=True),
                    xp.sum(dZ[n_a : 2 * n_a, :] * C_prev, axis=1, keepdims=True),
                    xp.sum(dZ[2 * n_a : 3 * n_a, :] * C, axis=1, keepdims=True),
                ],
                axis=0,
            )
        )
    if w.Wp is not None:
        n_p = w.Wp.shape[0]
        dA = xp.reshape(dpre.last_axis(xp, 1), (n_p, m * T))
        M = xp.reshape(states.last_axis(xp, "m"), (n_a, m * T))
        dw = dw._replace(Wp=dA @ M.T)
    return dw


@functools.cache
def cell(options: Options) -> Cell:
    """The LSTM's math for ``options`` (one object per variant: a static of JAX's caches)."""
    if options == CLASSIC:
        # the backward step reads f, i, cc, o, tanh(c) of its step, and the cell state before it
        return Cell(LSTM, Carry, Step, step, step_backward, ("f", "i", "cc", "o", "tc"), ("c",))
    fwd = functools.partial(variant_step_forward, options=options)
    bwd = functools.partial(variant_step_backward, options=options)
    clip = options.clip is not None
    saved = ("f", "i", "cc", "o", "c", "tc", *(("keep",) if clip else ()))
    finish = _finish if options.peepholes or options.proj else None
    kind = variant_step(clip, options.proj)
    return Cell(LSTM, Carry, kind, fwd, bwd, saved, ("c",), options, finish=finish)


#: the classic LSTM (PyTorch's, without projection)
CELL = cell(CLASSIC)
