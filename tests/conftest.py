"""The shared test configuration: one ``xp`` fixture over every backend.

Backends: ``numpy``, ``numpy:readonly`` (inputs are read-only, which catches
in-place writes that would break on JAX), ``array_api_strict`` (catches
anything outside the array API standard), ``jax`` and ``torch`` on the CPU,
and ``cupy``, ``jax:gpu``, ``torch:gpu`` where a GPU is present.

Selection: ``--backends numpy,jax`` or ``PORTABLE_RNN_TEST_BACKENDS=numpy,jax``.
Without a selection every known backend is parametrized and those that cannot
run here are skipped with their reason; a backend named explicitly must run,
or the session stops with the reason (CI names every CPU backend, so none can
be skipped silently there).
"""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import pytest

# Backend settings, before any test creates an array: float64 on JAX, and full
# float32 matrix products on GPUs (no TF32), so that tolerances mean the same
# thing everywhere.
os.environ.setdefault("CUPY_TF32", "0")
try:
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
except ImportError:
    pass
try:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
except ImportError:
    pass

from portable_rnn.testing import BACKEND_NAMES, available_backends

_ENV = "PORTABLE_RNN_TEST_BACKENDS"
_CONFIG: dict = {}  # the pytest config, for the report hook (which is not given it)


def pytest_addoption(parser):
    parser.addoption(
        "--backends",
        default=None,
        help=(
            "comma-separated backends to run the xp-parametrized tests on "
            f"(known: {', '.join(BACKEND_NAMES)}); also ${_ENV}. Named backends must "
            "be available; by default all are tried and unavailable ones skipped."
        ),
    )


def _selection(config):
    spec = config.getoption("--backends") or os.environ.get(_ENV) or ""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in BACKEND_NAMES]
    if unknown:
        raise pytest.UsageError(
            f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKEND_NAMES)}"
        )
    return names


def pytest_configure(config):
    names = _selection(config)
    everything = available_backends(include_unavailable=True)
    if names:
        chosen = [(b, why) for b, why in everything if b.name in names]
        missing = [f"{b.name}: {why}" for b, why in chosen if why is not None]
        if missing:
            raise pytest.UsageError("requested backend(s) cannot run: " + "; ".join(missing))
    else:
        chosen = everything
    config._prnn_backends = chosen
    config._prnn_outcomes = defaultdict(lambda: defaultdict(int))
    config._prnn_item_backend = {}
    config._prnn_diffs = {}
    _CONFIG["config"] = config


def pytest_report_header(config):
    lines = []
    for b, why in config._prnn_backends:
        lines.append(f"  {b.name:<17} {'runs' if why is None else 'skipped: ' + why}")
    return ["portable_rnn backends:", *lines]


def pytest_generate_tests(metafunc):
    if "xp" in metafunc.fixturenames:
        params = [
            pytest.param(b, id=b.name, marks=[pytest.mark.skip(reason=why)] if why else [])
            for b, why in metafunc.config._prnn_backends
        ]
        metafunc.parametrize("xp", params, indirect=True)


@pytest.fixture
def xp(request):
    """A `portable_rnn.testing.Backend`: the namespace plus ``asarray`` on its device."""
    return request.param


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "xp" in callspec.params:
            config._prnn_item_backend[item.nodeid] = callspec.params["xp"].name


def pytest_runtest_logreport(report):
    config = _CONFIG.get("config")
    if config is None:
        return
    name = config._prnn_item_backend.get(report.nodeid)
    if name is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        config._prnn_outcomes[name][report.outcome] += 1


@pytest.fixture(scope="session")
def record_diff(request):
    """``record_diff(backend_name, dtype, actual, desired)``: keep the largest difference."""
    diffs = request.config._prnn_diffs

    def record(name, dtype, actual, desired):
        from portable_rnn.testing import to_numpy

        diff = float(np.max(np.abs(to_numpy(actual).astype(np.float64) - desired), initial=0.0))
        key = (name, str(dtype))
        diffs[key] = max(diffs.get(key, 0.0), diff)

    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    outcomes = getattr(config, "_prnn_outcomes", None)
    if not outcomes:
        return
    tr = terminalreporter
    tr.section("portable_rnn backends")
    for b, _ in config._prnn_backends:
        counts = outcomes.get(b.name, {})
        tr.write_line(
            f"{b.name:<17} passed {counts.get('passed', 0):>4}  failed "
            f"{counts.get('failed', 0):>3}  skipped {counts.get('skipped', 0):>4}"
        )
    if config._prnn_diffs:
        tr.write_line("largest |difference| from the NumPy float64 reference:")
        for (name, dtype), diff in sorted(config._prnn_diffs.items()):
            tr.write_line(f"  {name:<17} {dtype:<8} {diff:.3e}")
