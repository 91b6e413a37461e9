"""Half precision (float16, bfloat16): one rule for every public function.

float16 and bfloat16 inputs are accepted where the backend has the dtype (torch and JAX
both, NumPy and CuPy float16, array_api_strict neither); the functions upcast them to
float32 once (`portable_rnn._validate.float32_inside`), compute in float32, and return
every result in the input's half dtype, on its backend and device. So every result must
equal the NumPy float64 result computed from the same half-rounded inputs within
``tolerances(dtype)``: the final rounding, plus float32's arithmetic.

The same rule, and the same wording, in `to_backend`, the ``init_*`` functions,
`set_config` and ``PORTABLE_RNN_DTYPE``; and JAX's default dtype is float32 unless x64
is on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import portable_rnn as prnn
import portable_rnn._config as config_mod
from portable_rnn._backend.compat import dtype_name
from portable_rnn._backend.devices import backend_dtypes
from portable_rnn.testing import Backend, assert_close, to_numpy, tolerances

from . import public_calls

HALVES = ("float16", "bfloat16")

#: the largest relative difference seen per (backend, dtype): printed at the end of the module
LARGEST: dict[tuple[str, str], tuple[float, str]] = {}


def _round_half(host: np.ndarray, dtype: str) -> np.ndarray:
    """``host`` rounded to ``dtype`` (round to nearest even), as float64."""
    if dtype == "float16":
        return host.astype(np.float16).astype(np.float64)
    try:
        import ml_dtypes  # comes with JAX
    except ImportError:  # pragma: no cover - torch only
        import torch

        t = torch.from_numpy(np.asarray(host, dtype=np.float64)).to(torch.bfloat16)
        return t.to(torch.float64).numpy()
    return host.astype(ml_dtypes.bfloat16).astype(np.float64)


def _rounded_to(half: str):
    """`public_calls._to`, but every value rounded to ``half`` first (then the same numbers
    in the half table and in the float64 reference table)."""

    def to(xp, tree, dtype="float64"):
        if isinstance(tree, dict):
            return {k: to(xp, v, dtype) for k, v in tree.items()}
        if isinstance(tree, list):
            return [to(xp, v, dtype) for v in tree]
        return xp.asarray(_round_half(np.asarray(tree, dtype=np.float32), half), dtype=dtype)

    return to


def _arrays(result, prefix=""):
    """``[(name, array)]`` of a function's results (tuples, dicts, lists of dicts; no Nones)."""
    if result is None:
        return []
    if isinstance(result, dict):
        return [p for k, v in result.items() for p in _arrays(v, f"{prefix}[{k!r}]")]
    if isinstance(result, (tuple, list)):
        return [p for k, v in enumerate(result) for p in _arrays(v, f"{prefix}[{k}]")]
    return [(prefix, result)]


def _record(xp, dtype, name, actual, desired):
    a, d = to_numpy(actual).astype(np.float64), np.asarray(desired, dtype=np.float64)
    rtol, atol = tolerances(dtype)
    rel = float(np.max(np.abs(a - d) / (np.abs(d) + atol / rtol), initial=0.0))
    key = (xp.name, dtype)
    if rel > LARGEST.get(key, (-1.0, ""))[0]:
        LARGEST[key] = (rel, name)


@pytest.fixture(scope="module", autouse=True)
def _print_largest():
    yield
    if LARGEST:
        lines = [f"  {b:<26} {d:<9} {r:.2e}  ({n})" for (b, d), (r, n) in sorted(LARGEST.items())]
        print("\nlargest |actual - desired| / (|desired| + atol/rtol), half precision:")
        print("\n".join(lines))


@pytest.mark.parametrize("dtype", HALVES)
def test_every_public_function_in_half_precision(xp, dtype, monkeypatch):
    """Every public array function: results in the half dtype, on the inputs' backend and
    device, equal to NumPy float64 from the same half-rounded inputs."""
    if dtype not in backend_dtypes(xp.backend):
        # the backend lacks it: making the inputs is the one-line error, naming the backend
        with pytest.raises(ValueError, match=rf"^dtype is {dtype}, which backend '{xp.backend}'"):
            xp.asarray(np.ones(2), dtype=dtype)
        return
    monkeypatch.setattr(public_calls, "_to", _rounded_to(dtype))
    with xp.settings():
        half = public_calls.calls(xp, dtype=dtype)
    numpy64 = Backend("numpy", "numpy", "cpu")
    reference = {c.name: c for c in public_calls.calls(numpy64, dtype="float64")}
    assert len(reference) == len(half)
    for call in half:
        with xp.settings():
            result = call()
        desired = reference[call.name]()
        if call.returns_cache:
            result, desired = result[:-1], desired[:-1]
        got, want = _arrays(result), _arrays(desired)
        assert [n for n, _ in got] == [n for n, _ in want], call.name
        assert got, call.name
        for (name, actual), (_, expected) in zip(got, want, strict=True):
            what = f"{call.name}{name}"
            assert_close(actual, expected, xp=xp, dtype=dtype, device=xp.array_device, err_msg=what)
            _record(xp, dtype, what, actual, expected)


@pytest.mark.parametrize("dtype", HALVES)
def test_a_half_forward_keeps_float32_caches_and_its_backward_takes_them(xp, dtype):
    if dtype not in backend_dtypes(xp.backend):
        pytest.skip(f"{xp.backend} has no {dtype}")
    p = prnn.init_lstm_params(3, 4, 2, seed=0, backend=xp.backend, device=xp.device, dtype=dtype)
    x = xp.asarray(np.random.default_rng(0).standard_normal((3, 2, 5)), dtype=dtype)
    a, y, c, caches = prnn.lstm_forward(x, None, p)
    assert dtype_name(caches[0].x.dtype) == "float32"  # the backward accumulates in float32
    grads = prnn.lstm_backward(a, caches)
    assert {dtype_name(g.dtype) for g in grads.values()} == {dtype}
    # a float32 upstream gradient with a half forward's caches: the caches hold float32,
    # so this is the float32 computation, in float32
    f32 = prnn.lstm_backward(xp.asarray(to_numpy(a).astype(np.float32)), caches)
    for k, g in grads.items():
        np.testing.assert_array_equal(
            to_numpy(g).astype(np.float64),
            to_numpy(xp.astype(f32[k], g.dtype)).astype(np.float64),
            err_msg=k,
        )


def test_mixed_half_and_float32_are_refused_naming_both(xp):
    halves = [h for h in HALVES if h in backend_dtypes(xp.backend)]
    if not halves:
        pytest.skip(f"{xp.backend} has no half dtype (the array API standard has none)")
    h = halves[0]
    p = prnn.init_rnn_params(3, 4, 2, seed=0, backend=xp.backend, device=xp.device, dtype="float32")
    x = xp.asarray(np.ones((3, 2, 5)), dtype=h)
    with pytest.raises(TypeError, match=f"^Wax has dtype float32 but x has dtype {h}; "):
        prnn.rnn_forward(x, None, p)
    p_half = prnn.to_backend(p, xp.backend, xp.device, dtype=h)
    x32 = xp.asarray(np.ones((3, 2, 5)), dtype="float32")
    with pytest.raises(TypeError, match=f"^Wax has dtype {h} but x has dtype float32; "):
        prnn.rnn_forward(x32, None, p_half)
    # a half upstream gradient with a float64 forward's caches
    x64 = xp.asarray(np.ones((3, 2, 5)), dtype="float64")
    a, _, caches = prnn.rnn_forward(
        x64, None, prnn.to_backend(p, xp.backend, xp.device, dtype="float64")
    )
    with pytest.raises(
        TypeError, match=rf"^caches \(the forward's x\) has dtype float64 but da has dtype {h}; "
    ):
        prnn.rnn_backward(xp.astype(a, getattr(xp, h)), caches)
    if len(halves) == 2:  # float16 with bfloat16
        with pytest.raises(TypeError, match="^Wax has dtype bfloat16 but x has dtype float16; "):
            prnn.rnn_forward(
                x if h == "float16" else xp.astype(x, xp.float16),
                None,
                prnn.to_backend(p, xp.backend, xp.device, dtype="bfloat16"),
            )


def test_bfloat16_on_numpy_is_refused_naming_the_backend_and_its_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    z = np.ones((2, 3), dtype=ml_dtypes.bfloat16)
    with pytest.raises(
        TypeError,
        match=r"^z has dtype bfloat16, which backend 'numpy' does not have "
        r"\(its floating dtypes: float32, float64, float16\)$",
    ):
        prnn.sigmoid(z)
    with pytest.raises(TypeError, match=r"^z must have a real floating dtype \(on numpy: "):
        prnn.sigmoid(np.ones(3, dtype=np.int32))


@pytest.mark.parametrize(
    ("backend", "dtype"),
    [("numpy", "bfloat16"), ("array_api_strict", "float16"), ("array_api_strict", "bfloat16")],
)
def test_a_dtype_the_backend_lacks_is_one_line_everywhere(backend, dtype, monkeypatch):
    pytest.importorskip(backend)
    monkeypatch.setattr(config_mod, "_global", None)
    monkeypatch.delenv("PORTABLE_RNN_DTYPE", raising=False)
    monkeypatch.delenv("PORTABLE_RNN_BACKEND", raising=False)
    tail = rf"is {dtype}, which backend '{backend}' does not have \(its floating dtypes: "
    with pytest.raises(ValueError, match=rf"^dtype {tail}"):
        prnn.init_lstm_params(3, 4, 2, backend=backend, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^dtype {tail}"):
        prnn.init_state(4, 2, backend=backend, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^dtype {tail}"):
        prnn.to_backend(np.ones(3), backend, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^dtype \(from set_config\(dtype=\.\.\.\)\) {tail}"):
        prnn.set_config(backend=backend, dtype=dtype)
    assert prnn.get_config() == prnn.Config()  # nothing changed
    monkeypatch.setenv("PORTABLE_RNN_BACKEND", backend)
    monkeypatch.setenv("PORTABLE_RNN_DTYPE", dtype)
    monkeypatch.setattr(config_mod, "_global", None)  # the environment is read anew
    with pytest.raises(ValueError, match=rf"^dtype \(from PORTABLE_RNN_DTYPE\) {tail}"):
        prnn.get_config()


@pytest.mark.parametrize("dtype", HALVES)
def test_half_dtypes_in_the_configuration_and_creation(xp, dtype, monkeypatch):
    monkeypatch.setattr(config_mod, "_global", None)
    monkeypatch.delenv("PORTABLE_RNN_BACKEND", raising=False)
    monkeypatch.delenv("PORTABLE_RNN_DTYPE", raising=False)
    if dtype not in backend_dtypes(xp.backend):
        with pytest.raises(ValueError, match=f"which backend '{xp.backend}' does not have"):
            prnn.set_config(backend=xp.backend, dtype=dtype)
        return
    p64 = prnn.init_rnn_params(3, 4, 2, seed=0, dtype="float64")
    with prnn.config_context(backend=xp.backend, device=xp.device, dtype=dtype):
        p = prnn.init_rnn_params(3, 4, 2, seed=0)
        state = prnn.init_state(4, 2)
    assert prnn.get_config() == prnn.Config()
    # init draws in float64, then rounds once: float64's numbers rounded to the dtype
    on = {"xp": xp, "dtype": dtype, "device": xp.array_device, "rtol": 0, "atol": 0}
    assert_close(p["Wax"], _round_half(p64["Wax"], dtype), **on)
    assert_close(state, np.zeros((4, 2)), **on)
    # to_backend: to the half dtype and back; a half array keeps its dtype
    moved = prnn.to_backend(p64, xp.backend, xp.device, dtype=dtype)
    np.testing.assert_array_equal(
        to_numpy(moved["Waa"]).astype(np.float64), _round_half(p64["Waa"], dtype)
    )
    kept = prnn.to_backend(moved, xp.backend, xp.device)
    assert kept["Waa"].dtype == moved["Waa"].dtype
    back = prnn.to_backend(moved, "numpy", dtype="float64")
    np.testing.assert_array_equal(back["Waa"], _round_half(p64["Waa"], dtype))
    # the environment variable
    monkeypatch.setattr(config_mod, "_global", None)
    monkeypatch.setenv("PORTABLE_RNN_BACKEND", xp.backend)
    monkeypatch.setenv("PORTABLE_RNN_DTYPE", dtype)
    assert prnn.get_config().dtype == dtype
    assert dtype_name(prnn.init_state(2, 2, device=xp.device).dtype) == dtype


def test_jax_default_dtype_is_float32_without_x64():
    """In a fresh interpreter with x64 off: every creation function works by default, in
    float32; float64 asked for explicitly is the error saying how to enable x64."""
    pytest.importorskip("jax")
    code = """
import numpy as np, jax
import portable_rnn as prnn
assert not jax.config.jax_enable_x64
out = [
    prnn.init_lstm_params(3, 4, 2, seed=0, backend="jax")["Wf"].dtype,
    prnn.init_rnn_params(3, 4, 2, backend="jax")["Wax"].dtype,
    prnn.init_gru_params(3, 4, 2, backend="jax")["Wr"].dtype,
    prnn.init_multilayer_params("lstm", 3, 4, backend="jax")[0]["Wf"].dtype,
    prnn.init_state(4, 2, backend="jax").dtype,
    prnn.to_backend(np.ones(3, np.float32), "jax").dtype,
    prnn.to_backend(np.ones(3), "jax").dtype,  # float64: JAX's default dtype, float32
]
prnn.set_config(backend="jax")
assert prnn.get_config().dtype is None
out.append(prnn.init_state(4, 2).dtype)
print(" ".join(str(d) for d in out))
for call in (lambda: prnn.init_lstm_params(3, 4, 2, backend="jax", dtype="float64"),
             lambda: prnn.to_backend(np.ones(3), "jax", dtype="float64")):
    try:
        call()
    except ValueError as e:
        print(e)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "PORTABLE_RNN_"))}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == " ".join(["float32"] * 8)
    assert (
        lines[1:]
        == [
            "float64 on JAX needs jax.config.update('jax_enable_x64', True) "
            "(or JAX_ENABLE_X64=1); otherwise choose dtype='float32'"
        ]
        * 2
    )


def test_jax_default_dtype_is_float64_with_x64(monkeypatch):
    jax = pytest.importorskip("jax")
    monkeypatch.setattr(config_mod, "_global", None)
    monkeypatch.delenv("PORTABLE_RNN_DTYPE", raising=False)
    assert jax.config.jax_enable_x64  # tests/conftest.py
    assert prnn.init_lstm_params(3, 4, 2, seed=0, backend="jax")["Wf"].dtype == jax.numpy.float64


def test_jitted_forward_and_backward_in_bfloat16():
    jax = pytest.importorskip("jax")
    p = prnn.init_gru_params(3, 4, 2, seed=0, backend="jax", dtype="bfloat16")
    x = prnn.to_backend(
        np.random.default_rng(1).standard_normal((3, 2, 5)), "jax", dtype="bfloat16"
    )
    a, y, caches = jax.jit(prnn.gru_forward)(x, None, p)
    grads = jax.jit(prnn.gru_backward)(a, caches)
    a_e, y_e, caches_e = prnn.gru_forward(x, None, p)
    grads_e = prnn.gru_backward(a_e, caches_e)
    assert a.dtype == jax.numpy.bfloat16 and grads["dWr"].dtype == jax.numpy.bfloat16
    rtol, atol = tolerances("bfloat16")
    np.testing.assert_allclose(
        np.asarray(a, np.float64), np.asarray(a_e, np.float64), rtol=rtol, atol=atol
    )
    for k in grads:
        np.testing.assert_allclose(
            np.asarray(grads[k], np.float64),
            np.asarray(grads_e[k], np.float64),
            rtol=rtol,
            atol=atol,
            err_msg=k,
        )


def test_mixed_precision_training_in_bfloat16(tmp_path):
    """``dtype="bfloat16"``: float32 master weights and Adam state (what the checkpoint
    holds), the model run on a bfloat16 copy; the losses follow a float32 run's, and the
    checkpoint records the dtype, which a resumed run keeps. On PyTorch (1 s); on JAX
    the same runs take 50 s of compilation (three jitted training steps) on the CI VM."""
    pytest.importorskip("torch")
    backend = "torch"
    from portable_rnn import train as tr

    corpus = tmp_path / "text.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    kw = dict(
        cell="lstm",
        hidden=12,
        layers=1,
        embed=6,
        seq_len=10,
        batch=3,
        steps=6,
        lr=1e-2,
        clip=1.0,
        eval_every=3,
        sample_length=0,
        seed=0,
        backend=backend,
    )
    half = tr.fit(tr.TrainConfig(**kw, dtype="bfloat16"), corpus=corpus, out=tmp_path / "h.npz")
    full = tr.fit(tr.TrainConfig(**kw, dtype="float32"), corpus=corpus, out=tmp_path / "f.npz")
    header, arrays = tr.load_checkpoint(tmp_path / "h.npz")
    assert header["dtype"] == "bfloat16"
    groups = ("params", "adam_m", "adam_v", "state")
    assert {a.dtype for g in groups for a in arrays[g].values()} == {np.dtype(np.float32)}
    # bfloat16 rounds the model's inputs (relative 3.9e-3): the losses stay within 2%
    np.testing.assert_allclose(half.train_loss, full.train_loss, rtol=2e-2)
    np.testing.assert_allclose(
        [v for _, v in half.val_loss], [v for _, v in full.val_loss], rtol=2e-2
    )
    assert half.train_loss != full.train_loss  # it did run in bfloat16
    resumed = tr.fit(
        tr.TrainConfig.from_checkpoint(tmp_path / "h.npz", steps=8),
        corpus=corpus,
        resume=tmp_path / "h.npz",
        out=tmp_path / "h.npz",
    )
    assert len(resumed.train_loss) == 8
    assert tr.load_checkpoint(tmp_path / "h.npz")[0]["dtype"] == "bfloat16"


def test_the_command_line_trains_and_samples_in_bfloat16(tmp_path, capsys):
    """``portable-rnn train --dtype bfloat16``: a choice of ``--dtype``; refused in one line
    (exit 2) on a backend without bfloat16; the checkpoint samples (in float32 by default)."""
    pytest.importorskip("torch")
    from portable_rnn.__main__ import main

    corpus = tmp_path / "text.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    tiny = [
        "--hidden",
        "8",
        "--embed",
        "4",
        "--seq-len",
        "8",
        "--batch",
        "2",
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--sample-length",
        "0",
        "--no-progress",
        "--corpus",
        str(corpus),
    ]
    out = tmp_path / "bf16.npz"
    assert (
        main(["train", *tiny, "--backend", "numpy", "--dtype", "bfloat16", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "portable-rnn train: error: dtype is bfloat16, which backend 'numpy' does not have "
        "(its floating dtypes: float32, float64, float16)"
    ]
    assert not out.exists()
    assert (
        main(["train", *tiny, "--backend", "torch", "--dtype", "bfloat16", "--out", str(out)]) == 0
    )
    assert "bfloat16 (float32 master weights)" in capsys.readouterr().out
    from portable_rnn.train import load_checkpoint

    assert load_checkpoint(out)[0]["dtype"] == "bfloat16"
    assert main(["sample", "--checkpoint", str(out), "--length", "5", "--seed", "0"]) == 0


# -- the framework-native functions (portable_rnn.jax, portable_rnn.torch) --------------


def _framework_problem(half: str):
    rng = np.random.default_rng(3)
    x = _round_half(rng.standard_normal((3, 4, 5)), half)
    p = {
        k: _round_half(v, half)
        for k, v in prnn.init_lstm_params(3, 6, 2, seed=1, backend="numpy").items()
        if k not in ("Wy", "by")
    }
    return x, p


def _reference_grads(x, p):
    """Loss ``sum(a**2) + sum(c_n)`` and its gradients in NumPy float64, by our backward."""
    out, _, c_n, cache = prnn.multilayer_forward(x, [p], cell="lstm")
    gs = prnn.multilayer_backward(2 * out, cache, dc_n=np.ones_like(c_n))
    return float(np.sum(out**2) + np.sum(c_n)), gs


@pytest.mark.parametrize("half", HALVES)
def test_jax_grad_in_half_precision_runs_our_backward_in_float32(half):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import portable_rnn.jax as pj

    x, p = _framework_problem(half)
    xj = jnp.asarray(x, dtype=half)
    pj_params = {k: jnp.asarray(v, dtype=half) for k, v in p.items()}

    def loss(params, x):
        a, _, c_n = pj.lstm_forward(x, None, params)
        return jnp.sum(a.astype("float32") ** 2) + jnp.sum(c_n.astype("float32"))

    value, grads = jax.jit(jax.value_and_grad(loss))(pj_params, xj)
    want_value, want = _reference_grads(x, p)
    rtol, atol = tolerances(half)
    assert abs(float(value) - want_value) <= rtol * abs(want_value) * 10
    for k, g in grads.items():
        assert dtype_name(g.dtype) == half, k
        np.testing.assert_allclose(
            to_numpy(g).astype(np.float64),
            want["layers"][0]["d" + k],
            rtol=10 * rtol,
            atol=10 * rtol * np.abs(want["layers"][0]["d" + k]).max(),
        )


@pytest.mark.parametrize("half", HALVES)
def test_torch_backward_in_half_precision_runs_our_backward_in_float32(half):
    torch = pytest.importorskip("torch")

    import portable_rnn.torch as pt

    x, p = _framework_problem(half)
    dt = getattr(torch, half)
    xt = torch.tensor(x, dtype=dt)
    pt_params = {k: torch.tensor(v, dtype=dt, requires_grad=True) for k, v in p.items()}
    a, _, c_n = pt.lstm_forward(xt, None, pt_params)
    assert a.dtype == dt and c_n.dtype == dt
    (a.float().square().sum() + c_n.float().sum()).backward()
    _, want = _reference_grads(x, p)
    rtol, _ = tolerances(half)
    for k, t in pt_params.items():
        assert t.grad is not None and t.grad.dtype == dt, k
        ref = want["layers"][0]["d" + k]
        np.testing.assert_allclose(
            t.grad.double().numpy(), ref, rtol=10 * rtol, atol=10 * rtol * np.abs(ref).max()
        )
