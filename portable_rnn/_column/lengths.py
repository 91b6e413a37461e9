"""Variable-length sequences, column dialect: each example's final state."""

from __future__ import annotations

from .._core import sequence
from .._validate import Dims, check_arrays, check_lengths, float32_inside

__all__ = ["last_state"]


@float32_inside()
def last_state(a, lengths, a0=None):
    """Each example's hidden state after its last real step.

    With variable lengths the sequence forwards (`rnn_forward`, `lstm_forward`,
    `gru_forward`) return zeros at padded steps, so ``a[:, :, -1]`` is not the final
    state of a shorter example; this picks it (PyTorch's ``h_n``). Works under
    ``jax.jit`` with traced ``lengths`` (a select and a sum over time, no gather).

    Parameters
    ----------
    a : array, shape (n_a, m, T_x)
        Hidden states (or cell states ``c``) of every step.
    lengths : array of int, shape (m,), or list of int
        Each example's number of real steps (``0 .. T_x``), as given to the forward.
    a0 : array, shape (n_a, m), optional
        The initial state: the final state of an example of length 0 (zeros when
        omitted).

    Returns
    -------
    a_n : array, shape (n_a, m)
        ``a[:, j, lengths[j] - 1]`` for every ``j`` (``a0[:, j]`` where ``lengths[j] == 0``).

    Raises
    ------
    TypeError, ValueError
        As the forwards: arrays of other backends or dtypes, wrong shapes, or bad
        ``lengths`` (named).
    """
    xp = check_arrays({"a": a, "a0": a0}, optional=("a0",))
    dims = Dims()
    dims.check("a", a, "n_a m T_x")
    if a0 is not None:
        dims.check("a0", a0, "n_a m")
    lengths = check_lengths(lengths, a, dims["m"], dims["T_x"], x_name="a", optional=False)
    return sequence.last_of(xp, a, lengths, a0)
