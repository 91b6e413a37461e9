"""Layout traps become errors with hints (issue 14): batch-major inputs, PyTorch's state
layout, and a stack's direction count, each named before any work."""

import numpy as np
import pytest

import portable_rnn as prnn

N_X, N_A, M, T = 3, 5, 4, 6  # all different, so every swap is visible in the shapes


def _to(xp, tree):
    if isinstance(tree, dict):
        return {k: _to(xp, v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to(xp, v) for v in tree]
    return xp.asarray(np.asarray(tree), dtype="float64")


def _params(cell):
    init = {"rnn": prnn.init_rnn_params, "lstm": prnn.init_lstm_params}.get(
        cell, prnn.init_gru_params
    )
    return init(N_X, N_A, 2, seed=0, backend="numpy", dtype="float64")


FORWARDS = {"rnn": prnn.rnn_forward, "lstm": prnn.lstm_forward, "gru": prnn.gru_forward}
CELLS = {
    "rnn": lambda xt, a, p: prnn.rnn_cell_forward(xt, a, p),
    "lstm": lambda xt, a, p: prnn.lstm_cell_forward(xt, a, a, p),
    "gru": lambda xt, a, p: prnn.gru_cell_forward(xt, a, p),
}
X = np.random.default_rng(0).standard_normal((N_X, M, T))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layout", [(1, 2, 0), (2, 1, 0)], ids=["batch-major", "time-major"])
def test_features_last_x_is_named_with_the_transpose(xp, cell, layout):
    p = _to(xp, _params(cell))
    x = _to(xp, X.transpose(layout))
    with pytest.raises(ValueError, match=r"^x has shape .*features last.*n_x = 3 .*transpose"):
        FORWARDS[cell](x, None, p)
    layers = _to(xp, prnn.init_multilayer_params(cell, N_X, N_A, seed=0, backend="numpy"))
    with pytest.raises(ValueError, match=r"^x has shape .*features last"):
        prnn.multilayer_forward(x, layers, cell=cell)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_step_with_features_last_is_named(xp, cell):
    p = _to(xp, _params(cell))
    with pytest.raises(ValueError, match=r"^xt has shape \(4, 3\), features last.*transpose"):
        CELLS[cell](_to(xp, X[:, :, 0].T), _to(xp, np.zeros((N_A, M))), p)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_state_in_pytorch_layout_is_named_with_the_swap(xp, cell):
    p = _to(xp, _params(cell))
    swapped = _to(xp, np.zeros((M, N_A)))
    with pytest.raises(ValueError, match=r"^a0 must have shape.*look swapped.*PyTorch"):
        FORWARDS[cell](_to(xp, X), swapped, p)
    with pytest.raises(ValueError, match=r"^a_prev must have shape.*look swapped"):
        CELLS[cell](_to(xp, X[:, :, 0]), swapped, p)
    if cell == "lstm":
        with pytest.raises(ValueError, match=r"^c0 must have shape.*look swapped"):
            prnn.lstm_forward(_to(xp, X), None, p, c0=swapped)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_stack_states_in_pytorch_layout_are_named(xp, cell):
    layers = _to(xp, prnn.init_multilayer_params(cell, N_X, N_A, num_layers=2, seed=0))
    torch_layout = _to(xp, np.zeros((2, M, N_A)))  # PyTorch's (L*D, N, H)
    with pytest.raises(ValueError, match=r"^a0 must have shape \(L\*D, n_a, m\).*look swapped"):
        prnn.multilayer_forward(_to(xp, X), layers, cell=cell, a0=torch_layout)
    if cell == "lstm":
        with pytest.raises(ValueError, match=r"^c0 must .*look swapped"):
            prnn.multilayer_forward(_to(xp, X), layers, cell=cell, c0=torch_layout)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_stack_run_with_the_other_direction_count_gets_the_hint(xp, cell):
    x = _to(xp, X)
    bi = _to(
        xp, prnn.init_multilayer_params(cell, N_X, N_A, num_layers=2, bidirectional=True, seed=0)
    )
    with pytest.raises(ValueError, match=r"fit a bidirectional stack: pass bidirectional=True$"):
        prnn.multilayer_forward(x, bi, cell=cell)
    uni = _to(xp, prnn.init_multilayer_params(cell, N_X, N_A, num_layers=4, seed=0))
    with pytest.raises(ValueError, match=r"unidirectional stack: pass bidirectional=False$"):
        prnn.multilayer_forward(x, uni, cell=cell, bidirectional=True)


def test_a_wrong_stack_that_fits_neither_gets_no_direction_hint(xp):
    layers = _to(xp, prnn.init_multilayer_params("lstm", N_X, N_A, num_layers=2, seed=0))
    layers[1] = _to(xp, prnn.init_multilayer_params("lstm", 7, N_A, seed=0)[0])
    with pytest.raises(ValueError, match=r"^layers\[1\]\['Wf'\] must have shape") as info:
        prnn.multilayer_forward(_to(xp, X), layers, cell="lstm")
    assert "bidirectional" not in str(info.value)
