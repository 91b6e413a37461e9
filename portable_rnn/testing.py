"""Testing helpers, public: the same ones portable_rnn's own test suite uses.

* `Backend` and `available_backends`: the backends (and devices) installed here;
* `tolerances` and `assert_close`: one comparison for every test, checking the
  backend, shape, dtype and device of an array before its values;
* `check_gradients`: a hand-written backward against central differences;
* `to_numpy`: an explicit copy of any backend's array to host memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
from typing import Any

import numpy as np

from ._backend import compat as _compat
from ._backend import devices as _devices

__all__ = [
    "BACKEND_NAMES",
    "TOLERANCES",
    "TRAINING_TOLERANCES",
    "Backend",
    "assert_close",
    "available_backends",
    "check_gradients",
    "full_precision",
    "select_backends",
    "to_numpy",
    "tolerances",
]

#: ``(rtol, atol)`` for comparing a result of a given dtype with the NumPy
#: float64 reference computed from the same inputs (the inputs are rounded to
#: the dtype first, so only the arithmetic differs).
#:
#: * float64: unit roundoff 1.1e-16. The functions chain O(10^2) operations
#:   per output (products over n_a + n_x terms, T_x steps of recurrence, and
#:   the backward through them), and backends sum in different orders
#:   (BLAS blocking, fused gates, XLA); observed differences stay below 1e-13
#:   relative. 1e-10 leaves three orders of margin and still catches any
#:   real error (a wrong term is O(1e-2) or larger).
#: * float32: unit roundoff 6e-8; the same chains give observed differences
#:   up to a few 1e-6 relative (gradients summed over m * T_x terms are the
#:   largest). 1e-4 relative, 1e-5 absolute (for entries near zero, whose
#:   error is set by their larger neighbours) leave more than 10x margin.
#:   On GPUs this assumes full float32 matrix products (no TF32).
#: * float16 and bfloat16 (unit roundoff 4.9e-4 and 3.9e-3): the functions compute half
#:   inputs in float32 and round each result once, at the end
#:   (`portable_rnn._validate.float32_inside`). The reference is computed from the same
#:   half-rounded inputs, so the difference is float32's (a few 1e-6 relative, as above)
#:   plus that one rounding: at most one unit roundoff relative. Observed (every public
#:   function, tests/test_half.py, NumPy, JAX and PyTorch on the CPU): 4.7e-4 in
#:   float16 and 3.8e-3 in bfloat16, just under one unit roundoff. rtol is four unit
#:   roundoffs (2e-3, 1.6e-2): 4x margin, and a wrong term (O(1e-2) or larger in
#:   float16) still fails. atol covers entries
#:   near zero, whose float32 error is set by their larger neighbours (the same 1e-5 as
#:   float32) and, in float16, the subnormal spacing (6e-8) below 6.1e-5.
TOLERANCES = {
    "float64": (1e-10, 1e-12),
    "float32": (1e-4, 1e-5),
    "float16": (2e-3, 1e-5),
    "bfloat16": (1.6e-2, 1e-5),
}

#: ``(rtol, atol)`` for whole float64 training runs (`portable_rnn.train`): losses
#: and parameters after 20 steps of Adam, compared across backends and with
#: PyTorch autograd + ``torch.optim.Adam``. Each step feeds the previous one's
#: rounding into the next, and Adam divides by ``sqrt(v)``, which can magnify a
#: difference in a small gradient; observed differences stay below 1e-15
#: relative (2.4e-16 against PyTorch), so 1e-9, the bound the training issue
#: asks for, keeps six orders of margin.
TRAINING_TOLERANCES = (1e-9, 1e-12)


def full_precision() -> None:
    """Settle the backends for comparisons: float64 on JAX, full float32 matrix products.

    Enables ``jax_enable_x64`` and ``jax_default_matmul_precision="highest"``,
    sets ``CUPY_TF32=0`` (before CuPy's first product) and turns PyTorch's TF32
    off, for the backends that are installed. The `TOLERANCES` assume it; the
    test suite, the pytest plugin, ``portable-rnn check`` and ``bench`` call it.
    """
    import os

    os.environ.setdefault("CUPY_TF32", "0")
    if importlib.util.find_spec("jax") is not None:
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def tolerances(dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for results of ``dtype`` (a dtype of any backend or a name).

    Parameters
    ----------
    dtype : dtype or str
        ``float32``, ``float64``, ``float16`` or ``bfloat16`` of any backend.

    Returns
    -------
    rtol, atol : float
        See `TOLERANCES` for the reasoning behind the numbers.
    """
    name = dtype if isinstance(dtype, str) else _compat.dtype_name(dtype)
    try:
        return TOLERANCES[name]
    except KeyError:
        raise ValueError(
            f"no tolerance for dtype {dtype!r}; known: {', '.join(TOLERANCES)}"
        ) from None


def to_numpy(arr) -> np.ndarray:
    """A NumPy copy of an array of any backend and device (explicit host copy).

    Parameters
    ----------
    arr : array
        Any backend's array.

    Returns
    -------
    out : numpy.ndarray
        Same shape and dtype (bfloat16, which NumPy lacks, as float32: exactly).
    """
    return _devices.to_numpy(arr)


def assert_close(
    actual, desired, *, xp=None, dtype=None, device=None, rtol=None, atol=None, err_msg: str = ""
) -> None:
    """Assert that ``actual`` has the expected backend, shape, dtype, device and values.

    Checked in this order: ``actual`` is an array of the expected backend; its
    shape equals ``desired``'s; its dtype is the expected one; it is on the
    expected device; its values equal ``desired``'s within `tolerances` of its
    dtype (or the ``rtol``/``atol`` given).

    Parameters
    ----------
    actual : array
        The result under test.
    desired : array
        The reference, of the same backend or (typically) a NumPy float64 array.
    xp : namespace or Backend, optional
        Expected backend of ``actual``; default: ``desired``'s.
    dtype : dtype or str, optional
        Expected dtype of ``actual``; default: ``desired``'s.
    device : device, optional
        Expected device of ``actual``; default: ``desired``'s when both are of
        one backend, else not checked.
    rtol, atol : float, optional
        Override the dtype's tolerances. Integer and boolean arrays have none: give both
        (``rtol=0, atol=0`` asks for equal values).
    err_msg : str, optional
        Prefix of the failure message.
    """
    want_dtype = _check_meta(actual, desired, xp=xp, dtype=dtype, device=device, err_msg=err_msg)
    if rtol is None or atol is None:  # integer and boolean arrays need both given (0 for equal)
        default_rtol, default_atol = tolerances(want_dtype)
        rtol = default_rtol if rtol is None else rtol
        atol = default_atol if atol is None else atol
    np.testing.assert_allclose(
        to_numpy(actual).astype(np.float64),
        to_numpy(desired).astype(np.float64) if _compat.is_array(desired) else desired,
        rtol=rtol,
        atol=atol,
        err_msg=err_msg,
    )


def _check_meta(actual, desired, *, xp=None, dtype=None, device=None, err_msg="") -> str:
    """The backend, shape, dtype and device checks of `assert_close`; returns the dtype name."""
    where = f"{err_msg}: " if err_msg else ""
    if not _compat.is_array(actual):
        raise AssertionError(f"{where}expected an array, got {type(actual).__name__}")
    want_xp = getattr(xp, "xp", xp)
    if want_xp is None:
        want_xp = _compat.array_namespace(desired)
    want, got = _compat.backend_name(want_xp), _compat.backend_name(_compat.array_namespace(actual))
    if want != got:
        raise AssertionError(f"{where}expected a {want} array, got a {got} array")
    if tuple(actual.shape) != tuple(desired.shape):
        raise AssertionError(
            f"{where}shape {tuple(actual.shape)} != expected {tuple(desired.shape)}"
        )
    want_dtype = _compat.dtype_name(desired.dtype if dtype is None else dtype)
    if _compat.dtype_name(actual.dtype) != want_dtype:
        raise AssertionError(f"{where}dtype {actual.dtype} != expected {want_dtype}")
    if device is None and _compat.is_array(desired):
        same = _compat.backend_name(_compat.array_namespace(desired)) == got
        device = _compat.device(desired) if same else None
    if not _compat.same_device(_compat.device(actual), device):
        raise AssertionError(f"{where}device {_compat.device(actual)} != expected {device}")
    return want_dtype


def check_gradients(
    fn, inputs: dict, gradients: dict, *, eps: float = 1e-6, rtol: float = 1e-6, atol: float = 1e-8
) -> dict:
    """Check analytic gradients against central differences, in NumPy float64.

    Parameters
    ----------
    fn : callable
        ``fn(inputs) -> float``: a scalar loss of a dict of NumPy float64 arrays.
    inputs : dict of str to array
        Where to evaluate; arrays of any backend, copied to NumPy float64.
    gradients : dict of str to array
        The gradients to check, ``gradients[k]`` of the shape of ``inputs[k]``.
    eps : float, optional
        Step of the central difference ``(fn(x + eps) - fn(x - eps)) / (2 eps)``;
        its truncation error is O(eps^2) and its rounding error O(1e-16 / eps).
    rtol, atol : float, optional
        Tolerances of the comparison.

    Returns
    -------
    errors : dict of str to float
        Largest absolute difference per gradient.

    Raises
    ------
    AssertionError
        A gradient differs from its numerical estimate.
    """
    base = {k: to_numpy(v).astype(np.float64) for k, v in inputs.items()}
    errors = {}
    for name, analytic in gradients.items():
        if name not in base:
            raise KeyError(f"gradient {name!r} has no input of that name")
        analytic = to_numpy(analytic).astype(np.float64)
        if analytic.shape != base[name].shape:
            raise AssertionError(
                f"gradient {name!r} has shape {analytic.shape}, input {base[name].shape}"
            )
        numeric = np.zeros_like(base[name])
        for idx in np.ndindex(*base[name].shape):
            values = []
            for sign in (1.0, -1.0):
                probe = dict(base)
                probe[name] = base[name].copy()
                probe[name][idx] += sign * eps
                values.append(float(fn(probe)))
            numeric[idx] = (values[0] - values[1]) / (2 * eps)
        np.testing.assert_allclose(
            analytic,
            numeric,
            rtol=rtol,
            atol=atol,
            err_msg=f"gradient {name!r} vs central differences",
        )
        errors[name] = float(np.max(np.abs(analytic - numeric), initial=0.0))
    return errors


# -- backends -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Backend:
    """One backend on one device, as the test suite runs it.

    Attribute access falls through to the array namespace, so a `Backend`
    can be used as ``xp`` (``xp.float32``, ``xp.zeros(...)``); `asarray` is
    overridden to create arrays on this backend's device (read-only for
    ``numpy:readonly``) and to accept dtype names. Run code under `settings`
    (the ``xp`` fixture and ``portable-rnn check`` do): ``array_api_strict:strictest``
    is array_api_strict with every optional feature of the standard turned off
    (no boolean indexing, no data-dependent shapes, no extensions), as
    array-api-extra tests it.

    Attributes
    ----------
    name : str
        ``numpy``, ``numpy:readonly``, ``array_api_strict``,
        ``array_api_strict:strictest``, ``jax``, ``torch``, ``dask``, and on GPU
        machines ``cupy``, ``jax:gpu``, ``torch:gpu``.
    backend : str
        The library: ``numpy``, ``array_api_strict``, ``jax``, ``torch``, ``dask``,
        ``cupy``.
    device : str
        The portable_rnn device name, ``"cpu"`` or ``"gpu:0"``.
    """

    name: str
    backend: str
    device: str

    @property
    def xp(self):
        """The array API namespace."""
        return _compat.namespace_for(self.backend)

    @property
    def array_device(self) -> Any:
        """The backend's own device object."""
        return _devices.resolve_device(self.backend, self.device)

    @property
    def readonly(self) -> bool:
        """Whether arrays of `asarray` are read-only (``numpy:readonly``)."""
        return self.name.endswith(":readonly")

    @property
    def forward_only(self) -> str | None:
        """Why this backend runs only the tests marked ``forward``, or ``None`` (it runs all).

        ``dask``: the per-step Python loop builds a Dask graph that grows with the sequence
        (about 40 tasks a step forward, 150 backward for an LSTM), so a test costs seconds
        where NumPy takes milliseconds. Its backward works and ``portable-rnn check`` runs
        it; the shared suite runs the forward functions (see docs/backends.md).
        """
        return _FORWARD_ONLY.get(self.backend)

    @property
    def strictest(self) -> bool:
        """Whether this is ``array_api_strict:strictest`` (see `settings`)."""
        return self.name.endswith(":strictest")

    def settings(self):
        """A context manager in which this backend runs as its name says.

        For ``array_api_strict:strictest``, array_api_strict's flags with every
        optional feature off (``boolean_indexing``, ``data_dependent_shapes``, the
        ``linalg`` and ``fft`` extensions), restored on exit; for ``dask``, Dask's
        synchronous scheduler (a test's graph is one chain of single-chunk tasks,
        where a thread pool only adds overhead); for every other backend, nothing.

        Returns
        -------
        context : context manager
        """
        if self.backend == "dask":
            from dask.config import set as dask_config

            return dask_config(scheduler="synchronous")
        if not self.strictest:
            return contextlib.nullcontext()
        import array_api_strict

        return array_api_strict.ArrayAPIStrictFlags(
            boolean_indexing=False, data_dependent_shapes=False, enabled_extensions=()
        )

    def describe(self) -> str:
        """The device in words: ``"cpu"``, or the GPU's name (``"NVIDIA H100 80GB HBM3"``)."""
        if self.device == "cpu":
            return "cpu"
        dev = self.array_device
        try:
            if self.backend == "torch":
                import torch

                return torch.cuda.get_device_name(dev)
            if self.backend == "cupy":  # pragma: no cover - needs a GPU
                import cupy

                name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
                return name.decode() if isinstance(name, bytes) else str(name)
            return str(getattr(dev, "device_kind", dev))
        except Exception:  # pragma: no cover - a description must never fail a run
            return str(dev)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.xp, attr)

    def asarray(self, obj, dtype=None):
        """``obj`` (NumPy array or nested lists) as a new array of this backend and device."""
        host = np.array(obj, copy=True)
        if dtype is None and np.issubdtype(host.dtype, np.floating):
            dtype = host.dtype
        out: Any
        if dtype is None:
            out = _devices.from_numpy(self.xp, self.backend, host, self.array_device)
        else:
            out = _devices.from_numpy_as(
                self.xp, self.backend, host, self.array_device, _compat.dtype_name(dtype)
            )
        if self.readonly:
            out.flags.writeable = False
        return out

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


#: backend -> why it runs only the tests marked ``forward`` (`Backend.forward_only`)
_FORWARD_ONLY = {
    "dask": (
        "forward only (tests marked forward): each time step adds ~40 Dask graph tasks "
        "forward and ~150 backward, seconds a test; its backward runs in portable-rnn check"
    ),
}
_CPU = (
    ("numpy", "numpy", "cpu"),
    ("numpy:readonly", "numpy", "cpu"),
    ("array_api_strict", "array_api_strict", "cpu"),
    ("array_api_strict:strictest", "array_api_strict", "cpu"),
    ("jax", "jax", "cpu"),
    ("torch", "torch", "cpu"),
    ("dask", "dask", "cpu"),
)
_GPU = (
    ("cupy", "cupy", "gpu:0"),
    ("jax:gpu", "jax", "gpu:0"),
    ("torch:gpu", "torch", "gpu:0"),
)
#: every backend variant the suite knows, in order
BACKEND_NAMES = tuple(n for n, _, _ in _CPU + _GPU)


def _unavailable(backend: str, device: str) -> str | None:
    """Why a backend/device cannot run here, or ``None`` if it can."""
    if not _devices.is_installed(backend):
        return f"{backend} is not installed (pip install {_devices.BACKENDS[backend].extra})"
    if device != "cpu":
        try:
            found, why = _devices.gpu_count(backend)
        except Exception as exc:  # a broken install: say why
            return f"{backend} cannot tell its GPUs: {type(exc).__name__}: {exc}"
        if not found:
            return f"no GPU visible to {backend}{why}"
    try:
        _devices.resolve_device(backend, device)
    except Exception as exc:  # no GPU, no driver, broken install: say why
        return f"{backend} on {device}: {exc}"
    return None


def available_backends(*, include_unavailable: bool = False):
    """The backends and devices that can run here.

    Parameters
    ----------
    include_unavailable : bool, optional, keyword-only
        Also list the known backends that cannot run, each with the reason.

    Returns
    -------
    backends : list of Backend, or list of (Backend, reason or None)
        In the order of `BACKEND_NAMES`.
    """
    found = []
    for name, backend, device in _CPU + _GPU:
        reason = _unavailable(backend, device)
        if include_unavailable:
            found.append((Backend(name, backend, device), reason))
        elif reason is None:
            found.append(Backend(name, backend, device))
    return found


def select_backends(names=None):
    """The backends named, each with the reason it cannot run (``None`` if it can).

    Parameters
    ----------
    names : sequence of str, optional
        Names from `BACKEND_NAMES`. ``None`` or empty: every known backend.

    Returns
    -------
    backends : list of (Backend, reason or None)
        In the order of `BACKEND_NAMES`.

    Raises
    ------
    ValueError
        A name that is not a backend (the message lists the known ones), or a
        backend named explicitly that cannot run here (the message says why).
    """
    listed = available_backends(include_unavailable=True)
    if not names:
        return listed
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown:
        raise ValueError(
            f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKEND_NAMES)}"
        )
    chosen = [(b, why) for b, why in listed if b.name in names]
    missing = [f"{b.name}: {why}" for b, why in chosen if why]
    if missing:
        raise ValueError("requested backend(s) cannot run: " + "; ".join(missing))
    return chosen
