"""The one module that imports array-api-compat.

Every question about an array's namespace, device or backend goes through
here, so that the math modules never import an array library themselves.
Imports nothing of portable_rnn.
"""

from __future__ import annotations

from array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_array_api_strict_namespace,
    is_cupy_namespace,
    is_dask_array,
    is_dask_namespace,
    is_jax_array,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

__all__ = [
    "array_namespace",
    "backend_name",
    "device",
    "dtype_name",
    "is_array",
    "is_cupy_namespace",
    "is_dask_array",
    "is_traced",
    "namespace_for",
    "read_values",
    "same_device",
]


def backend_name(xp) -> str:
    """The portable_rnn backend name of an array namespace."""
    if is_numpy_namespace(xp):
        return "numpy"
    if is_cupy_namespace(xp):
        return "cupy"
    if is_jax_namespace(xp):
        return "jax"
    if is_torch_namespace(xp):
        return "torch"
    if is_array_api_strict_namespace(xp):
        return "array_api_strict"
    if is_dask_namespace(xp):
        return "dask"
    return getattr(xp, "__name__", repr(xp))


def dtype_name(dtype) -> str:
    """``"float32"``, ``"int64"``... for a dtype of any backend, or a name."""
    if isinstance(dtype, str):
        return dtype
    import numpy as np

    try:  # NumPy, JAX and CuPy dtypes and scalar types
        return np.dtype(dtype).name
    except TypeError:  # torch.float32, array_api_strict.float32
        return str(dtype).rsplit(".", 1)[-1]


def is_array(obj) -> bool:
    """Whether ``obj`` is an array of a backend that array-api-compat knows."""
    return is_array_api_obj(obj) and not isinstance(obj, (int, float, complex, bool))


def is_traced(arr) -> bool:
    """Whether ``arr`` is a JAX tracer (inside ``jax.jit``, ``grad``...): its values cannot
    be read. Every other array's values can (at the cost of a device sync on a GPU)."""
    if not is_jax_array(arr):
        return False
    import jax

    # jax.core exists at run time (imported by jax), but jax's stubs do not export it
    return isinstance(arr, jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]


def namespace_for(backend: str):
    """The array API namespace of a backend, by name (imports it)."""
    if backend == "numpy":
        import array_api_compat.numpy as xp
    elif backend == "cupy":
        import array_api_compat.cupy as xp
    elif backend == "torch":
        import array_api_compat.torch as xp
    elif backend == "jax":
        import jax.numpy as xp
    elif backend == "array_api_strict":
        import array_api_strict as xp
    elif backend == "dask":
        import array_api_compat.dask.array as xp
    else:  # pragma: no cover - callers validate the name first
        raise ValueError(f"unknown backend {backend!r}")
    return xp


def read_values(*arrays) -> tuple:
    """The values of some (0-d) arrays, read to the host at once: for a lazy Dask array one
    ``dask.compute`` of them all (each ``int()`` or ``bool()`` alone would compute its own
    graph); for every other backend ``arrays`` as they are (read by ``int()`` later)."""
    if any(is_dask_array(a) for a in arrays):
        from dask.base import compute

        return tuple(compute(*arrays))
    return arrays


def same_device(d1, d2) -> bool:
    """Whether two devices are the same; unknown devices (``None``, as for
    arrays traced under ``jax.jit``) are taken to agree with anything."""
    if d1 is None or d2 is None:
        return True
    return bool(d1 == d2)
