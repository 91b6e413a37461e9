"""``portable-rnn`` / ``python -m portable_rnn``: the command line.

``portable-rnn check`` (also the default with no arguments) runs every public
function on every installed backend and device and compares it with NumPy
float64; see `portable_rnn._tools.check`. ``portable-rnn bench`` times the sequences
next to PyTorch and JAX references; see `portable_rnn._tools.bench`. ``portable-rnn
train`` and ``portable-rnn sample`` train and sample a character-level language
model, and ``portable-rnn export`` writes its ONNX model; see `portable_rnn.train`.
``portable-rnn score`` computes a checkpoint's bits per character over a text of any
size, read in pieces, on one machine or on Dask; see `portable_rnn.train._score`.
"""

from __future__ import annotations

import argparse
import sys

# the package's version, through train (the house plan, tests/test_architecture.py, lets
# __main__ import _tools and train, not the package root)
from .train._loop import __version__

DTYPES = {"float64": ("float64",), "float32": ("float32",), "all": ("float64", "float32")}


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``portable-rnn`` with its subcommands (see `subcommands`)."""
    parser = argparse.ArgumentParser(
        prog="portable-rnn", description="portable_rnn: RNN, LSTM and GRU on any array API backend"
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"portable-rnn {__version__}",
        help="print the version",
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
        p.add_argument(
            "--dtype",
            choices=sorted(DTYPES),
            default="all",
            help="the dtypes to check (default: all)",
        )
        p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    bench = sub.add_parser(
        "bench",
        help="time RNN, LSTM and GRU next to torch.nn and a JAX lax.scan reference",
        description="Time forward and forward+backward of our sequences on every selected "
        "backend and device, next to torch.nn.RNN/LSTM/GRU, a JAX lax.scan reference and "
        "the seed loop; print a markdown table with ratios to the fastest reference.",
    )
    bench.add_argument(
        "--sizes",
        default="S,M",
        help="S, M, L (T,B,D,H = 50,32,64,128; 100,64,256,512; 200,256,512,1024), "
        "long, long-wide (10000,4,8,16; 10000,32,64,128) "
        "or T,B,D,H tuples separated by ';' (default: S,M)",
    )
    bench.add_argument(
        "--cells", default="lstm,gru,rnn", help="comma-separated cells (default: lstm,gru,rnn)"
    )
    bench.add_argument(
        "--backends",
        default=None,
        help="where to time ours (default: every backend that can run, "
        "without array_api_strict and numpy:readonly)",
    )
    bench.add_argument(
        "--repeat", type=int, default=5, help="timed runs per row, median reported (default 5)"
    )
    bench.add_argument("--warmup", type=int, default=2, help="untimed runs before them (default 2)")
    bench.add_argument(
        "--no-references",
        action="store_true",
        help="time only ours (no torch.nn, JAX reference or seed loop)",
    )
    bench.add_argument(
        "--eager",
        action="store_true",
        help="also time ours on JAX outside jax.jit, as called directly (ours (jax, eager))",
    )
    bench.add_argument(
        "--lengths",
        choices=("full", "mixed"),
        default="full",
        help="mixed: also time ours with variable lengths (spread from T down to about T/4) "
        "and report masked / unmasked (default: full)",
    )
    bench.add_argument("--output", default=None, help="also write the report to this file")
    from .train._cli import add_export_parser, add_sample_parser, add_train_parser

    add_train_parser(sub)
    add_sample_parser(sub)
    add_export_parser(sub)
    from .train._score import add_score_parser

    add_score_parser(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``{"check": its parser, "bench": ..., ...}``: the subcommands of `build_parser`'s parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv=None) -> int:
    from .train._cli import run_export, run_sample, run_train

    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if extra:
        # parse_args would report a subcommand's unknown options with the top-level usage
        # (argparse hands them up from the subparser): report them with the usage of the
        # subcommand they were given to
        where = subcommands(parser).get(args.command, parser) if args.command else parser
        where.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in ("bench", "train", "sample") and argv is None:
        from ._tools.process import keep_freed_memory

        keep_freed_memory()  # our own process: reuse freed memory (see its docstring)
    if args.command == "bench":
        return _bench(args)
    if args.command == "train":
        return run_train(args)
    if args.command == "sample":
        return run_sample(args)
    if args.command == "export":
        return run_export(args)
    if args.command == "score":
        from .train._score import run_score

        return run_score(args)
    from ._tools.check import run_check

    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    return run_check(backends, DTYPES[args.dtype], args.json)


def _sizes(spec: str):
    """``"S,M"`` -> names; ``"50,32,64,128;M"`` -> a tuple and a name (``;`` separates)."""

    def numbers(part):
        return "," in part and all(n.strip().isdigit() for n in part.split(","))

    parts = spec.split(";") if ";" in spec or numbers(spec) else spec.split(",")
    return [
        tuple(int(n) for n in part.split(",")) if numbers(part) else part.strip()
        for part in parts
        if part.strip()
    ]


def _bench(args) -> int:
    from ._tools.bench import run_bench

    if args.repeat < 1 or args.warmup < 0:
        print("portable-rnn bench: --repeat must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    lines = []

    def out(line):
        print(line, flush=True)
        lines.append(line)

    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    status = run_bench(
        _sizes(args.sizes),
        tuple(c.strip() for c in args.cells.split(",") if c.strip()),
        backends,
        repeat=args.repeat,
        warmup=args.warmup,
        references=not args.no_references,
        out=out,
        eager=args.eager,
        lengths=args.lengths,
    )
    if status == 0 and args.output:
        with open(args.output, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
