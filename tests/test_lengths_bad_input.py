"""Bad ``lengths`` (issue 13): a TypeError or ValueError naming ``lengths``, before any work.

For every sequence forward (column dialect, the stack, the rows dialect) and on every
backend: a float array, a bool array, a float in a list, a wrong shape ((m, 1), (m + 1,)), a
value below 0 or above T_x, an array of another backend than ``x``; for the backwards: a
``lengths`` given to a backward whose forward had none, and one that differs from the
forward's. The core's time loops are replaced by a failing stub while the call runs, so a
check that came after any work would fail the test; and no input is changed by the call.
"""

from __future__ import annotations

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn._core import sequence
from portable_rnn.testing import to_numpy

N_X, N_A, M, T = 3, 4, 4, 5
GOOD = (3, 5, 1, 4)


def _problem(xp, name):
    """``(run_forward(lengths), run_backward(cache, lengths), inputs)`` of one function:
    ``column_*`` (``rnn_forward``...), ``stack_*`` (`multilayer_forward`, two layers) or
    ``rows_*`` (`portable_rnn.rnn_layers`); ``lengths=None`` is left out of the call."""
    rng = np.random.default_rng(0)
    dialect, cell = name.split("_")
    if dialect == "rows":
        G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
        shapes = {"x": (M, T, N_X), "h0": (M, N_A), "Wx": (N_X, G * N_A)}
        shapes.update({"Wh": (N_A, G * N_A), "b": (G * N_A,), "dh": (M, T, N_A)})
        if cell == "gru":
            shapes["bhn"] = (N_A,)
        inputs = {k: xp.asarray(rng.standard_normal(s) * 0.5) for k, s in shapes.items()}
        args = [inputs[k] for k in ("x", "h0", "Wx", "Wh", "b", "bhn") if k in inputs]
        fwd, bwd = getattr(rnn_layers, f"{cell}_forward"), getattr(rnn_layers, f"{cell}_backward")

        def run_forward(lengths):
            return fwd(*args, **_kw(lengths))[1]

        def run_backward(cache, lengths):
            return bwd(inputs["dh"], cache, **_kw(lengths))

        return run_forward, run_backward, inputs

    L = 2 if dialect == "stack" else 1
    layers = prnn.init_multilayer_params(cell, N_X, N_A, num_layers=L, seed=0)
    layers = [{k: xp.asarray(v) for k, v in p.items()} for p in layers]
    inputs = {f"layers[{k}][{key!r}]": v for k, p in enumerate(layers) for key, v in p.items()}
    x = inputs["x"] = xp.asarray(rng.standard_normal((N_X, M, T)))
    a0 = inputs["a0"] = xp.asarray(rng.standard_normal((L, N_A, M) if L > 1 else (N_A, M)))
    da = inputs["da"] = xp.asarray(rng.standard_normal((N_A, M, T)))
    if dialect == "stack":

        def run_forward(lengths):
            return prnn.multilayer_forward(x, layers, cell=cell, a0=a0, **_kw(lengths))[3]

        def run_backward(cache, lengths):
            return prnn.multilayer_backward(da, cache, **_kw(lengths))

        return run_forward, run_backward, inputs

    fwd, bwd = getattr(prnn, f"{cell}_forward"), getattr(prnn, f"{cell}_backward")

    def run_forward(lengths):
        return fwd(x, a0, layers[0], **_kw(lengths))[-1]

    def run_backward(cache, lengths):
        return bwd(da, cache, **_kw(lengths))

    return run_forward, run_backward, inputs


def _kw(lengths):
    return {} if lengths is None else {"lengths": lengths}


FUNCTIONS = [
    "column_rnn",
    "column_lstm",
    "column_gru",
    "stack_lstm",
    "stack_gru",
    "rows_rnn",
    "rows_lstm",
    "rows_gru",
]


def _other_backend(xp, values):
    """``values`` as an integer array of a backend other than ``xp``'s."""
    if xp.backend == "numpy":
        import torch

        return torch.tensor(values)
    return np.asarray(values)


#: name -> (make the bad lengths from xp, expected exception)
BAD = {
    "float array": (lambda xp: xp.asarray(np.asarray(GOOD, dtype=np.float64)), TypeError),
    "bool array": (lambda xp: xp.asarray(np.asarray([True] * M)), TypeError),
    "float in a list": (lambda xp: [3, 5.0, 1, 4], TypeError),
    "bool in a list": (lambda xp: [3, True, 1, 4], TypeError),
    "shape (m, 1)": (lambda xp: xp.asarray(np.asarray(GOOD).reshape(M, 1)), ValueError),
    "shape (m + 1,)": (lambda xp: xp.asarray(np.asarray([*GOOD, 2])), ValueError),
    "list of m + 1": (lambda xp: [*GOOD, 2], ValueError),
    "below 0": (lambda xp: xp.asarray(np.asarray([3, -1, 1, 4])), ValueError),
    "above T_x": (lambda xp: xp.asarray(np.asarray([3, T + 1, 1, 4])), ValueError),
    "above T_x in a list": (lambda xp: [3, 5, T + 1, 4], ValueError),
    "another backend": (lambda xp: _other_backend(xp, GOOD), TypeError),
}


def _fail(*args, **kwargs):
    raise AssertionError("a time loop ran before lengths was refused")


def _host(inputs):
    """Host copies of every input (backend arrays), to tell that nothing changed them."""
    return {k: to_numpy(v).copy() for k, v in inputs.items()}


def _unchanged(before, inputs):
    for k, v in inputs.items():
        np.testing.assert_array_equal(to_numpy(v), before[k], err_msg=f"{k} changed")


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("name", FUNCTIONS)
def test_forward_refuses_bad_lengths(xp, name, bad, monkeypatch):
    run_forward, _, inputs = _problem(xp, name)
    make, error = BAD[bad]
    lengths = make(xp)
    given = {"lengths": lengths} if not isinstance(lengths, list) else {}
    before, as_listed = _host({**inputs, **given}), list(lengths) if not given else None
    monkeypatch.setattr(sequence, "forward", _fail)
    with pytest.raises(error, match="lengths"):
        run_forward(lengths)
    _unchanged(before, {**inputs, **given})
    assert as_listed is None or lengths == as_listed


@pytest.mark.parametrize("name", FUNCTIONS)
def test_backward_refuses_lengths_its_forward_did_not_have(xp, name, monkeypatch):
    run_forward, run_backward, inputs = _problem(xp, name)
    cache = run_forward(None)
    before = _host(inputs)
    monkeypatch.setattr(sequence, "backward", _fail)
    with pytest.raises(ValueError, match="lengths"):
        run_backward(cache, xp.asarray(np.asarray(GOOD)))
    with pytest.raises(ValueError, match="lengths"):
        run_backward(cache, [T] * M)  # even all full: the forward ran without lengths
    _unchanged(before, inputs)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_backward_refuses_other_lengths_than_its_forwards(xp, name, monkeypatch):
    run_forward, run_backward, inputs = _problem(xp, name)
    cache = run_forward(xp.asarray(np.asarray(GOOD)))
    before = _host(inputs)
    monkeypatch.setattr(sequence, "backward", _fail)
    with pytest.raises(ValueError, match="lengths"):
        run_backward(cache, xp.asarray(np.asarray([3, 5, 2, 4])))
    with pytest.raises(ValueError, match="lengths"):
        run_backward(cache, [5, 3, 1, 4])  # the same values, for other examples
    for bad in ("float array", "shape (m + 1,)", "above T_x", "another backend"):
        make, error = BAD[bad]
        with pytest.raises(error, match="lengths"):
            run_backward(cache, make(xp))
    _unchanged(before, inputs)
    monkeypatch.undo()
    run_backward(cache, list(GOOD))  # the forward's own lengths are accepted
    _unchanged(before, inputs)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_the_stubs_stand_in_the_time_loops(name, monkeypatch):
    """The control of the tests above: good lengths reach the stubbed time loops."""
    from portable_rnn.testing import Backend

    run_forward, run_backward, _ = _problem(Backend("numpy", "numpy", "cpu"), name)
    cache = run_forward(list(GOOD))
    monkeypatch.setattr(sequence, "forward", _fail)
    monkeypatch.setattr(sequence, "backward", _fail)
    with pytest.raises(AssertionError, match="time loop ran"):
        run_forward(list(GOOD))
    with pytest.raises(AssertionError, match="time loop ran"):
        run_backward(cache, list(GOOD))
