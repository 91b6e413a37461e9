"""Eager JAX runs long sequences in time linear in T (issue 17, point 1).

Called eagerly (outside ``jax.jit``), the time loop runs sequences of at least
``seam.CHUNK`` steps in compiled chunks (`portable_rnn._backend.seam.eager_jax_loop`), and
per-step values are joined in blocks of at most ``steps.FAN_IN`` arrays: no operation
takes a number of operands that grows with T (XLA compiles one program per operand
count, in a time that grows faster than the count: a ``stack`` of 1000 arrays took
seconds, and again for every new T). No timing here: the tests count the operations JAX
dispatches and the programs it compiles, and compare the chunks with the plain loop.
"""

import contextlib

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn._backend import seam, steps
from portable_rnn.testing import assert_close, tolerances

from . import reference as ref

jax = pytest.importorskip("jax", reason="the compiled eager loop is JAX's")
jnp = jax.numpy

CELLS = ("rnn", "lstm", "gru")
G = {"rnn": 1, "lstm": 4, "gru": 3}


@contextlib.contextmanager
def dispatches():
    """Record ``(name, number of operands)`` of every program JAX runs eagerly.

    An eager JAX operation runs from the C++ dispatch cache of its jitted function, or on
    a miss through pjit's Python path, ``jax._src.pjit._pjit_call_impl_python``. Here the
    C++ caches are emptied and no new entry is made (no "fast path data"), so that every
    operation takes the Python path, which is wrapped; compiled programs are kept. These
    are JAX internals: if they change, the tests fail (they are not skipped).
    """
    from jax._src import pjit

    ops: list[tuple[str, int]] = []
    run, fastpath = pjit._pjit_call_impl_python, pjit._get_fastpath_data

    def counted(*args, **params):
        ops.append((params["name"], len(args)))
        return run(*args, **params)

    pjit._pjit_call_impl_python = counted
    pjit._get_fastpath_data = lambda *a, **k: None
    pjit._cpp_pjit_cache_fun_only.clear()
    pjit._cpp_pjit_cache_explicit_attributes.clear()
    try:
        yield ops
    finally:
        pjit._pjit_call_impl_python, pjit._get_fastpath_data = run, fastpath


def _params(cell, n_x, n_a, dtype="float64"):
    init = getattr(prnn, f"init_{cell}_params")
    return {k: jnp.asarray(v, dtype=dtype) for k, v in init(n_x, n_a, 2, seed=0).items()}


def _column(cell, T, *, n_x=3, n_a=5, m=4, dtype="float64", seed=0):
    """A column-dialect forward and backward of ``cell`` over ``T`` steps: a thunk."""
    rng = np.random.default_rng(seed)
    p = _params(cell, n_x, n_a, dtype)
    x = jnp.asarray(rng.standard_normal((n_x, m, T)), dtype=dtype)
    a0 = jnp.asarray(rng.standard_normal((n_a, m)) * 0.5, dtype=dtype)
    da = jnp.asarray(rng.standard_normal((n_a, m, T)), dtype=dtype)
    forward, backward = getattr(prnn, f"{cell}_forward"), getattr(prnn, f"{cell}_backward")

    def run():
        out = forward(x, a0, p)
        return {"a": out[0], "y": out[1], **backward(da, out[-1])}

    return run


def _rows(cell, T, *, N=3, D=4, H=5, dtype="float64", seed=0):
    """A rows-dialect (CS231n) forward and backward: a thunk."""
    rng = np.random.default_rng(seed)
    shapes = [(N, T, D), (N, H), (D, G[cell] * H), (H, G[cell] * H), (G[cell] * H,)]
    if cell == "gru":
        shapes.append((H,))
    v = [jnp.asarray(rng.standard_normal(s) * 0.5, dtype=dtype) for s in shapes]
    dh = jnp.asarray(rng.standard_normal((N, T, H)), dtype=dtype)
    forward = getattr(rnn_layers, f"{cell}_forward")
    backward = getattr(rnn_layers, f"{cell}_backward")

    def run():
        h, cache = forward(*v)
        return {"h": h, **{f"d{k}": g for k, g in enumerate(backward(dh, cache))}}

    return run


def _stack(cell, T, *, n_x=3, n_a=4, m=2, dtype="float64", seed=0):
    """A two-layer bidirectional stack, forward and backward: a thunk."""
    rng = np.random.default_rng(seed)
    layers = prnn.init_multilayer_params(cell, n_x, n_a, num_layers=2, bidirectional=True, seed=0)
    layers = [{k: jnp.asarray(v, dtype=dtype) for k, v in layer.items()} for layer in layers]
    x = jnp.asarray(rng.standard_normal((n_x, m, T)), dtype=dtype)
    dout = jnp.asarray(rng.standard_normal((2 * n_a, m, T)), dtype=dtype)

    def run():
        out, a_n, c_n, cache = prnn.multilayer_forward(x, layers, cell=cell, bidirectional=True)
        grads = prnn.multilayer_backward(dout, cache)
        return {"out": out, "a_n": a_n, "c_n": c_n, "grads": grads}

    return run


DIALECTS = {"column": _column, "rows": _rows, "stack": _stack}


def _leaves(result):
    return jax.tree_util.tree_leaves(result)


@pytest.mark.parametrize(
    ("cell", "dialect"), [(c, "column") for c in CELLS] + [("lstm", "rows"), ("gru", "stack")]
)
def test_dispatched_operations_grow_linearly_with_bounded_operands(cell, dialect, monkeypatch):
    loops = 8 if dialect == "stack" else 2  # 2 layers x 2 directions; forward and backward
    # joins of more than 4 blocks go through the tree of joins already at these lengths
    monkeypatch.setattr(steps, "FAN_IN", 4)
    counts, widest = {}, {}
    for T in (50, 100, 200):
        run = DIALECTS[dialect](cell, T)
        jax.block_until_ready(run())  # compile outside the count
        with dispatches() as ops:
            jax.block_until_ready(run())
        names = {name for name, _ in ops}
        assert "time_chunk" in names, f"T = {T}: no compiled chunk ran ({sorted(names)})"
        counts[T], widest[T] = len(ops), max(n for _, n in ops)
    # no operation takes more operands for a longer sequence
    assert widest[200] == widest[100] == widest[50], widest
    assert counts[100] <= 2.1 * counts[50] and counts[200] <= 2.1 * counts[100], counts
    # the steps run compiled: fewer than a quarter of a dispatched operation per step and
    # loop (run one by one, a step is about 15 operations forward, 30 backward)
    assert counts[200] - counts[100] < loops * 100 / 4, counts


@pytest.mark.parametrize("cell", ["lstm"])
def test_a_new_length_compiles_no_new_chunk(cell, monkeypatch):
    traced = []
    joined = seam._joined

    def counting_joined(constants, arrays):  # called once each time a chunk is traced
        traced.append(len(arrays))
        return joined(constants, arrays)

    monkeypatch.setattr(seam, "_joined", counting_joined)
    seam._chunk_program.cache_clear()  # so that the first length traces the chunks
    compiled, armed = [], [True]

    # a program is compiled, or read back from the persistent cache the suite shares
    # (tests/conftest.py): either way, one program
    programs = {
        "/jax/core/compile/backend_compile_duration",
        "/jax/compilation_cache/cache_retrieval_time_sec",
    }

    def listener(event, duration, **kwargs):
        if armed[0] and event in programs:
            compiled.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.block_until_ready(_column(cell, 64, seed=1)())  # the chunk programs, traced once
        assert traced, "the compiled chunks did not run"
        per_length = {}
        for T in (96, 160, 320):
            traced.clear()
            compiled.clear()
            jax.block_until_ready(_column(cell, T, seed=1)())
            assert traced == [], f"T = {T} traced the step again"
            per_length[T] = len(compiled)
    finally:
        armed[0] = False
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if unregister is not None:  # not in every supported JAX version
            unregister(listener)
    assert per_length[96] > 0, "no compilation seen: the listener missed them"
    # a new length compiles its own small operations (shapes with T), as many for each T
    assert per_length[160] == per_length[96] and per_length[320] <= per_length[160] + 1, per_length


def _compare(run, monkeypatch):
    """``run()`` on the compiled chunks and on the plain loop: their array leaves."""
    fast = run()
    monkeypatch.setattr(seam, "COMPILE_EAGER_JAX", False)
    plain = run()
    monkeypatch.setattr(seam, "COMPILE_EAGER_JAX", True)
    return _leaves(fast), _leaves(plain)


CASES = [(c, d, "float64") for c in CELLS for d in DIALECTS] + [
    (c, "column", "float32") for c in CELLS
]


@pytest.mark.parametrize(("cell", "dialect", "dtype"), CASES)
def test_compiled_chunks_equal_the_plain_loop(cell, dialect, dtype, monkeypatch):
    # 40 steps: a full chunk, then one of 8 steps (read from the last 32 rows); the stacks'
    # reverse directions run them last to first
    fast, plain = _compare(DIALECTS[dialect](cell, 40, dtype=dtype), monkeypatch)
    assert len(fast) == len(plain) > 0
    for f, p in zip(fast, plain, strict=True):
        assert_close(f, p)  # the backend, shape, dtype and device, then the values


def test_one_chunk_exactly_equals_the_plain_loop(monkeypatch):
    fast, plain = _compare(_column("lstm", seam.CHUNK), monkeypatch)
    for f, p in zip(fast, plain, strict=True):
        assert_close(f, p)


def test_short_sequences_run_the_plain_loop(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eager_jax_loop ran for fewer than CHUNK steps")

    monkeypatch.setattr(seam, "eager_jax_loop", forbidden)
    fast, plain = _compare(_column("lstm", seam.CHUNK - 1), monkeypatch)
    for f, p in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(np.asarray(f), np.asarray(p))  # the same path, bit for bit


@pytest.mark.parametrize("cell", CELLS)
def test_long_sequences_against_references(cell):
    """150 steps: the hidden states against NumPy float64, the gradients against jax.vjp."""
    problem = {"rnn": ref.rnn_problem, "lstm": ref.lstm_problem, "gru": ref.gru_problem}[cell]
    x, a0, *rest = problem(np.random.default_rng(3), T=150)
    p, da = rest[-2], rest[-1]
    forward = getattr(prnn, f"{cell}_forward")
    xj, a0j, pj, daj = jax.tree_util.tree_map(jnp.asarray, (x, a0, p, da))
    out = forward(xj, a0j, pj)
    assert isinstance(out[-1][0].states, steps.StackedSteps)  # the compiled chunks ran
    assert_close(out[0], getattr(ref, f"{cell}_forward")(x, a0, p)[0], xp=jnp)
    grads = getattr(prnn, f"{cell}_backward")(daj, out[-1])
    _, pullback = jax.vjp(jax.jit(lambda x, a0: forward(x, a0, pj)[0]), xj, a0j)
    dx, da0 = pullback(daj)
    assert_close(grads["dx"], dx)
    assert_close(grads["da0"], da0)


def test_seed_style_caches_run_the_compiled_backward(monkeypatch):
    """A ``(list of cell caches, x)`` pair (per-step lists, not stacked) of 40 steps."""
    rng = np.random.default_rng(4)
    x, a0, _, p, da = ref.lstm_problem(rng, T=40)
    x, a0, p, da = jax.tree_util.tree_map(jnp.asarray, (x, a0, p, da))
    c = jnp.zeros_like(a0)
    a_t, cells = a0, []
    for t in range(x.shape[2]):
        a_t, c, _, cache = prnn.lstm_cell_forward(x[:, :, t], a_t, c, p)
        cells.append(cache)
    ran = []
    loop = seam.eager_jax_loop
    monkeypatch.setattr(seam, "eager_jax_loop", lambda *a, **k: ran.append(1) or loop(*a, **k))
    grads = prnn.lstm_backward(da, (cells, x))
    assert ran, "the backward of seed-style caches did not run the compiled chunks"
    want = prnn.lstm_backward(da, prnn.lstm_forward(x, a0, p)[-1])
    for key in ("dx", "da0", "dWf", "dbo"):
        assert_close(grads[key], want[key], err_msg=key)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 16, 17, 70])
def test_blocked_joins_are_exact(n, monkeypatch):
    monkeypatch.setattr(steps, "FAN_IN", 4)
    rng = np.random.default_rng(n)
    arrays = [jnp.asarray(rng.standard_normal((3, 2))) for _ in range(n)]
    want = np.stack([np.asarray(a) for a in arrays], axis=0)
    np.testing.assert_array_equal(np.asarray(steps.stack_time(jnp, arrays)), want)
    items = steps.ListSteps([(a, 2 * a) for a in arrays])
    np.testing.assert_array_equal(np.asarray(items.last_axis(jnp, 1)), np.moveaxis(2 * want, 0, -1))
    stacked = items.stacked(jnp)
    np.testing.assert_array_equal(np.asarray(stacked.fields[0]), want)
    blocks = [jnp.asarray(rng.standard_normal((k % 3 + 1, 2))) for k in range(n)]
    np.testing.assert_array_equal(
        np.asarray(steps.join_time(jnp, blocks)), np.concatenate([np.asarray(b) for b in blocks])
    )
    with dispatches() as ops:
        jax.block_until_ready(steps.stack_time(jnp, arrays))
    assert max(k for _, k in ops) <= 4, ops


# -- the seam's time loop with a step of its own: what is compiled, and what falls back --------


def _cumulative(carry, x_t, scale):
    total = carry[0] * scale + x_t[0]
    return (total,), (total, x_t[0] * 2.0)


def _loop(step, T, **kwargs):
    xs = steps.StackedSteps((jnp.arange(T * 6, dtype="float64").reshape(T, 3, 2) / 7,))
    return seam.time_loop(jnp, step, (jnp.ones((3, 2)),), xs, **kwargs)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_step_of_its_own_equals_the_plain_loop(reverse, monkeypatch):
    args = (jnp.asarray(0.5),)
    carry, ys = _loop(_cumulative, 70, args=args, reverse=reverse)
    assert isinstance(ys, steps.StackedSteps)  # the compiled chunks ran
    monkeypatch.setattr(seam, "COMPILE_EAGER_JAX", False)
    carry_p, ys_p = _loop(_cumulative, 70, args=args, reverse=reverse)
    assert isinstance(ys_p, steps.ListSteps)
    rtol, atol = tolerances("float64")
    np.testing.assert_allclose(np.asarray(carry[0]), np.asarray(carry_p[0]), rtol=rtol, atol=atol)
    for j in range(2):
        np.testing.assert_array_equal(ys.last_axis(jnp, j).shape, ys_p.last_axis(jnp, j).shape)
        np.testing.assert_allclose(
            np.asarray(ys.last_axis(jnp, j)),
            np.asarray(ys_p.last_axis(jnp, j)),
            rtol=rtol,
            atol=atol,
        )


def test_array_args_are_arguments_not_constants(monkeypatch):
    """One step with other arrays in ``args`` reuses its compiled chunk program; other
    constants (non-array leaves) make a program of their own."""
    traced = []

    def counted(carry, x_t, scale, power=1):
        traced.append(power)
        return _cumulative(carry, x_t, scale**power)

    first = _loop(counted, 40, args=(jnp.asarray(0.5),))[0][0]
    assert traced, "the compiled chunks did not run"
    traced.clear()
    second = _loop(counted, 40, args=(jnp.asarray(0.25),))[0][0]
    assert not np.allclose(np.asarray(first), np.asarray(second))
    assert traced == [], "new weights traced the step again"
    _loop(counted, 40, args=(jnp.asarray(0.25), 2))
    assert traced, "another constant reused the program of the first"


def test_args_holding_arrays_of_another_library_run_the_plain_loop():
    args = (np.full((1,), 0.5),)  # a NumPy array: it could change in place between calls
    assert seam._split(args) is None
    assert isinstance(_loop(_cumulative, 40, args=args)[1], steps.ListSteps)


def test_args_holding_tracers_run_under_scan():
    def loss(scale):
        carry, _ = _loop(_cumulative, 40, args=(scale,))
        return jnp.sum(carry[0])

    grad = jax.grad(loss)(jnp.asarray(0.5))  # args hold a tracer; carry and xs do not
    eps = 1e-6
    numeric = (loss(jnp.asarray(0.5 + eps)) - loss(jnp.asarray(0.5 - eps))) / (2 * eps)
    np.testing.assert_allclose(float(grad), float(numeric), rtol=1e-6)
