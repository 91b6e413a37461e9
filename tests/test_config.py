"""Configuration, parameter initialisation, zero states and to_backend."""

import importlib.util
import threading

import numpy as np
import pytest

import portable_rnn as prnn
import portable_rnn._config as config_mod
from portable_rnn.testing import assert_close, to_numpy


@pytest.fixture(autouse=True)
def fresh_config(monkeypatch):
    """Each test starts from the defaults (environment read anew) and leaves no trace."""
    for var in ("PORTABLE_RNN_BACKEND", "PORTABLE_RNN_DEVICE", "PORTABLE_RNN_DTYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(config_mod, "_global", None)
    yield


def test_defaults():
    # dtype None: the backend's default, float64 (float32 on JAX without x64: test_half.py)
    assert prnn.get_config() == prnn.Config(backend="numpy", device=None, dtype=None)


def test_set_config_and_context_manager_restores_even_on_error():
    prnn.set_config(dtype="float32")
    assert prnn.get_config().dtype == "float32"
    with pytest.raises(RuntimeError), prnn.config_context(backend="array_api_strict"):
        assert prnn.get_config().backend == "array_api_strict"
        assert prnn.get_config().dtype == "float32"  # the rest is inherited
        raise RuntimeError("boom")
    assert prnn.get_config() == prnn.Config(dtype="float32")
    with prnn.config_context(dtype="float64"):
        with prnn.config_context(backend="array_api_strict") as inner:
            assert inner == prnn.Config("array_api_strict", None, "float64")
            prnn.set_config(dtype="float32")  # inside a context: local to it
            assert prnn.get_config().dtype == "float32"
        assert prnn.get_config() == prnn.Config("numpy", None, "float64")
    assert prnn.get_config().dtype == "float32"


def test_context_is_local_to_its_thread():
    seen = {}
    with prnn.config_context(dtype="float32"):
        t = threading.Thread(target=lambda: seen.update(dtype=prnn.get_config().dtype))
        t.start()
        t.join()
    assert seen["dtype"] is None  # the default


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("PORTABLE_RNN_BACKEND", "array_api_strict")
    monkeypatch.setenv("PORTABLE_RNN_DTYPE", "float32")
    monkeypatch.setenv("PORTABLE_RNN_DEVICE", "cpu")
    assert prnn.get_config() == prnn.Config("array_api_strict", "cpu", "float32")
    params = prnn.init_rnn_params(3, 4, 2, seed=0)
    import array_api_strict as xps

    assert params["Wax"].dtype == xps.float32
    assert params["Wax"].device == xps.Device("CPU_DEVICE")


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (
            "PORTABLE_RNN_BACKEND",
            "tensorflow",
            "unknown backend 'tensorflow' in PORTABLE_RNN_BACKEND; "
            "valid backends: numpy, cupy, jax, torch, array_api_strict",
        ),
        (
            "PORTABLE_RNN_DTYPE",
            "float8",
            "unknown dtype 'float8' in PORTABLE_RNN_DTYPE; "
            "valid dtypes: float32, float64, float16, bfloat16",
        ),
        (
            "PORTABLE_RNN_DEVICE",
            "tpu:0",
            "unknown device 'tpu:0' in PORTABLE_RNN_DEVICE; valid devices: 'cpu', 'gpu'",
        ),
    ],
)
def test_bad_environment_variables_name_the_variable(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError) as info:
        prnn.get_config()
    assert str(info.value).startswith(message)


def test_bad_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backend 'numpyy'.*valid backends: numpy, cupy"):
        prnn.set_config(backend="numpyy")
    with pytest.raises(ValueError, match="valid dtypes: float32, float64"):
        prnn.set_config(dtype="int32")
    with pytest.raises(ValueError, match="valid devices: 'cpu', 'gpu', 'gpu:N', 'cuda:N'"):
        prnn.set_config(device="gpu0")
    assert prnn.get_config() == prnn.Config()  # nothing changed


@pytest.mark.parametrize("backend", ["cupy", "jax", "torch"])
def test_backend_not_installed_names_the_extra(backend, monkeypatch):
    # Installed or not here: the check asks importlib, so hide the module from it.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == backend else real(name, *a)
    )
    with pytest.raises(
        ImportError, match=rf"backend '{backend}' .*not installed; pip install portable_rnn\["
    ):
        prnn.set_config(backend=backend)
    assert prnn.get_config() == prnn.Config()  # nothing changed


def test_gpu_where_there_is_none_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="runs on the CPU only"):
        prnn.set_config(device="gpu")  # numpy
    for backend in ("torch", "jax"):
        if importlib.util.find_spec(backend) is None:
            continue
        from portable_rnn._backend.devices import resolve_device

        try:
            resolve_device(backend, "gpu:0")
        except RuntimeError as exc:
            assert "never falls back to the CPU" in str(exc)
            with pytest.raises(RuntimeError, match="sees 0 GPU"):
                prnn.set_config(backend=backend, device="cuda:7")
        else:
            with pytest.raises(RuntimeError, match="GPU"):
                prnn.set_config(backend=backend, device="gpu:4096")
    assert prnn.get_config() == prnn.Config()


def test_device_objects_are_accepted(xp):
    prnn.set_config(backend=xp.backend, device=xp.array_device)
    state = prnn.init_state(4, 3)
    assert_close(state, np.zeros((4, 3)), xp=xp, dtype="float64", device=xp.array_device)


# -- creation follows the config; functions given arrays follow their inputs --------


@pytest.mark.forward
def test_init_params_same_numbers_on_every_backend(xp):
    ref = prnn.init_lstm_params(3, 5, 2, seed=7, backend="numpy")
    for dtype in ("float64", "float32"):
        with prnn.config_context(backend=xp.backend, device=xp.device, dtype=dtype):
            params = prnn.init_lstm_params(3, 5, 2, seed=7)
        assert list(params) == ["Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "Wy", "by"]
        for k, v in params.items():
            assert_close(
                v,
                ref[k].astype(dtype),
                xp=xp,
                dtype=dtype,
                device=xp.array_device,
                rtol=0,
                atol=0,
                err_msg=k,
            )
    bound = 1 / np.sqrt(5)
    values = np.concatenate([v.ravel() for v in ref.values()])
    assert values.min() >= -bound and values.max() <= bound and values.std() > bound / 3
    rnn = prnn.init_rnn_params(3, 5, 2, seed=7, backend=xp.backend, device=xp.device)
    assert {k: tuple(v.shape) for k, v in rnn.items()} == {
        "Wax": (5, 3),
        "Waa": (5, 5),
        "Wya": (2, 5),
        "ba": (5, 1),
        "by": (2, 1),
    }
    assert not np.array_equal(
        to_numpy(prnn.init_rnn_params(3, 5, 2, seed=8)["Wax"]), to_numpy(rnn["Wax"])
    )


def test_init_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_a must be a positive integer, got 0"):
        prnn.init_rnn_params(3, 0, 2, seed=0)
    with pytest.raises(ValueError, match="n_x must be a positive integer, got 2.5"):
        prnn.init_lstm_params(2.5, 4, 2)


@pytest.mark.forward
def test_functions_follow_their_inputs_not_the_config(xp):
    params = prnn.init_rnn_params(
        3, 4, 2, seed=0, backend=xp.backend, device=xp.device, dtype="float32"
    )
    x = xp.asarray(np.ones((3, 2, 5)), dtype="float32")
    with prnn.config_context(backend="numpy", dtype="float64"):
        a, y, _ = prnn.rnn_forward(x, None, params)  # a0=None: zeros like x
    assert_close(a, to_numpy(a), xp=xp, dtype="float32", device=xp.array_device)


def test_jax_float64_without_x64_is_an_error():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="float64 on JAX needs .*jax_enable_x64"):
            prnn.init_rnn_params(3, 4, 2, seed=0, backend="jax", dtype="float64")
        # by default: float32 (tests/test_half.py checks it in a fresh interpreter too)
        assert prnn.init_rnn_params(3, 4, 2, backend="jax")["Wax"].dtype == jax.numpy.float32
        with pytest.raises(ValueError, match="jax_enable_x64"):
            prnn.to_backend(np.ones(3), "jax", dtype="float64")
        # by default JAX's default dtype: float32 (tests/test_half.py, fresh interpreter)
        assert prnn.to_backend(np.ones(3), "jax").dtype == jax.numpy.float32
        moved = prnn.to_backend(np.ones(3), "jax", dtype="float32")
        assert moved.dtype == jax.numpy.float32
    finally:
        jax.config.update("jax_enable_x64", True)


# -- to_backend -------------------------------------------------------------------


@pytest.mark.forward
def test_to_backend_moves_structures_and_keeps_dtypes(xp):
    tree = {
        "W": np.arange(6.0).reshape(2, 3),
        "pair": (np.ones(2, dtype=np.float32), [np.zeros(1), 3]),
        "labels": np.array([0, 2, 1]),
        "name": "lstm",
        "none": None,
    }
    moved = prnn.to_backend(tree, xp.backend, xp.device)
    assert_close(moved["W"], tree["W"], xp=xp, device=xp.array_device, rtol=0, atol=0)
    assert_close(moved["pair"][0], tree["pair"][0], xp=xp, device=xp.array_device)
    assert isinstance(moved["pair"], tuple) and isinstance(moved["pair"][1], list)
    assert moved["pair"][1][1] == 3 and moved["name"] == "lstm" and moved["none"] is None
    np.testing.assert_array_equal(to_numpy(moved["labels"]), tree["labels"])
    back = prnn.to_backend(moved, "numpy")
    np.testing.assert_array_equal(back["W"], tree["W"])
    f32 = prnn.to_backend(tree["W"], xp.backend, xp.device, dtype="float32")
    assert_close(f32, tree["W"], xp=xp, dtype="float32", device=xp.array_device)


def test_to_backend_same_place_is_no_copy(xp):
    arr = xp.asarray(np.ones((2, 2)))
    assert prnn.to_backend(arr, xp.backend, xp.device) is arr


def test_to_backend_uses_the_config():
    import array_api_compat

    with prnn.config_context(backend="array_api_strict"):
        moved = prnn.to_backend(np.ones(2))
    assert array_api_compat.is_array_api_strict_namespace(array_api_compat.array_namespace(moved))


def test_to_backend_never_aliases_read_only_memory():
    torch = pytest.importorskip("torch")
    arr = np.ones(3)
    arr.flags.writeable = False
    moved = prnn.to_backend(arr, "torch")
    moved += 1  # must not write into the read-only NumPy array
    assert arr[0] == 1.0 and isinstance(moved, torch.Tensor)


def test_zeros_helper_of_the_backend_seam(xp):
    """The one backend-specific helper equals the generic zeros on every backend."""
    from portable_rnn._backend.seam import zeros_like_state

    like = xp.asarray(np.ones((2, 3)), dtype="float32")
    z = zeros_like_state(xp.xp, (4, 5), like)
    assert_close(z, np.zeros((4, 5)), xp=xp, dtype="float32", device=xp.array_device)


def test_gru_and_multilayer_init_same_numbers_on_every_backend(xp):
    ref = prnn.init_gru_params(3, 4, 2, seed=3, backend="numpy")
    got = prnn.init_gru_params(3, 4, 2, seed=3, backend=xp.backend, device=xp.device)
    assert list(got) == ["Wr", "br", "Wz", "bz", "Wn", "bn", "bhn", "Wy", "by"]
    for k, v in got.items():
        assert_close(v, ref[k], xp=xp, device=xp.array_device, rtol=0, atol=0, err_msg=k)
    ref_layers = prnn.init_multilayer_params("lstm", 3, 4, num_layers=2, bidirectional=True, seed=3)
    layers = prnn.init_multilayer_params(
        "lstm",
        3,
        4,
        num_layers=2,
        bidirectional=True,
        seed=3,
        backend=xp.backend,
        device=xp.device,
        dtype="float32",
    )
    assert [tuple(p["Wf"].shape) for p in layers] == [(4, 7), (4, 7), (4, 12), (4, 12)]
    assert "Wy" not in layers[0]
    for p, q in zip(layers, ref_layers, strict=True):
        for k in p:
            assert_close(p[k], q[k].astype("float32"), xp=xp, dtype="float32", rtol=0, atol=0)
    assert not np.array_equal(to_numpy(layers[0]["Wf"]), to_numpy(layers[1]["Wf"]))
    with pytest.raises(ValueError, match="unknown cell 'tcn'"):
        prnn.init_multilayer_params("tcn", 3, 4)


# -- issue 17: every message names its argument; CuPy with no GPU; misspelt variables ---


def test_device_of_no_backend_is_refused_at_once_naming_device(xp):
    for bad in (5, 2.0, object(), ["cpu"]):
        with pytest.raises(TypeError, match=r"^config_context\(device=\.\.\.\) must be a dev"):
            with prnn.config_context(device=bad):
                pass
        with pytest.raises(TypeError, match=r"^set_config\(device=\.\.\.\) must be a device"):
            prnn.set_config(device=bad)
        with pytest.raises(TypeError, match=r"^device must be a device name .* got int 5"):
            prnn.init_state(2, 3, device=5)
        with pytest.raises(TypeError, match=r"^device must be a device name"):
            prnn.to_backend(np.ones(2), xp.backend, 5)
    if xp.backend != "numpy":  # NumPy's device is the name "cpu", which every backend has
        with pytest.raises(TypeError, match=r"device object of backend 'numpy', got "):
            prnn.set_config(backend="numpy", device=xp.array_device)
    assert prnn.get_config() == prnn.Config()


@pytest.mark.parametrize(
    "seed, error, message",
    [
        (-1, ValueError, "got -1"),
        ("a", TypeError, "got str"),
        (1.5, TypeError, "got float"),
        (True, TypeError, "got bool"),
    ],
)
def test_bad_seeds_name_seed(seed, error, message):
    for init in (prnn.init_rnn_params, prnn.init_lstm_params, prnn.init_gru_params):
        with pytest.raises(
            error, match=rf"^seed must be a non-negative integer or None, {message}"
        ):
            init(3, 4, 2, seed=seed)
    with pytest.raises(error, match=rf"^seed must be a non-negative integer or None, {message}"):
        prnn.init_multilayer_params("gru", 3, 4, seed=seed)
    assert prnn.init_rnn_params(3, 4, 2, seed=np.int64(7))["Wax"].shape == (4, 3)


def test_to_backend_of_float16_keeps_it_where_the_backend_has_it_else_names_it(xp):
    tree = {"W": np.ones((2, 2), dtype=np.float16), "idx": np.arange(3, dtype=np.int16)}
    if xp.backend != "array_api_strict":  # float16 kept, as every floating dtype
        assert "float16" in str(prnn.to_backend(tree, xp.backend, xp.device)["W"].dtype)
    else:  # the array API standard has no float16
        with pytest.raises(
            ValueError,
            match=r"^obj\['W'\] has dtype float16, which backend 'array_api_strict' does not "
            r"have \(its floating dtypes: float32, float64; the array API standard has no half "
            r"dtype\); pass dtype=\.\.\. to convert it$",
        ):
            prnn.to_backend(tree, xp.backend, xp.device)
        with pytest.raises(ValueError, match=r"^obj\[1\] has dtype float16"):
            prnn.to_backend([np.ones(1), np.ones(1, dtype=np.float16)], xp.backend, xp.device)
    moved = prnn.to_backend(tree, xp.backend, xp.device, dtype="float32")
    assert_close(moved["W"], np.ones((2, 2)), xp=xp, dtype="float32", device=xp.array_device)
    np.testing.assert_array_equal(to_numpy(moved["idx"]), np.arange(3))  # integers as they are
    assert to_numpy(moved["idx"]).dtype == np.int16


def _no_gpu_cupy(monkeypatch):
    """CuPy installed, and CUDA answering that there is no GPU (as on a CPU machine)."""
    from portable_rnn._backend import devices

    real_installed, real_count = devices.is_installed, devices.gpu_count
    monkeypatch.setattr(devices, "is_installed", lambda b: b == "cupy" or real_installed(b))
    why = " (CUDA: cudaErrorNoDevice: no CUDA-capable device is detected)"
    monkeypatch.setattr(devices, "gpu_count", lambda b: (0, why) if b == "cupy" else real_count(b))


def test_cupy_with_no_gpu_is_one_clear_line(monkeypatch):
    _no_gpu_cupy(monkeypatch)
    no_gpu = r"^backend 'cupy' runs on NVIDIA GPUs, and CuPy sees no GPU here \(CUDA: cudaErr"
    with pytest.raises(RuntimeError, match=no_gpu):
        prnn.to_backend(np.ones(2), "cupy")
    with pytest.raises(RuntimeError, match=no_gpu):
        prnn.set_config(backend="cupy")
    with pytest.raises(RuntimeError, match=no_gpu):
        with prnn.config_context(backend="cupy"):
            pass
    with pytest.raises(RuntimeError, match=no_gpu):
        prnn.init_lstm_params(3, 4, 2, backend="cupy")
    with pytest.raises(RuntimeError, match=r"^device 'gpu:1' was asked for on backend 'cupy', wh"):
        prnn.init_state(3, 4, backend="cupy", device="gpu:1")
    assert prnn.get_config() == prnn.Config()


def test_cupy_with_no_gpu_is_a_clean_skip_line_in_the_plugin_and_the_check(monkeypatch):
    from portable_rnn import testing
    from portable_rnn._tools.check import run_check

    _no_gpu_cupy(monkeypatch)
    reasons = dict((b.name, why) for b, why in testing.available_backends(include_unavailable=True))
    assert (
        reasons["cupy"]
        == "no GPU visible to cupy (CUDA: cudaErrorNoDevice: no CUDA-capable device is detected)"
    )
    with pytest.raises(ValueError, match="^requested backend.* cannot run: cupy: no GPU visible"):
        testing.select_backends(["cupy"])
    errors = []
    assert run_check(["cupy"], out=errors.append, err=errors.append) == 2
    assert errors == [
        "portable-rnn check: requested backend(s) cannot run: cupy: no GPU visible to cupy "
        "(CUDA: cudaErrorNoDevice: no CUDA-capable device is detected)"
    ]


def test_misspelt_environment_variables_are_named_with_the_closest_known_one(monkeypatch):
    env = {
        "PORTABLE_RNN_BACKNED": "jax",
        "PORTABLE_RNN_TEST_BACKEND": "numpy",
        "PORTABLE_RNN_XYZZY": "1",
        "PORTABLE_RNN_DTYPE": "float32",
        "OTHER_BACKNED": "x",
    }
    assert config_mod.unknown_environment(env) == [
        ("PORTABLE_RNN_BACKNED", "PORTABLE_RNN_BACKEND"),
        ("PORTABLE_RNN_TEST_BACKEND", "PORTABLE_RNN_TEST_BACKENDS"),
        ("PORTABLE_RNN_XYZZY", None),
    ]
    monkeypatch.setattr(config_mod, "_warned", set())
    with pytest.warns(UserWarning) as record:
        config_mod.warn_unknown_environment(env)
    messages = [str(w.message) for w in record]
    assert messages[0] == (
        "PORTABLE_RNN_BACKNED is set, but portable_rnn reads no such variable and ignores it "
        "(did you mean PORTABLE_RNN_BACKEND?)"
    )
    assert len(messages) == 3 and messages[2].startswith("PORTABLE_RNN_XYZZY is set")
    config_mod.warn_unknown_environment(env)  # once per process: no second warning


def test_importing_with_a_misspelt_variable_warns_once(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PORTABLE_RNN_DTYPES": "float32"}
    code = "import portable_rnn, importlib; importlib.reload(portable_rnn)"
    run = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if "UserWarning" in ln]
    assert len(lines) == 1 and "PORTABLE_RNN_DTYPES is set" in lines[0]
    assert "did you mean PORTABLE_RNN_DTYPE?" in lines[0]


def test_every_variable_the_repository_reads_is_known():
    """`ENVIRONMENT` lists every PORTABLE_RNN_* name in the code, tests, CI and docs."""
    import re
    from pathlib import Path

    root = Path(prnn.__file__).parent.parent
    names = set()
    for folder in ("portable_rnn", "tests", "ci", ".ci", "docs"):
        for path in (root / folder).rglob("*"):
            if path.is_file() and path.suffix in ("", ".py", ".sh", ".md", ".toml", ".yml"):
                names |= set(re.findall(r"PORTABLE_RNN_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    names -= {n for n in names if "BACKNED" in n or "XYZZY" in n or n.endswith("DTYPES")}
    names -= {"PORTABLE_RNN_TEST_BACKEND", "PORTABLE_RNN_CUPYFUSE"}  # misspelt on purpose
    assert names <= set(config_mod.ENVIRONMENT), names - set(config_mod.ENVIRONMENT)
