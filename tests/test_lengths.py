"""Variable-length sequences on every backend: the shared suite's half of issue 13.

PyTorch's packed sequences are the outside oracle (``test_lengths_torch.py``); here:

* ``lengths=None`` and all-full ``lengths`` give bit-identical results (values and
  gradients), so masking costs a full batch nothing in accuracy;
* an independent inner oracle: each example run alone over its own real steps gives the
  same outputs, final states and gradients as the padded batch (length 0 included);
* gradients arriving at padded outputs are ignored;
* central differences and ``jax.vjp`` agree with the hand-written backward with mixed
  lengths, and ``jax.jit`` compiles once for two different ``lengths`` arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

import portable_rnn as prnn
from portable_rnn import rnn_layers
from portable_rnn.testing import assert_close, check_gradients, to_numpy

from .public_calls import calls, column_problem

#: a mix of lengths, unsorted, with 0, 1 and T = 6
LENGTHS = [4, 6, 0, 1, 6, 3]
M, T = len(LENGTHS), 6
SIZES = {"n_x": 3, "n_a": 4, "n_y": 2, "m": M, "T": T}


def _arrays(tree) -> list:
    """The arrays of a result, in order (caches and other objects skipped)."""
    if isinstance(tree, dict):
        return [a for v in tree.values() for a in _arrays(v)]
    if isinstance(tree, (tuple, list)):
        return [a for v in tree for a in _arrays(v)]
    return [tree] if hasattr(tree, "shape") and hasattr(tree, "dtype") else []


def _backward_of(name: str):
    """The backward of a forward's `public_calls` name, and how it takes the gradient."""
    if name.startswith("multilayer_forward"):
        return prnn.multilayer_backward
    module = rnn_layers if name.startswith("rnn_layers.") else prnn
    return getattr(module, name.split(".")[-1].replace("_forward", "_backward"))


FORWARDS = sorted(
    c.name for c in calls(np, sizes=SIZES) if "lengths" in c.args and "_forward" in c.name
)


def _run(call, lengths, seed=3):
    """The forward with ``lengths`` (left out when ``"absent"``), then its backward with a
    random upstream gradient of the outputs: every output and gradient array, in order."""
    args = dict(call.args)
    if isinstance(lengths, str):  # "absent"
        del args["lengths"]
    else:
        args["lengths"] = lengths
    out = call(args)
    first = out[0]
    dout = np.random.default_rng(seed).standard_normal(tuple(first.shape))
    d = _like(dout, first)
    grads = _backward_of(call.name)(d, out[-1])
    return _arrays(out[:-1]) + _arrays(grads)


def _like(host, arr):
    """The NumPy array ``host`` on ``arr``'s backend, device and dtype."""
    from array_api_compat import array_namespace, device

    xp = array_namespace(arr)
    return xp.asarray(host.astype(np.float64), dtype=arr.dtype, device=device(arr))


@pytest.mark.parametrize("name", FORWARDS)
def test_no_lengths_and_full_lengths_are_bit_identical(xp, name):
    (call,) = (c for c in calls(xp, sizes=SIZES) if c.name == name)
    full = xp.asarray(np.full(M, T))
    absent, none = _run(call, "absent"), _run(call, None)
    for got in (none, _run(call, full), _run(call, [T] * M)):
        assert len(got) == len(absent)
        for k, (a, b) in enumerate(zip(got, absent, strict=True)):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=f"{name} [{k}]")


# -- the inner oracle: each example alone, over its own real steps --------------------------


def _column(xp, cell, dtype="float64"):
    x, a0, c0, p, da = column_problem(xp, cell, 4, dtype=dtype, **SIZES)
    return x, a0, c0, p, da


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_column_forward_and_backward_equal_each_example_alone(xp, cell):
    x, a0, c0, p, da = _column(xp, cell)
    fwd, bwd = getattr(prnn, f"{cell}_forward"), getattr(prnn, f"{cell}_backward")
    kw = {"c0": c0} if cell == "lstm" else {}
    lengths = xp.asarray(np.asarray(LENGTHS))
    out = fwd(x, a0, p, **kw, lengths=lengths)
    g = bwd(da, out[-1])
    a = out[0]
    hx, ha0, hc0, hda = (to_numpy(v) for v in (x, a0, c0, da))
    hp = {k: to_numpy(v) for k, v in p.items()}
    a_n = prnn.last_state(a, lengths, a0)
    for j, n in enumerate(LENGTHS):
        outputs = [to_numpy(v)[:, j, :] for v in out[:-1]]  # a, y (and c)
        for k, o in enumerate(outputs):  # exactly zero at the padded steps
            assert np.all(o[:, n:] == 0), (j, k)
        kw_j = {"c0": hc0[:, j : j + 1]} if cell == "lstm" else {}
        if n == 0:  # state stays initial: no gradient reaches x; da0 gets nothing
            assert_close(a_n[:, j], ha0[:, j], xp=xp, err_msg=f"a_n of example {j}")
            assert np.all(to_numpy(g["dx"])[:, j, :] == 0)
            assert np.all(to_numpy(g["da0"])[:, j] == 0)
            continue
        alone = fwd(hx[:, j : j + 1, :n], ha0[:, j : j + 1], hp, **kw_j)
        for k, (o, want) in enumerate(zip(outputs, alone[:-1], strict=True)):
            assert_close(xp.asarray(o[:, :n]), want[:, 0, :], xp=xp, err_msg=f"output {k} of {j}")
        assert_close(a_n[:, j], alone[0][:, 0, -1], xp=xp, err_msg=f"a_n of example {j}")
        ga = bwd(np.ascontiguousarray(hda[:, j : j + 1, :n]), alone[-1])
        assert_close(g["dx"][:, j, :n], ga["dx"][:, 0, :], xp=xp, err_msg=f"dx of {j}")
        assert np.all(to_numpy(g["dx"])[:, j, n:] == 0)
        assert_close(g["da0"][:, j], ga["da0"][:, 0], xp=xp, err_msg=f"da0 of {j}")
    # the weights' gradients are the sums of the examples' (padding adds nothing)
    total = {}
    for j, n in enumerate(LENGTHS):
        if n:
            kw_j = {"c0": hc0[:, j : j + 1]} if cell == "lstm" else {}
            alone = fwd(hx[:, j : j + 1, :n], ha0[:, j : j + 1], hp, **kw_j)
            ga = bwd(np.ascontiguousarray(hda[:, j : j + 1, :n]), alone[-1])
            for k, v in ga.items():
                if k not in ("dx", "da0", "dc0"):
                    total[k] = total.get(k, 0) + v
    for k, v in total.items():
        assert_close(g[k], v, xp=xp, err_msg=k)


def test_gradients_at_padded_outputs_are_ignored(xp):
    x, a0, c0, p, da = _column(xp, "lstm")
    lengths = LENGTHS
    caches = prnn.lstm_forward(x, a0, p, c0=c0, lengths=lengths)[-1]
    host = to_numpy(da)
    mask = np.arange(T)[None, None, :] < np.asarray(lengths)[None, :, None]
    zeroed = xp.asarray(np.where(mask, host, 0.0))
    g, g0 = prnn.lstm_backward(da, caches), prnn.lstm_backward(zeroed, caches)
    for k in g:
        np.testing.assert_array_equal(to_numpy(g[k]), to_numpy(g0[k]), err_msg=k)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_rows_forward_equals_column_forward(xp, cell):
    """The rows dialect runs the same masked core: its h and gradients are the column's."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((M, T, 3))
    h0 = rng.standard_normal((M, 4))
    # the rows weights of the same layer, through interop's conversion of one torch layer
    from portable_rnn import interop

    torch = pytest.importorskip("torch")
    mod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        3, 4, batch_first=True
    ).double()
    rows = {k: to_numpy(v) for k, v in interop.from_torch(mod, dialect="rows").items()}
    col = {k: to_numpy(v) for k, v in interop.from_torch(mod).items()}
    lengths = xp.asarray(np.asarray(LENGTHS))
    fwd = getattr(rnn_layers, f"{cell}_forward")
    h, cache = fwd(
        xp.asarray(x), xp.asarray(h0), *(xp.asarray(v) for v in rows.values()), lengths=lengths
    )
    a, *_ = getattr(prnn, f"{cell}_forward")(
        np.ascontiguousarray(x.transpose(2, 0, 1)),
        np.ascontiguousarray(h0.T),
        col,
        lengths=LENGTHS,
    )
    assert_close(h, a.transpose(1, 2, 0), xp=xp)
    h_n = rnn_layers.last_state(h, lengths, xp.asarray(h0))
    assert_close(h_n, prnn.last_state(a, LENGTHS, np.ascontiguousarray(h0.T)).T, xp=xp)
    dh = rng.standard_normal((M, T, 4))
    grads = getattr(rnn_layers, f"{cell}_backward")(xp.asarray(dh), cache)
    dx = to_numpy(grads[0])
    assert np.all(dx[np.arange(T)[None, :] >= np.asarray(LENGTHS)[:, None]] == 0)


# -- gradients: central differences and jax.vjp, mixed lengths -----------------------------


def _stack_inputs(cell, bidirectional, L=2):
    rng = np.random.default_rng(7)
    D = 2 if bidirectional else 1
    layers = prnn.init_multilayer_params(
        cell, 3, 4, num_layers=L, bidirectional=bidirectional, seed=3
    )
    x = rng.standard_normal((3, M, T))
    a0 = rng.standard_normal((L * D, 4, M)) * 0.5
    c0 = rng.standard_normal((L * D, 4, M)) * 0.5
    dout = rng.standard_normal((D * 4, M, T))
    da_n, dc_n = rng.standard_normal(a0.shape), rng.standard_normal(c0.shape)
    return layers, x, a0, c0, dout, da_n, dc_n


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_multilayer_backward_vs_finite_differences(cell, bidirectional):
    layers, x, a0, c0, dout, da_n, dc_n = _stack_inputs(cell, bidirectional)
    lstm = cell == "lstm"

    def run(v):
        ls = [{k: v[f"{i}.{k}"] for k in layer} for i, layer in enumerate(layers)]
        kw = {"c0": v["c0"]} if lstm else {}
        return prnn.multilayer_forward(
            v["x"], ls, cell=cell, bidirectional=bidirectional, a0=v["a0"], lengths=LENGTHS, **kw
        )

    def loss(v):
        out, a_n, c_n, _ = run(v)
        return np.sum(dout * out) + np.sum(da_n * a_n) + (np.sum(dc_n * c_n) if lstm else 0.0)

    inputs = {"x": x, "a0": a0, **({"c0": c0} if lstm else {})}
    inputs |= {f"{i}.{k}": v for i, layer in enumerate(layers) for k, v in layer.items()}
    cache = run(inputs)[-1]
    g = prnn.multilayer_backward(dout, cache, da_n=da_n, dc_n=dc_n if lstm else None)
    grads = {"x": g["dx"], "a0": g["da0"], **({"c0": g["dc0"]} if lstm else {})}
    grads |= {f"{i}.{k}": gl["d" + k] for i, gl in enumerate(g["layers"]) for k in layers[i]}
    check_gradients(loss, inputs, grads)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_backward_vs_jax_vjp_with_mixed_lengths(cell):
    jax = pytest.importorskip("jax", reason="jax.vjp is the automatic-differentiation oracle")
    jnp = jax.numpy
    assert jax.config.jax_enable_x64
    # one bidirectional layer (the central differences above take two): compiling the
    # vjp of a deeper stack costs seconds per cell
    layers, x, a0, c0, dout, da_n, dc_n = _stack_inputs(cell, True, L=1)
    lstm = cell == "lstm"
    lengths = jnp.asarray(LENGTHS)

    def forward(v):
        ls = [{k: v[f"{i}.{k}"] for k in layer} for i, layer in enumerate(layers)]
        kw = {"c0": v["c0"]} if lstm else {}
        out, a_n, c_n, _ = prnn.multilayer_forward(
            v["x"], ls, cell=cell, bidirectional=True, a0=v["a0"], lengths=lengths, **kw
        )
        return (out, a_n, c_n) if lstm else (out, a_n)

    primals = {"x": x, "a0": a0, **({"c0": c0} if lstm else {})}
    primals |= {f"{i}.{k}": v for i, layer in enumerate(layers) for k, v in layer.items()}
    jprimals = {k: jnp.asarray(v) for k, v in primals.items()}
    cot = tuple(jnp.asarray(c) for c in ((dout, da_n, dc_n) if lstm else (dout, da_n)))
    # compiled: differentiating the eager loop op by op takes seconds
    (auto,) = jax.jit(lambda p, c: jax.vjp(forward, p)[1](c))(jprimals, cot)
    ls = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in layers]
    kw = {"c0": jnp.asarray(c0)} if lstm else {}
    cache = prnn.multilayer_forward(
        jnp.asarray(x), ls, cell=cell, bidirectional=True, a0=jnp.asarray(a0), lengths=lengths, **kw
    )[-1]
    g = prnn.multilayer_backward(
        jnp.asarray(dout), cache, da_n=jnp.asarray(da_n), dc_n=jnp.asarray(dc_n) if lstm else None
    )
    ours = {"x": g["dx"], "a0": g["da0"], **({"c0": g["dc0"]} if lstm else {})}
    ours |= {f"{i}.{k}": gl["d" + k] for i, gl in enumerate(g["layers"]) for k in layers[i]}
    for k, v in ours.items():
        assert_close(v, to_numpy(auto[k]), xp=jnp, err_msg=k)


def test_jax_jit_compiles_once_for_two_lengths():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    layers, x, a0, c0, dout, da_n, dc_n = _stack_inputs("lstm", True)
    ls = [{k: jnp.asarray(v) for k, v in layer.items()} for layer in layers]

    @jax.jit
    def loss_grads(x, lengths):
        out, a_n, c_n, cache = prnn.multilayer_forward(
            x, ls, cell="lstm", bidirectional=True, lengths=lengths
        )
        g = prnn.multilayer_backward(jnp.ones_like(out), cache)
        return out, a_n, g["dx"]

    results = {}
    for lengths in ([6, 5, 4, 3, 2, 1], LENGTHS):
        results[tuple(lengths)] = loss_grads(jnp.asarray(x), jnp.asarray(lengths))
    assert loss_grads._cache_size() == 1
    for lengths, (out, a_n, dx) in results.items():  # and each equals the eager run
        e_out, e_a_n, _, cache = prnn.multilayer_forward(
            jnp.asarray(x), ls, cell="lstm", bidirectional=True, lengths=lengths
        )
        e_dx = prnn.multilayer_backward(jnp.ones_like(e_out), cache)["dx"]
        for got, want in ((out, e_out), (a_n, e_a_n), (dx, e_dx)):
            assert_close(got, to_numpy(want), xp=jnp)


def test_the_documented_pytorch_round_trip_runs():
    """The example of "Variable-length sequences" in docs/conventions.md runs as written."""
    pytest.importorskip("torch")
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "docs" / "conventions.md").read_text()
    section = text.split("## Variable-length sequences", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(compile(code, "docs/conventions.md", "exec"), namespace)
    assert namespace["packed"].data.shape[0] == 7  # 5 + 2 real steps


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_padding_values_never_matter_nan_included(xp, cell):
    """Whatever the padded steps of x hold (NaN, inf, huge), nothing changes: outputs, final
    states and every gradient equal those of zero padding, bit for bit."""
    layers = prnn.init_multilayer_params(cell, 3, 4, num_layers=2, bidirectional=True, seed=2)
    layers = [{k: xp.asarray(to_numpy(v)) for k, v in layer.items()} for layer in layers]
    rng = np.random.default_rng(5)
    host = rng.standard_normal((3, M, T))
    padded = np.arange(T)[None, None, :] >= np.asarray(LENGTHS)[None, :, None]
    dout = xp.asarray(rng.standard_normal((8, M, T)))
    results = []
    for fill in (0.0, np.nan, 1e300, -1e300):
        x = xp.asarray(np.where(padded, fill, host))
        out, a_n, c_n, cache = prnn.multilayer_forward(
            x, layers, cell=cell, bidirectional=True, lengths=LENGTHS
        )
        g = prnn.multilayer_backward(dout, cache)
        results.append([to_numpy(v) for v in _arrays((out, a_n, c_n, g))])
    for k, got in enumerate(results[1:], 1):
        for a, b in zip(got, results[0], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"padding filled with fill {k}")
