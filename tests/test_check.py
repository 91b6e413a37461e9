"""portable-rnn check: the cross-backend conformance command."""

import importlib.metadata
import json
import subprocess
import sys

import portable_rnn._tools.check as check
from portable_rnn.__main__ import main


def test_check_table_on_two_backends(capsys):
    assert main(["check", "--backends", "numpy,array_api_strict", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert f"{len(check.CASES)} groups of public functions" in out
    assert "array_api_strict" in out and f"{len(check.CASES)}/{len(check.CASES)}" in out
    assert out.strip().endswith("all backends agree")


def test_check_json(capsys):
    assert main(["check", "--backends", "numpy:readonly", "--dtype", "float64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    (row,) = report["results"]
    assert row["backend"] == "numpy:readonly" and row["dtype"] == "float64"
    assert row["passed"] == row["total"] == len(check.CASES) and row["failures"] == []


def test_a_disagreeing_backend_fails_the_check(capsys, monkeypatch):
    def inputs():
        return {"z": check._rng().standard_normal(3)}

    def run(v):  # wrong on every backend but NumPy
        from portable_rnn._backend.compat import array_namespace, backend_name

        shift = 0.0 if backend_name(array_namespace(v["z"])) == "numpy" else 1e-3
        return {"z": v["z"] + shift}

    monkeypatch.setattr(check, "CASES", {"broken": (inputs, run)})
    assert main(["check", "--backends", "numpy,array_api_strict", "--dtype", "float64"]) == 1
    out = capsys.readouterr().out
    assert "FAILED broken: z beyond tolerance" in out and "SOME BACKENDS DISAGREE" in out


def test_bad_requests_exit_2_with_a_message(capsys):
    assert main(["check", "--backends", "numpy,nope"]) == 2
    assert "unknown backend(s) nope" in capsys.readouterr().err


def test_console_script_and_module_entry_points():
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    try:
        importlib.metadata.distribution("portable_rnn")
    except importlib.metadata.PackageNotFoundError:
        pass  # run from a checkout on PYTHONPATH (ci/gpu): no console script to look for
    else:
        assert scripts.get("portable-rnn") == "portable_rnn.__main__:main"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "portable_rnn",
            "check",
            "--backends",
            "numpy",
            "--dtype",
            "float64",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "all backends agree" in run.stdout
