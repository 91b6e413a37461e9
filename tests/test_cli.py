"""The ``portable-rnn`` command line itself: version, option errors, help texts.

Only the argument parsing runs here (no check, bench or training), so the file takes
well under a second.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import portable_rnn
from portable_rnn.__main__ import build_parser, main, subcommands


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"portable-rnn {portable_rnn.__version__}\n"


def test_version_as_a_program():
    done = subprocess.run(
        [sys.executable, "-m", "portable_rnn", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"portable-rnn {portable_rnn.__version__}\n"


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        ("train", ["--stpes", "5"]),
        ("sample", ["--checkpoint", "m.npz", "--lenght", "5"]),
        ("bench", ["--repeats", "3"]),
        ("check", ["--jsn"]),
    ],
)
def test_a_bad_option_gives_the_subcommands_usage(command, bad, capsys):
    """It used to print the top-level usage (``usage: portable-rnn [-h] ...``)."""
    with pytest.raises(SystemExit) as exc:
        main([command, *bad])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"usage: portable-rnn {command} ")
    unknown = " ".join(a for a in bad if a.startswith("--") and a != "--checkpoint")
    unknown += " 5" if command == "train" else ""
    assert err.splitlines()[-1].startswith(
        f"portable-rnn {command}: error: unrecognized arguments: {unknown}"
    )


def test_a_bad_top_level_option_gives_the_top_level_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: portable-rnn [-h]")
    assert err.splitlines()[-1] == "portable-rnn: error: unrecognized arguments: --bogus"


def test_every_option_of_every_subcommand_has_a_help_text():
    parser = build_parser()
    commands = subcommands(parser)
    assert set(commands) == {"check", "bench", "train", "sample", "export", "score"}
    missing = []
    for name, command in [("portable-rnn", parser), *commands.items()]:
        for action in command._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (isinstance(action.help, str) and action.help.strip()):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
