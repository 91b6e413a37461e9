"""The backend table: what each backend is, where it runs, and the explicit moves to and from NumPy.

Everything here that names a backend's own objects (``jax.devices``, ``torch.device``,
``cupy.cuda.Device``) imports that library lazily, only when that backend is asked for.
The configuration (`portable_rnn._config`), the creation functions
(`portable_rnn._creation`) and the testing helpers all read this one table.
"""

from __future__ import annotations

import importlib.util
import re
from typing import NamedTuple

import numpy as np

from . import compat

__all__ = [
    "BACKENDS",
    "DTYPES",
    "FLOAT_DTYPES",
    "HALF_DTYPES",
    "BackendInfo",
    "backend_dtypes",
    "check_backend",
    "check_device",
    "check_dtype",
    "default_dtype",
    "dropout_masks",
    "dtype_of",
    "from_numpy",
    "from_numpy_as",
    "gpu_count",
    "is_installed",
    "lacking",
    "resolve_device",
    "to_numpy",
]


class BackendInfo(NamedTuple):
    """One row of the backend table."""

    module: str  #: the module that must be importable
    extra: str  #: what installs it


#: Every backend, in the order messages and docs list them.
BACKENDS: dict[str, BackendInfo] = {
    "numpy": BackendInfo("numpy", "portable_rnn (numpy is a dependency)"),
    "cupy": BackendInfo("cupy", "portable_rnn[cuda12] or portable_rnn[cuda13]"),
    "jax": BackendInfo("jax", "portable_rnn[jax]"),
    "torch": BackendInfo("torch", "portable_rnn[torch]"),
    "array_api_strict": BackendInfo("array_api_strict", "portable_rnn[test]"),
    "dask": BackendInfo("dask", "portable_rnn[dask]"),
}
#: The dtypes the arithmetic runs in.
DTYPES = ("float32", "float64")
#: The half-precision dtypes: accepted where the backend has them, computed in float32
#: (inputs upcast once, results rounded back: `portable_rnn._validate.float32_inside`).
HALF_DTYPES = ("float16", "bfloat16")
#: Every floating dtype portable_rnn accepts, in the order messages list them.
FLOAT_DTYPES = DTYPES + HALF_DTYPES
#: The half dtypes each backend has (the array API standard has none: array_api_strict).
_HALVES = {
    "numpy": ("float16",),
    "cupy": ("float16",),
    "jax": ("float16", "bfloat16"),
    "torch": ("float16", "bfloat16"),
    "array_api_strict": (),
    "dask": (),  # dask.array computes float16, but array-api-compat's namespace lacks it
}
_DEVICE_RE = re.compile(r"^(cpu|gpu|cuda)(?::(\d+))?$")


# -- names ----------------------------------------------------------------------------------


def is_installed(backend: str) -> bool:
    """Whether the library of a known backend can be imported (without importing it)."""
    return importlib.util.find_spec(BACKENDS[backend].module) is not None


def check_backend(backend, source: str) -> str:
    """``backend`` if it is a known, installed backend; else an error naming ``source``."""
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r} in {source}; valid backends: {', '.join(BACKENDS)}"
        )
    if not is_installed(backend):
        raise ImportError(
            f"backend {backend!r} (from {source}) is not installed; "
            f"pip install {BACKENDS[backend].extra} installs it"
        )
    return backend


def check_dtype(dtype, source: str, backend: str | None = None) -> str:
    """The name of a floating dtype portable_rnn accepts (a dtype of any backend, or a name).

    ``float32``, ``float64``, ``float16`` and ``bfloat16``; with ``backend``, only those
    that backend has (`backend_dtypes`). Anything else is a one-line ``ValueError``
    naming ``source`` and the valid dtypes.
    """
    name = compat.dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        raise ValueError(
            f"unknown dtype {dtype!r} in {source}; valid dtypes: {', '.join(FLOAT_DTYPES)}"
        )
    if backend is not None and name not in backend_dtypes(backend):
        what = "dtype" if source == "dtype" else f"dtype (from {source})"
        raise ValueError(f"{what} is {name}, {lacking(backend)}")
    return name


def backend_dtypes(backend: str) -> tuple[str, ...]:
    """The floating dtypes ``backend`` has: float32, float64 and its half dtypes.

    torch and JAX have ``float16`` and ``bfloat16``; NumPy and CuPy ``float16``;
    array_api_strict neither (the array API standard has no half-precision dtype), nor
    Dask (array-api-compat's ``dask.array`` namespace has no ``float16``).
    (float64 on JAX also needs ``jax_enable_x64``: see `dtype_of`.)
    """
    return DTYPES + _HALVES.get(backend, ())


def lacking(backend: str) -> str:
    """``"which backend 'numpy' does not have (its floating dtypes: ...)"``: the one wording
    of every message about a dtype a backend lacks (the configuration, `to_backend`, the
    ``init_*`` functions and the functions' input checks)."""
    why = ""
    if backend == "dask":
        why = "; array-api-compat's dask namespace has no half dtype"
    elif not _HALVES.get(backend):
        why = "; the array API standard has no half dtype"
    return (
        f"which backend {backend!r} does not have "
        f"(its floating dtypes: {', '.join(backend_dtypes(backend))}{why})"
    )


def default_dtype(backend: str) -> str:
    """The dtype created when none is configured: float64, but float32 on JAX without x64."""
    if backend == "jax" and not _jax_x64():
        return "float32"
    return "float64"


def _jax_x64() -> bool:
    import jax

    # jax_enable_x64 is a config flag set at run time; jax's stubs do not declare it
    return bool(jax.config.jax_enable_x64)  # pyright: ignore[reportAttributeAccessIssue]


def check_device(device, source: str):
    """A device name, normalised (``" GPU:1"`` -> ``"gpu:1"``); device objects pass through."""
    if device is None or not isinstance(device, str):
        return device
    spec = device.strip().lower()
    if not _DEVICE_RE.match(spec):
        raise ValueError(
            f"unknown device {device!r} in {source}; valid devices: 'cpu', 'gpu', "
            "'gpu:N', 'cuda:N', or a backend's own device object"
        )
    return spec


# -- devices --------------------------------------------------------------------------------


def _gpu_missing(backend: str, spec: str, found: int, why: str = "") -> RuntimeError:
    return RuntimeError(
        f"device {spec!r} was asked for on backend {backend!r}, which sees "
        f"{found} GPU(s){why}; portable_rnn never falls back to the CPU silently"
    )


def gpu_count(backend: str) -> tuple[int, str]:
    """``(number of GPUs the backend sees, why none)``; ``why`` is ``""`` or `` (CUDA: ...)``.

    CuPy imports without a GPU or driver, then fails at the first allocation with a
    ``CUDARuntimeError``; asking first turns that into one clear line. NumPy and
    array_api_strict see none.
    """
    if backend == "cupy":
        import cupy

        try:
            return int(cupy.cuda.runtime.getDeviceCount()), ""
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            return 0, f" (CUDA: {exc})"
    if backend == "torch":
        import torch

        return (torch.cuda.device_count() if torch.cuda.is_available() else 0), ""
    if backend == "jax":
        import jax

        try:
            return len(jax.devices("gpu")), ""
        except RuntimeError:
            return 0, ""
    return 0, ""


def _no_gpu_for_cupy(why: str) -> RuntimeError:
    return RuntimeError(
        f"backend 'cupy' runs on NVIDIA GPUs, and CuPy sees no GPU here{why}; "
        "choose another backend (numpy, jax, torch) or a machine with a GPU"
    )


def _device_object(backend: str, device, source: str):
    """``device`` if it is a device object of ``backend``, else a ``TypeError`` naming it."""
    if backend == "array_api_strict":
        import array_api_strict

        kinds: tuple = (array_api_strict.Device,)
    elif backend == "jax":
        import jax

        kinds = (jax.Device,)
    elif backend == "torch":
        import torch

        kinds = (torch.device,)
    elif backend == "cupy":
        import cupy

        kinds = (cupy.cuda.Device,)
    else:  # NumPy's and Dask's only device is the string "cpu"
        kinds = ()
    if not isinstance(device, kinds):
        raise TypeError(
            f"{source} must be a device name ('cpu', 'gpu', 'gpu:N', 'cuda:N') or a device "
            f"object of backend {backend!r}, got {type(device).__name__} {device!r}"
        )
    return device


def resolve_device(backend: str, device, source: str = "device"):
    """The backend's own device object for a device name (or object).

    Parameters
    ----------
    backend : str
        A backend name.
    device : str, device object or None
        ``"cpu"``, ``"gpu"``, ``"gpu:N"``, ``"cuda"``, ``"cuda:N"``, a device
        object of that backend, or ``None`` (the backend's default).

    source : str, optional
        What to call ``device`` in error messages.

    Returns
    -------
    device : object or None
        What the backend's ``asarray(..., device=)`` accepts.

    Raises
    ------
    TypeError
        ``device`` is neither a name nor a device object of ``backend``.
    ValueError
        An unknown name, or a GPU asked of a CPU-only backend.
    RuntimeError
        The GPU asked for is not there (for CuPy, also ``None`` when CuPy sees no GPU).
    """
    if device is None:
        if backend == "cupy":
            found, why = gpu_count("cupy")
            if not found:
                raise _no_gpu_for_cupy(why)
        return None
    if not isinstance(device, str):
        return _device_object(backend, device, source)
    spec = check_device(device, source)
    kind, _, index = spec.partition(":")
    n = int(index) if index else 0
    if backend in ("numpy", "array_api_strict", "dask"):
        if kind != "cpu":
            raise ValueError(
                f"backend {backend!r} runs on the CPU only, got device {device!r} "
                "(use backend 'cupy', 'jax' or 'torch' for a GPU)"
            )
        if backend in ("numpy", "dask"):  # a NumPy-backed Dask array's device is "cpu"
            return "cpu"
        import array_api_strict

        return array_api_strict.Device("CPU_DEVICE")
    if backend == "jax":
        import jax

        if kind == "cpu":
            return jax.devices("cpu")[0]
        found, _ = gpu_count("jax")
        if n >= found:
            raise _gpu_missing(backend, spec, found)
        return jax.devices("gpu")[n]
    if backend == "torch":
        import torch

        if kind == "cpu":
            return torch.device("cpu")
        found, _ = gpu_count("torch")
        if n >= found:
            raise _gpu_missing(backend, spec, found)
        return torch.device("cuda", n)
    if backend == "cupy":
        if kind == "cpu":
            raise ValueError("backend 'cupy' runs on GPUs only, got device 'cpu'")
        found, why = gpu_count("cupy")
        if n >= found:
            raise _gpu_missing(backend, spec, found, why)
        import cupy

        return cupy.cuda.Device(n)
    raise ValueError(f"unknown backend {backend!r}")  # pragma: no cover


# -- dtypes and moves -----------------------------------------------------------------------


def dtype_of(xp, backend: str, name: str):
    """The dtype ``name`` of namespace ``xp``; float64 on JAX needs ``jax_enable_x64``.

    A dtype the backend lacks (bfloat16 on NumPy, any half dtype on array_api_strict)
    is a one-line ``ValueError`` naming the backend and the dtypes it has.
    """
    if name in HALF_DTYPES:
        check_dtype(name, "dtype", backend)
    if backend == "jax" and name == "float64" and not _jax_x64():
        raise ValueError(
            "float64 on JAX needs jax.config.update('jax_enable_x64', True) "
            "(or JAX_ENABLE_X64=1); otherwise choose dtype='float32'"
        )
    return getattr(xp, name)


def from_numpy(xp, backend: str, host: np.ndarray, dev):
    """Any NumPy array (labels, masks) on ``backend`` and ``dev``, keeping its dtype."""
    if backend == "cupy":  # pragma: no cover - needs a GPU
        import cupy

        with dev if dev is not None else cupy.cuda.Device():
            return xp.asarray(host)
    return xp.asarray(host, device=dev)


def from_numpy_as(xp, backend: str, arr: np.ndarray, dev, dtype_name: str):
    """A new array of ``backend`` on ``dev`` holding ``arr`` converted to ``dtype_name``."""
    target = dtype_of(xp, backend, dtype_name)  # refuse float64 on JAX without x64
    if dtype_name == "bfloat16":  # NumPy has no bfloat16: round on the backend, from float64
        wide = "float64" if default_dtype(backend) == "float64" else "float32"
        return xp.astype(from_numpy(xp, backend, np.asarray(arr, dtype=wide), dev), target)
    host = np.asarray(arr, dtype=np.dtype(dtype_name))
    return from_numpy(xp, backend, host, dev)


def dropout_masks(seed, p: float, shapes, like) -> list:
    """Dropout masks: zeros and ``1 / (1 - p)``, one array per shape, on ``like``'s device
    and in its dtype.

    A Python int ``seed``: drawn on the host by NumPy's ``default_rng(seed)`` (each element
    kept with probability ``1 - p``) and moved explicitly, so the same masks, bit for bit,
    on every backend and device for the same seed and shapes (under ``jax.jit`` a constant
    of the trace: a new seed traces anew). A JAX integer scalar ``seed`` (traceable, for a
    ``jit``-compiled training step): drawn by ``jax.random`` from ``jax.random.key(seed)``
    on ``like``'s device; deterministic per seed, but not NumPy's masks. The scale is
    rounded once, in the array's dtype.
    """
    xp = compat.array_namespace(like)
    backend = compat.backend_name(xp)
    name = compat.dtype_name(like.dtype)
    scale = 1.0 / (1.0 - p)
    if not isinstance(seed, int):  # a JAX scalar (the front-end checked it)
        import jax

        keys = jax.random.split(jax.random.key(seed), len(shapes))
        one, zero = xp.asarray(scale, dtype=like.dtype), xp.asarray(0.0, dtype=like.dtype)
        return [
            xp.where(jax.random.bernoulli(k, 1.0 - p, shape), one, zero)
            for k, shape in zip(keys, shapes, strict=True)
        ]
    rng = np.random.default_rng(seed)
    dev = None if compat.is_traced(like) else compat.device(like)
    return [
        from_numpy_as(xp, backend, np.where(rng.random(shape) >= p, scale, 0.0), dev, name)
        for shape in shapes
    ]


def to_numpy(arr) -> np.ndarray:
    """An explicit copy to host memory (the caller asked for a move).

    NumPy has no bfloat16: a bfloat16 array comes back as float32 (exactly).
    """
    xp = compat.array_namespace(arr)
    name = compat.backend_name(xp)
    if compat.dtype_name(arr.dtype) == "bfloat16" and name != "numpy":
        arr = xp.astype(arr, xp.float32)
    if name == "torch":
        return arr.detach().cpu().numpy()
    if name == "cupy":  # pragma: no cover - needs a GPU
        return arr.get()
    if name == "array_api_strict":
        import array_api_strict

        arr = array_api_strict.asarray(arr, device=array_api_strict.Device("CPU_DEVICE"))
        return np.from_dlpack(arr)
    return np.asarray(arr)
