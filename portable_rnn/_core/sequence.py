"""What the three cells share: fused weights, the cell interface, whole sequences forward and back.

Column layout: ``x`` is ``(n_x, m, T)``, states ``(n_a, m)``. A cell's weights are fused into
`Weights`: ``G`` blocks of ``n_a`` rows (``G`` = 1, 4, 3 for the RNN, LSTM, GRU, in the
cell's stacked gate order), so that a step makes one recurrent product, the input product
of all steps is one product before the loop, and the weight gradients one product each
after the backward loop. A `Cell` is one cell's step and step backward behind one
interface; `forward` and `backward` run any cell over a sequence through the time-loop
seam (a Python loop, or ``jax.lax.scan`` under JAX transformations).

Variable lengths (PyTorch's packed sequences) are one optional per-step mask, ``(T, 1, m)``
booleans (`step_mask`): at a step where an example's mask is false its carry passes
unchanged, its hidden state is recorded as that carry, and in the backward its carry
gradient passes unchanged and its pre-activation gradients are zero. The select
(``xp.where``) runs right after the cell's step, so it is the same code in the Python loop,
in ``lax.scan`` under ``jax.jit`` (the mask is a traced array: one compilation serves every
length) and after CuPy's fused step kernels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

from .._backend.seam import arange_like, snapshot, time_loop, zeros_like_state
from .._backend.steps import StackedSteps, Steps, previous, select, time_major, zip_steps
from .activations import softmax
from .spec import CLASSIC, CellSpec, Options

__all__ = [
    "Cell",
    "Grads",
    "Weights",
    "backward",
    "forward",
    "fuse",
    "last_of",
    "outputs",
    "project",
    "separate_weights",
    "stack_gates",
    "stacked_weights",
    "step_mask",
    "unfuse",
    "zero_padded",
]


class Weights(NamedTuple):
    """One layer's weights, fused, as the time loops use them (``G`` blocks of ``n_a`` rows).

    Also the layout of their gradients (`Grads.dw`), where ``WaT`` is ``None`` and ``W``
    may be given instead of ``Wa`` and ``Wx``.
    """

    Wa: Any  #: (G n_a, n_a), acting on a<t-1>
    Wx: Any  #: (G n_a, n_x), acting on x<t>
    b: Any  #: (G n_a, 1)
    WaT: Any = None  #: Wa.T (n_a, G n_a), for the backward
    W: Any = None  #: [Wa | Wx] (G n_a, n_a + n_x), for the gated cells
    bhn: Any = None  #: the GRU's recurrent candidate bias (n_a, 1)
    P: Any = None  #: the LSTM's peepholes [Pf; Pi; Po] (3 n_a, 1), or None
    Wp: Any = None  #: the LSTM's projection (n_p, n_a), or None
    WpT: Any = None  #: Wp.T (n_a, n_p), for the backward


def stacked_weights(W, b, n_a: int, bhn=None) -> Weights:
    """`Weights` of a gated cell from its stacked ``W = [Wa | Wx]`` and ``b``."""
    Wa = W[:, :n_a]
    return Weights(Wa=Wa, Wx=W[:, n_a:], b=b, WaT=Wa.T, W=W, bhn=bhn)


def separate_weights(Wx, Wa, b) -> Weights:
    """`Weights` of the RNN from its input weight, recurrent weight and bias."""
    return Weights(Wa=Wa, Wx=Wx, b=b, WaT=Wa.T)


def stack_gates(xp, spec: CellSpec, p):
    """A gated cell's ``W{g}`` and ``b{g}`` stacked in ``spec.stacked`` order: ``W``, ``b``."""
    W = xp.concat([p[f"W{g}"] for g in spec.stacked], axis=0)
    b = xp.concat([p[f"b{g}"] for g in spec.stacked], axis=0)
    return W, b


def fuse(xp, spec: CellSpec, p, *, keep: bool = False) -> Weights:
    """A column-dialect parameter dict (``Wf``, ``bf``... or ``Wax``, ``Waa``, ``ba``) fused.

    With ``keep`` (weights a cache keeps for the backward), every array is the cache's own:
    the stacked ``W`` and ``b`` are new arrays anyway, and the arrays used as given (the
    RNN's three, the GRU's ``bhn``) are `snapshot` copies.
    """
    own = (lambda arr: snapshot(xp, arr)) if keep else (lambda arr: arr)
    if spec.separate:
        kx, ka, kb = spec.separate
        return separate_weights(own(p[kx]), own(p[ka]), own(p[kb]))
    W, b = stack_gates(xp, spec, p)
    hidden = [own(p[key]) for key in spec.hidden_biases.values()]
    # the recurrent columns: the hidden state's rows (n_p for a projected LSTM, else n_a)
    n_h = p["Wp"].shape[0] if "Wp" in p else W.shape[0] // spec.n_blocks
    w = stacked_weights(W, b, n_h, *hidden)
    if "Pf" in p:  # peepholes, in the order of the sigmoid gates (f, i, o)
        w = w._replace(P=xp.concat([p["Pf"], p["Pi"], p["Po"]], axis=0))
    if "Wp" in p:
        Wp = own(p["Wp"])
        w = w._replace(Wp=Wp, WpT=Wp.T)
    return w


def unfuse(xp, spec: CellSpec, w: Weights, *, prefix: str = "") -> dict:
    """The column-dialect dict of fused weights (or, with ``prefix="d"``, of their gradients).

    Keys in the order of ``spec.layer_keys``; each gate's arrays are row blocks of ``W``
    (or of ``[Wa | Wx]``).
    """
    if spec.separate:
        kx, ka, kb = spec.separate
        return {prefix + kx: w.Wx, prefix + ka: w.Wa, prefix + kb: w.b}
    n_a = w.b.shape[0] // spec.n_blocks
    W = w.W if w.W is not None else xp.concat([w.Wa, w.Wx], axis=1)
    out = {}
    for g in spec.gates:
        k = spec.stacked.index(g)
        out[f"{prefix}W{g}"] = W[k * n_a : (k + 1) * n_a, :]
        out[f"{prefix}b{g}"] = w.b[k * n_a : (k + 1) * n_a, :]
    for key in spec.hidden_biases.values():
        out[prefix + key] = w.bhn
    if w.P is not None:
        for k, g in enumerate(("f", "i", "o")):
            out[f"{prefix}P{g}"] = w.P[k * n_a : (k + 1) * n_a, :]
    if w.Wp is not None:
        out[prefix + "Wp"] = w.Wp
    return out


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell's math behind the one interface the time loops, stacks and dialects use.

    Attributes
    ----------
    spec : CellSpec
        The cell's facts.
    Carry : type
        Named tuple of the state carried between steps (``spec.carry``: ``a``, and ``c``).
    Step : type
        Named tuple of the values one step computes and the backward reads.
    step : callable
        ``step(xp, w, xw, carry) -> (carry, values)``: one step from the input part
        ``xw = w.Wx @ x<t> + w.b`` (``(G n_a, m)``) and the previous carry.
    step_backward : callable
        ``step_backward(xp, w, dcarry, saved, prev) -> (dcarry_prev, dpre)``: from the
        total gradients at this step's carry, the saved fields of its values (``saved``,
        in that order) and the previous carry's fields (``previous``), the gradients at
        the previous carry and at the pre-activations: ``(dz,)`` for both products, or
        ``(dxw, dha)`` for the input and recurrent products apart.
    saved, previous : tuple of str
        The fields of ``Step`` and of the previous ``Carry`` that ``step_backward`` reads.
    options : Options
        The variant this math computes (bound into ``step`` and ``step_backward``).
    pre : int
        How many leading entries of ``dpre`` are pre-activation gradients: 1 (``dz``, for
        both products) or 2 (``dxw``, ``dha``). Any further entries are per-step values
        that ``finish`` reads.
    finish : callable or None
        ``finish(xp, w, dw, dpre, states, prev, init) -> Weights``: the weight gradients
        ``dw`` of the generic after-loop products, completed for a variant (peepholes,
        projection, reset before the product); ``dpre`` are the per-step gradients,
        ``prev`` the previous carry fields of every step.
    """

    spec: CellSpec
    Carry: type
    Step: type
    step: Callable[..., Any]
    step_backward: Callable[..., Any]
    saved: tuple[str, ...]
    previous: tuple[str, ...]
    options: Options = CLASSIC
    pre: int = 1
    finish: Callable[..., Any] | None = None


class Grads(NamedTuple):
    """What `backward` returns."""

    dx: Any  #: (n_x, m, T)
    dinit: Any  #: the gradients at the initial carry (a ``Cell.Carry``)
    dw: Weights  #: the weights' gradients: ``Wa``, ``Wx``, ``b`` (and ``bhn``)


def project(xp, W, b, v):
    """``W @ v<t> + b`` for every column of every time step at once, time-major.

    ``W`` is ``(k, n)``, ``b`` is ``(k, 1)`` and ``v`` is ``(n, m, T)``; the
    result is ``(T, k, m)``: step ``t`` is ``result[t]``, whose rows are
    contiguous (a ``(k, m, T)`` layout would make every step gather scattered
    elements). One matrix product over all ``m * T`` columns replaces ``T``
    small ones.
    """
    n, m, T = v.shape
    k = W.shape[0]
    v_tm = xp.reshape(xp.permute_dims(v, (0, 2, 1)), (n, T * m))
    return xp.permute_dims(xp.reshape(W @ v_tm + b, (k, T, m)), (1, 0, 2))


def outputs(xp, Wy, by, a):
    """``softmax(Wy @ a_t + by)`` per column for every step: ``(n_y, m, T)``."""
    n_a, m, T = a.shape
    z = Wy @ xp.reshape(a, (n_a, m * T)) + by
    return xp.reshape(softmax(xp, z, axis=0), (Wy.shape[0], m, T))


def step_mask(xp, lengths, T: int):
    """``(T, 1, m)`` booleans: whether step ``t`` of example ``j`` is real (``t < lengths[j]``).

    ``lengths`` is an integer array ``(m,)``; the mask is on its device (a traced array
    under ``jax.jit``: no value of ``lengths`` is read here). ``None`` (every example full
    length) gives ``None``: no mask.
    """
    if lengths is None:
        return None
    t = arange_like(xp, T, lengths)
    return xp.reshape(t, (T, 1, 1)) < xp.reshape(lengths, (1, 1, lengths.shape[0]))


def zero_padded(xp, arr, mask):
    """``arr (..., m, T)`` with the padded steps of ``mask`` (`step_mask`) set to exactly 0;
    ``arr`` itself without a mask (``None``)."""
    if mask is None:
        return arr
    zero = zeros_like_state(xp, (), arr)
    T, _, m = mask.shape
    # the mask in arr's layout (1, m, T), contiguous (a flat copy): a select reading a
    # transposed mask costs a third more on NumPy
    keep = xp.reshape(xp.reshape(xp.permute_dims(mask, (1, 2, 0)), (m * T,)), (1, m, T))
    return xp.where(keep, arr, zero)


def last_of(xp, arr, lengths, first=None):
    """``arr[..., j, lengths[j] - 1]`` for every ``j``: ``(..., m, T) -> (..., m)``.

    An example of length 0 gives ``first[..., j]`` (zeros when ``first`` is ``None``).
    A select and a sum over time (no gather, no value of ``lengths`` read): exact, as
    every other term is an exact zero.
    """
    m, T = arr.shape[-2], arr.shape[-1]
    t = arange_like(xp, T, lengths)
    pick = xp.reshape(t, (1, T)) == xp.reshape(lengths, (m, 1)) - 1
    zero = zeros_like_state(xp, (), arr)
    last = xp.sum(xp.where(pick, arr, zero), axis=-1)
    if first is None:
        return last
    return xp.where(xp.reshape(lengths, (m,)) == 0, first, last)


def forward(xp, cell: Cell, w: Weights, x, init, mask=None) -> Steps:
    """Run ``cell`` over ``x (n_x, m, T)`` from the carry ``init``: every step's values.

    With ``mask`` (`step_mask`, ``(T, 1, m)``), the padded steps carry the state unchanged
    (a select discards what they computed, NaN included) and record it as their carry
    fields (``a``, and ``c``), so that each field's value at the last step is each
    example's state after its own last real step; the padded steps' other values are not
    used (`backward` selects them away, and reads ``x`` as zero there). Returns a
    `ListSteps` or `StackedSteps` of ``cell.Step`` tuples; ``.last_axis(xp, "a")`` stacks a
    field to ``(n_a, m, T)``.
    """
    xw = project(xp, w.Wx, w.b, x)  # the input part of every step at once
    if mask is None:
        _, states = time_loop(xp, _forward_step, init, StackedSteps((xw,)), args=(xp, cell, w))
        return states
    xs = StackedSteps((xw, mask))
    _, states = time_loop(xp, _masked_forward_step, init, xs, args=(xp, cell, w))
    return states


def _forward_step(carry, x_t, xp, cell: Cell, w: Weights):
    """One step of `forward`: ``x_t = (xw,)``, the input part ``w.Wx @ x<t> + w.b``."""
    return cell.step(xp, w, x_t[0], carry)


def _masked_forward_step(carry, x_t, xp, cell: Cell, w: Weights):
    """One step of `forward` with a mask: ``x_t = (xw, real)``, ``real`` of shape ``(1, m)``."""
    xw, real = x_t
    new, values = cell.step(xp, w, xw, carry)
    kept = cell.Carry(*(xp.where(real, n, old) for n, old in zip(new, carry, strict=True)))
    return kept, values._replace(**kept._asdict())


def _backward_step(dcarry, x_t, xp, cell: Cell, w: Weights):
    """One step of `backward`: ``x_t = (da<t>, *saved fields of step t, *previous carry)``."""
    return _step_back(dcarry._replace(a=x_t[0] + dcarry.a), x_t, xp, cell, w)


def _step_back(total, x_t, xp, cell: Cell, w: Weights):
    """``cell.step_backward`` from the total carry gradient and the step's ``x_t``."""
    k = 1 + len(cell.saved)
    return cell.step_backward(xp, w, total, x_t[1:k], x_t[k : k + len(cell.previous)])


def _masked_backward_step(dcarry, x_t, xp, cell: Cell, w: Weights, zero):
    """One step of `backward` with a mask, the last field of ``x_t`` (``(1, m)``): at a
    padded step the carry gradient passes unchanged and the pre-activations get zero."""
    real = x_t[-1]
    total = dcarry._replace(a=x_t[0] + dcarry.a)
    dprev, dpre = _step_back(total, x_t, xp, cell, w)
    kept = cell.Carry(*(xp.where(real, d, t) for d, t in zip(dprev, total, strict=True)))
    return kept, tuple(xp.where(real, d, zero) for d in dpre)


def backward(
    xp, cell: Cell, w: Weights, x, init, states: Steps, da, final=None, mask=None
) -> Grads:
    """Backpropagation through time of `forward`.

    Reads only its arguments: ``x``, ``init``, ``w`` and the per-step values ``states``
    (never the hidden states a forward returned, which the caller may have changed).

    Parameters
    ----------
    x, init, states : the forward's input, initial carry and result
    da : array, shape (n_a, m, T)
        Gradient at every hidden state from above.
    final : tuple, optional
        Extra gradients at the final carry, one per carry field (``None``: none).
    mask : array, shape (T, 1, m), optional
        The forward's `step_mask`: the gradients ``da`` at padded steps are ignored, ``dx``
        is zero there, and the carry gradients pass them unchanged.

    Returns
    -------
    Grads
        ``dx``, the gradients at ``init``, and the weights' (each one product over all
        steps, after the loop).
    """
    n_x, m, T = x.shape
    n_a = init[0].shape[0]  # the hidden state's rows (n_p with a projection)
    given = (None,) * len(init) if final is None else final
    pairs = zip(init, given, strict=True)
    first = cell.Carry(*(zeros_like_state(xp, s.shape, da) if g is None else g for s, g in pairs))
    # step t: (da<t>, the saved fields of step t, the previous carry's fields)
    prev = {name: previous(xp, states, name, getattr(init, name)) for name in cell.previous}
    if mask is None:
        xs = zip_steps(time_major(xp, da), select(states, cell.saved), *prev.values())
        dinit, dpre = time_loop(xp, _backward_step, first, xs, args=(xp, cell, w), reverse=True)
    else:
        da = zero_padded(xp, da, mask)
        xs = zip_steps(
            time_major(xp, da), select(states, cell.saved), *prev.values(), StackedSteps((mask,))
        )
        args = (xp, cell, w, zeros_like_state(xp, (), da))
        dinit, dpre = time_loop(xp, _masked_backward_step, first, xs, args=args, reverse=True)
    # Weight and input gradients: one product each over all steps, after the loop.
    G = w.Wa.shape[0]
    dX = xp.reshape(dpre.last_axis(xp, 0), (G, m * T))
    dA = dX if cell.pre == 1 else xp.reshape(dpre.last_axis(xp, 1), (G, m * T))
    # a<t-1> of every step, (n_a, m, T): built from the per-step values and init, as the
    # previous carry fields above (the same data movement as stacking the hidden states)
    a_prev = (prev["a"] if "a" in prev else previous(xp, states, "a", init.a)).last_axis(xp, 0)
    dWa = dA @ xp.reshape(a_prev, (n_a, m * T)).T
    x = zero_padded(xp, x, mask)  # padded steps read as zero (0 * NaN would be NaN)
    dWx = dX @ xp.reshape(x, (n_x, m * T)).T
    dbhn = None
    if w.bhn is not None:  # the GRU's candidate block of the recurrent gradient
        n_c = G // cell.spec.n_blocks
        j = cell.spec.stacked.index(next(iter(cell.spec.hidden_biases)))
        dbhn = xp.sum(dA[j * n_c : (j + 1) * n_c, :], axis=1, keepdims=True)
    dw = Weights(Wa=dWa, Wx=dWx, b=xp.sum(dX, axis=1, keepdims=True), bhn=dbhn)
    if cell.finish is not None:
        dw = cell.finish(xp, w, dw, dpre, states, prev, init)
    return Grads(dx=xp.reshape(w.Wx.T @ dX, (n_x, m, T)), dinit=dinit, dw=dw)
