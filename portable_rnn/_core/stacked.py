"""Multi-layer and bidirectional stacks of any cell (column layout, unchecked).

PyTorch's layout: layer ``k = layer * D + d`` (``D`` directions, ``d = 1`` the reverse
one). Layer 0 reads ``x``; every later layer reads the outputs of the layer below, both
directions stacked (forward rows first). The reverse direction runs over the time steps
backwards (the flipped sequence), and its outputs are put back in forward order.

With variable lengths (a `sequence.step_mask`), the reverse direction runs the flipped
sequence with the flipped mask: an example's padding comes first there and keeps its
initial state, so its reverse run starts at its own last real step, as PyTorch's packed
sequences do. Every layer's outputs are zero at padded steps.

``reverse`` runs every layer of a unidirectional stack over the flipped sequence (ONNX's
``direction="reverse"``, Keras' ``go_backwards`` with the outputs put back in time order).
Dropout (PyTorch's placement) multiplies the input of every layer above the first by a
mask of zeros and ``1 / (1 - p)``, given (drawn by the front-end from a seed); the cache
keeps the masks, so that the backward multiplies by the same ones.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._backend import pytrees
from .._backend.seam import zeros_like_state
from . import gru, lstm, rnn, sequence
from .sequence import Cell, Weights
from .spec import CLASSIC, Options

__all__ = ["CELLS", "Run", "StackCache", "backward", "forward", "math"]

#: name -> the classic cell's math, in the order of `portable_rnn._core.spec.CELLS`
CELLS: dict[str, Cell] = {"rnn": rnn.CELL, "lstm": lstm.CELL, "gru": gru.CELL}


def math(name: str, options: Options = CLASSIC) -> Cell:
    """The math of cell ``name`` with ``options`` (checked by the front-ends)."""
    return {"rnn": rnn.cell, "lstm": lstm.cell, "gru": gru.cell}[name](options)


class Run(NamedTuple):
    """One layer and direction of a forward: what its backward needs."""

    x: Any  #: its input, (n_in, m, T) (flipped in time for a reverse direction)
    init: Any  #: its initial carry
    states: Any  #: its per-step values
    w: Weights  #: its fused weights
    mask: Any = None  #: its step mask (flipped for a reverse direction), or None


@pytrees.node(
    children=("runs", "x", "lengths", "masks"), static=("cell", "D", "L", "n_a", "reverse")
)
class StackCache(NamedTuple):
    """What `forward` keeps for `backward`.

    `backward` reads only this: the runs' inputs, initial carries, per-step values and
    weights (never the outputs `forward` returned, which the caller may change). A JAX
    pytree of its arrays; the cell and the sizes are static.
    """

    cell: Cell
    runs: list
    D: int  #: directions
    L: int  #: layers
    n_a: int
    x: Any
    lengths: Any = None  #: the forward's lengths (m,), or None
    masks: Any = None  #: the dropout masks of layers 1 .. L-1, (D n_a, m, T) each, or None
    reverse: bool = False  #: whether a unidirectional stack ran over the flipped sequence


def forward(
    xp,
    cell: Cell,
    weights: list[Weights],
    x,
    D: int,
    inits,
    lengths=None,
    *,
    reverse=False,
    dropout=None,
):
    """Run the stack; ``inits`` has one entry per carry field: ``(L*D, n, m)`` or ``None``.

    ``lengths`` (``(m,)`` integers, or ``None``: every example full length) makes the
    steps ``t >= lengths[j]`` of example ``j`` padding. ``reverse`` (with ``D == 1``) runs
    every layer over the flipped sequence. ``dropout``: ``None``, or the ``L - 1`` masks
    ``(D n_a, m, T)`` that multiply the inputs of layers 1 .. L-1. Returns
    ``(out, finals, cache)``: the last layer's hidden states (both directions stacked),
    the final value of every carry field ``(L*D, n, m)``, and the cache.
    """
    L = len(weights) // D
    n_a, m = weights[0].Wa.shape[1], x.shape[1]  # the hidden state's rows (n_p, projected)
    n_c = weights[0].Wa.shape[0] // cell.spec.n_blocks  # the cell state's rows
    zeros = [zeros_like_state(xp, (n, m), x) for n in (n_a, n_c)[: len(cell.spec.carry)]]
    mask = sequence.step_mask(xp, lengths, x.shape[-1])
    flipped = None if mask is None else xp.flip(mask, axis=0)
    runs, finals = [], [[] for _ in cell.spec.carry]
    inp = x
    for layer in range(L):
        if layer and dropout is not None:
            inp = inp * dropout[layer - 1]
        outs = []
        for d in range(D):
            k = layer * D + d
            back = d == 1 or reverse
            pairs = zip(zeros, inits, strict=True)
            init = cell.Carry(*(z if s is None else s[k, :, :] for z, s in pairs))
            x_k = xp.flip(inp, axis=-1) if back else inp
            mask_k = flipped if back else mask
            states = sequence.forward(xp, cell, weights[k], x_k, init, mask_k)
            a = sequence.zero_padded(xp, states.last_axis(xp, "a"), mask_k)
            runs.append(Run(x_k, init, states, weights[k], mask_k))
            for j, name in enumerate(cell.spec.carry):
                finals[j].append(states.final(name))  # no need to stack every step
            outs.append(xp.flip(a, axis=-1) if back else a)
        inp = outs[0] if D == 1 else xp.concat(outs, axis=0)
    cache = StackCache(cell, runs, D, L, n_a, x, lengths, dropout, bool(reverse))
    pytrees.ensure()
    return inp, [xp.stack(f, axis=0) for f in finals], cache


def backward(xp, cache: StackCache, dout, dfinals):
    """BPTT through the stack; ``dfinals`` has one entry per carry field (or ``None``).

    Returns ``(dx, dinits, grads)``: the gradient at ``x``, at every initial carry field
    ``(L*D, n_a, m)``, and a list of every layer's fused weight gradients.
    """
    cell, runs, D, L, n_a = cache.cell, cache.runs, cache.D, cache.L, cache.n_a
    grads: list[Any] = [None] * (L * D)
    dinits: list[list[Any]] = [[None] * (L * D) for _ in cell.spec.carry]
    dinp = dout
    for layer in reversed(range(L)):
        dx: Any = None
        for d in range(D):
            k = layer * D + d
            back = d == 1 or cache.reverse
            da = dinp[d * n_a : (d + 1) * n_a, :, :]
            da = xp.flip(da, axis=-1) if back else da
            run = runs[k]
            final = tuple(None if g is None else g[k, :, :] for g in dfinals)
            g = sequence.backward(xp, cell, run.w, run.x, run.init, run.states, da, final, run.mask)
            dx_k = xp.flip(g.dx, axis=-1) if back else g.dx
            dx = dx_k if dx is None else dx + dx_k
            for j in range(len(cell.spec.carry)):
                dinits[j][k] = g.dinit[j]
            grads[k] = g.dw
        if layer and cache.masks is not None:
            dx = dx * cache.masks[layer - 1]
        dinp = dx
    return dinp, [xp.stack(f, axis=0) for f in dinits], grads
