"""The time-loop seam: ``jax.lax.scan`` under JAX transformations equals the plain loop.

Eager calls run the plain Python loop on every backend; inside ``jax.jit`` (inputs are
tracers) the loop is ``lax.scan``. Both must give the same numbers, and the traced program
must not grow with the number of steps (so compile time does not either).
"""

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn.testing import assert_close

from . import reference as ref

jax = pytest.importorskip("jax", reason="the lax.scan path is JAX's")
jnp = jax.numpy


def _j(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_scan_under_jit_equals_the_plain_loop(cell):
    problem = {"rnn": ref.rnn_problem, "lstm": ref.lstm_problem, "gru": ref.gru_problem}[cell]
    x, a0, *rest = problem(np.random.default_rng(0))
    p, da = rest[-2], rest[-1]
    fwd = getattr(prnn, f"{cell}_forward")
    bwd = getattr(prnn, f"{cell}_backward")

    def run(x, a0, p, da):
        out = fwd(x, a0, p)
        return out[0], out[1], bwd(da, out[-1])

    eager = run(*_j((x, a0, p, da)))
    jitted = jax.jit(run)(*_j((x, a0, p, da)))
    for e, j in zip(
        jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted), strict=True
    ):
        assert_close(j, e, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_scan_for_stacks_and_the_rows_dialect(cell):
    layers = prnn.init_multilayer_params(cell, 3, 4, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((3, 2, 6)), rng.standard_normal((8, 2, 6))

    def stack(x, layers, dout):
        out, a_n, _, cache = prnn.multilayer_forward(x, layers, cell=cell, bidirectional=True)
        return out, a_n, prnn.multilayer_backward(dout, cache)

    args = _j((x, layers, dout))
    for e, j in zip(
        jax.tree_util.tree_leaves(stack(*args)),
        jax.tree_util.tree_leaves(jax.jit(stack)(*args)),
        strict=True,
    ):
        assert_close(j, e, rtol=1e-12, atol=1e-13)

    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    v = [rng.standard_normal(s) for s in [(2, 5, 3), (2, 4), (3, 4 * G), (4, 4 * G), (4 * G,)]]
    if cell == "gru":
        v.append(rng.standard_normal(4))
    dh = rng.standard_normal((2, 5, 4))

    def rows(dh, *v):
        h, cache = getattr(rnn_layers, f"{cell}_forward")(*v)
        return h, getattr(rnn_layers, f"{cell}_backward")(dh, cache)

    args = _j((dh, *v))
    for e, j in zip(
        jax.tree_util.tree_leaves(rows(*args)),
        jax.tree_util.tree_leaves(jax.jit(rows)(*args)),
        strict=True,
    ):
        assert_close(j, e, rtol=1e-12, atol=1e-13)


def test_traced_program_does_not_grow_with_the_number_of_steps():
    p = _j(ref.lstm_problem(np.random.default_rng(2))[3])

    def run(x, da):
        a, _, _, caches = prnn.lstm_forward(x, None, p)
        return prnn.lstm_backward(da, caches)["dWf"]

    def equations(jaxpr):
        """(primitive names, recursively into scan bodies)."""
        names = []
        for eqn in jaxpr.eqns:
            names.append(eqn.primitive.name)
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", None)
                if inner is not None:
                    names.extend(equations(inner))
        return names

    programs = {}
    for T in (10, 1000):
        x, da = jnp.zeros((3, 4, T)), jnp.zeros((5, 4, T))
        programs[T] = equations(jax.make_jaxpr(run)(x, da).jaxpr)
    assert programs[10].count("scan") == 2  # the forward and the backward loop
    assert programs[1000] == programs[10]  # one traced step each, whatever T is
