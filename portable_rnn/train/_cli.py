"""``portable-rnn train``, ``sample`` and ``export``: the command line of `portable_rnn.train`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .._config import get_config
from ._checkpoint import CheckpointError, printable
from ._loop import LN2, DivergenceError, Terminated, _pyplot, fit, plot_history
from ._runfile import RUN_DTYPES, TrainConfig, master_dtype, read_run, saved_config
from ._sample import MAX_SAMPLE_LENGTH
from ._text import CorpusError, Vocabulary

#: Errors that are the user's input, reported as one line with exit status 2.
USER_ERRORS = (CorpusError, CheckpointError, ValueError, TypeError, ImportError, RuntimeError)
#: Exit statuses of ``portable-rnn train``: a diverged run, Ctrl-C, SIGTERM (128 + signal).
EXIT_DIVERGED, EXIT_SIGINT, EXIT_SIGTERM = 1, 130, 143
DEFAULT_OUT = "charlm.npz"


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a character-level language model (the main job)",
        description="Train embedding -> RNN/LSTM/GRU -> affine -> softmax on a text with the "
        "library's hand-written backward, Adam, gradient-norm clipping and truncated BPTT; "
        "validate on the held-out end of the text, print samples, write checkpoints. "
        "Default corpus: the documentation topics of pydoc_data.topics (offline).",
    )
    p.add_argument("--corpus", default=None, help="a UTF-8 text file (default: pydoc_data.topics)")
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default=None, help="default lstm")
    p.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        default=None,
        help="the RNN's activation, with --cell rnn only (default tanh); kept in the "
        "checkpoint: sample, export and --resume use it",
    )
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 256)")
    p.add_argument("--layers", type=int, default=None, help="stacked layers (default 1)")
    p.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout probability in [0, 1) on the inputs of every layer but the first "
        "(default 0); with --layers 1 it changes nothing. Training only: validation and "
        "samples run without it; the masks of a step follow from --seed and the step",
    )
    p.add_argument("--embed", type=int, default=None, help="embedding width (default 64)")
    p.add_argument("--seq-len", type=int, default=None, help="BPTT steps per chunk (default 64)")
    p.add_argument("--batch", type=int, default=None, help="parallel streams (default 32)")
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps (default 1000)")
    p.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default 2e-3)")
    p.add_argument("--clip", type=float, default=None, help="max gradient norm, 0: off (default 5)")
    p.add_argument("--val-fraction", type=float, default=None, help="held-out end (default 0.1)")
    p.add_argument(
        "--split-lines",
        action="store_true",
        default=None,
        help="train on the corpus's lines as separate sequences (each from the zero state, "
        "padded to the longest of its batch, loss over real characters); --batch lines "
        "of at most --seq-len steps per batch",
    )
    p.add_argument("--eval-every", type=int, default=None, help="validate every N steps (100)")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long")
    p.add_argument("--sample-length", type=int, default=None, help="sample printed (default 200)")
    p.add_argument("--seed", type=int, default=None, help="initialisation seed (default 0)")
    _add_target(
        p,
        "default: PORTABLE_RNN_DTYPE, else float32; float16 and bfloat16 (where the backend "
        "has them) train in mixed precision: float32 parameters and Adam state, the model "
        "run on a half copy",
    )
    p.add_argument(
        "--devices",
        type=_devices,
        default=None,
        help="data parallelism with --backend jax: N devices, or 'all' (default 1). The "
        "batch and the carried state are split over a jax.sharding mesh, the parameters "
        "and Adam's state replicated; --batch must divide by N. Checkpoints are the same "
        "files: resume on any number of devices or another backend. More CPU devices for "
        "trying it: XLA_FLAGS=--xla_force_host_platform_device_count=N",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-host JAX job first (jax.distributed.initialize) from "
        "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID or the cluster "
        "manager (Slurm, Open MPI...); with --devices all, every device of the job; "
        "process 0 writes the checkpoints",
    )
    p.add_argument("--out", default=None, help=f"checkpoint (default {DEFAULT_OUT}, or --resume)")
    p.add_argument(
        "--keep-best",
        action="store_true",
        help="also keep the checkpoint of the best validation loss, as OUT.best.npz",
    )
    p.add_argument("--resume", default=None, help="continue from this checkpoint")
    p.add_argument("--plot", default=None, help="write a loss plot (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_sample_parser(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="generate text from a checkpoint",
        description="Print text generated by a trained checkpoint. The characters are drawn "
        "by a host-side NumPy generator: the same checkpoint and seed give the same text on "
        "every backend. A model trained with --split-lines starts every line from the zero "
        "state, as it was trained.",
    )
    p.add_argument("--checkpoint", required=True, help="from portable-rnn train")
    p.add_argument(
        "--length",
        type=int,
        default=500,
        help=f"characters to generate (500; at most {MAX_SAMPLE_LENGTH:,})",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help=">= 0 (default 1); 0: greedy, the most likely character at every step "
        "(the same text for every --seed)",
    )
    p.add_argument("--prime", default=None, help="text to start from")
    p.add_argument("--seed", type=int, default=None, help="seed of the generator")
    _add_target(p, "default: the checkpoint's")


def add_export_parser(sub) -> None:
    from .._onnx import DEFAULT_OPSET, MIN_OPSET

    p = sub.add_parser(
        "export",
        help="export a checkpoint's model to ONNX",
        description="Write a checkpoint's language model as an ONNX model: the embedding "
        "(Gather), the recurrent stack (ONNX RNN/LSTM/GRU operators), the output layer "
        "(MatMul + Add) and the softmax over the next character after every input. Inputs "
        "chars (batch, T) int64, h0 (layers, batch, H) [, c0]; outputs logits and probs "
        "(batch, T, V), h_n [, c_n]; the vocabulary is in the model's metadata_props "
        "('vocab'). Needs the onnx package (pip install portable_rnn[onnx]). See "
        "'Deploying with ONNX' in the documentation.",
    )
    p.add_argument("--checkpoint", required=True, help="from portable-rnn train")
    p.add_argument("--out", required=True, help="the .onnx file to write (atomically)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="the model's dtype (default float32; ONNX Runtime's CPU recurrent operators "
        "run float32 only)",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"the ONNX opset ({MIN_OPSET} to the onnx package's newest; default {DEFAULT_OPSET})",
    )


def _devices(text: str):
    """``--devices``: ``all`` or a positive int (argparse reports anything else)."""
    if text == "all":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int or 'all', got {text!r}")
    return n


def _add_target(p, dtype_help: str, dtypes=RUN_DTYPES) -> None:
    """``--backend``, ``--device`` and ``--dtype`` (one of ``dtypes``) of a subcommand."""
    p.add_argument("--backend", default=None, help="numpy, jax, torch, cupy... (default: config)")
    p.add_argument("--device", default=None, help="cpu, gpu, gpu:N... (default: config)")
    p.add_argument("--dtype", choices=dtypes, default=None, help=dtype_help)


def _enable_x64_if_needed(backend, dtype) -> None:
    """The command line asks JAX for float64 when the user asks for it (a process-wide switch)."""
    if (backend or get_config().backend) == "jax" and dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _fail(command: str, exc: BaseException, status: int = 2) -> int:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    print(f"portable-rnn {command}: error: {msg}", file=sys.stderr)
    return status


_OPTIONS = (
    "cell",
    "nonlinearity",
    "dropout",
    "hidden",
    "layers",
    "embed",
    "seq_len",
    "batch",
    "steps",
    "lr",
    "clip",
    "val_fraction",
    "eval_every",
    "save_every",
    "max_minutes",
    "sample_length",
    "seed",
    "backend",
    "device",
    "dtype",
    "split_lines",
)


def _check_variants(args) -> None:
    """Refuse, naming the option, a --nonlinearity of another cell or a --dropout out of range."""
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1) (0: none), got {args.dropout}")
    if args.nonlinearity not in (None, "tanh") and args.resume is None:
        cell = args.cell or "lstm"
        if cell != "rnn":
            raise ValueError(
                f"--nonlinearity {args.nonlinearity} is the activation of --cell rnn; "
                f"--cell {cell} has its own gates" + ("" if args.cell else " (the default cell)")
            )


def _check_devices(args) -> None:
    """``--devices``/``--distributed`` on JAX only; ``--distributed`` joins the job first."""
    parallel = args.distributed or args.devices not in (None, 1)
    backend = args.backend or get_config().backend
    if parallel and args.resume is None and backend != "jax":
        flag = "--distributed" if args.distributed else f"--devices {args.devices}"
        raise ValueError(
            f"{flag} runs on JAX's sharding; the backend is {backend} (add --backend jax)"
        )
    if args.distributed:
        from ..parallel import initialize_distributed

        initialize_distributed()


def run_train(args) -> int:
    given = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    out, start = None, 0
    try:
        _check_variants(args)
        _check_devices(args)
        if args.resume is not None:
            config = TrainConfig.from_checkpoint(args.resume, **given)
        else:
            if "dtype" not in given:
                given["dtype"] = os.environ.get("PORTABLE_RNN_DTYPE") or "float32"
            config = TrainConfig(**given)
        out = args.out or args.resume or DEFAULT_OUT
        if args.plot is not None:
            _check_plot_format(args.plot, out)
        _enable_x64_if_needed(config.backend, config.dtype or get_config().dtype)
        if args.resume is not None:
            header = read_run(args.resume, groups=())[0]
            start = header["step"]
            if start < config.steps:
                now = config.backend or get_config().backend
                print(
                    f"resuming {args.resume} at step {start} on {now} "
                    f"(trained on {printable(header.get('trained_on', 'unknown'))})",
                    flush=True,
                )
        result = fit(
            config,
            corpus=args.corpus,
            out=out,
            resume=args.resume,
            best_out=_best_path(out) if args.keep_best else None,
            log=lambda line: print(line, flush=True),
            progress=not args.no_progress,
            on_start=lambda line: print(f"portable-rnn train: {line}", flush=True),
            devices=args.devices,
        )
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: fit wrote a checkpoint
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(
            f"portable-rnn train: {what}; resume with --resume {out}"
            if out is not None and Path(out).exists()
            else f"portable-rnn train: {what}",
            file=sys.stderr,
        )
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    except DivergenceError as exc:
        return _fail("train", exc, EXIT_DIVERGED)
    except USER_ERRORS as exc:
        return _fail("train", exc)
    if result.step == start:
        print(f"nothing to do: {args.resume} is at step {start}, --steps is {config.steps}")
    else:
        val = result.val_loss[-1][1]
        print(
            f"done: step {result.step}, validation {val / LN2:.3f} bits/char, "
            f"{result.chars_per_second:,.0f} chars/s; checkpoint {result.checkpoint}"
        )
        if args.keep_best and result.val_loss:
            step, val = min(result.val_loss, key=lambda sv: sv[1])
            print(f"best: step {step}, validation {val / LN2:.3f} bits/char; {_best_path(out)}")
    if args.plot is not None:
        try:
            plot_history(result.train_loss, result.val_loss, args.plot)
        except (ValueError, OSError) as exc:
            return _fail("train", exc)
        print(f"plot: {args.plot}")
    return 0


def _best_path(out) -> Path:
    """``charlm.npz`` -> ``charlm.best.npz``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix or '.npz'}")


def _check_plot_format(path, out) -> None:
    """Refuse, before training, a plot that matplotlib could not write, or one over ``out``."""
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    if not Path(path).parent.is_dir():
        raise ValueError(f"the directory of --plot {str(path)!r} does not exist")
    if os.path.realpath(path) == os.path.realpath(out):
        raise ValueError(f"--plot {str(path)!r} is the checkpoint --out; give another name")
    fmt = Path(path).suffix[1:].lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(
            f"--plot {str(path)!r}: matplotlib cannot write {fmt or 'a file without suffix'!r} "
            f"(it writes {', '.join(sorted(supported))})"
        )


def run_sample(args) -> int:
    from .._creation import to_backend
    from ._sample import check_prime, check_sampling, sample

    try:
        check_sampling(args.length, args.temperature, args.prime)  # before any work
        header, arrays = read_run(args.checkpoint, groups=("params",))  # all checked
        saved = saved_config(header)
        lines = saved["split_lines"]  # a model of lines samples line by line
        vocab, params = Vocabulary(header["vocab"]), arrays["params"]
        check_prime(vocab, args.prime)
        dtype = args.dtype or master_dtype(header["dtype"])  # a half run's: its float32
        _enable_x64_if_needed(args.backend, dtype)
        params = to_backend(params, args.backend, args.device, dtype=dtype)
        text = sample(
            params,
            vocab,
            length=args.length,
            temperature=args.temperature,
            prime=args.prime,
            seed=args.seed,
            lines=lines,
            nonlinearity=saved["nonlinearity"],  # as it was trained (old checkpoints: tanh)
        )
    except USER_ERRORS as exc:
        return _fail("sample", exc)
    print(text)
    return 0


def run_export(args) -> int:
    try:
        from .._onnx import _check_opset, char_model_to_onnx, save_model_atomic
        from ._checkpoint import check_writable

        try:
            _check_opset(args.opset)  # before any work, as every check below
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--{exc}") from None
        out = check_writable(args.out, "--out")
        try:
            header, arrays = read_run(args.checkpoint, groups=("params",))  # all checked
        except CheckpointError as exc:
            raise CheckpointError(f"--checkpoint: {exc}") from None
        vocab = Vocabulary(header["vocab"])
        try:
            model = char_model_to_onnx(
                arrays["params"],
                vocab.chars,
                dtype=args.dtype,
                opset=args.opset,
                nonlinearity=saved_config(header)["nonlinearity"],  # old checkpoints: tanh
            )
        except ValueError as exc:
            raise ValueError(
                f"--checkpoint {args.checkpoint!r} cannot be exported: {exc}"
            ) from None
        save_model_atomic(model, out)
    except USER_ERRORS as exc:
        return _fail("export", exc)
    except OSError as exc:
        return _fail("export", OSError(f"cannot write --out {str(args.out)!r}: {exc}"))
    stack = dict((p.key, p.value) for p in model.metadata_props)
    relu = " (relu)" if stack.get("nonlinearity") == "relu" else ""
    print(
        f"wrote {args.out}: {stack['layers']} {stack['cell']}{relu} layer(s) of {stack['hidden']}, "
        f"{len(vocab)} characters, {args.dtype}, opset {args.opset}"
    )
    return 0
