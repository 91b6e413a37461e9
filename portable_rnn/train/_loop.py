"""The training loop: truncated BPTT, Adam, clipping, validation, checkpoints, resume."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import __version__
from .._backend import compat as _compat
from .._backend.seam import compile_function
from .._creation import to_backend
from . import _text
from ._checkpoint import CheckpointError, load_checkpoint, load_header, save_checkpoint
from ._model import (
    char_model_forward,
    char_model_loss_and_grads,
    describe_model,
    init_char_model,
    init_char_state,
    to_device_like,
)
from ._optim import adam_apply, adam_init, adam_scalars, clip_grad_norm
from ._sample import sample
from ._text import TextBatches, Vocabulary

__all__ = ["TrainConfig", "TrainResult", "evaluate", "fit", "plot_history"]

#: Options that fix the model or the batches: a resumed run must keep them.
STRUCTURAL = ("cell", "hidden", "layers", "embed", "seq_len", "batch", "val_fraction")
#: Temperature of the samples printed during training.
SAMPLE_TEMPERATURE = 0.8
LN2 = math.log(2.0)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the ``portable-rnn train`` options).

    Attributes
    ----------
    cell : {"lstm", "gru", "rnn"}
    hidden, layers, embed : int
        Hidden units, stacked layers, embedding width.
    seq_len : int
        Steps per chunk of truncated BPTT (the state is carried across chunks).
    batch : int
        Parallel streams of text.
    steps : int
        Optimizer steps of the whole run (a resumed run continues up to it).
    lr, betas, eps : float, (float, float), float
        Adam's parameters.
    clip : float
        Largest global gradient norm; 0 turns clipping off.
    val_fraction : float
        The held-out end of the corpus, in (0, 1).
    eval_every : int
        Validation (and a printed sample) every so many steps, and at the end.
    save_every : int or None
        Checkpoint every so many steps (``None``: with every validation), and at the end.
    max_minutes : float or None
        Also stop (validate and save) at the first step that ends after this much
        wall-clock time of the run (``None``: no limit).
    sample_length : int
        Characters of the samples printed during training (0: none).
    seed : int
        Seed of the initial parameters and of the printed samples.
    backend, device, dtype : str or None
        Where to train; ``None`` takes the configuration (`portable_rnn.set_config`).
    """

    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    embed: int = 64
    seq_len: int = 64
    batch: int = 32
    steps: int = 1000
    lr: float = 2e-3
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    clip: float = 5.0
    val_fraction: float = 0.1
    eval_every: int = 100
    save_every: int | None = None
    max_minutes: float | None = None
    sample_length: int = 200
    seed: int = 0
    backend: str | None = None
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self):
        positive = ("hidden", "layers", "embed", "seq_len", "batch", "steps", "eval_every")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.save_every is not None and (
            isinstance(self.save_every, bool)
            or not isinstance(self.save_every, int)
            or self.save_every < 1
        ):
            raise ValueError(f"save_every must be a positive int or None, got {self.save_every!r}")
        if self.cell not in ("lstm", "gru", "rnn"):
            raise ValueError(f"cell must be one of lstm, gru, rnn, got {self.cell!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.clip, (int, float)) and 0 <= self.clip < math.inf):
            raise ValueError(f"clip must be a number >= 0 (0: no clipping), got {self.clip!r}")
        if self.max_minutes is not None and not (
            isinstance(self.max_minutes, (int, float)) and self.max_minutes > 0
        ):
            raise ValueError(f"max_minutes must be a positive number, got {self.max_minutes!r}")
        if not (isinstance(self.val_fraction, float) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if (
            isinstance(self.sample_length, bool)
            or not isinstance(self.sample_length, int)
            or self.sample_length < 0
        ):
            raise ValueError(f"sample_length must be an integer >= 0, got {self.sample_length!r}")
        object.__setattr__(self, "betas", tuple(self.betas))

    @classmethod
    def from_checkpoint(cls, path, **overrides) -> TrainConfig:
        """The configuration a checkpoint was trained with, with ``overrides``.

        Raises
        ------
        CheckpointError
            An override changes the model or the batches (`STRUCTURAL`), which a
            resumed run cannot; the option is named.
        """
        header = load_header(path)
        saved = _saved_config(header, path)
        _check_structural(path, saved, overrides)
        saved.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**saved)


def _placement(config) -> dict:
    return {"backend": config.backend, "device": config.device, "dtype": config.dtype}


def _saved_config(header, path) -> dict:
    try:
        saved = dict(header["config"])
        names = {f.name for f in fields(TrainConfig)}
        return {k: v for k, v in saved.items() if k in names}
    except (KeyError, TypeError):
        raise CheckpointError(f"checkpoint {str(path)!r} has no training config") from None


def _check_structural(path, saved: dict, given: dict) -> None:
    """Refuse a `STRUCTURAL` option of ``given`` (``None``: not given) unlike ``saved``'s."""
    for name in STRUCTURAL:
        if given.get(name) is not None and given[name] != saved.get(name):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is for {name} {saved.get(name)!r}, not "
                f"{given[name]!r}; a resumed run keeps the model and the batches"
            )


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


def evaluate(params, batches: TextBatches) -> float:
    """Mean loss of the model over every chunk of ``batches``, forward only.

    Starts from the zero state and carries it from chunk to chunk, as training does.

    Parameters
    ----------
    params : dict
        From `init_char_model` or a checkpoint, on any backend.
    batches : TextBatches
        The text to score.

    Returns
    -------
    loss : float
        Nats per character (divide by ``log 2`` for bits per character).
    """
    forward = compile_function(_eval_step, params["Wy"])
    state = init_char_state(params, batches.batch)
    total = 0.0
    for j in range(len(batches)):
        x, y = batches[j]
        loss, state = forward(
            params, to_device_like(x, params["Wy"]), to_device_like(y, params["Wy"]), state
        )
        total += float(loss)
    return total / len(batches)


def _eval_step(params, x, y, state):
    loss, state, _ = char_model_forward(params, x, y, state)
    return loss, state


def _make_train_step(clip: float, betas, eps: float):
    def step(params, m, v, state, x, y, step_size, bc2_sqrt):
        loss, grads, state = char_model_loss_and_grads(params, x, y, state)
        if clip > 0:
            grads, _ = clip_grad_norm(grads, clip)
        params, m, v = adam_apply(params, grads, m, v, step_size, bc2_sqrt, betas, eps)
        return loss, params, m, v, state

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


class _Run:
    """The data and state of one run (fresh or resumed), checked before any work."""

    def __init__(self, config: TrainConfig, corpus, resume):
        self.config = config
        header = arrays = None
        if resume is not None:
            header, arrays = load_checkpoint(resume)
            _check_structural(resume, _saved_config(header, resume), asdict(config))
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

    def start(self):
        """``(params, adam state, carried state, step, train_loss, val_loss)`` on the target."""
        c = self.config
        if self.header is None:
            params = init_char_model(
                len(self.vocab),
                cell=c.cell,
                hidden=c.hidden,
                layers=c.layers,
                embed=c.embed,
                seed=c.seed,
                backend=c.backend,
                device=c.device,
                dtype=c.dtype,
            )
            return params, adam_init(params), None, 0, [], []
        a = self.arrays
        assert a is not None  # loaded with self.header, which is not None here
        dtype = c.dtype or self.header["dtype"]
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

    def save(self, path, params, m, v, state, step, train_loss, val_loss):
        c = self.config
        header = {
            # where to run is kept as asked for (names only: device objects are not JSON),
            # so that a resumed run goes on there unless told otherwise
            "config": {
                **asdict(c),
                **{k: v if isinstance(v, str) else None for k, v in _placement(c).items()},
            },
            "dtype": _compat.dtype_name(params["Wy"].dtype),
            "vocab": self.vocab.chars,
            "step": step,
            "corpus": {"source": self.source, "sha256": self.digest, "chars": self.chars},
            "saved_by": f"portable_rnn {__version__}",
            "trained_on": _compat.backend_name(_compat.array_namespace(params["Wy"])),
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
        if state is not None:
            arrays["state"] = state
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
):
    """Train a character-level language model.

    Truncated BPTT over `TextBatches` of the training part of the corpus (the
    state is carried from chunk to chunk, and reset to zeros at the start of
    every pass), the library's hand-written backward, global-norm clipping and
    Adam; validation on the held-out end of the corpus every
    ``config.eval_every`` steps and at the end. Deterministic: a run resumed
    from a checkpoint gives the same losses, bit for bit, as one that was not
    interrupted (on the same backend and device).

    Parameters
    ----------
    config : TrainConfig
    corpus : str or path-like, optional
        A UTF-8 text file; by default the documentation topics of
        ``pydoc_data.topics`` (or, when resuming, the checkpoint's corpus).
    out : str or path-like, optional
        Checkpoint file, written every ``config.save_every`` steps and at the
        end (atomically); ``None`` writes none.
    best_out : str or path-like, optional
        Also write a checkpoint here at every validation that is the lowest so far
        (over the whole run, also before a resume): early stopping, for a model
        that starts to overfit. It is a full checkpoint (resumable, sampleable).
    resume : str or path-like, optional
        A checkpoint to continue from: parameters, optimizer state, carried
        state, step and history. ``config`` must keep its `STRUCTURAL` options
        (`TrainConfig.from_checkpoint` builds such a config); the corpus must be
        the same text.
    log : callable, optional
        Called with a line of text at every validation (loss, throughput, sample).
    progress : bool, optional
        Show a tqdm progress bar (step, losses in bits per character, characters
        per second, time left); plain log lines when tqdm is not installed.

    Returns
    -------
    TrainResult

    Raises
    ------
    CorpusError, CheckpointError, ValueError
        Before any work: a corpus that is missing, empty, binary or too short; a
        checkpoint that is broken, of another version or for another model.
    KeyboardInterrupt
        After writing a checkpoint of the last completed step (when ``out`` is given).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    run = _Run(config, corpus, resume)
    for name, path in (("out", out), ("best_out", best_out)):
        if path is not None and not Path(path).parent.is_dir():
            raise ValueError(f"the directory of {name} {str(path)!r} does not exist")
    params, opt, state, step, train_loss, val_loss = run.start()
    log = log or (lambda line: None)
    like = params["Wy"]
    train_step = compile_function(_make_train_step(config.clip, config.betas, config.eps), like)
    save_every = config.save_every or config.eval_every
    result = TrainResult(params, run.vocab, step, train_loss, val_loss)
    bar = _progress(progress, config.steps, step)
    chars_per_step = config.batch * config.seq_len
    m, v = opt["m"], opt["v"]
    busy, first, done, rate = 0.0, 0.0, 0, float("nan")  # busy: seconds in training steps
    t_run = time.perf_counter()
    last_saved = step

    def save(path):  # the run as it stands after the last committed step
        return run.save(path, params, m, v, state, step, train_loss, val_loss)

    try:
        while step < config.steps:
            j = step % len(run.train)
            if j == 0:
                state = None  # a new pass over the text starts from zeros
            if state is None:
                state = init_char_state(params, config.batch)
            x, y = run.train[j]
            t0 = time.perf_counter()
            step_size, bc2_sqrt = adam_scalars(step + 1, config.lr, config.betas)
            new = train_step(
                params,
                m,
                v,
                state,
                to_device_like(x, like),
                to_device_like(y, like),
                step_size,
                bc2_sqrt,
            )
            train_loss.append(float(new[0]))  # waits for the step: honest timing
            # Commit the step with no call in between (CPython handles Ctrl-C only at calls
            # and jumps): an interrupt sees the old state and step or the new ones, never a mix.
            params, m, v, state, step = new[1], new[2], new[3], new[4], step + 1
            busy += time.perf_counter() - t0
            done += 1
            if done == 1:
                first = busy  # the first step compiles (JAX) and warms up: left out
            rate = chars_per_step * (
                (done - 1) / (busy - first) if done > 1 and busy > first else done / busy
            )
            last = step == config.steps or (
                config.max_minutes is not None
                and time.perf_counter() - t_run >= 60 * config.max_minutes
            )
            if step % config.eval_every == 0 or last:
                val = evaluate(params, run.val)
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
                        params,
                        run.vocab,
                        length=config.sample_length,
                        temperature=SAMPLE_TEMPERATURE,
                        seed=config.seed + step,
                    )
                    line += "\n" + text.strip("\n")
                _write_line(bar, log, line)
            if out is not None and (step % save_every == 0 or last):
                result.checkpoint = save(out)
                last_saved = step
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(_postfix(train_loss, val_loss, rate), refresh=False)
            if last:
                break
    except KeyboardInterrupt:
        if out is not None and step > last_saved:
            del train_loss[step:]  # a loss appended before its step was committed
            result.checkpoint = save(out)
        raise
    finally:
        if bar is not None:
            bar.close()
        result.params, result.step, result.chars_per_second = params, step, rate
    return result


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
