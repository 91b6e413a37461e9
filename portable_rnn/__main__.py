"""``portable-rnn`` / ``python -m portable_rnn``: the command line.

``portable-rnn check`` (also the default with no arguments) runs every public
function on every installed backend and device and compares it with NumPy
float64; see `portable_rnn._check`.
"""

from __future__ import annotations

import argparse
import sys

DTYPES = {"float64": ("float64",), "float32": ("float32",), "all": ("float64", "float32")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="portable-rnn", description="portable_rnn: RNN, LSTM and GRU on any array API backend"
    )
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser(
        "check",
        help="cross-backend conformance of every public function (the default)",
        description="Run every public function on every installed backend and device, "
        "compare with NumPy float64, and print backend x device x dtype -> functions "
        "passed, largest difference, time. Exit status 1 if any disagree.",
    )
    for p in (parser, check):
        p.add_argument(
            "--backends",
            default=None,
            help="comma-separated, e.g. numpy,jax,torch:gpu (default: all that run)",
        )
        p.add_argument("--dtype", choices=sorted(DTYPES), default="all")
        p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from ._check import run_check

    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    return run_check(backends, DTYPES[args.dtype], args.json)


if __name__ == "__main__":
    sys.exit(main())
