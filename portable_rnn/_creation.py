"""Arrays the library creates with no input to follow: parameters, states, moves.

Where they go (backend, device, dtype) is decided by the configuration
(`set_config`), or by the keyword arguments of each function.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import compat, devices
from ._backend.devices import (
    FLOAT_DTYPES,
    backend_dtypes,
    check_backend,
    check_dtype,
    default_dtype,
    dtype_of,
    from_numpy,
    from_numpy_as,
    lacking,
)
from ._config import get_config
from ._core.spec import GRU, LSTM, RNN, CellSpec, cell_spec

__all__ = [
    "check_seed",
    "check_sizes",
    "init_gru_params",
    "init_lstm_params",
    "init_multilayer_params",
    "init_rnn_params",
    "init_state",
    "resolve_target",
    "to_backend",
]


def _resolve_place(backend, device):
    """Resolve (backend, device) keywords against the configuration: name, namespace, device."""
    config = get_config()
    if backend is None:
        backend = config.backend
        if device is None:
            device = config.device
    else:
        backend = check_backend(backend, "backend")
    dev = devices.resolve_device(backend, device)  # first: no GPU for CuPy is one clear line
    return backend, compat.namespace_for(backend), dev


def resolve_target(backend, device, dtype):
    """Resolve (backend, device, dtype) keywords against the configuration.

    The dtype: ``dtype`` if given, else the configured one, else the backend's default
    (float64, but float32 on JAX without ``jax_enable_x64``); one the backend lacks is a
    ``ValueError`` naming the backend and the dtypes it has.
    """
    config = get_config()
    backend, xp, dev = _resolve_place(backend, device)
    if dtype is not None:
        name = check_dtype(dtype, "dtype", backend)
    elif config.dtype is not None:
        name = check_dtype(config.dtype, "the configuration", backend)
    else:  # float64, but float32 on JAX without jax_enable_x64
        name = default_dtype(backend)
    return backend, xp, dev, name


# -- parameters and states ----------------------------------------------------


def _init(spec: CellSpec, n_x, n_a, n_y, seed, backend, device, dtype) -> dict:
    check_sizes(n_x=n_x, n_a=n_a, n_y=n_y)
    shapes = {k: spec.shape(k, n_x, n_a, n_y) for k in spec.keys}
    backend, xp, dev, name = resolve_target(backend, device, dtype)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(n_a)
    # Drawn once, in float64 NumPy, in a fixed key order, then converted: the
    # same seed gives the same numbers on every backend and device.
    draws = {k: rng.uniform(-bound, bound, size=shape) for k, shape in shapes.items()}
    return {k: from_numpy_as(xp, backend, v, dev, name) for k, v in draws.items()}


def check_seed(seed) -> None:
    """Refuse a seed that is not ``None`` or a non-negative integer, naming ``seed``."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed}")


def check_sizes(**sizes) -> None:
    """Refuse any size that is not a positive integer, naming it."""
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
        Override the configuration for this call. ``dtype``: ``"float32"``,
        ``"float64"``, or ``"float16"`` / ``"bfloat16"`` where the backend has them;
        default the configured one, else float64 (float32 on JAX without x64).

    Returns
    -------
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``Wya`` (n_y, n_a),
        ``ba`` (n_a, 1), ``by`` (n_y, 1).
    """
    check_seed(seed)
    return _init(RNN, n_x, n_a, n_y, seed, backend, device, dtype)


def init_lstm_params(n_x, n_a, n_y, *, seed=None, backend=None, device=None, dtype=None):
    """Parameters of an LSTM, uniform in ``[-1/sqrt(n_a), 1/sqrt(n_a)]``.

    Parameters
    ----------
    n_x, n_a, n_y : int
        Input features, hidden units, output classes.
    seed : int or None, keyword-only
        As for `init_rnn_params`.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call. ``dtype``: ``"float32"``,
        ``"float64"``, or ``"float16"`` / ``"bfloat16"`` where the backend has them;
        default the configured one, else float64 (float32 on JAX without x64).

    Returns
    -------
    parameters : dict
        ``Wf``, ``Wi``, ``Wc``, ``Wo`` (n_a, n_a + n_x); ``bf``, ``bi``,
        ``bc``, ``bo`` (n_a, 1); ``Wy`` (n_y, n_a); ``by`` (n_y, 1).
    """
    check_seed(seed)
    return _init(LSTM, n_x, n_a, n_y, seed, backend, device, dtype)


def init_gru_params(n_x, n_a, n_y, *, seed=None, backend=None, device=None, dtype=None):
    """Parameters of a GRU, uniform in ``[-1/sqrt(n_a), 1/sqrt(n_a)]``.

    Parameters
    ----------
    n_x, n_a, n_y : int
        Input features, hidden units, output classes.
    seed : int or None, keyword-only
        As for `init_rnn_params`.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call. ``dtype``: ``"float32"``,
        ``"float64"``, or ``"float16"`` / ``"bfloat16"`` where the backend has them;
        default the configured one, else float64 (float32 on JAX without x64).

    Returns
    -------
    parameters : dict
        ``Wr``, ``Wz``, ``Wn`` (n_a, n_a + n_x); ``br``, ``bz``, ``bn``, ``bhn``
        (n_a, 1); ``Wy`` (n_y, n_a); ``by`` (n_y, 1).
    """
    check_seed(seed)
    return _init(GRU, n_x, n_a, n_y, seed, backend, device, dtype)


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
        Override the configuration for this call. ``dtype``: ``"float32"``,
        ``"float64"``, or ``"float16"`` / ``"bfloat16"`` where the backend has them;
        default the configured one, else float64 (float32 on JAX without x64).

    Returns
    -------
    layers : list of dict
        ``num_layers * num_directions`` dicts in PyTorch's order, without output layer;
        layer 0 has ``n_x`` inputs, the others ``num_directions * n_a``.
    """
    spec = cell_spec(cell)
    check_sizes(num_layers=num_layers)
    check_seed(seed)
    D = 2 if bidirectional else 1
    layers = []
    for k in range(num_layers * D):
        stream = None if seed is None else np.random.SeedSequence([seed, k])
        n_in = n_x if k < D else D * n_a
        # drawn with an output layer of one unit, then left out: the draws keep their order
        p = _init(spec, n_in, n_a, 1, stream, backend, device, dtype)
        layers.append({key: v for key, v in p.items() if key not in spec.output_keys})
    return layers


def init_state(n_a, m, *, backend=None, device=None, dtype=None):
    """A zero state (hidden or cell) on the configured backend, device and dtype.

    Parameters
    ----------
    n_a, m : int
        Hidden units and batch size.
    backend, device, dtype : optional, keyword-only
        Override the configuration for this call. ``dtype``: ``"float32"``,
        ``"float64"``, or ``"float16"`` / ``"bfloat16"`` where the backend has them;
        default the configured one, else float64 (float32 on JAX without x64).

    Returns
    -------
    state : array, shape (n_a, m)
        Zeros.
    """
    check_sizes(n_a=n_a, m=m)
    backend, xp, dev, name = resolve_target(backend, device, dtype)
    return from_numpy_as(xp, backend, np.zeros((n_a, m)), dev, name)


# -- moving arrays --------------------------------------------------------------


def _transfer(arr, src: str, backend: str, xp, dev):
    """``arr`` on ``backend`` and ``dev``: DLPack where it works, else via host memory."""
    if src == "numpy" and not arr.flags.writeable:
        arr = np.array(arr)  # a writable copy: never alias read-only memory
    try:
        out = xp.from_dlpack(arr)
    except (BufferError, TypeError, ValueError, RuntimeError, AttributeError):
        out = None
    if out is not None and (dev is None or compat.same_device(compat.device(out), dev)):
        return out
    return from_numpy(xp, backend, devices.to_numpy(arr), dev)


def _move(arr, backend: str, xp, dev, dtype, where: str):
    """``arr`` (called ``where`` in errors) on ``backend``, ``dev``, in ``dtype`` if floating."""
    if any(c.__name__ == "MaskedArray" for c in type(arr).__mro__):
        raise TypeError(
            f"{where} is a NumPy masked array, whose mask to_backend would drop; "
            f"pass {where}.filled(value) or numpy.asarray({where}) (the data without the mask)"
        )
    src_xp = compat.array_namespace(arr)
    src = compat.backend_name(src_xp)
    target = None
    src_name = compat.dtype_name(arr.dtype)
    if src_name in FLOAT_DTYPES:
        # Floating arrays keep their dtype unless one is asked for (or it is float64 to
        # JAX without x64); checked before moving (a dtype the target lacks).
        if dtype is None and src_name not in backend_dtypes(backend):
            raise ValueError(
                f"{where} has dtype {src_name}, {lacking(backend)}; pass dtype=... to convert it"
            )
        name = src_name if dtype is None else check_dtype(dtype, "dtype", backend)
        if dtype is None and name == "float64" and default_dtype(backend) == "float32":
            name = "float32"  # JAX without x64: its default, as for the init_* functions
        target = dtype_of(xp, backend, name)
        if name != src_name and _has_dtype(src, name):  # convert where it is, then move
            arr = src_xp.astype(arr, getattr(src_xp, name))
    if src == backend and (dev is None or compat.same_device(compat.device(arr), dev)):
        out = arr  # already there: no copy
    else:
        out = _transfer(arr, src, backend, xp, dev)
    if target is not None and out.dtype != target:
        out = xp.astype(out, target)
    return out


def _has_dtype(backend: str, name: str) -> bool:
    """Whether arrays of ``backend`` can be of dtype ``name`` here (JAX float64: x64 on)."""
    return name in backend_dtypes(backend) and (
        backend != "jax" or name != "float64" or default_dtype("jax") == "float64"
    )


def to_backend(obj, backend=None, device=None, *, dtype=None) -> Any:
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
    dtype : {"float32", "float64", "float16", "bfloat16"}, optional, keyword-only
        Convert floating arrays to this dtype; by default they keep theirs, except that
        float64 arrays become float32 on JAX without ``jax_enable_x64`` (its default
        dtype then; ``dtype="float64"`` there is an error saying how to enable x64).
        float16 and bfloat16 only where the target backend has them (torch and JAX both,
        NumPy and CuPy float16, array_api_strict neither).

    Returns
    -------
    moved : same structure as ``obj``
        With every array on the target backend and device.

    A floating array whose dtype the target backend lacks (bfloat16 to NumPy, float16 or
    bfloat16 to array_api_strict) is refused unless ``dtype`` is given, naming the array
    (``obj['Wf']``), its dtype and the dtypes the backend has; integer and boolean
    arrays are moved as they are. NumPy masked arrays are refused (their mask would
    be dropped).

    Raises
    ------
    TypeError
        A NumPy masked array.
    ValueError
        ``dtype="float64"`` asked of JAX without ``jax_enable_x64``; a dtype the target
        backend does not have, asked for or kept.
    RuntimeError
        A GPU that is not there (also CuPy on a machine where it sees no GPU).
    """
    backend, xp, dev = _resolve_place(backend, device)
    if dtype is not None:
        check_dtype(dtype, "dtype", backend)

    def move(o, where):
        if isinstance(o, dict):
            return {k: move(v, f"{where}[{k!r}]") for k, v in o.items()}
        if isinstance(o, (tuple, list)) and not compat.is_array(o):
            return type(o)(move(v, f"{where}[{k}]") for k, v in enumerate(o))
        if compat.is_array(o):
            return _move(o, backend, xp, dev, dtype, where)
        return o

    return move(obj, "obj")
