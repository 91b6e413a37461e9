"""pytest plugin: the ``xp`` fixture and ``--backends`` option for any test suite.

Installed with portable_rnn (entry point ``pytest11``), so that code built on
portable_rnn is tested on every backend with no conftest of its own::

    def test_my_layer(xp):                       # runs once per backend
        x = xp.asarray(np.ones((3, 4)), dtype="float32")   # on that backend's device
        ...

``xp`` is a `portable_rnn.testing.Backend`: use it as the array namespace
(``xp.float32``, ``xp.zeros``...); its ``asarray`` creates arrays on its device
(read-only for ``numpy:readonly``) and accepts dtype names; each test runs under
its `Backend.settings` (array_api_strict's strictest flags for
``array_api_strict:strictest``).

Backends: ``numpy``, ``numpy:readonly``, ``array_api_strict``,
``array_api_strict:strictest``, ``jax``, ``torch``, ``dask``,
and where a GPU is present ``cupy``, ``jax:gpu``, ``torch:gpu``.
``dask`` is forward-only (`portable_rnn.testing.Backend.forward_only`): it runs the
tests marked ``@pytest.mark.forward`` (no backward, no gradient) and skips the others
with its reason, which the table at the end repeats. Choose with
``--backends numpy,jax`` or ``PORTABLE_RNN_TEST_BACKENDS``; a backend named there
must run, or the session stops with the reason. Without a choice every known
backend is parametrized and those that cannot run are skipped with the reason.
The run ends with a table of outcomes per backend.

Backend settings, applied once the fixture is first needed: float64 on JAX
(``jax_enable_x64``) and full-precision float32 matrix products on GPUs
(``jax_default_matmul_precision="highest"``, ``CUPY_TF32=0``, no TF32 in
PyTorch), so that tolerances mean the same everywhere. The plugin does nothing
in suites that do not use ``xp`` (and it leaves an ``xp`` fixture of their own alone).
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

ENV = "PORTABLE_RNN_TEST_BACKENDS"
_STATE: dict = {}  # the session's pytest config, for the report hook


def pytest_addoption(parser):
    group = parser.getgroup("portable_rnn")
    group.addoption(
        "--backends",
        default=None,
        help=(
            "comma-separated backends for tests using the xp fixture (numpy, "
            "numpy:readonly, array_api_strict, array_api_strict:strictest, jax, torch, "
            "dask, cupy, jax:gpu, torch:gpu); "
            f"also ${ENV}. Named backends must be able to run."
        ),
    )


def _selection(config) -> list[str]:
    spec = config.getoption("--backends") or os.environ.get(ENV) or ""
    return [s.strip() for s in spec.split(",") if s.strip()]


def backends(config):
    """``[(Backend, reason or None)]`` this session parametrizes (resolved once)."""
    chosen = getattr(config, "_prnn_backends", None)
    if chosen is None:
        from portable_rnn.testing import full_precision, select_backends

        full_precision()
        try:
            chosen = select_backends(_selection(config))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        config._prnn_backends = chosen
    return chosen


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "forward: the test runs no backward and no gradient (forward functions, creation, "
        "input checks); the forward-only backends (dask) run only the tests marked so",
    )
    config._prnn_outcomes = defaultdict(lambda: defaultdict(int))
    _STATE["config"] = config
    if config.getoption("--backends") or os.environ.get(ENV):
        backends(config)  # a bad selection stops the session before collection


def _uses_our_xp(metafunc) -> bool:
    if "xp" not in metafunc.fixturenames:
        return False
    try:  # the xp fixture in force is the one defined here, not a suite's own
        defs = metafunc._arg2fixturedefs.get("xp", ())
        return bool(defs) and getattr(defs[-1].func, "__module__", None) == __name__
    except AttributeError:  # pragma: no cover - pytest internals moved
        return True


def pytest_generate_tests(metafunc):
    if _uses_our_xp(metafunc):
        forward = metafunc.definition.get_closest_marker("forward") is not None
        params = [
            pytest.param(b, id=b.name, marks=_skips(b, why, forward))
            for b, why in backends(metafunc.config)
        ]
        metafunc.parametrize("xp", params, indirect=True)


def _skips(backend, why, forward: bool) -> list:
    """The skip of a backend that cannot run, or of a forward-only one on an unmarked test."""
    if why:
        return [pytest.mark.skip(reason=why)]
    if backend.forward_only and not forward:
        return [pytest.mark.skip(reason=f"{backend.name}: {backend.forward_only}")]
    return []


@pytest.fixture
def xp(request):
    """A `portable_rnn.testing.Backend`, one per backend (see the module docs)."""
    with request.param.settings():
        yield request.param


#: the key of an item's backend in its ``user_properties``, which its reports carry (also
#: from pytest-xdist's workers to the process that prints the table)
BACKEND_PROPERTY = "portable_rnn_backend"


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "xp" in callspec.params:
            backend = callspec.params["xp"]
            name = getattr(backend, "name", str(backend))
            item.user_properties.append((BACKEND_PROPERTY, name))


def pytest_runtest_logreport(report):
    config = _STATE.get("config")
    if config is None:
        return
    name = dict(report.user_properties).get(BACKEND_PROPERTY)
    if name is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        config._prnn_outcomes[name][report.outcome] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    chosen = getattr(config, "_prnn_backends", None)
    if chosen is None and config._prnn_outcomes:  # pytest-xdist: the workers collected
        chosen = backends(config)
    if not chosen:
        return
    tr = terminalreporter
    tr.section("portable_rnn backends")
    for b, why in chosen:
        counts = config._prnn_outcomes.get(b.name, {})
        where = why if why else b.describe()
        if not why and b.forward_only:
            where += f"; {b.forward_only}"
        tr.write_line(
            f"{b.name:<26} passed {counts.get('passed', 0):>4}  failed "
            f"{counts.get('failed', 0):>3}  skipped {counts.get('skipped', 0):>4}  {where}"
        )
