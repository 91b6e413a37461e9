"""The caches of the column dialect's sequence forwards, as the seed notebooks shape them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._backend import pytrees
from .._backend.seam import snapshot
from .._core import sequence
from .._core.sequence import Weights
from .._core.spec import CellSpec
from .._validate import Dims, check_arrays, check_backward_lengths
from .checks import check_inputs

__all__ = [
    "StepCaches",
    "backward_mask",
    "check_da",
    "in_time_order",
    "run_backward",
    "run_forward",
    "seed_style_caches",
    "sequence_caches",
    "steps_and_x",
]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class StepCaches(Sequence):
    """The per-step caches of a sequence forward, built only when read.

    ``caches[0][t]`` of ``rnn_forward`` / ``lstm_forward`` / ``gru_forward`` is the tuple
    that ``rnn_cell_forward`` / ``lstm_cell_forward`` / ``gru_cell_forward`` would have
    cached at step ``t``, as in the seed notebooks; the backward reads the stored arrays
    directly instead. Treat it as opaque. Each cell's subclass builds its cell caches.

    What the backward reads is a snapshot of the forward (see "Aliasing" in
    ``docs/conventions.md``): ``x`` and ``init`` are copies of the inputs on backends
    whose arrays can change in place (`portable_rnn._backend.seam.snapshot`), ``w`` the
    fused weights the forward ran with, ``states`` the forward's own per-step values.

    Each cell's caches are a JAX pytree whose leaves are exactly their arrays (``has_c0``
    is static), so that a jitted forward may return them and a jitted backward take them.
    """

    #: the forward that makes these caches, for error messages ("lstm_forward")
    forward: ClassVar[str] = ""

    x: Any  #: the inputs, (n_x, m, T_x), as the forward read them
    init: Any  #: the initial carry (a0, and c0 for the LSTM), as the forward read it
    states: Any  #: every step's values (a cell's ``Step`` tuples)
    w: Weights  #: the fused weights the forward ran with
    parameters: Mapping  #: the parameter dict, as given (only the seed-style view reads it)
    has_c0: bool = False  #: whether the forward was given c0
    lengths: Any = None  #: the forward's checked lengths (m,), or None (every step real)
    #: whether the forward ran from the last step to the first (``x``, ``states`` and the
    #: cell caches are then in that order: step ``t`` is step ``T_x - 1 - t`` of the input)
    reverse: bool = False

    def __init_subclass__(cls, **kwargs) -> None:
        # every cell's caches: a JAX pytree of its arrays, has_c0 static (see pytrees)
        super().__init_subclass__(**kwargs)
        children = ("x", "init", "states", "w", "parameters", "lengths")
        pytrees.node(children, static=("has_c0", "reverse"))(cls)

    def __post_init__(self) -> None:
        pytrees.ensure()

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, t):  # type: ignore[override]
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(len(self)))]
        t = range(len(self))[t]  # bounds check, negative indices
        return self.cell_cache(t)

    def cell_cache(self, t: int) -> tuple:
        """The cell cache of step ``t``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.forward} caches of {len(self)} steps>"


def steps_and_x(caches, what: str):
    """Split the ``(steps, x)`` pair that the sequence forward ``what`` returns."""
    if not (isinstance(caches, (tuple, list)) and len(caches) == 2):
        got = "None" if caches is None else type(caches).__name__
        raise TypeError(
            f"caches must be the (caches, x) pair returned by {what}, got {got}"
            + (f" of length {len(caches)}" if isinstance(caches, (tuple, list)) else "")
        )
    steps, x = caches
    if isinstance(steps, StepCaches) and steps.forward != what:
        raise TypeError(f"caches must be the caches returned by {what}, not by {steps.forward}")
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or len(steps) == 0:
        raise TypeError(
            f"caches[0] must be the per-step caches returned by {what} (or a non-empty "
            f"list of cell caches), got {type(steps).__name__}"
        )
    return steps, x


def sequence_caches(caches, kind: type[StepCaches]):
    """``caches[0]`` if it is ``kind`` (the caches of ``kind.forward``), else ``None``.

    ``None`` means a seed-style ``(list of cell caches, x)`` pair, which the caller
    checks and converts; anything else is refused, naming ``caches``.
    """
    steps, _ = steps_and_x(caches, kind.forward)
    return steps if isinstance(steps, kind) else None


def seed_style_caches(caches, kind: type[StepCaches], spec: CellSpec, cell_cache, build):
    """``kind`` built from a seed-style ``(list of cell caches, x)`` pair, checked whole.

    Every array of every step, the parameters of the first step and ``x`` are checked
    (``cell_cache(cache, name)`` gives one step's arrays, named ``cache[k] (field)``, and its
    parameters); ``build(xp, arrays)``, given every step's arrays in their cache's order,
    returns the per-step values and the initial carry. The arrays are used as they are, as
    the seeds do.
    """
    steps, x = caches
    cells = [cell_cache(c, f"caches[0][{t}]") for t, c in enumerate(steps)]
    p = cells[0][1]
    named = {k: v for arrays, _ in cells for k, v in arrays.items()}
    xp = check_arrays({"caches[1] (x)": x, **named, **p})
    dims = Dims()
    check_inputs(dims, spec, "caches[1] (x)", x, "n_x m T_x", p)
    if len(steps) != dims["T_x"]:
        raise ValueError(
            f"caches[0] holds {len(steps)} steps but caches[1] (x) has T_x = {dims['T_x']}"
        )
    for name, arr in named.items():
        dims.check(name, arr, "n_x m" if name.endswith("(xt)") else "n_a m")
    states, init = build(xp, [list(a.values()) for a, _ in cells])
    return kind(x, init, states, sequence.fuse(xp, spec, p), steps[0][-1])


def check_da(da, run: StepCaches):
    """Check ``da`` against the caches: one backend, dtype and device, shape ``(n_a, m, T_x)``.

    Returns the namespace. The caches' own arrays were checked when they were made.
    """
    xp = check_arrays({"da": da, "caches (the forward's x)": run.x})
    dims = Dims()
    _, m, T = run.x.shape
    dims.define("n_a", run.init.a.shape[0], "caches")
    dims.define("m", m, "caches")
    dims.define("T_x", T, "caches")
    dims.check("da", da, "n_a m T_x")
    return xp


def backward_mask(xp, run: StepCaches, lengths, what: str, forward: str):
    """The step mask of the forward that made ``run`` (``None`` without lengths), after
    `check_backward_lengths` of the backward's optional ``lengths``."""
    check_backward_lengths(xp, run.x, run.lengths, lengths, what, forward)
    return sequence.step_mask(xp, run.lengths, run.x.shape[-1])


def run_forward(xp, cell, w: Weights, x, init, mask, reverse: bool):
    """`sequence.forward` over ``x``, or with ``reverse`` over ``x`` flipped in time (and
    its mask: each example's padding comes first and keeps its initial state, so its run
    starts at its own last real step). Returns ``(x_run, mask_run, states)``; ``x_run`` is
    the cache's own copy (`snapshot`)."""
    if reverse:
        x, mask = xp.flip(x, axis=-1), None if mask is None else xp.flip(mask, axis=0)
    x_run = snapshot(xp, x)
    return x_run, mask, sequence.forward(xp, cell, w, x_run, init, mask)


def in_time_order(xp, arr, reverse: bool):
    """``arr (..., T)`` of a run put back in the input's time order."""
    return xp.flip(arr, axis=-1) if reverse else arr


def run_backward(xp, cell, run: StepCaches, da, lengths, what: str, forward: str):
    """`sequence.backward` of the forward that made ``run`` (after `backward_mask`), with
    ``da`` and ``dx`` in the input's time order also for a reverse run."""
    mask = backward_mask(xp, run, lengths, what, forward)
    if run.reverse:
        da, mask = xp.flip(da, axis=-1), None if mask is None else xp.flip(mask, axis=0)
    g = sequence.backward(xp, cell, run.w, run.x, run.init, run.states, da, mask=mask)
    return g._replace(dx=in_time_order(xp, g.dx, run.reverse))
