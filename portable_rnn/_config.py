"""One configuration for everything portable_rnn creates.

The configuration decides the backend, device and dtype of arrays that have
no input to follow: `init_rnn_params`, `init_lstm_params`, `init_state` and
`to_backend`.  Functions that receive arrays always follow their inputs.

Precedence: `config_context` (current thread or task) over `set_config`
(process-wide) over the environment variables ``PORTABLE_RNN_BACKEND``,
``PORTABLE_RNN_DEVICE`` and ``PORTABLE_RNN_DTYPE`` (read once, on first use)
over the defaults (``numpy``, its default device, and the backend's default dtype:
``float64``, but ``float32`` on JAX unless ``jax_enable_x64`` is on).

The dtypes: ``float32`` and ``float64`` everywhere, and the half-precision ``float16``
and ``bfloat16`` on the backends that have them (torch and JAX both, NumPy and CuPy
``float16``, array_api_strict neither); the functions compute half-precision inputs in
float32 and return results in the half dtype (`portable_rnn._validate.float32_inside`).
A dtype the backend lacks is a ``ValueError`` naming the backend and the dtypes it has.

Every ``PORTABLE_RNN_*`` variable portable_rnn, its tests and its CI scripts read is
listed in `ENVIRONMENT`; any other variable of that prefix in the environment is
probably misspelt, and importing portable_rnn warns once about each, naming the
closest known one (`warn_unknown_environment`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import os
import warnings

from ._backend.devices import check_backend, check_device, check_dtype, resolve_device

__all__ = [
    "ENVIRONMENT",
    "Config",
    "config_context",
    "get_config",
    "set_config",
    "unknown_environment",
    "warn_unknown_environment",
]

_ENV = {
    "backend": "PORTABLE_RNN_BACKEND",
    "device": "PORTABLE_RNN_DEVICE",
    "dtype": "PORTABLE_RNN_DTYPE",
}

#: every ``PORTABLE_RNN_*`` variable read anywhere (library, test suite, CI scripts),
#: with what reads it; a test keeps this list complete
ENVIRONMENT = {
    "PORTABLE_RNN_BACKEND": "the configuration (docs/config.md)",
    "PORTABLE_RNN_DEVICE": "the configuration (docs/config.md)",
    "PORTABLE_RNN_DTYPE": "the configuration (docs/config.md)",
    "PORTABLE_RNN_CUPY_FUSE": "CuPy kernel fusion on or off (docs/backends.md)",
    "PORTABLE_RNN_TEST_BACKENDS": "the pytest plugin's backends (docs/testing.md)",
    "PORTABLE_RNN_REQUIRE_CUPY": "the test suite: CuPy's kernel traces must run (CI)",
    "PORTABLE_RNN_FUZZ_EXAMPLES": "the test suite: examples per fuzzed function",
    "PORTABLE_RNN_GPU_BACKENDS": "ci/gpu: the backends to run",
    "PORTABLE_RNN_BENCH_SIZES": "ci/gpu-bench: the sizes",
    "PORTABLE_RNN_BENCH_BACKENDS": "ci/gpu-bench: the backends",
    "PORTABLE_RNN_TRAIN_STEPS": "ci/gpu-bench: the training steps",
}
_PREFIX = "PORTABLE_RNN_"
_warned: set[str] = set()


def unknown_environment(environ=None) -> list[tuple[str, str | None]]:
    """The ``PORTABLE_RNN_*`` variables set that portable_rnn does not read.

    Parameters
    ----------
    environ : mapping, optional
        The environment to look at (default ``os.environ``).

    Returns
    -------
    unknown : list of (str, str or None)
        Each unknown name with the closest known one (``None`` if none is close).
    """
    env = os.environ if environ is None else environ
    found = []
    for name in sorted(env):
        if name.startswith(_PREFIX) and name not in ENVIRONMENT:
            # compare what follows the prefix, which every name shares
            known = {k[len(_PREFIX) :]: k for k in ENVIRONMENT}
            close = difflib.get_close_matches(name[len(_PREFIX) :], list(known), n=1, cutoff=0.6)
            found.append((name, known[close[0]] if close else None))
    return found


def warn_unknown_environment(environ=None) -> None:
    """Warn once per process about each `unknown_environment` variable (a ``UserWarning``)."""
    for name, close in unknown_environment(environ):
        if name in _warned:
            continue
        _warned.add(name)
        hint = f"did you mean {close}?" if close else f"known: {', '.join(ENVIRONMENT)}"
        warnings.warn(
            f"{name} is set, but portable_rnn reads no such variable and ignores it ({hint})",
            UserWarning,
            stacklevel=2,
        )


@dataclasses.dataclass(frozen=True)
class Config:
    """The library configuration (immutable; change it with `set_config`).

    Attributes
    ----------
    backend : str
        One of ``numpy``, ``cupy``, ``jax``, ``torch``, ``array_api_strict``.
    device : str or device object or None
        ``"cpu"``, ``"gpu"``, ``"gpu:N"``, ``"cuda:N"``, a backend's own device
        object, or ``None`` for the backend's default device.
    dtype : str or None
        ``"float32"``, ``"float64"``, ``"float16"`` or ``"bfloat16"`` (the last two
        where the backend has them), or ``None``: the backend's default, ``float64``,
        but ``float32`` on JAX unless ``jax_enable_x64`` is on (float64 on JAX asked
        for explicitly without it is an error saying how to enable it).
    """

    backend: str = "numpy"
    device: object = None
    dtype: str | None = None


def _from_env() -> Config:
    env = {k: os.environ.get(v) or None for k, v in _ENV.items()}
    config = Config()
    if env["backend"] is not None:
        config = dataclasses.replace(
            config, backend=check_backend(env["backend"].strip(), _ENV["backend"])
        )
    if env["dtype"] is not None:
        name = check_dtype(env["dtype"].strip(), _ENV["dtype"], config.backend)
        config = dataclasses.replace(config, dtype=name)
    if env["device"] is not None:
        config = dataclasses.replace(config, device=check_device(env["device"], _ENV["device"]))
    return config


_global: Config | None = None
_local: contextvars.ContextVar[Config | None] = contextvars.ContextVar(
    "portable_rnn_config", default=None
)


def get_config() -> Config:
    """The configuration in force here (context, then process-wide, then environment).

    Returns
    -------
    config : Config
        Frozen dataclass with ``backend``, ``device`` and ``dtype``.
    """
    global _global
    local = _local.get()
    if local is not None:
        return local
    if _global is None:
        _global = _from_env()
    return _global


def _updated(caller: str, backend=None, device=None, dtype=None) -> Config:
    config = get_config()
    changes = {}
    if backend is not None:
        changes["backend"] = check_backend(backend, f"{caller}(backend=...)")
        if device is None and backend != config.backend:
            changes["device"] = None  # another backend's device object would not fit
    if device is not None:
        changes["device"] = check_device(device, f"{caller}(device=...)")
    if dtype is not None:
        changes["dtype"] = check_dtype(dtype, f"{caller}(dtype=...)")
    new = dataclasses.replace(config, **changes)
    if new.dtype is not None:  # a half dtype the (new) backend lacks: refused now
        source = f"{caller}(dtype=...)" if dtype is not None else f"{caller}(backend=...)"
        check_dtype(new.dtype, source, new.backend)
    # fail now, not at first use: a device object of another backend, or none at all
    # (device=5), a GPU that is not there, CuPy with no GPU
    resolve_device(new.backend, new.device, f"{caller}(device=...)")
    return new


def set_config(backend=None, device=None, dtype=None) -> Config:
    """Set the backend, device and dtype of arrays the library creates.

    Arguments left as ``None`` keep their current value (changing the backend
    without naming a device resets the device to that backend's default).
    Inside a `config_context` the change lasts until the context exits;
    elsewhere it is process-wide.

    Parameters
    ----------
    backend : {"numpy", "cupy", "jax", "torch", "array_api_strict"}, optional
    device : str or device object, optional
        ``"cpu"``, ``"gpu"``, ``"gpu:N"``, ``"cuda:N"``, or the backend's own
        device object (``jax.Device``, ``torch.device``, ``cupy.cuda.Device``,
        ``array_api_strict.Device``).
    dtype : {"float32", "float64", "float16", "bfloat16"} or dtype, optional
        float16 and bfloat16 only where the backend has them (torch and JAX both,
        NumPy and CuPy float16); the functions compute them in float32.

    Returns
    -------
    config : Config
        The new configuration.

    Raises
    ------
    TypeError
        A device that is neither a name nor a device object of the backend.
    ValueError
        Unknown backend, device or dtype name (the message lists the valid
        ones), or a device or dtype the backend does not have.
    ImportError
        The backend is not installed (the message names the extra).
    RuntimeError
        A GPU that is not there (also CuPy on a machine where it sees no GPU).
    """
    global _global
    new = _updated("set_config", backend, device, dtype)
    if _local.get() is not None:
        _local.set(new)
    else:
        _global = new
    return new


@contextlib.contextmanager
def config_context(backend=None, device=None, dtype=None):
    """Context manager: `set_config` for the duration of a ``with`` block.

    The change is local to the current thread (or asyncio task) and undone on
    exit, even when the block raises.

    Parameters
    ----------
    backend, device, dtype
        As for `set_config`.

    Yields
    ------
    config : Config
        The configuration in force inside the block.

    Examples
    --------
    >>> import portable_rnn as prnn
    >>> with prnn.config_context(dtype="float32"):
    ...     params = prnn.init_rnn_params(3, 5, 2, seed=0)
    >>> params["Wax"].dtype
    dtype('float32')
    """
    new = _updated("config_context", backend, device, dtype)
    token = _local.set(new)
    try:
        yield new
    finally:
        _local.reset(token)
