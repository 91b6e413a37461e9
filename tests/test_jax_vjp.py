"""`portable_rnn.jax`: the hand-written backward as the VJP that ``jax.grad`` uses.

``jax.grad`` of a loss that uses every output through ``pj.*`` (the custom VJP, whose
backward is `portable_rnn.multilayer_backward`) equals ``jax.grad`` of the same loss
through the plain forwards (which JAX differentiates itself), in float64, for every cell,
one and two directions, one and two layers, with and without initial states and lengths;
also under ``jax.jit`` and ``jax.vmap``, against finite differences, with the custom
backward proven to run, and with the plain functions' errors for bad input.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn._core.spec import cell_spec
from portable_rnn.testing import assert_close

jax = pytest.importorskip("jax")
jnp = jax.numpy
pj = pytest.importorskip("portable_rnn.jax")

N_X, N_A, N_Y, M, T = 3, 4, 2, 5, 4
#: every kind of length: full, 0, in between, 1
LENGTHS = [T, 0, 2, T, 1]
RTOL, ATOL = 1e-10, 1e-12
CELLS = ["rnn", "lstm", "gru"]


def _layer(cell, n_in, rng, *, output=False):
    spec = cell_spec(cell)
    keys = spec.keys if output else spec.layer_keys
    return {k: jnp.asarray(rng.uniform(-0.7, 0.7, spec.shape(k, n_in, N_A, N_Y))) for k in keys}


def _stack_problem(cell, D, L, *, states, seed=0):
    """``x``, ``layers``, ``a0``, ``c0`` (or ``None``s) and the loss's fixed weights."""
    rng = np.random.default_rng(seed)
    layers = [_layer(cell, N_X if k < D else D * N_A, rng) for k in range(L * D)]
    x = jnp.asarray(rng.standard_normal((N_X, M, T)))
    a0 = c0 = None
    if states:
        a0 = jnp.asarray(rng.standard_normal((L * D, N_A, M)) * 0.5)
        if cell == "lstm":
            c0 = jnp.asarray(rng.standard_normal((L * D, N_A, M)) * 0.5)
    weights = [jnp.asarray(rng.standard_normal(s)) for s in ((D * N_A, M, T), (L * D, N_A, M))]
    weights.append(jnp.asarray(rng.standard_normal((L * D, N_A, M))))
    return x, layers, a0, c0, weights


def _stack_loss(forward, cell, D, weights, lengths):
    """A scalar that uses ``out``, ``a_n`` and ``c_n`` nonlinearly."""
    w_out, w_an, w_cn = weights

    def loss(x, layers, a0, c0):
        out, a_n, c_n = forward(
            x, layers, cell=cell, bidirectional=D == 2, a0=a0, c0=c0, lengths=lengths
        )[:3]
        total = jnp.sum(w_out * out) + 0.5 * jnp.sum(out**2) + jnp.sum(w_an * jnp.tanh(a_n))
        if c_n is not None:
            total = total + jnp.sum(w_cn * c_n) + 0.25 * jnp.sum(c_n**2)
        return total

    return loss


def _reference(loss, *args):
    """``jax.value_and_grad`` of a loss through the plain forwards: JAX's own autodiff.

    Evaluated op by op (``jax.disable_jit``): JAX differentiating the plain time loop
    (``lax.scan`` under a transformation) compiles new programs at every call, seconds
    each; op by op, the compiled operations are shared by every case of the same sizes.
    """
    with jax.disable_jit():
        return jax.value_and_grad(loss, argnums=ARGS)(*args)


def _assert_trees_close(actual, desired, record_diff=None, rtol=RTOL, atol=ATOL):
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(desired)
    leaves = jax.tree_util.tree_leaves(desired)
    assert leaves
    for a, d in zip(jax.tree_util.tree_leaves(actual), leaves, strict=True):
        assert_close(a, d, rtol=rtol, atol=atol)
        if record_diff is not None:
            record_diff("jax custom_vjp vs autodiff", "float64", a, np.asarray(d))


ARGS = (0, 1, 2, 3)  # x, layers (or parameters), a0, c0


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("states", [False, True], ids=["no-a0", "a0"])
@pytest.mark.parametrize("D", [1, 2], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", CELLS)
def test_stack_grad_equals_autodiff(cell, D, states, lengths, record_diff):
    """Two layers: the first layer and the one above it (one layer is the column functions'
    case, tested below with the same states and lengths)."""
    x, layers, a0, c0, weights = _stack_problem(cell, D, 2, states=states)
    lens = None if lengths is None else jnp.asarray(lengths)
    ours = _stack_loss(pj.multilayer_forward, cell, D, weights, lens)
    plain = _stack_loss(prnn.multilayer_forward, cell, D, weights, lens)

    value, grads = jax.value_and_grad(ours, argnums=ARGS)(x, layers, a0, c0)
    ref_value, ref = _reference(plain, x, layers, a0, c0)
    assert_close(value, ref_value, rtol=RTOL, atol=ATOL)
    # no cotangent for an initial state left out; a list of dicts with the cell's keys
    assert (grads[2] is None) == (a0 is None) and (grads[3] is None) == (c0 is None)
    assert [sorted(g) for g in grads[1]] == [sorted(p) for p in layers]
    _assert_trees_close(grads, ref, record_diff)

    # the forward's results are the plain function's, bit for bit
    out = pj.multilayer_forward(
        x, layers, cell=cell, bidirectional=D == 2, a0=a0, c0=c0, lengths=lens
    )
    plain_out = prnn.multilayer_forward(
        x, layers, cell=cell, bidirectional=D == 2, a0=a0, c0=c0, lengths=lens
    )[:3]
    assert (out[2] is None) == (cell != "lstm")
    _assert_trees_close(out, plain_out, rtol=0, atol=0)


# -- the column dialect's sequence functions -------------------------------------------------


def _column_problem(cell, *, states, output, seed=1):
    rng = np.random.default_rng(seed)
    params = _layer(cell, N_X, rng, output=output)
    x = jnp.asarray(rng.standard_normal((N_X, M, T)))
    a0 = jnp.asarray(rng.standard_normal((N_A, M)) * 0.5) if states else None
    c0 = jnp.asarray(rng.standard_normal((N_A, M)) * 0.5) if states and cell == "lstm" else None
    shapes = ((N_A, M, T), (N_Y, M, T), (N_A, M))
    weights = [jnp.asarray(rng.standard_normal(s)) for s in shapes]
    return x, params, a0, c0, weights


def _column_call(module, cell, x, a0, params, c0, lengths):
    """``(a, y, c_n)``: the plain LSTM's ``c_n`` is picked from its every-step ``c``."""
    if cell == "rnn":
        return (*module.rnn_forward(x, a0, params, lengths=lengths)[:2], None)
    if cell == "gru":
        return (*module.gru_forward(x, a0, params, lengths=lengths)[:2], None)
    a, y, c = module.lstm_forward(x, a0, params, c0=c0, lengths=lengths)[:3]
    if module is prnn:  # every step's c (n_a, m, T_x): its final state
        c = c[:, :, -1] if lengths is None else prnn.last_state(c, lengths, c0)
    return a, y, c


def _column_loss(module, cell, weights, lengths):
    w_a, w_y, w_c = weights

    def loss(x, params, a0, c0):
        a, y, c_n = _column_call(module, cell, x, a0, params, c0, lengths)
        total = jnp.sum(w_a * a) + 0.5 * jnp.sum(a**2)
        if y is not None:
            total = total + jnp.sum(w_y * y) + jnp.sum(y**2)
        if c_n is not None:
            total = total + jnp.sum(w_c * c_n) + 0.25 * jnp.sum(c_n**2)
        return total

    return loss


@pytest.mark.parametrize("output", [False, True], ids=["no-y", "y"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("states", [False, True], ids=["no-a0", "a0"])
@pytest.mark.parametrize("cell", CELLS)
def test_column_grad_equals_autodiff(cell, states, lengths, output, record_diff):
    x, params, a0, c0, weights = _column_problem(cell, states=states, output=output)
    ours = _column_loss(pj, cell, weights, lengths)
    plain = _column_loss(prnn, cell, weights, lengths)

    value, grads = jax.value_and_grad(ours, argnums=ARGS)(x, params, a0, c0)
    ref_value, ref = _reference(plain, x, params, a0, c0)
    assert_close(value, ref_value, rtol=RTOL, atol=ATOL)
    assert sorted(grads[1]) == sorted(params)  # Wy/Wya and by too, from JAX
    _assert_trees_close(grads, ref, record_diff)

    out = _column_call(pj, cell, x, a0, params, c0, lengths)
    plain_out = _column_call(prnn, cell, x, a0, params, c0, lengths)
    assert (out[1] is None) != output and (out[2] is None) == (cell != "lstm")
    _assert_trees_close(out, plain_out, rtol=0, atol=0)


def test_lstm_returns_the_final_cell_state():
    x, params, a0, c0, _ = _column_problem("lstm", states=True, output=True)
    for lengths in (None, LENGTHS):
        a, y, c_n = pj.lstm_forward(x, a0, params, c0=c0, lengths=lengths)
        assert c_n.shape == (N_A, M)
        _, _, c, _ = prnn.lstm_forward(x, a0, params, c0=c0, lengths=lengths)
        want = c[:, :, -1] if lengths is None else prnn.last_state(c, lengths, c0)
        assert_close(c_n, want, rtol=0, atol=0)
        if lengths is not None:  # the example of length 0 keeps c0, whose c is all zero
            assert_close(c_n[:, 1], c0[:, 1], rtol=0, atol=0)


# -- transformations ---------------------------------------------------------------------------


def test_jit_grad_one_compilation_for_every_length():
    cell, D = "lstm", 2
    x, layers, a0, c0, weights = _stack_problem(cell, D, 1, states=True)
    traces = []

    def loss(x, layers, a0, c0, lengths):
        traces.append(1)  # runs once per trace
        return _stack_loss(pj.multilayer_forward, cell, D, weights, lengths)(x, layers, a0, c0)

    jitted = jax.jit(jax.grad(loss, argnums=ARGS))
    for lengths in ([T, 0, 3, T, 1], [2, T, T, 0, 4]):
        lens = jnp.asarray(lengths)
        got = jitted(x, layers, a0, c0, lens)
        plain = _stack_loss(prnn.multilayer_forward, cell, D, weights, lens)
        _assert_trees_close(got, _reference(plain, x, layers, a0, c0)[1])
    assert len(traces) == 1


@pytest.mark.parametrize("cell", CELLS)
def test_jit_grad_column(cell):
    x, params, a0, c0, weights = _column_problem(cell, states=True, output=True)
    lens = jnp.asarray(LENGTHS)
    got = jax.jit(jax.grad(_column_loss(pj, cell, weights, lens), argnums=ARGS))(x, params, a0, c0)
    ref = _reference(_column_loss(prnn, cell, weights, lens), x, params, a0, c0)[1]
    _assert_trees_close(got, ref)


def test_vmap_of_grad_over_a_batch_of_sequences():
    cell, D, B = "gru", 1, 3
    x, layers, a0, _, weights = _stack_problem(cell, D, 1, states=True)
    xs = jnp.stack([x * (1 + 0.3 * b) for b in range(B)])  # (B, n_x, m, T_x)
    loss = _stack_loss(pj.multilayer_forward, cell, D, weights, jnp.asarray(LENGTHS))
    grad = jax.grad(loss, argnums=(0, 1, 2))
    batched = jax.jit(jax.vmap(grad, in_axes=(0, None, None, None)))(xs, layers, a0, None)
    for b in range(B):
        one = grad(xs[b], layers, a0, None)
        _assert_trees_close(jax.tree_util.tree_map(lambda g, b=b: g[b], batched), one)


def test_check_grads_against_finite_differences():
    from jax.test_util import check_grads

    x, layers, a0, c0, weights = _stack_problem("lstm", 2, 1, states=True)
    loss = _stack_loss(pj.multilayer_forward, "lstm", 2, weights, jnp.asarray(LENGTHS))
    # check_grads perturbs the arguments with NumPy, which portable_rnn.jax refuses
    check_grads(_on_jax(loss), (x, layers, a0, c0), order=1, modes=["rev"])
    xc, params, a0c, _, wc = _column_problem("rnn", states=True, output=True)
    rnn_loss = _on_jax(_column_loss(pj, "rnn", wc, None))
    check_grads(rnn_loss, (xc, params, a0c, None), order=1, modes=["rev"])


def _on_jax(loss):
    return lambda *args: loss(*jax.tree_util.tree_map(jnp.asarray, args))


# -- the custom backward is the one that runs --------------------------------------------------


@pytest.fixture
def backward_calls(monkeypatch):
    """Count the calls of `portable_rnn.multilayer_backward` (which stays the real one)."""
    from portable_rnn._column import stacked

    calls = []
    real = stacked.multilayer_backward

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stacked, "multilayer_backward", counting)
    return calls


def test_grad_runs_the_hand_written_backward(backward_calls):
    x, layers, a0, c0, weights = _stack_problem("lstm", 2, 2, states=True)
    ours = _stack_loss(pj.multilayer_forward, "lstm", 2, weights, None)
    ours(x, layers, a0, c0)
    assert backward_calls == []  # the forward alone does not
    jax.grad(ours, argnums=ARGS)(x, layers, a0, c0)
    assert backward_calls == [1]  # one backward for the whole stack
    xc, params, a0c, c0c, wc = _column_problem("gru", states=True, output=True)
    jax.grad(_column_loss(pj, "gru", wc, LENGTHS), argnums=ARGS)(xc, params, a0c, c0c)
    assert backward_calls == [1, 1]
    _reference(_column_loss(prnn, "gru", wc, LENGTHS), xc, params, a0c, c0c)
    assert backward_calls == [1, 1]  # plain autodiff never calls it


def test_jaxpr_holds_the_custom_vjp():
    x, layers, a0, c0, weights = _stack_problem("rnn", 1, 1, states=True)
    ours = _stack_loss(pj.multilayer_forward, "rnn", 1, weights, None)
    plain = _stack_loss(prnn.multilayer_forward, "rnn", 1, weights, None)
    assert "custom_vjp_call" in str(jax.make_jaxpr(ours)(x, layers, a0, c0))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(plain)(x, layers, a0, c0))


# -- bad input ---------------------------------------------------------------------------------


def _bad_stack(case):
    """``(call, kwargs)`` of `multilayer_forward` with one argument wrong."""
    x, layers, a0, c0, _ = _stack_problem("lstm", 2, 2, states=True)
    kw = {"cell": "lstm", "bidirectional": True, "a0": a0, "c0": c0, "lengths": None}
    layers = [dict(p) for p in layers]
    if case == "x-2d":
        x = x[:, :, 0]
    elif case == "x-batch-major":
        x = jnp.transpose(x, (1, 2, 0))
    elif case == "weight-shape":
        layers[2]["Wc"] = layers[2]["Wc"][:, 1:]
    elif case == "missing-key":
        del layers[1]["bo"]
    elif case == "weight-none":
        layers[0]["Wf"] = None
    elif case == "a0-shape":
        kw["a0"] = a0[:, :, 1:]
    elif case == "c0-swapped":
        kw["c0"] = jnp.swapaxes(jnp.concat([c0, c0[:, :1]], axis=1), 1, 2)
    elif case == "c0-for-gru":
        kw["cell"] = "gru"
        layers = [
            _layer("gru", N_X if k < 2 else 2 * N_A, np.random.default_rng(k)) for k in range(4)
        ]
    elif case == "lengths-range":
        kw["lengths"] = [T + 1, 0, 1, 2, 3]
    elif case == "lengths-count":
        kw["lengths"] = jnp.asarray([1, 2, 3])
    elif case == "lengths-float":
        kw["lengths"] = jnp.asarray([1.0, 2, 3, 4, 5])
    elif case == "lengths-numpy":
        kw["lengths"] = np.asarray(LENGTHS)
    elif case == "numpy-weight":
        layers[3]["bf"] = np.asarray(layers[3]["bf"])
    elif case == "float32-weight":
        layers[1]["Wi"] = layers[1]["Wi"].astype(jnp.float32)
    elif case == "not-a-list":
        layers = layers[0]
    elif case == "unknown-cell":
        kw["cell"] = "transformer"
    elif case == "odd-layers":
        layers = layers[:3]
    return x, layers, kw


STACK_CASES = [
    "x-2d",
    "x-batch-major",
    "weight-shape",
    "missing-key",
    "weight-none",
    "a0-shape",
    "c0-swapped",
    "c0-for-gru",
    "lengths-range",
    "lengths-count",
    "lengths-float",
    "lengths-numpy",
    "numpy-weight",
    "float32-weight",
    "not-a-list",
    "unknown-cell",
    "odd-layers",
]


@pytest.mark.parametrize("case", STACK_CASES)
def test_bad_stack_input_same_error_before_any_work(case, monkeypatch):
    x, layers, kw = _bad_stack(case)
    with pytest.raises((TypeError, ValueError, KeyError)) as plain:
        prnn.multilayer_forward(x, layers, **kw)
    from portable_rnn._core import sequence

    monkeypatch.setattr(sequence, "forward", _refuse_work)
    with pytest.raises(type(plain.value)) as ours:
        pj.multilayer_forward(x, layers, **kw)
    assert str(ours.value) == str(plain.value)
    assert "\n" not in str(ours.value)


def _refuse_work(*args, **kwargs):
    raise AssertionError("work started before the input was checked")


COLUMN_CASES = [
    ("rnn", "x-2d"),
    ("rnn", "x-batch-major"),
    ("rnn", "a0-shape"),
    ("rnn", "a0-swapped"),
    ("rnn", "missing-key"),
    ("rnn", "output-half"),
    ("gru", "weight-shape"),
    ("gru", "lengths-range"),
    ("gru", "numpy-a0"),
    ("lstm", "c0-shape"),
    ("lstm", "weight-shape"),
    ("lstm", "lengths-float"),
    ("lstm", "x-no-steps"),
    ("lstm", "params-none"),
]


@pytest.mark.parametrize(("cell", "case"), COLUMN_CASES)
def test_bad_column_input_same_error_before_any_work(cell, case, monkeypatch):
    x, params, a0, c0, _ = _column_problem(cell, states=True, output=True)
    lengths = None
    first = "Wax" if cell == "rnn" else ("Wr" if cell == "gru" else "Wf")
    if case == "x-2d":
        x = x[:, :, 0]
    elif case == "x-batch-major":
        x = jnp.transpose(x, (1, 2, 0))
    elif case == "x-no-steps":
        x = x[:, :, :0]
    elif case == "a0-shape":
        a0 = a0[:, 1:]
    elif case == "a0-swapped":
        a0 = a0.T  # (m, n_a): PyTorch's layout
    elif case == "c0-shape":
        c0 = c0[1:]
    elif case == "missing-key":
        params = {k: v for k, v in params.items() if k != "ba"}
    elif case == "output-half":
        params = {**params, "by": None}
    elif case == "weight-shape":
        params = {**params, first: params[first][:, 1:]}
    elif case == "lengths-range":
        lengths = [0, 1, 2, 3, -1]
    elif case == "lengths-float":
        lengths = jnp.asarray([1.0, 2, 3, 4, 5])
    elif case == "numpy-a0":
        a0 = np.asarray(a0)
    elif case == "params-none":
        params = None

    def call(module):
        if cell == "lstm":
            return module.lstm_forward(x, a0, params, c0=c0, lengths=lengths)
        return getattr(module, f"{cell}_forward")(x, a0, params, lengths=lengths)

    with pytest.raises((TypeError, ValueError, KeyError)) as plain:
        call(prnn)
    from portable_rnn._core import sequence

    monkeypatch.setattr(sequence, "forward", _refuse_work)
    with pytest.raises(type(plain.value)) as ours:
        call(pj)
    assert str(ours.value) == str(plain.value)
    assert "\n" not in str(ours.value)


def test_numpy_arrays_are_refused_naming_the_argument():
    x, params, a0, _, _ = _column_problem("rnn", states=True, output=False)
    numpy = {k: np.asarray(v) for k, v in params.items()}
    with pytest.raises(TypeError, match=r"^x is a numpy array, but portable_rnn.jax takes JAX"):
        pj.rnn_forward(np.asarray(x), np.asarray(a0), numpy)
    x, layers, _, _, _ = _stack_problem("gru", 1, 1, states=False)
    with pytest.raises(TypeError, match=r"^x is a numpy array, but portable_rnn.jax takes JAX"):
        pj.multilayer_forward(
            np.asarray(x), [{k: np.asarray(v) for k, v in layers[0].items()}], cell="gru"
        )


# -- the module --------------------------------------------------------------------------------


def test_all_is_the_public_api():
    public = sorted(
        name
        for name, obj in vars(pj).items()
        if not name.startswith("_")
        and not inspect.ismodule(obj)
        and getattr(obj, "__module__", "").startswith("portable_rnn")
    )
    assert sorted(pj.__all__) == public
    for name in pj.__all__:
        doc = inspect.getdoc(getattr(pj, name)) or ""
        assert "Parameters\n----------" in doc and "Returns\n-------" in doc, name
        assert "shape (" in doc, name


def test_without_jax_the_import_error_says_how_to_install():
    # a finder that hides JAX, as on a machine without it
    code = (
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'jax':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "import portable_rnn\n"
        "import portable_rnn.jax\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: portable_rnn.jax needs JAX: pip install"), last
