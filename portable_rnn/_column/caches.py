"""The caches of the column dialect's sequence forwards, as the seed notebooks shape them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["StepCaches", "steps_and_x"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class StepCaches(Sequence):
    """The per-step caches of a sequence forward, built only when read.

    ``caches[0][t]`` of ``rnn_forward`` / ``lstm_forward`` / ``gru_forward`` is the tuple
    that ``rnn_cell_forward`` / ``lstm_cell_forward`` / ``gru_cell_forward`` would have
    cached at step ``t``, as in the seed notebooks; the backward reads the stored arrays
    directly instead. Treat it as opaque. Each cell's subclass builds its cell caches.
    """

    x: Any  #: the inputs, (n_x, m, T_x)
    init: Any  #: the initial carry (a0, and c0 for the LSTM)
    states: Any  #: every step's values (a cell's ``Step`` tuples)
    a: Any  #: the hidden states, (n_a, m, T_x)
    parameters: Mapping  #: the parameter dict, as given
    has_c0: bool = False  #: whether the forward was given c0

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
        return f"<StepCaches of {len(self)} steps>"


def steps_and_x(caches, name: str = "caches"):
    """Split the ``(steps, x)`` pair that a sequence forward returns."""
    if not (isinstance(caches, (tuple, list)) and len(caches) == 2):
        raise TypeError(f"{name} must be the (caches, x) pair returned by the forward")
    steps, x = caches
    if not isinstance(steps, Sequence) or len(steps) == 0:
        raise TypeError(f"{name}[0] must be the non-empty sequence of per-step caches")
    return steps, x
