"""The README's quick start is two commands, and CI runs exactly those, verbatim, in a new
virtual environment (ci/newcomer.sh, called first by .ci/run)."""

import importlib.util
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "ci" / "readme_commands.py")
assert spec is not None and spec.loader is not None
readme_commands = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_commands)

COMMANDS = readme_commands.commands((ROOT / "README.md").read_text(encoding="utf-8"))
# the extras' names: tomllib is Python 3.11+, and the project supports 3.10
_PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
_OPTIONAL = _PYPROJECT.split("[project.optional-dependencies]\n")[1].split("\n\n")[0]
EXTRAS = set(re.findall(r"^([\w-]+) = \[", _OPTIONAL, flags=re.M))


def _steps(command):
    """``[[word, ...], ...]``: the ``&&``-joined steps of one command line."""
    return [shlex.split(part) for part in command.split(" && ")]


def _extras(step):
    """The extras a ``pip install ... -e ".[a,b]"`` step names."""
    target = next(w for w in step if w.startswith(".["))
    return set(re.fullmatch(r"\.\[(.*)\]", target)[1].split(","))


def test_the_quick_start_is_two_commands():
    assert len(COMMANDS) == 2, COMMANDS


def test_the_first_installs_and_runs_the_main_job():
    install, *rest = _steps(COMMANDS[0])
    assert install[:2] == ["pip", "install"] and "-c" in install
    assert _extras(install) <= set(EXTRAS)
    assert [s[:2] for s in rest] == [["portable-rnn", "train"], ["portable-rnn", "sample"]]
    assert "charlm.npz" in rest[1]  # samples from the checkpoint the training wrote


def test_the_second_installs_the_test_needs_and_runs_the_suite():
    install, run = _steps(COMMANDS[1])
    assert install[:2] == ["pip", "install"]
    assert "test" in _extras(install) <= set(EXTRAS)
    assert run == ["python", "-m", "pytest", "-n", "auto"]


def test_ci_runs_the_readme_commands_verbatim_in_a_new_venv():
    newcomer = (ROOT / "ci" / "newcomer.sh").read_text(encoding="utf-8")
    assert "-m venv .venv" in newcomer and "rm -rf .venv" in newcomer
    assert "python ci/readme_commands.py README.md" in newcomer
    assert 'bash -euo pipefail -c "${cmds[$i]}"' in newcomer
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    steps = [line for line in run if line.startswith("bash ")]
    assert steps[0] == "bash ci/newcomer.sh", steps
