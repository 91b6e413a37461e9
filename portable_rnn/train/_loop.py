"""The training loop: truncated BPTT, Adam, clipping, validation, checkpoints, resume."""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._backend import compat as _compat
from .._backend.devices import HALF_DTYPES, check_dtype
from .._backend.seam import compile_function
from .._config import get_config
from .._creation import to_backend
from . import _text
from ._checkpoint import (
    CheckpointError,
    check_writable,
    printable,
    remove_stale_temporaries,
    save_checkpoint,
)
from ._model import (
    char_model_forward,
    char_model_loss_and_grads,
    describe_model,
    init_char_model,
    init_char_state,
    to_device_like,
)
from ._optim import adam_apply, adam_init, adam_scalars, clip_grad_norm, global_norm
from ._runfile import (
    TrainConfig,
    check_model_size,
    check_structural,
    dropout_seed,
    master_dtype,
    placement,
    read_run,
    saved_config,
)
from ._sample import sample
from ._text import LineBatches, TextBatches, Vocabulary

__all__ = ["DivergenceError", "TrainConfig", "TrainResult", "evaluate", "fit", "plot_history"]

#: Temperature of the samples printed during training.
SAMPLE_TEMPERATURE = 0.8
LN2 = math.log(2.0)


class DivergenceError(FloatingPointError):
    """The training diverged: a loss, a gradient norm or a parameter is NaN or infinite.

    `fit` raises it at the first such step, which is not committed; no checkpoint of
    a non-finite state is ever written (the last one written stays as it was).

    Attributes
    ----------
    step : int
        The step whose loss, gradient norm or parameters are not finite.
    """

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class Terminated(KeyboardInterrupt):
    """SIGTERM in `fit`: handled as Ctrl-C is (a checkpoint of the last completed step)."""


@dataclass
class TrainResult:
    """What `fit` returns.

    Attributes
    ----------
    params : dict
        The trained parameters (on the training backend and device).
    vocab : Vocabulary
    step : int
        Optimizer steps done.
    train_loss : list of float
        Training loss of every step from step 1 (nats per character; also the
        steps before a resume).
    val_loss : list of (int, float)
        ``(step, loss)`` of every validation.
    chars_per_second : float
        Training throughput of this run (characters predicted per second).
    checkpoint : pathlib.Path or None
        The last checkpoint written.
    best : pathlib.Path or None
        The checkpoint of the lowest validation loss (with ``best_out``).
    """

    params: dict
    vocab: Vocabulary
    step: int
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    chars_per_second: float = float("nan")
    checkpoint: Path | None = None
    best: Path | None = None


def evaluate(
    params, batches: TextBatches | LineBatches, *, dtype=None, nonlinearity="tanh"
) -> float:
    """Mean loss of the model over every chunk of ``batches``, forward only.

    Starts from the zero state and carries it from chunk to chunk, as training
    does; for `LineBatches`, every line from the zero state and the mean over
    the real characters of every batch (padding left out).

    Parameters
    ----------
    params : dict
        From `init_char_model` or a checkpoint, on any backend.
    batches : TextBatches or LineBatches
        The text to score.
    dtype : {"float16", "bfloat16"}, optional, keyword-only
        Run the model on a copy of ``params`` in this half dtype, as a mixed-precision
        run trains it (`in_dtype`); by default in ``params``' own dtype.
    nonlinearity : {"tanh", "relu"}, optional, keyword-only
        The activation of an RNN model (`char_model_forward`). No dropout: evaluation
        runs the whole model.

    Returns
    -------
    loss : float
        Nats per character (divide by ``log 2`` for bits per character).
    """
    params = in_dtype(params, dtype)
    if isinstance(batches, LineBatches):
        return _evaluate_lines(params, batches, nonlinearity)
    forward = compile_function(_eval_step(nonlinearity), params["Wy"])
    state = init_char_state(params, batches.batch)
    total = 0.0
    for j in range(len(batches)):
        x, y = batches[j]
        loss, state = forward(
            params, to_device_like(x, params["Wy"]), to_device_like(y, params["Wy"]), state
        )
        total += float(loss)
    return total / len(batches)


@functools.cache
def _eval_step(nonlinearity: str):
    """The evaluation step of a model of ``nonlinearity``: one function per value, so that
    ``jax.jit`` compiles it once for every validation of a run."""

    def step(params, x, y, state):
        loss, state, _ = char_model_forward(params, x, y, state, nonlinearity=nonlinearity)
        return loss, state

    return step


@functools.cache
def _eval_lines_step(nonlinearity: str):
    """`_eval_step` of `LineBatches`: the batch's lengths in place of the state."""

    def step(params, x, y, lengths):
        return char_model_forward(params, x, y, None, lengths, nonlinearity=nonlinearity)[0]

    return step


def _evaluate_lines(params, batches: LineBatches, nonlinearity: str) -> float:
    forward = compile_function(_eval_lines_step(nonlinearity), params["Wy"])
    total, chars = 0.0, 0
    for j in range(len(batches)):
        x, y, lengths = (to_device_like(a, params["Wy"]) for a in batches[j])
        count = int(np.sum(batches[j][2]))
        total += float(forward(params, x, y, lengths)) * count
        chars += count
    return total / chars


def in_dtype(tree: Any, dtype) -> Any:
    """The arrays of a dict (parameters, gradients, state) in ``dtype``; ``None``: as they are.

    Mixed precision (``--dtype float16`` / ``bfloat16``): the run keeps its parameters and
    Adam's moments in float32 (the master weights); each step runs the model on their
    copy in the half dtype (its recurrence computed in float32 inside the library, its
    loss in float32), and the half gradients are upcast for clipping and Adam.
    """
    if dtype is None or tree is None:
        return tree
    out = {}
    for k, v in tree.items():
        xp = _compat.array_namespace(v)
        out[k] = v if _compat.dtype_name(v.dtype) == dtype else xp.astype(v, getattr(xp, dtype))
    return out


@functools.cache
def _make_train_step(
    clip: float,
    betas,
    eps: float,
    lines: bool = False,
    compute=None,
    nonlinearity: str = "tanh",
    dropout: float = 0.0,
):
    """One training step; ``lines``: its ``state`` argument is the batch's lengths instead.
    ``compute``: a half dtype to run the model in (`in_dtype`), or ``None``. ``seed``: the
    step's dropout masks' seed (`dropout_seed`; a JAX int32 scalar for a compiled step, so
    that every step runs one compilation), ``None`` without dropout. One function per
    set of options, so that ``jax.jit`` compiles it once for every run of a process."""
    # only the options a run has: a default run calls the model as it always did
    model_options = {} if nonlinearity == "tanh" else {"nonlinearity": nonlinearity}

    def step(params, m, v, state, x, y, step_size, bc2_sqrt, seed):
        model = in_dtype(params, compute)
        options = {**model_options, **({"dropout": dropout, "seed": seed} if dropout else {})}
        if lines:  # every line from the zero state; nothing is carried
            loss, grads, _ = char_model_loss_and_grads(model, x, y, None, state, **options)
            state = None
        else:
            loss, grads, state = char_model_loss_and_grads(
                model, x, y, in_dtype(state, compute), **options
            )
        if compute is not None:  # clipping and Adam on the float32 master weights
            master = _compat.dtype_name(params["Wy"].dtype)
            grads = in_dtype(grads, master)
            # the carried state back in float32, as it came in (and as a checkpoint keeps
            # it): exact, the next step rounds it to the same half values, and a compiled
            # step sees the same input types at every step (a half state compiled it anew)
            state = in_dtype(state, master)
        if clip > 0:
            grads, norm = clip_grad_norm(grads, clip)
        else:
            norm = global_norm(grads)  # for the guard against a diverged run
        params, m, v = adam_apply(params, grads, m, v, step_size, bc2_sqrt, betas, eps)
        return loss, norm, params, m, v, state

    return step


def plot_history(train_loss, val_loss, path) -> Path:
    """Plot training and validation loss (bits per character) to an image file.

    Needs matplotlib (``pip install portable_rnn[plot]``).

    Parameters
    ----------
    train_loss : sequence of float, length steps
        Loss of every training step (nats), as `TrainResult.train_loss`.
    val_loss : sequence of (int, float)
        ``(step, loss)`` of every validation, as `TrainResult.val_loss`.
    path : str or path-like
        The image; its suffix picks the format (``.png``, ``.svg``, ``.pdf``...).

    Returns
    -------
    pathlib.Path
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(train_loss) + 1)
    ax.plot(steps, np.asarray(train_loss) / LN2, lw=0.8, label="train")
    if val_loss:
        vs, vl = zip(*val_loss, strict=True)
        ax.plot(vs, np.asarray(vl) / LN2, "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install portable_rnn[plot]") from None
    return plt


def _line_batches(corpus: _text.Corpus, config: TrainConfig) -> tuple[LineBatches, LineBatches]:
    """Training and held-out `LineBatches` of ``corpus``: its last lines are held out.

    The held-out lines are those that start in the held-out end that `split_corpus`
    would give (at least one line, and at least one left to train on).
    """
    found = corpus.vocab.chars.find("\n")
    newline = found if found >= 0 else None
    starts, ends = _text.line_spans(corpus.ids, newline)
    lines = len(starts)
    if lines < 2:
        raise _text.CorpusError(
            f"corpus {corpus.source!r} has {'no' if lines == 0 else 'only one'} non-empty "
            "line; training on lines (--split-lines) needs at least two, one of them held out"
        )
    n_val = max(1, round(corpus.chars * config.val_fraction))  # as split_corpus
    k = int(np.searchsorted(starts, corpus.chars - n_val))  # lines that start before it train
    k = min(max(k, 1), lines - 1)
    train = LineBatches(
        corpus.ids,
        newline,
        config.batch,
        config.seq_len,
        spans=(starts[:k], ends[:k]),
        seed=config.seed,
        what="the training text",
    )
    val = LineBatches(
        corpus.ids,
        newline,
        config.batch,
        config.seq_len,
        spans=(starts[k:], ends[k:]),
        what="the held-out text",
    )
    return train, val


class _Run:
    """The data and state of one run (fresh or resumed), checked before any work."""

    def __init__(self, config: TrainConfig, corpus, resume):
        self.config = config
        header = arrays = None
        if resume is not None:
            header, arrays = read_run(resume)
            check_structural(resume, saved_config(header), asdict(config))
        dtype = config.dtype or (header["dtype"] if header is not None else None)
        #: the half dtype the model runs in (mixed precision, `in_dtype`), or None
        self.compute = dtype if dtype in HALF_DTYPES else None
        if self.compute is not None:  # one the backend lacks: refused before any work
            check_dtype(self.compute, "dtype", config.backend or get_config().backend)
        if resume is not None:
            assert header is not None  # read just above
            if corpus is None and header["corpus"]["source"] != _text.DEFAULT_CORPUS:
                corpus = header["corpus"]["source"]
        read = _text.read_corpus(corpus)
        self.source, self.digest, self.chars = read.source, read.digest, read.chars
        if header is not None:
            if header["corpus"]["sha256"] != self.digest:
                raise CheckpointError(
                    f"corpus {self.source!r} is not the text checkpoint {str(resume)!r} was "
                    f"trained on ({header['corpus']['source']!r}, {header['corpus']['chars']} "
                    "characters)"
                )
            vocab = Vocabulary(header["vocab"])
            if vocab != read.vocab:  # not the corpus's own: index with the checkpoint's
                read = _text.read_corpus(corpus, vocab)
        self.vocab = read.vocab
        if config.split_lines:
            self.train, self.val = _line_batches(read, config)
            self.header, self.arrays = header, arrays
            return
        train_ids, val_ids = _text.split_corpus(read.ids, config.val_fraction)
        self.train = TextBatches(train_ids, config.batch, config.seq_len, "the training text")
        val_streams = (len(val_ids) - 1) // config.seq_len
        if val_streams < 1:
            raise _text.CorpusError(
                f"the held-out text ({len(val_ids)} characters, val_fraction "
                f"{config.val_fraction}) is shorter than one sequence (seq_len {config.seq_len}); "
                "use a longer corpus, a larger val_fraction or a smaller seq_len"
            )
        self.val = TextBatches(
            val_ids, min(config.batch, val_streams), config.seq_len, "the held-out text"
        )
        self.header, self.arrays = header, arrays

    def batch(self, step: int, state):
        """The inputs of training step ``step``: ``(x, y, state)`` on the host, and its characters.

        Truncated BPTT: chunk ``step % len(train)``, the carried ``state`` (``None`` at the
        start of a pass: zeros). Lines: the batch's lengths in place of the state.
        """
        c = self.config
        if c.split_lines:
            assert isinstance(self.train, LineBatches)  # made so by __init__
            x, y, lengths = self.train.at(step)
            return x, y, lengths, int(lengths.sum())
        j = step % len(self.train)
        if j == 0:
            state = None  # a new pass over the text starts from zeros
        assert isinstance(self.train, TextBatches)  # made so by __init__
        x, y = self.train[j]
        return x, y, state, c.batch * c.seq_len

    def start(self):
        """``(params, adam state, carried state, step, train_loss, val_loss)`` on the target."""
        c = self.config
        if self.header is None:
            itemsize = 8 if (c.dtype or get_config().dtype) == "float64" else 4  # the masters
            check_model_size(c, len(self.vocab), itemsize)  # before allocating it
            params = init_char_model(
                len(self.vocab),
                cell=c.cell,
                hidden=c.hidden,
                layers=c.layers,
                embed=c.embed,
                seed=c.seed,
                backend=c.backend,
                device=c.device,
                dtype=master_dtype(c.dtype),
            )
            return params, adam_init(params), None, 0, [], []
        a = self.arrays
        assert a is not None  # loaded with self.header, which is not None here
        dtype = master_dtype(c.dtype or self.header["dtype"])
        moved = to_backend(
            {k: a[k] for k in ("params", "adam_m", "adam_v", "state") if k in a},
            c.backend,
            c.device,
            dtype=dtype,
        )
        params = moved["params"]
        try:
            spec = describe_model(params)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint has broken parameters: {exc}") from None
        expected = {
            "cell": c.cell,
            "hidden": c.hidden,
            "layers": c.layers,
            "embed": c.embed,
            "vocab_size": len(self.vocab),
        }
        if spec != expected:
            raise CheckpointError(
                f"checkpoint parameters {spec} do not match its header's {expected}"
            )
        opt = {"step": int(self.header["step"]), "m": moved["adam_m"], "v": moved["adam_v"]}
        state = moved.get("state") or None
        hist = a.get("history", {})
        train_loss = [float(x) for x in hist.get("train", [])]
        val_loss = [(int(s), float(x)) for s, x in hist.get("val", np.zeros((0, 2)))]
        return params, opt, state, int(self.header["step"]), train_loss, val_loss

    def save(self, path, params, m, v, state, step, train_loss, val_loss, trained_on=None):
        c = self.config
        header = {
            # where to run is kept as asked for (names only: device objects are not JSON),
            # so that a resumed run goes on there unless told otherwise
            "config": {
                **asdict(c),
                **{k: v if isinstance(v, str) else None for k, v in placement(c).items()},
            },
            # the dtype the run computes in (its arrays: float32 for a half run)
            "dtype": self.compute or _compat.dtype_name(params["Wy"].dtype),
            "vocab": self.vocab.chars,
            "step": step,
            "corpus": {"source": self.source, "sha256": self.digest, "chars": self.chars},
            "saved_by": f"portable_rnn {__version__}",
            "trained_on": trained_on or _compat.backend_name(_compat.array_namespace(params["Wy"])),
        }
        arrays = {
            "params": params,
            "adam_m": m,
            "adam_v": v,
            "history": {
                "train": np.asarray(train_loss, dtype=np.float64),
                "val": np.asarray(val_loss, dtype=np.float64).reshape(-1, 2),
            },
        }
        if state is not None:  # stored in the parameters' dtype, as the layout says
            arrays["state"] = in_dtype(state, _compat.dtype_name(params["Wy"].dtype))
        return save_checkpoint(path, header, arrays)


def fit(
    config: TrainConfig,
    *,
    corpus=None,
    out=None,
    resume=None,
    best_out=None,
    log=None,
    progress=False,
    on_start=None,
    devices=None,
):
    """Train a character-level language model.

    Truncated BPTT over `TextBatches` of the training part of the corpus (the
    state is carried from chunk to chunk, and reset to zeros at the start of
    every pass), the library's hand-written backward, global-norm clipping and
    Adam; validation on the held-out end of the corpus every
    ``config.eval_every`` steps and at the end. With ``config.split_lines``, the
    corpus's lines instead, as separate sequences (`LineBatches`): each from the
    zero state, batches padded, the loss the mean over real characters, the last
    lines held out. Deterministic: a run resumed from a checkpoint gives the
    same losses, bit for bit, as one that was not interrupted (on the same
    backend and device).

    Nothing is lost: ``out`` and ``best_out`` are checked writable before any
    work; temporary files that a killed writer left beside them are removed;
    Ctrl-C (SIGINT) and, in the main thread, SIGTERM write a checkpoint of the
    last completed step before `KeyboardInterrupt` propagates (the previous
    SIGTERM handler is restored when `fit` returns); a checkpoint that cannot be
    written (full disk...) stops the run with the previous one intact; a loss,
    gradient norm or parameter that is NaN or infinite stops the run
    (`DivergenceError`) without writing it.

    Parameters
    ----------
    config : TrainConfig
    corpus : str or path-like, optional
        A UTF-8 text file; by default the documentation topics of
        ``pydoc_data.topics`` (or, when resuming, the checkpoint's corpus).
    out : str or path-like, optional
        Checkpoint file, written every ``config.save_every`` steps and at the
        end (atomically; a symbolic link is written through: the file it points
        to is replaced); ``None`` writes none.
    best_out : str or path-like, optional
        Also write a checkpoint here at every validation that is the lowest so far
        (over the whole run, also before a resume): early stopping, for a model
        that starts to overfit. It is a full checkpoint (resumable, sampleable).
    resume : str or path-like, optional
        A checkpoint to continue from: parameters, optimizer state, carried
        state, step and history. ``config`` must keep its `STRUCTURAL` options
        (`TrainConfig.from_checkpoint` builds such a config); the corpus must be
        the same text. Every field and array is checked before any work.
    log : callable, optional
        Called with a line of text at every validation (loss, throughput, and the
        sample, between a ``--- sample (step N) ---`` line and a ``---`` line), and
        for every stale temporary file removed.
    progress : bool, optional
        Show a tqdm progress bar (step, losses in bits per character, characters
        per second, time left); plain log lines when tqdm is not installed.
    on_start : callable, optional
        Called once before the first step (not when there is nothing to train) with
        one line saying what is trained where: ``lstm 1 x 256 (361,767 parameters)
        on numpy cpu float32; corpus pydoc_data.topics (465,126 chars, 103 symbols)``,
        and ``, split into lines`` with ``config.split_lines``.
    devices : int or "all", optional
        Data parallelism on JAX (``config.backend`` must be ``"jax"``): the training
        step runs on a `jax.sharding.Mesh` of this many devices (`portable_rnn.parallel`),
        the batch and the carried state split along the batch axis, the parameters and
        Adam's state replicated; XLA turns the backward's sums over the batch into
        all-reduces. ``config.batch`` must divide by it. ``None`` or 1: one device, as
        before. The losses and parameters are those of one device up to the order of
        the sums (float64: within 1e-12), and the checkpoints are the same files: a run
        resumes on any number of devices or on another backend. Validation and samples
        run on one device (the parameters' copy there). In a multi-host job
        (`portable_rnn.parallel.initialize_distributed`), ``"all"`` is every device of
        the job and process 0 writes the checkpoints.

    Returns
    -------
    TrainResult

    Raises
    ------
    CorpusError, CheckpointError, ValueError
        Before any work: a corpus that is missing, empty, binary or too short (with
        ``split_lines``: fewer than two non-empty lines, or fewer training
        sequences than ``config.batch``); a
        checkpoint that is broken, inconsistent, of another version or for another
        model; an ``out`` or ``best_out`` that cannot be written (a directory, a
        read-only place, the corpus itself).
    CheckpointError
        During the run: a checkpoint could not be written (full disk, file too
        large, no permission); the file is as it was and the run stops.
    DivergenceError
        During the run: the loss or gradient norm of a step, the validation loss or
        the parameters are not finite; the step is not committed and nothing of it
        is written.
    KeyboardInterrupt
        Ctrl-C or SIGTERM, after writing a checkpoint of the last completed step
        (when ``out`` is given).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    _check_outputs(corpus, out=out, best_out=best_out)
    mesh = _mesh(config, devices)  # before any work, as every check
    run = _Run(config, corpus, resume)
    params, opt, state, step, train_loss, val_loss = run.start()
    if mesh is not None:
        from .. import parallel

        params, opt = parallel.replicate((params, opt), mesh)
        state = parallel.shard_batch(state, mesh, axis=-1)
    else:
        params, opt, state = _committed((params, opt, state))
    log = log or (lambda line: None)
    for path in (out, best_out):
        for stale in remove_stale_temporaries(path) if path is not None else ():
            log(f"removed {str(stale)!r}, left by an interrupted checkpoint write")
    like = params["Wy"]
    step_function = _make_train_step(
        config.clip,
        tuple(config.betas),
        config.eps,
        config.split_lines,
        run.compute,
        config.nonlinearity,
        config.dropout,
    )
    if mesh is None:
        train_step = compile_function(step_function, like)
        put = functools.partial(to_device_like, like=like)
        local = _same
    else:  # the batch placed on the mesh by data_parallel, from the host
        train_step = _data_parallel_step(step_function, mesh, config.split_lines)
        put = np.asarray
        local = _one_copy  # validation and samples: on one device of this process
    traced_seed = _compat.backend_name(_compat.array_namespace(like)) == "jax"
    save_every = config.save_every or config.eval_every
    result = TrainResult(params, run.vocab, step, train_loss, val_loss)
    if on_start is not None and step < config.steps:
        on_start(_startup_line(config, params, run, mesh))
    bar = _progress(progress, config.steps, step)
    m, v = opt["m"], opt["v"]
    busy, first, done, rate = 0.0, 0.0, 0, float("nan")  # busy: seconds in training steps
    chars = first_chars = 0  # characters predicted in the steps of this run; in the first
    t_run = time.perf_counter()
    last_saved = step

    def diverged(at: int, what: str) -> DivergenceError:
        if result.checkpoint is not None:
            kept = f"{str(out)!r} keeps step {last_saved}"
        else:
            kept = "no checkpoint of this run was written" if out is not None else "nothing saved"
        return DivergenceError(
            f"the training diverged at step {at}: {what}; {kept}; try a smaller lr or clip", at
        )

    def save(path):  # the run as it stands after the last committed step
        if not _all_finite(params, m, v):
            raise diverged(step, "the parameters or Adam's moments are not finite")
        try:
            if mesh is not None and _process_count() > 1:  # every process gathers; one writes
                from .. import parallel

                p, mm, vv, st = parallel.to_host((params, m, v, state))
                if _process_index() != 0:
                    return Path(path)
                return run.save(path, p, mm, vv, st, step, train_loss, val_loss, trained_on="jax")
            return run.save(path, params, m, v, state, step, train_loss, val_loss)
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint {str(path)!r} at step {step}: {_reason(exc)}; "
                "the file is as it was"
            ) from exc

    try:
        with _sigterm_interrupts():
            while step < config.steps:
                x, y, carried, step_chars = run.batch(step, state)
                if config.split_lines:
                    carried = put(carried)  # the lengths
                elif carried is None:
                    carried = init_char_state(params, config.batch)
                t0 = time.perf_counter()
                step_size, bc2_sqrt = adam_scalars(step + 1, config.lr, config.betas)
                seed = None  # the step's dropout masks: from the run's seed and the step alone
                if config.dropout:
                    seed = dropout_seed(config.seed, step)
                    if traced_seed:  # an argument of the compiled step, not a constant
                        seed = to_device_like(np.asarray(seed, np.int32), like)
                with _quiet_floats():  # a non-finite step is reported by the guard below
                    new = train_step(
                        params,
                        m,
                        v,
                        carried,
                        put(x),
                        put(y),
                        step_size,
                        bc2_sqrt,
                        seed,
                    )
                loss, norm = float(new[0]), float(new[1])  # waits for the step: honest timing
                if not (math.isfinite(loss) and math.isfinite(norm)):  # not committed
                    raise diverged(step + 1, f"the loss is {loss}, the gradient norm {norm}")
                train_loss.append(loss)
                # Commit the step with no call in between (CPython handles Ctrl-C and SIGTERM
                # only at calls and jumps): an interrupt sees the old state and step or the new
                # ones, never a mix.
                params, m, v, state, step = new[2], new[3], new[4], new[5], step + 1
                busy += time.perf_counter() - t0
                done += 1
                chars += step_chars
                if done == 1:
                    first = busy  # the first step compiles (JAX) and warms up: left out
                    first_chars = chars
                rate = (
                    (chars - first_chars) / (busy - first)
                    if done > 1 and busy > first
                    else chars / busy
                )
                last = step == config.steps or (
                    config.max_minutes is not None
                    and time.perf_counter() - t_run >= 60 * config.max_minutes
                )
                if step % config.eval_every == 0 or last:
                    with _quiet_floats():
                        val = evaluate(
                            local(params),
                            run.val,
                            dtype=run.compute,
                            nonlinearity=config.nonlinearity,
                        )
                    if not math.isfinite(val):
                        raise diverged(step, f"the validation loss is {val}")
                    is_best = all(val < earlier for _, earlier in val_loss)
                    val_loss.append((step, val))
                    if best_out is not None and is_best:
                        result.best = save(best_out)
                    line = (
                        f"step {step}: train {train_loss[-1] / LN2:.3f} bits/char, "
                        f"validation {val / LN2:.3f} bits/char, {rate:,.0f} chars/s"
                    )
                    if config.sample_length:
                        text = sample(
                            local(params),
                            run.vocab,
                            length=config.sample_length,
                            temperature=SAMPLE_TEMPERATURE,
                            seed=config.seed + step,
                            lines=config.split_lines,
                            nonlinearity=config.nonlinearity,
                        )
                        text = text.strip("\n")  # delimited: told apart from the progress
                        line += f"\n--- sample (step {step}) ---\n{text}\n---"
                    _write_line(bar, log, line)
                if out is not None and (step % save_every == 0 or last):
                    result.checkpoint = save(out)
                    last_saved = step
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(_postfix(train_loss, val_loss, rate), refresh=False)
                if last:
                    break
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
        if out is not None and step > last_saved:
            del train_loss[step:]  # a loss appended before its step was committed
            result.checkpoint = save(out)
        raise
    finally:
        if bar is not None:
            bar.close()
        result.params, result.step, result.chars_per_second = params, step, rate
    return result


def _mesh(config: TrainConfig, devices):
    """The `jax.sharding.Mesh` of a data-parallel run, or ``None`` for one device.

    Refuses, before any work: ``devices`` that is not a positive int or ``"all"``, a
    backend other than JAX, a ``device`` that names one device, more devices than
    there are, and a batch that does not divide by their number.
    """
    if devices is None:
        return None
    if isinstance(devices, bool) or not (
        devices == "all" or (isinstance(devices, (int, np.integer)) and devices >= 1)
    ):
        raise ValueError(f"devices must be a positive int or 'all', got {devices!r}")
    if devices == 1:
        return None
    backend = config.backend or get_config().backend
    if backend != "jax":
        raise ValueError(
            f"devices={devices}: data parallelism runs on JAX's sharding; the backend is "
            f"{backend} (use backend jax, or one device)"
        )
    platform = config.device or get_config().device
    if platform is not None and platform not in ("cpu", "gpu", "tpu"):
        raise ValueError(
            f"devices={devices} takes the first devices of a platform; device {platform!r} "
            "names one device (give cpu or gpu, or no device)"
        )
    from .. import parallel

    mesh = parallel.make_mesh("all" if devices == "all" else int(devices), platform=platform)
    n = mesh.devices.size
    if n > 1 and config.batch % n:
        raise ValueError(
            f"batch {config.batch} does not divide over {n} devices; give a batch that is "
            f"a multiple of {n} (each device runs batch / {n} streams)"
        )
    return mesh if n > 1 else None


@functools.cache
def _data_parallel_step(step_function, mesh, lines: bool):
    """The training step on ``mesh``: parameters and Adam's state replicated, the batch
    (inputs, targets, carried state or lengths) split along its batch axis."""
    from .. import parallel

    state_axis = 0 if lines else -1  # lengths (m,); state (layers, H, m)
    return parallel.data_parallel(
        step_function,
        mesh,
        # params, m, v, state, x, y, step_size, bc2_sqrt, seed
        in_axes=(None, None, None, state_axis, 0, 0, None, None, None),
        # loss, norm, params, m, v, state
        out_axes=(None, None, None, None, None, -1),
    )


def _committed(tree):
    """JAX: ``tree``'s arrays committed to their device, so that the compiled step sees the
    same placement at every step (uncommitted parameters from the host would compile it a
    second time, at step 2, when they come back committed); other backends: as it is."""
    leaves = [a for a in _leaves(tree) if hasattr(a, "shape")]
    if not leaves or _compat.backend_name(_compat.array_namespace(leaves[0])) != "jax":
        return tree
    import jax

    dev = _compat.device(leaves[0])
    return jax.tree.map(lambda a: jax.device_put(a, dev) if hasattr(a, "shape") else a, tree)


def _same(tree):
    return tree


def _one_copy(params: dict) -> dict:
    """The replicated parameters' copy on this process's first device (no copy made)."""
    return {k: a.addressable_data(0) for k, a in params.items()}


def _process_count() -> int:
    import jax

    return jax.process_count()


def _process_index() -> int:
    import jax

    return jax.process_index()


def _check_outputs(corpus, **outputs) -> None:
    """Refuse, before any work, checkpoint paths that could not be written or would clobber."""
    targets = {name: check_writable(p, name) for name, p in outputs.items() if p is not None}
    if len(targets) == 2 and _same_file(*targets.values()):
        raise ValueError(
            f"out and best_out are the same file {str(outputs['out'])!r}; give two names"
        )
    if corpus is not None:
        for name, target in targets.items():
            if _same_file(target, corpus):
                raise ValueError(
                    f"{name} {str(outputs[name])!r} is the corpus {str(corpus)!r}: "
                    "a checkpoint would overwrite the text"
                )


def _same_file(a, b) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist
        return False


def _reason(exc: OSError) -> str:
    """``"No space left on device (ENOSPC)"``: what an OSError says, in one line."""
    code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({code})" if code else text


def _all_finite(*trees) -> bool:
    """Whether every array of the dicts ``trees`` is finite (on its own device)."""
    for tree in trees:
        for a in tree.values():
            xp = _compat.array_namespace(a)
            if not bool(xp.all(xp.isfinite(a))):
                return False
    return True


def _quiet_floats():
    """NumPy's floating-point warnings off: the guard against divergence reports them, once."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread, while inside.

    The previous handler is restored on the way out. Nothing changes outside the main
    thread (Python lets only it set handlers) or where SIGTERM is ignored (``SIG_IGN``).
    """
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(sigterm)
    if previous == signal.SIG_IGN:
        yield
        return

    def terminate(signum, frame):
        raise Terminated(f"signal {signum} (SIGTERM)")

    signal.signal(sigterm, terminate)
    try:
        yield
    finally:
        signal.signal(sigterm, previous if previous is not None else signal.SIG_DFL)


def _startup_line(config: TrainConfig, params, run: _Run, mesh=None) -> str:
    """What is trained, where, on what: one line, logged before the first step."""
    like = params["Wy"]
    xp = _compat.array_namespace(like)
    count = sum(int(np.prod(a.shape)) for a in _leaves(params))
    lines = ", split into lines" if config.split_lines else ""
    if mesh is None:
        where = _device_label(like)
    else:
        n = mesh.devices.size
        kind = mesh.devices.flat[0].platform
        where = f"{n} {kind} devices (data parallel, batch {config.batch // n} per device)"
    return (
        f"{config.cell} {config.layers} x {config.hidden} ({count:,} parameters) "
        f"on {_compat.backend_name(xp)} {where} {_dtype_label(run, like)}; "
        f"corpus {printable(run.source)} ({run.chars:,} chars, {len(run.vocab)} symbols){lines}"
    )


def _dtype_label(run: _Run, like) -> str:
    """``float32``, or ``bfloat16 (float32 master weights)`` for a mixed-precision run."""
    master = _compat.dtype_name(like.dtype)
    return master if run.compute is None else f"{run.compute} ({master} master weights)"


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _leaves(value)
    else:
        yield tree


def _device_label(arr) -> str:
    """``cpu``, ``gpu:0``, ``cuda:0``... the device of ``arr`` in a few characters."""
    dev = _compat.device(arr)
    if isinstance(dev, str):  # NumPy
        return dev
    if hasattr(dev, "platform"):  # JAX
        return "cpu" if dev.platform == "cpu" else f"{dev.platform}:{dev.id}"
    if hasattr(dev, "type"):  # torch
        return str(dev)
    if hasattr(dev, "id"):  # CuPy
        return f"gpu:{dev.id}"
    text = str(dev)  # array_api_strict.Device('CPU_DEVICE'), Device('device1')
    if "CPU_DEVICE" in text:
        return "cpu"
    return text.split("'")[1] if text.count("'") == 2 else text


def _postfix(train_loss, val_loss, rate) -> str:
    val = f"{val_loss[-1][1] / LN2:.3f}" if val_loss else "-"
    return f"train {train_loss[-1] / LN2:.3f} val {val} bits/char, {rate:,.0f} chars/s"


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)


def _write_line(bar, log, line: str) -> None:
    if bar is not None:
        bar.write(line)
    else:
        log(line)
