"""The pytest plugin gives any test suite the xp fixture and --backends option."""

import importlib.metadata

import pytest

# Installed, the plugin loads through its pytest11 entry point; from a checkout on
# PYTHONPATH (ci/gpu on an offline machine) the subprocesses must be told to load it.
INSTALLED = any(
    ep.name == "portable_rnn" for ep in importlib.metadata.entry_points(group="pytest11")
)
PLUGIN = () if INSTALLED else ("-p", "portable_rnn.pytest_plugin")

USER_SUITE = """
import numpy as np
import portable_rnn as prnn
from portable_rnn.testing import assert_close

def test_my_rnn(xp):
    params = prnn.init_rnn_params(3, 4, 2, seed=0, backend=xp.backend, device=xp.device)
    a, y, _ = prnn.rnn_forward(xp.asarray(np.ones((3, 2, 5))), None, params)
    assert_close(a, np.asarray(prnn.to_backend(a, "numpy")), xp=xp, device=xp.array_device)

def test_without_xp():
    assert True
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.delenv("PORTABLE_RNN_TEST_BACKENDS", raising=False)  # CI sets it
    pytester.makepyfile(test_user=USER_SUITE)
    return pytester


def test_xp_runs_on_the_selected_backends(suite):
    result = suite.runpytest_subprocess(*PLUGIN, "--backends", "numpy,array_api_strict", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_my_rnn?numpy? PASSED*",
            "*test_my_rnn?array_api_strict? PASSED*",
            "*portable_rnn backends*",
            "numpy*passed    1  failed   0  skipped    0  cpu",
        ]
    )


def test_environment_variable_selects_too(suite, monkeypatch):
    monkeypatch.setenv("PORTABLE_RNN_TEST_BACKENDS", "numpy:readonly")
    result = suite.runpytest_subprocess(*PLUGIN, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_my_rnn?numpy:readonly? PASSED*"])


def test_unknown_or_missing_backend_stops_the_session(suite):
    result = suite.runpytest_subprocess(*PLUGIN, "--backends", "numpy,tensorflow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown backend(s) tensorflow; known: numpy, numpy:readonly*"])
    result = suite.runpytest_subprocess(*PLUGIN, "--backends", "cupy")
    if result.ret == pytest.ExitCode.OK:  # a machine with CuPy and a GPU
        return
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*requested backend(s) cannot run: cupy*"])


def test_a_suites_own_xp_fixture_is_left_alone(pytester, monkeypatch):
    monkeypatch.delenv("PORTABLE_RNN_TEST_BACKENDS", raising=False)
    pytester.makeconftest("import pytest\n@pytest.fixture\ndef xp():\n    return 'mine'\n")
    pytester.makepyfile(test_own="def test_it(xp):\n    assert xp == 'mine'\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "-v")
    result.assert_outcomes(passed=1)
    assert "portable_rnn backends" not in result.stdout.str()


def test_unavailable_backends_are_skipped_with_their_reason(suite):
    result = suite.runpytest_subprocess(*PLUGIN, "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 2  # numpy at least, and the test without xp
    table = result.stdout.str().split("portable_rnn backends")[1]
    for name in ("numpy", "numpy:readonly", "array_api_strict", "jax", "torch", "cupy"):
        assert name in table
    if outcomes.get("skipped"):
        assert "skipped    1" in table


def test_a_forward_only_backend_runs_the_tests_marked_forward(pytester, monkeypatch):
    pytest.importorskip("dask")
    monkeypatch.delenv("PORTABLE_RNN_TEST_BACKENDS", raising=False)
    marked = USER_SUITE.replace(
        "def test_my_rnn", "import pytest\n@pytest.mark.forward\ndef test_my_rnn"
    )
    pytester.makepyfile(
        test_user=marked, test_other="def test_backward(xp):\n    assert xp.name == 'numpy'\n"
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "--backends", "dask,numpy", "-rs")
    result.assert_outcomes(passed=4, skipped=1)  # test_backward: on numpy, not on dask
    result.stdout.fnmatch_lines(
        [
            "dask*passed    1  failed   0  skipped    1  cpu; forward only (tests marked forward)*",
            "SKIPPED [[]1[]] test_other.py: dask: forward only (tests marked forward)*",
        ]
    )
