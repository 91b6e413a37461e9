"""The project's own test configuration.

The ``xp`` fixture, the ``--backends`` option and the per-backend outcome table
come from the pytest plugin `portable_rnn.pytest_plugin` (loaded through its
``pytest11`` entry point, or by the repository's root ``conftest.py`` when
portable_rnn is not installed). This file adds what only this suite needs: a
record of the largest difference of every backend from the NumPy float64
reference, printed at the end of the run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from portable_rnn.testing import full_precision


def _share_jax_compilations() -> None:
    """JAX's persistent compilation cache, shared by pytest-xdist's workers, the suite's
    subprocesses (which inherit the variables) and later runs: on CPU a small program takes
    about 70 ms to compile, and most tests compile dozens (eagerly, one per operation and
    shape). Results are the same; a variable already set (``JAX_COMPILATION_CACHE_DIR``,
    say) wins, and ``JAX_COMPILATION_CACHE_DIR=`` (empty) turns the cache off.

    No size limit: with one, JAX locks the directory and measures it at every write, which
    made the suite slower, not faster. Without the lock a worker can read an entry another
    is still writing; JAX then warns ("Error reading persistent compilation cache entry",
    which pyproject.toml's filterwarnings lets through) and compiles the program itself.
    """
    if importlib.util.find_spec("jax") is None:
        return
    root = Path(__file__).resolve().parent.parent
    settings = {  # the variable, its default and its type
        "JAX_COMPILATION_CACHE_DIR": (str(root / ".pytest_cache" / "jax-compilations"), str),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": ("0", float),
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": ("0", int),
    }
    for name, (default, _) in settings.items():
        os.environ.setdefault(name, default)
    if "jax" in sys.modules:  # imported before this file (by another plugin): tell it too
        import jax

        for name, (_, kind) in settings.items():
            jax.config.update(name.lower(), kind(os.environ[name]))


_share_jax_compilations()
# This suite compares in float64 on JAX and with full float32 products everywhere, also in
# the tests that use JAX directly rather than through the xp fixture: settle it at import.
full_precision()


#: the key of a recorded difference in a test's ``user_properties``, which its reports carry
#: (also from pytest-xdist's workers to the process that prints the table)
DIFF_PROPERTY = "portable_rnn_diff"


@pytest.fixture
def record_diff(request):
    """``record_diff(backend_name, dtype, actual, desired)``: keep the largest difference."""

    def record(name, dtype, actual, desired):
        from portable_rnn.testing import to_numpy

        diff = float(np.max(np.abs(to_numpy(actual).astype(np.float64) - desired), initial=0.0))
        request.node.user_properties.append((DIFF_PROPERTY, (name, str(dtype), diff)))

    return record


_STATE: dict = {}


def pytest_configure(config):
    config._prnn_diffs = {}
    _STATE["config"] = config


def pytest_runtest_logreport(report):
    if report.when != "call":
        return
    diffs = _STATE["config"]._prnn_diffs
    for key, value in report.user_properties:
        if key == DIFF_PROPERTY:
            name, dtype, diff = value
            diffs[(name, dtype)] = max(diffs.get((name, dtype), 0.0), diff)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config._prnn_diffs:
        terminalreporter.section("largest |difference| from the NumPy float64 reference")
        for (name, dtype), diff in sorted(config._prnn_diffs.items()):
            terminalreporter.write_line(f"{name:<26} {dtype:<8} {diff:.3e}")
