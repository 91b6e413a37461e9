"""Arrays the library creates with no input to follow: parameters, states, moves.

Where they go (backend, device, dtype) is decided by the configuration
(`set_config`), or by the keyword arguments of each function.
"""

from __future__ import annotations

import numpy as np

from . import _compat
from ._config import _check_backend, _check_device, _check_dtype, get_config

__all__ = [
    "init_gru_params",
    "init_lstm_params",
    "init_rnn_params",
    "init_state",
    "resolve_device",
    "to_backend",
]


# -- devices ------------------------------------------------------------------


def _gpu_missing(backend: str, spec: str, found: int) -> RuntimeError:
    return RuntimeError(
        f"device {spec!r} was asked for on backend {backend!r}, which sees "
        f"{found} GPU(s); portable_rnn never falls back to the CPU silently"
    )


def resolve_device(backend: str, device):
    """The backend's own device object for a device name (or object).

    Parameters
    ----------
    backend : str
        A backend name.
    device : str, device object or None
        ``"cpu"``, ``"gpu"``, ``"gpu:N"``, ``"cuda"``, ``"cuda:N"``, a device
        object of that backend, or ``None`` (the backend's default).

    Returns
    -------
    device : object or None
        What the backend's ``asarray(..., device=)`` accepts.
    """
    if device is None:
        return None
    if not isinstance(device, str):
        return device
    spec = _check_device(device, "device")
    kind, _, index = spec.partition(":")
    n = int(index) if index else 0
    if backend in ("numpy", "array_api_strict"):
        if kind != "cpu":
            raise ValueError(
                f"backend {backend!r} runs on the CPU only, got device {device!r} "
                "(use backend 'cupy', 'jax' or 'torch' for a GPU)"
            )
        if backend == "numpy":
            return "cpu"
        import array_api_strict

        return array_api_strict.Device("CPU_DEVICE")
    if backend == "jax":
        import jax

        if kind == "cpu":
            return jax.devices("cpu")[0]
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        if n >= len(gpus):
            raise _gpu_missing(backend, spec, len(gpus))
        return gpus[n]
    if backend == "torch":
        import torch

        if kind == "cpu":
            return torch.device("cpu")
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n >= found:
            raise _gpu_missing(backend, spec, found)
        return torch.device("cuda", n)
    if backend == "cupy":
        if kind == "cpu":
            raise ValueError("backend 'cupy' runs on GPUs only, got device 'cpu'")
        import cupy

        try:
            found = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError:
            found = 0
        if n >= found:
            raise _gpu_missing(backend, spec, found)
        return cupy.cuda.Device(n)
    raise ValueError(f"unknown backend {backend!r}")  # pragma: no cover


def _target(backend, device, dtype):
    """Resolve (backend, device, dtype) keywords against the configuration."""
    config = get_config()
    if backend is None:
        backend = config.backend
        if device is None:
            device = config.device
    else:
        backend = _check_backend(backend, "backend")
    xp = _compat.namespace_for(backend)
    dev = resolve_device(backend, device)
    name = config.dtype if dtype is None else _check_dtype(dtype, "dtype")
    return backend, xp, dev, name


def _dtype_of(xp, backend: str, name: str):
    if backend == "jax" and name == "float64":
        import jax

        if not jax.config.jax_enable_x64:
            raise ValueError(
                "float64 on JAX needs jax.config.update('jax_enable_x64', True) "
                "(or JAX_ENABLE_X64=1); otherwise choose dtype='float32'"
            )
    return getattr(xp, name)


def _from_numpy(xp, backend: str, arr: np.ndarray, dev, dtype_name: str):
    """A new array of ``backend`` on ``dev`` holding the NumPy array ``arr``."""
    host = np.asarray(arr, dtype=np.dtype(dtype_name))
    _dtype_of(xp, backend, dtype_name)  # refuse float64 on JAX without x64
    return _from_numpy_any(xp, backend, host, dev)


# -- parameters and states ----------------------------------------------------


def _init(shapes: dict, n_a: int, seed, backend, device, dtype) -> dict:
    backend, xp, dev, name = _target(backend, device, dtype)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(n_a)
    # Drawn once, in float64 NumPy, in a fixed key order, then converted: the
    # same seed gives the same numbers on every backend and device.
    draws = {k: rng.uniform(-bound, bound, size=shape) for k, shape in shapes.items()}
    return {k: _from_numpy(xp, backend, v, dev, name) for k, v in draws.items()}


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def init_rnn_params(n_x, n_a, n_y, *, seed=None, backend=None, device=None, dtype=None):
    """Parameters of a vanilla RNN, uniform in ``[-1/sqrt(n_a), 1/sqrt(n_a)]``.

    Created on the configured backend, device and dtype (see `set_config`)
    unless the keywords say otherwise.

    Parameters
    ----------
    n_x, n_a, n_y : int
        Input features, hidden units, output classes.
    seed : int or None, keyword-only
        Seed of the NumPy generator the values are drawn from (always in
        float64 on the CPU, then converted), so one seed gives the same
        numbers on every backend. ``None`` draws fresh values.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call.

    Returns
    -------
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``Wya`` (n_y, n_a),
        ``ba`` (n_a, 1), ``by`` (n_y, 1).
    """
    _check_sizes(n_x=n_x, n_a=n_a, n_y=n_y)
    shapes = {
        "Wax": (n_a, n_x),
        "Waa": (n_a, n_a),
        "Wya": (n_y, n_a),
        "ba": (n_a, 1),
        "by": (n_y, 1),
    }
    return _init(shapes, n_a, seed, backend, device, dtype)


def _gated_shapes(gates, extra_biases, n_x, n_a, n_y) -> dict:
    """``W{g} (n_a, n_a + n_x)``, ``b{g} (n_a, 1)`` per gate, extra biases, output layer."""
    _check_sizes(n_x=n_x, n_a=n_a, n_y=n_y)
    shapes = {}
    for g in gates:
        shapes[f"W{g}"] = (n_a, n_a + n_x)
        shapes[f"b{g}"] = (n_a, 1)
    shapes.update({name: (n_a, 1) for name in extra_biases})
    shapes["Wy"] = (n_y, n_a)
    shapes["by"] = (n_y, 1)
    return shapes


def init_lstm_params(n_x, n_a, n_y, *, seed=None, backend=None, device=None, dtype=None):
    """Parameters of an LSTM, uniform in ``[-1/sqrt(n_a), 1/sqrt(n_a)]``.

    Parameters
    ----------
    n_x, n_a, n_y : int
        Input features, hidden units, output classes.
    seed : int or None, keyword-only
        As for `init_rnn_params`.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call.

    Returns
    -------
    parameters : dict
        ``Wf``, ``Wi``, ``Wc``, ``Wo`` (n_a, n_a + n_x); ``bf``, ``bi``,
        ``bc``, ``bo`` (n_a, 1); ``Wy`` (n_y, n_a); ``by`` (n_y, 1).
    """
    shapes = _gated_shapes("fico", (), n_x, n_a, n_y)
    return _init(shapes, n_a, seed, backend, device, dtype)


def init_gru_params(n_x, n_a, n_y, *, seed=None, backend=None, device=None, dtype=None):
    """Parameters of a GRU, uniform in ``[-1/sqrt(n_a), 1/sqrt(n_a)]``.

    Parameters
    ----------
    n_x, n_a, n_y : int
        Input features, hidden units, output classes.
    seed : int or None, keyword-only
        As for `init_rnn_params`.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call.

    Returns
    -------
    parameters : dict
        ``Wr``, ``Wz``, ``Wn`` (n_a, n_a + n_x); ``br``, ``bz``, ``bn``, ``bhn``
        (n_a, 1); ``Wy`` (n_y, n_a); ``by`` (n_y, 1).
    """
    shapes = _gated_shapes("rzn", ("bhn",), n_x, n_a, n_y)
    return _init(shapes, n_a, seed, backend, device, dtype)


def init_multilayer_params(
    cell,
    n_x,
    n_a,
    *,
    num_layers=1,
    bidirectional=False,
    seed=None,
    backend=None,
    device=None,
    dtype=None,
):
    """Parameters of a stack for `multilayer_forward`, uniform in ``±1/sqrt(n_a)``.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
        The cell of every layer.
    n_x, n_a : int
        Input features of the first layer, hidden units of every layer.
    num_layers : int, keyword-only
        Layers in the stack.
    bidirectional : bool, keyword-only
        Two directions per layer.
    seed : int or None, keyword-only
        One seed for the whole stack; each dict is drawn from its own stream of it.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call.

    Returns
    -------
    layers : list of dict
        ``num_layers * num_directions`` dicts in PyTorch's order, without output layer;
        layer 0 has ``n_x`` inputs, the others ``num_directions * n_a``.
    """
    inits = {"rnn": init_rnn_params, "lstm": init_lstm_params, "gru": init_gru_params}
    if cell not in inits:
        raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(inits)}")
    _check_sizes(num_layers=num_layers)
    D = 2 if bidirectional else 1
    layers = []
    for k in range(num_layers * D):
        stream = None if seed is None else np.random.SeedSequence([seed, k])
        n_in = n_x if k < D else D * n_a
        p = inits[cell](n_in, n_a, 1, seed=stream, backend=backend, device=device, dtype=dtype)
        layers.append({key: v for key, v in p.items() if key not in ("Wy", "Wya", "by")})
    return layers


def init_state(n_a, m, *, backend=None, device=None, dtype=None):
    """A zero state (hidden or cell) on the configured backend, device and dtype.

    Parameters
    ----------
    n_a, m : int
        Hidden units and batch size.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call.

    Returns
    -------
    state : array, shape (n_a, m)
        Zeros.
    """
    _check_sizes(n_a=n_a, m=m)
    backend, xp, dev, name = _target(backend, device, dtype)
    return _from_numpy(xp, backend, np.zeros((n_a, m)), dev, name)


def _from_numpy_any(xp, backend: str, host: np.ndarray, dev):
    """Any NumPy array (labels, masks) on ``backend``, keeping its dtype."""
    if backend == "cupy":  # pragma: no cover - needs a GPU
        import cupy

        with dev if dev is not None else cupy.cuda.Device():
            return xp.asarray(host)
    return xp.asarray(host, device=dev)


# -- moving arrays --------------------------------------------------------------


def _to_numpy(arr) -> np.ndarray:
    """An explicit copy to host memory (the caller asked for a move)."""
    xp = _compat.array_namespace(arr)
    name = _compat.backend_name(xp)
    if name == "torch":
        return arr.detach().cpu().numpy()
    if name == "cupy":  # pragma: no cover - needs a GPU
        return arr.get()
    if name == "array_api_strict":
        import array_api_strict

        arr = array_api_strict.asarray(arr, device=array_api_strict.Device("CPU_DEVICE"))
        return np.from_dlpack(arr)
    return np.asarray(arr)


def _transfer(arr, src: str, backend: str, xp, dev):
    """``arr`` on ``backend`` and ``dev``: DLPack where it works, else via host memory."""
    if src == "numpy" and not arr.flags.writeable:
        arr = np.array(arr)  # a writable copy: never alias read-only memory
    try:
        out = xp.from_dlpack(arr)
    except (BufferError, TypeError, ValueError, RuntimeError, AttributeError):
        out = None
    if out is not None and (dev is None or _compat.same_device(_compat.device(out), dev)):
        return out
    return _from_numpy_any(xp, backend, _to_numpy(arr), dev)


def _move(arr, backend: str, xp, dev, dtype):
    src_xp = _compat.array_namespace(arr)
    src = _compat.backend_name(src_xp)
    target = None
    if src_xp.isdtype(arr.dtype, "real floating"):
        # Floating arrays keep their dtype unless one is asked for; checked
        # before moving, so that JAX without x64 never downcasts silently.
        name = _check_dtype(arr.dtype if dtype is None else dtype, "dtype")
        target = _dtype_of(xp, backend, name)
    if src == backend and (dev is None or _compat.same_device(_compat.device(arr), dev)):
        out = arr  # already there: no copy
    else:
        out = _transfer(arr, src, backend, xp, dev)
    if target is not None and out.dtype != target:
        out = xp.astype(out, target)
    return out


def to_backend(obj, backend=None, device=None, *, dtype=None):
    """Move an array, or a dict / tuple / list of arrays, to a backend and device.

    DLPack is used where both sides can share memory (no copy); otherwise the
    data goes through host memory (an explicit copy, which is what was asked
    for). Non-array leaves (numbers, strings, ``None``) are returned as they are.

    Parameters
    ----------
    obj : array, or dict / tuple / list of them (nested)
        Arrays of any backend.
    backend : str, optional
        Target backend; the configured one when ``None``.
    device : str or device object, optional
        Target device; the configured one when ``backend`` is also ``None``,
        else that backend's default.
    dtype : {"float32", "float64"}, optional, keyword-only
        Convert floating arrays to this dtype; by default they keep theirs.

    Returns
    -------
    moved : same structure as ``obj``
        With every array on the target backend and device.

    Raises
    ------
    ValueError
        float64 asked of JAX without ``jax_enable_x64`` (never a silent downcast).
    """
    backend, xp, dev, _ = _target(backend, device, dtype)

    def move(o):
        if isinstance(o, dict):
            return {k: move(v) for k, v in o.items()}
        if isinstance(o, (tuple, list)) and not _compat.is_array(o):
            return type(o)(move(v) for v in o)
        if _compat.is_array(o):
            return _move(o, backend, xp, dev, dtype)
        return o

    return move(obj)
