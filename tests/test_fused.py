"""The elementwise seam: on CuPy each step's elementwise math is one fused kernel.

`portable_rnn._backend.seam.elementwise` marks the functions that hold a cell's elementwise
math; on CuPy they run as ``cupy.fuse`` kernels, elsewhere as written. Two checks:

* on every backend of the ``xp`` fixture, each function equals its undecorated self
  (on CuPy that compares the fused kernel with the plain CuPy path, on a GPU);
* without a GPU, where CuPy is installed: CuPy's fusion tracer turns each function
  into one elementwise kernel whose every operation stays in the inputs' dtype, and
  that kernel's operations, replayed one by one with NumPy, give the function's
  NumPy results bit for bit. (Tracing needs no device; running the kernel does.)
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

from portable_rnn._backend import seam
from portable_rnn.testing import assert_close, tolerances

MODULES = ("activations", "lstm", "gru", "rnn")


def _fused_functions():
    found = {}
    for mod in MODULES:
        module = importlib.import_module(f"portable_rnn._core.{mod}")
        for name, obj in vars(module).items():
            defined_here = getattr(obj, "__module__", None) == module.__name__
            cached = hasattr(obj, "cache_info")  # functools.cache wraps too (cell(options))
            if defined_here and not cached and getattr(obj, "__wrapped__", None) is not None:
                found[f"{mod}.{name}"] = obj
    return found


FUSED = _fused_functions()

#: number of array inputs, and which of them are gates (values in (0, 1)) or tanh outputs
ARGS = {
    "activations.sigmoid": 1,
    "lstm._cell": 5,
    "lstm._gate_grads": 8,
    "gru._cell": 6,
    "gru._gate_grads": 6,
    "rnn.activate": 2,
    "rnn.tanh_grad": 2,
}


def test_every_cell_has_its_elementwise_math_marked():
    assert sorted(FUSED) == sorted(ARGS)


def _inputs(name, shape, rng):
    # Values in (-1, 1) cover gates, tanh outputs and gradients alike.
    return [rng.uniform(-1, 1, shape) for _ in range(ARGS[name])]


@pytest.mark.parametrize("name", sorted(ARGS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_equals_the_plain_function(xp, name, dtype):
    fn = FUSED[name]
    args = [xp.asarray(a, dtype=dtype) for a in _inputs(name, (5, 3), np.random.default_rng(0))]
    got, want = fn(xp.xp, *args), fn.__wrapped__(xp.xp, *args)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    fused = xp.backend == "cupy" and seam.FUSE_CUPY
    rtol, atol = tolerances(dtype) if fused else (0.0, 0.0)  # a GPU may contract to FMA
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, xp=xp, dtype=dtype, device=xp.array_device, rtol=rtol, atol=atol)


# -- CuPy's fusion tracer, without a GPU ----------------------------------------------------


def _cupy():
    """CuPy, or a skip where it is not installed (a failure where CI says it must be)."""
    if os.environ.get("PORTABLE_RNN_REQUIRE_CUPY") == "1":
        return importlib.import_module("cupy")
    return pytest.importorskip("cupy", reason="tracing CuPy's kernels needs CuPy (not a GPU)")


def _device_less(cupy, shape, dtype):
    """A CuPy array header with no device memory behind it: enough to trace, never to run."""
    from cupy.cuda import memory

    mem = memory.UnownedMemory(1024, 0, None, 0)
    return cupy.ndarray(shape, dtype=dtype, memptr=memory.MemoryPointer(mem, 0))


def _trace(fn, xp, args):
    """What ``cupy.fuse`` does on a first call: the kernel, the trace, the outputs' variables."""
    from cupy._core import fusion

    returned = []

    def traced(*proxies):
        out = fn(xp, *proxies)
        returned.append(out if isinstance(out, tuple) else (out,))
        return out

    history = fusion._FusionHistory()
    fusion._thread_local.history, fusion._thread_local.is_old_fusing = history, True
    try:  # called directly: cupy.fuse itself would hide a failure behind another tracer
        kernel, kwargs = history.get_fusion(traced, args, fn.__name__)
    finally:
        fusion._thread_local.history, fusion._thread_local.is_old_fusing = None, False
    return kernel, kwargs, history, [v._var for v in returned[0]]


def _replay(history, out_vars, inputs):
    """Run the traced operations with NumPy, each operand cast as the CUDA code casts it."""
    env = {p.index: a for p, a in zip(history.param_list, inputs, strict=False)}
    for var in history.local_list:
        if var.const_value is not None:
            env[var.index] = np.asarray(var.const_value, dtype=var.dtype)
    for op in history.op_list:
        nin = len(op.submodule.in_params)
        ufunc = getattr(np, op.submodule.name.removeprefix("cupy_"))
        operands = [env[v.index].astype(t) for v, t in zip(op.args[:nin], op.dtypes, strict=False)]
        result = ufunc(*operands, dtype=op.dtypes[nin])
        env[op.args[nin].index] = result.astype(op.args[nin].dtype)
    return [env[v.index] for v in out_vars]


@pytest.mark.parametrize("name", sorted(ARGS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cupy_fuses_each_function_into_one_kernel_in_its_dtype(name, dtype):
    cupy = _cupy()
    import array_api_compat.cupy as cxp

    fn = FUSED[name].__wrapped__
    host = [a.astype(dtype) for a in _inputs(name, (4, 3), np.random.default_rng(1))]
    kernel, kwargs, history, out_vars = _trace(
        fn, cxp, [_device_less(cupy, a.shape, a.dtype) for a in host]
    )
    assert isinstance(kernel, cupy.ElementwiseKernel), "one elementwise kernel, no reduction"
    assert kwargs == {}
    eager = fn(np, *host)
    eager = eager if isinstance(eager, tuple) else (eager,)
    assert kernel.nout == len(eager) == len(out_vars)
    # Every parameter and every operation in the inputs' dtype: no silent float64 on float32.
    assert {p.dtype for p in kernel.in_params + kernel.out_params} == {np.dtype(dtype)}
    assert {np.dtype(t) for op in history.op_list for t in op.dtypes} == {np.dtype(dtype)}
    assert history.op_list, "traced no operation"
    for got, want in zip(_replay(history, out_vars, host), eager, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_one_cupy_fuse_object_per_function():
    _cupy()
    import array_api_compat.cupy as cxp

    fn = FUSED["lstm._cell"].__wrapped__
    kernel = seam.fused_kernel(fn, cxp)
    assert kernel is seam.fused_kernel(fn, cxp)  # its compiled kernels are cached on it
    assert kernel.name == "lstm_cell"


def test_the_fuse_switch_is_0_or_1_and_names_itself():
    assert seam.fuse_setting({}) is True
    assert seam.fuse_setting({"PORTABLE_RNN_CUPY_FUSE": "0"}) is False
    assert seam.fuse_setting({"PORTABLE_RNN_CUPY_FUSE": " 1 "}) is True
    for bad in ("yes", "2", "off"):
        with pytest.raises(ValueError, match=rf"CUPY_FUSE must be 0 or 1, not '{bad}'"):
            seam.fuse_setting({"PORTABLE_RNN_CUPY_FUSE": bad})
