"""Caches are JAX pytrees: a jitted forward returns its cache, a jitted backward takes it.

For every forward / backward pair of `public_calls.calls` on JAX: the forward jitted gives
what it gives eagerly, its cache's leaves are exactly arrays, and the backward jitted, given
the jitted forward's cache, gives what the eager backward gives the eager cache. ``vmap``
over a leading batch of sequences of the LSTM and the multi-layer stacks equals a loop.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn.testing import Backend, assert_close

from .public_calls import calls

jax = pytest.importorskip("jax")

JX = Backend("jax", "jax", "cpu")
CALLS = {c.name: c for c in calls(JX)}
#: forward name -> backward name, every public forward that returns a cache
PAIRS = {
    n: n.replace("_forward", "_backward")
    for n in CALLS
    if n.replace("_forward", "_backward") in CALLS and n.replace("_forward", "_backward") != n
}


def _traced(value) -> bool:
    """Whether an argument is traced by the jitted calls: floating arrays and parameter
    dicts or lists of them (indices and lengths stay concrete, their values checked)."""
    if isinstance(value, dict):
        return all(_traced(v) for v in value.values())
    if isinstance(value, list):
        return bool(value) and all(_traced(v) for v in value)
    return isinstance(value, jax.Array) and jax.numpy.issubdtype(value.dtype, jax.numpy.floating)


def _jitted(call, args: dict):
    """``call`` with ``args``, jitted over its traced arguments (the others closed over)."""
    traced = {k: v for k, v in args.items() if _traced(v) or k in ("cache", "caches")}
    fixed = {k: v for k, v in args.items() if k not in traced}

    def fn(t):
        return call({k: (t[k] if k in t else fixed[k]) for k in args})

    return jax.jit(fn)(traced)


def _arrays(tree) -> list:
    leaves = jax.tree_util.tree_leaves(tree)
    assert leaves, "no arrays"
    for leaf in leaves:
        assert isinstance(leaf, jax.Array), type(leaf)
    return leaves


def _assert_same(actual, desired) -> None:
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(desired)
    for a, d in zip(_arrays(actual), _arrays(desired), strict=True):
        assert_close(a, d, xp=JX)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_jit_forward_and_backward_apart(name):
    fwd, bwd = CALLS[name], CALLS[PAIRS[name]]
    with JX.settings():
        eager = fwd()
        jitted = _jitted(fwd, fwd.args)
        # the outputs alike; the caches may differ in layout (a jitted loop is a scan)
        _assert_same(jitted[:-1], eager[:-1])
        cache = jitted[-1]
        _arrays(cache)  # the leaves are exactly arrays
        key = bwd.caches[0]
        _assert_same(_jitted(bwd, {**bwd.args, key: cache}), bwd({**bwd.args, key: eager[-1]}))


def test_every_forward_has_a_pair():
    forwards = {n for n, c in CALLS.items() if c.returns_cache and n.split(".")[-1][0].islower()}
    forwards -= {"fwdProp", "fwdPropSeq"}  # the seeds' own functions: no backward
    assert forwards == set(PAIRS)


def test_column_caches_keep_their_seed_style_view():
    """Through jit, the sequence caches still answer ``caches[0][t]`` with cell caches."""
    fwd = CALLS["lstm_forward"]
    with JX.settings():
        eager = fwd()[-1]
        jitted = _jitted(fwd, fwd.args)[-1]
        assert len(jitted[0]) == len(eager[0]) and repr(jitted[0]) == repr(eager[0])
        for t in (0, -1):
            _assert_same(jitted[0][t], eager[0][t])


def _batch(xp, x, n: int = 3):
    """``n`` different sequences like ``x``, on a new leading axis."""
    rng = np.random.default_rng(7)
    return xp.stack([x * float(rng.uniform(0.5, 1.5)) for _ in range(n)], axis=0)


def _check_vmap(fn, xs) -> None:
    batched = jax.vmap(fn)(xs)
    looped = [fn(xs[i, ...]) for i in range(xs.shape[0])]
    for j, part in enumerate(batched):
        for i, one in enumerate(looped):
            assert_close(part[i, ...], one[j], xp=JX, err_msg=f"output {j}, sequence {i}")


def test_vmap_lstm_forward_backward():
    call = CALLS["lstm_forward"]
    a0, p, c0 = (call.args[k] for k in ("a0", "parameters", "c0"))
    da = CALLS["lstm_backward"].args["da"]

    def fn(x):
        a, _, _, caches = prnn.lstm_forward(x, a0, p, c0=c0)
        g = prnn.lstm_backward(da * a, caches)
        return a, g["dx"], g["dWf"], g["da0"]

    with JX.settings():
        _check_vmap(fn, _batch(JX, call.args["x"]))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_vmap_multilayer_forward_backward(cell):
    call = CALLS[f"multilayer_forward ({cell})"]
    layers, a0 = call.args["layers"], call.args["a0"]
    dout = CALLS[f"multilayer_backward ({cell})"].args["dout"]

    def fn(x):
        out, h_n, _, cache = prnn.multilayer_forward(x, layers, cell=cell, a0=a0)
        g = prnn.multilayer_backward(dout * out, cache, da_n=h_n)
        return out, g["dx"], g["da0"], g["layers"][0]["Wx"] if "Wx" in g["layers"][0] else h_n

    with JX.settings():
        _check_vmap(fn, _batch(JX, call.args["x"]))


@pytest.mark.parametrize("padded", [False, True])
def test_char_model_cache(padded):
    """The character model's forward and backward jitted apart, with and without lengths."""
    from portable_rnn import train

    with JX.settings():
        params = train.init_char_model(7, cell="gru", hidden=4, layers=1, embed=3, seed=0)
        params = {k: JX.asarray(np.asarray(v), dtype="float64") for k, v in params.items()}
        rng = np.random.default_rng(0)
        x, y = (JX.asarray(rng.integers(0, 7, size=(3, 4))) for _ in range(2))
        lengths = {"lengths": JX.asarray([4, 2, 0])} if padded else {}
        eager = train.char_model_forward(params, x, y, **lengths)
        fwd = jax.jit(lambda p: train.char_model_forward(p, x, y, **lengths))
        jitted = fwd(params)
        _assert_same(jitted[:2], eager[:2])
        _arrays(jitted[-1])
        _assert_same(
            jax.jit(train.char_model_backward)(jitted[-1]), train.char_model_backward(eager[-1])
        )


@pytest.mark.parametrize("name", ["lstm_forward", "multilayer_forward (gru)"])
def test_a_jitted_backward_is_traced_once(name):
    """Caches of two forward calls have equal tree structures: one trace of the backward."""
    fwd, bwd = CALLS[name], CALLS[PAIRS[name]]
    key, traces = bwd.caches[0], []

    def backward(args):
        traces.append(1)
        return bwd({k: args[k] for k in bwd.args})  # in signature order (jit sorts keys)

    with JX.settings():
        jitted = jax.jit(backward)
        for scale in (1.0, 2.0):
            cache = _jitted(fwd, {**fwd.args, "x": fwd.args["x"] * scale})[-1]
            jitted({**bwd.args, key: cache})
    assert len(traces) == 1


def test_a_blocked_jax_import_is_not_imported_jax():
    """``sys.modules["jax"] = None`` (the standard way to block an import) leaves
    portable_rnn usable on NumPy: caches are made without registering anything."""
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "import numpy as np, portable_rnn as prnn\n"
        "p = prnn.init_lstm_params(3, 4, 2, seed=0)\n"
        "a, y, c, caches = prnn.lstm_forward(np.ones((3, 2, 5)), None, p)\n"
        "print(prnn.lstm_backward(np.ones_like(a), caches)['dx'].shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 2, 5)"
