"""Data parallelism on JAX's sharding: one program over a mesh of devices, not a home-made one.

portable_rnn's math is written once against the array API; on JAX it runs under
``jax.jit``, and XLA's SPMD partitioner (GSPMD) splits a jitted step over a
`jax.sharding.Mesh` when its inputs say how they are laid out. Data parallelism is
then a matter of placement:

* the batch (inputs, targets, lengths, the carried state) is split along its batch
  axis over the mesh (`shard_batch`);
* the parameters and the optimizer's state are replicated (`replicate`);
* the hand-written backward's sums over the batch (``dW = dZ @ X.T``, the loss's
  mean) become XLA's cross-device all-reduces: no hand-written collective.

`data_parallel` wraps a step function with these placements (``in_axes`` and
``out_axes`` as `jax.vmap` spells them: ``None`` replicated, an int the batch
axis). Multi-host: `initialize_distributed` joins the processes of a job
(`jax.distributed.initialize`); every process builds the same global batch on the
host and `shard_batch` hands each device its slice (`jax.make_array_from_callback`);
`to_host` gathers a result on every process (``process_allgather``).

Needs JAX (``pip install portable_rnn[jax]``). See "Scaling out" in the documentation.

Examples
--------
>>> from portable_rnn import parallel
>>> mesh = parallel.make_mesh(4)                             # doctest: +SKIP
>>> step = parallel.data_parallel(train_step, mesh,           # doctest: +SKIP
...                               in_axes=(None, 0, 0), out_axes=(None, None))
>>> loss, params = step(params, x, y)                         # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

__all__ = [
    "AXIS",
    "DISTRIBUTED_ENV",
    "data_parallel",
    "initialize_distributed",
    "make_mesh",
    "replicate",
    "shard_batch",
    "to_host",
]

#: The name of the mesh axis the batch is split over.
AXIS = "batch"


def _jax():
    try:
        import jax
    except ImportError:
        raise ImportError(
            "portable_rnn.parallel needs JAX: pip install portable_rnn[jax]"
        ) from None
    return jax


def make_mesh(
    devices: int | str | Sequence[Any] | None = None,
    *,
    platform: str | None = None,
    axis_name: str = AXIS,
):
    """A one-axis `jax.sharding.Mesh` for data parallelism.

    Parameters
    ----------
    devices : int, "all", sequence of jax.Device, or None, optional
        ``None`` or ``"all"``: every device of the job (`jax.devices`, across all
        processes after `initialize_distributed`); an int ``N``: the first ``N`` of
        them; a sequence: those devices, in that order.
    platform : {"cpu", "gpu", "tpu"}, optional, keyword-only
        Take the devices of this platform (default: JAX's default backend's).
    axis_name : str, optional, keyword-only
        The mesh axis's name (default ``"batch"``).

    Returns
    -------
    jax.sharding.Mesh
        Shape ``(N,)``, one axis ``axis_name``.

    Raises
    ------
    ValueError
        ``devices`` is not a positive int, or more than the devices present (the
        message says how many there are and how to have more CPU devices).
    """
    jax = _jax()
    try:
        present = jax.devices(platform)
    except RuntimeError as exc:  # no such platform here
        raise ValueError(f"no JAX {platform} devices: {' '.join(str(exc).split())}") from None
    if devices is None or (isinstance(devices, str) and devices == "all"):
        chosen = list(present)
    elif isinstance(devices, str):
        raise ValueError(f"devices must be a positive int or 'all', got {devices!r}")
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
        if n < 1:
            raise ValueError(f"devices must be a positive int or 'all', got {n}")
        if n > len(present):
            kind = present[0].platform
            hint = (
                " (more CPU devices: XLA_FLAGS=--xla_force_host_platform_device_count=N "
                "before JAX starts)"
                if kind == "cpu"
                else ""
            )
            raise ValueError(f"devices={n} but JAX has {len(present)} {kind} device(s){hint}")
        chosen = list(present[:n])
    else:
        chosen = list(cast(Sequence[Any], devices))
        if not chosen:
            raise ValueError("devices is an empty sequence")
    return jax.sharding.Mesh(np.array(chosen, dtype=object), (axis_name,))


def _spec(mesh, ndim: int, axis: int | None, axis_name: str):
    """The `NamedSharding` of an ``ndim``-d array: replicated, or split along ``axis``."""
    jax = _jax()
    P = jax.sharding.PartitionSpec
    if axis is None:
        return jax.sharding.NamedSharding(mesh, P())
    if not -ndim <= axis < ndim:
        raise ValueError(f"batch axis {axis} is out of range for an array of {ndim} dimension(s)")
    parts: list = [None] * ndim
    parts[axis % ndim] = axis_name
    return jax.sharding.NamedSharding(mesh, P(*parts))


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _place(leaf, axis: int | None, mesh, axis_name: str, where: str):
    jax = _jax()
    if not _is_array(leaf):  # a Python scalar: a constant of the program, replicated
        if axis is not None:
            raise TypeError(f"{where} is not an array; it cannot be split along axis {axis}")
        return leaf
    shape = tuple(int(s) for s in leaf.shape)
    sharding = _spec(mesh, len(shape), axis, axis_name)
    if axis is not None:
        n, size = shape[axis % len(shape)], mesh.devices.size
        if n % size:
            raise ValueError(
                f"{where} has {n} rows along its batch axis {axis}, which do not split "
                f"evenly over {size} devices; use a batch that is a multiple of {size}"
            )
    if isinstance(leaf, jax.Array):
        if leaf.sharding == sharding:
            return leaf
        if jax.process_count() == 1 or not leaf.is_fully_addressable:
            return jax.device_put(leaf, sharding)
        # a process's own array (its parameters, made from the same seed on every process)
        # onto devices of other processes: from its host copy, not a cross-host transfer
    host = np.asarray(leaf)
    # every process holds the whole (global) batch; each device gets its slice
    return jax.make_array_from_callback(shape, sharding, lambda index: host[index])


def _map_axes(fn, axes, tree, where: str):
    """``fn(leaf, axis, path)`` over ``tree`` with ``axes`` a pytree prefix of it."""
    jax = _jax()

    def sub(path, axis, subtree):
        prefix = where + jax.tree_util.keystr(path)
        return jax.tree_util.tree_map_with_path(
            lambda p, leaf: fn(leaf, axis, prefix + jax.tree_util.keystr(p)), subtree
        )

    return jax.tree_util.tree_map_with_path(
        sub, axes, tree, is_leaf=lambda a: a is None or isinstance(a, int)
    )


def shard_batch(tree, mesh, *, axis: Any = 0, axis_name: str = AXIS):
    """Place a batch pytree on ``mesh``, every array split along its batch axis.

    Parameters
    ----------
    tree : pytree of arrays (NumPy or JAX)
        For example ``(x, y)`` with ``x`` of shape ``(m, T)``, or a state dict of
        ``(layers, H, m)`` arrays. A NumPy array must be the whole (global) batch,
        the same on every process of a multi-host job.
    mesh : jax.sharding.Mesh
        From `make_mesh`.
    axis : int, None or pytree of them, optional, keyword-only
        The batch axis of every array (default 0), or a pytree prefix of ``tree``
        giving it per part (``-1`` for the column dialect's ``(n, m)`` states;
        ``None``: that part replicated).
    axis_name : str, optional, keyword-only
        The mesh axis (default ``"batch"``).

    Returns
    -------
    pytree of jax.Array
        ``tree``'s structure; each array global, of the same shape, split over the
        mesh's devices along its batch axis (``m / N`` rows per device).

    Raises
    ------
    ValueError
        A batch axis whose length does not divide by the number of devices (the
        message names the array's place in ``tree``).
    """
    return _map_axes(
        lambda leaf, ax, where: _place(leaf, ax, mesh, axis_name, where), axis, tree, "tree"
    )


def replicate(tree, mesh):
    """A copy of every array of ``tree`` on every device of ``mesh`` (parameters, optimizer state).

    Parameters
    ----------
    tree : pytree of arrays
    mesh : jax.sharding.Mesh

    Returns
    -------
    pytree of jax.Array
        The same shapes and dtypes, fully replicated.
    """
    return shard_batch(tree, mesh, axis=None)


def data_parallel(
    fn: Callable,
    mesh,
    *,
    in_axes: Sequence[Any],
    out_axes: Any,
    axis_name: str = AXIS,
    donate_argnums: Sequence[int] = (),
):
    """``jax.jit(fn)`` run data-parallel over ``mesh``.

    Each positional argument is placed as ``in_axes`` says (`shard_batch`: an int is
    the batch axis, split over the mesh; ``None`` replicated; a pytree prefix per
    part), and each result is constrained as ``out_axes`` says
    (`jax.lax.with_sharding_constraint`), so that results carried into the next call
    (parameters, state) stay where they belong. XLA partitions the program (GSPMD):
    a sum over the batch axis becomes an all-reduce across the devices.

    Parameters
    ----------
    fn : callable
        A pure function of pytrees of arrays (the same as for ``jax.jit``).
    mesh : jax.sharding.Mesh
        From `make_mesh`.
    in_axes : sequence, keyword-only
        One entry per positional argument: ``None``, an int, or a pytree prefix of
        the argument made of them.
    out_axes : pytree prefix of the result, keyword-only
        The same for the results.
    axis_name : str, optional, keyword-only
    donate_argnums : sequence of int, optional, keyword-only
        Passed to ``jax.jit``.

    Returns
    -------
    callable
        Same arguments and results as ``fn``; its ``lower(*args)`` gives the lowered
        program (``.compile().as_text()`` shows the collectives).
    """
    jax = _jax()
    in_axes = tuple(in_axes)

    def constrained(*args):
        out = fn(*args)

        def constrain(leaf, ax, where):
            if not _is_array(leaf):
                return leaf
            return jax.lax.with_sharding_constraint(leaf, _spec(mesh, leaf.ndim, ax, axis_name))

        return _map_axes(constrain, out_axes, out, "result")

    jitted = jax.jit(constrained, donate_argnums=tuple(donate_argnums))

    def place(args):
        if len(args) != len(in_axes):
            raise TypeError(f"{len(args)} arguments, but in_axes has {len(in_axes)} entries")
        return tuple(
            _map_axes(
                lambda leaf, ax, where: _place(leaf, ax, mesh, axis_name, where),
                ax,
                arg,
                f"argument {i}",
            )
            for i, (arg, ax) in enumerate(zip(args, in_axes, strict=True))
        )

    @functools.wraps(fn)
    def call(*args):
        return jitted(*place(args))

    call.lower = lambda *args: jitted.lower(*place(args))  # type: ignore[attr-defined]
    return call


def to_host(tree):
    """NumPy copies of a pytree of (possibly sharded) JAX arrays, on every process.

    On one process, `jax.device_get`. In a multi-host job an array split over
    devices of other processes is gathered first
    (`jax.experimental.multihost_utils.process_allgather`): every process must call
    it, at the same point.

    Parameters
    ----------
    tree : pytree of jax.Array

    Returns
    -------
    pytree of numpy.ndarray
        The global arrays, same shapes and dtypes.
    """
    jax = _jax()
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


#: The environment variables `initialize_distributed` reads (JAX reads the first itself).
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed(environ=None) -> tuple[int, int]:
    """Join a multi-host JAX job: `jax.distributed.initialize`, before any JAX work.

    The coordinator's ``host:port``, the number of processes and this process's
    index come from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` when they are set; otherwise JAX detects them on the clusters
    it knows (Slurm, Open MPI, Kubernetes, Cloud TPU...).

    Parameters
    ----------
    environ : mapping, optional
        Where to read the variables (default `os.environ`).

    Returns
    -------
    (process_index, process_count) : tuple of int

    Raises
    ------
    ValueError
        A variable that is not an int, or JAX could not tell the job's layout (the
        message lists the variables to set).
    """
    jax = _jax()
    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    if env.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = env["JAX_COORDINATOR_ADDRESS"]
    for name, key in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if env.get(name):
            try:
                kwargs[key] = int(env[name])
            except ValueError:
                raise ValueError(f"{name} must be an int, got {env[name]!r}") from None
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(
            f"cannot join the distributed job ({' '.join(str(exc).split())}); set "
            + ", ".join(DISTRIBUTED_ENV)
            + " or run under a cluster manager JAX detects (Slurm, Open MPI...)"
        ) from None
    return jax.process_index(), jax.process_count()
