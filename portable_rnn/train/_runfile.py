"""What a training run is and what its checkpoint must hold.

`TrainConfig` (every option of a run, checked), and the checks of a run's
checkpoint: every header field (types and ranges; the ``config`` must make a valid
`TrainConfig`), the arrays of every group with the shapes and dtypes the header
implies (checked before anything is allocated, by `read_checkpoint`), and finite
parameters, optimizer state and history. `read_run` is what ``fit(resume=...)``,
``portable-rnn train --resume`` and ``portable-rnn sample`` read a checkpoint with.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

import numpy as np

from .._core.spec import CELLS
from ._checkpoint import (
    MAX_CHECKPOINT_BYTES,
    ArraySpec,
    CheckpointError,
    read_checkpoint,
    shown,
)
from ._sample import MAX_SAMPLE_LENGTH
from ._text import Vocabulary

__all__ = ["RUN_DTYPES", "STRUCTURAL", "TrainConfig", "dropout_seed", "master_dtype"]

#: The dtypes a run computes in. float16 and bfloat16 (where the backend has them) are
#: mixed precision: the parameters and Adam's moments stay float32 (the master weights,
#: which checkpoints store), and each step runs the model on a copy in the half dtype
#: (the library computes the recurrence in float32 inside; the loss is float32).
RUN_DTYPES = ("float32", "float64", "float16", "bfloat16")


def master_dtype(dtype):
    """The dtype a run keeps its parameters and Adam state in: float32 for a half run."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


#: Keeps the dropout masks' seeds apart from every other use of a run's seed.
_DROPOUT_STREAM = 0x0D70


def dropout_seed(seed: int, step: int) -> int:
    """The seed of the dropout masks of training step ``step`` (from 0) of a run of ``seed``.

    A function of the two alone, so a resumed run draws the masks the uninterrupted run
    drew; in ``[0, 2**31)``, so that it fits the int32 scalar a compiled JAX step takes.
    """
    state = np.random.SeedSequence([seed, step, _DROPOUT_STREAM]).generate_state(1)
    return int(state[0]) >> 1


#: Options that fix the model or the batches: a resumed run must keep them.
STRUCTURAL = (
    "cell",
    "hidden",
    "layers",
    "embed",
    "seq_len",
    "batch",
    "val_fraction",
    "split_lines",
    "nonlinearity",
)
#: Options added after checkpoints were first written, with the value a header without
#: them means (their runs had no such option).
_ADDED_LATER = {"split_lines": False, "nonlinearity": "tanh", "dropout": 0.0}
#: The groups of arrays of a run's checkpoint.
GROUPS = ("params", "adam_m", "adam_v", "state", "history")
_SHA256 = re.compile("[0-9a-f]{64}")
_MAX_SOURCE = 4096  # characters of the corpus's name
_MAX_NOTE = 200  # characters of saved_by and trained_on


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the ``portable-rnn train`` options).

    Attributes
    ----------
    cell : {"lstm", "gru", "rnn"}
    hidden, layers, embed : int
        Hidden units, stacked layers, embedding width.
    seq_len : int
        Steps per chunk of truncated BPTT (the state is carried across chunks);
        with ``split_lines``, the most steps of one sequence.
    batch : int
        Parallel streams of text; with ``split_lines``, lines (sequences) per batch.
    steps : int
        Optimizer steps of the whole run (a resumed run continues up to it).
    lr, betas, eps : float, (float, float), float
        Adam's parameters: ``lr > 0``, both betas in ``[0, 1)``, ``eps > 0``.
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
        Characters of the samples printed during training (0: none; at most
        `MAX_SAMPLE_LENGTH`).
    seed : int
        Seed of the initial parameters and of the printed samples, ``>= 0``.
    backend, device, dtype : str or None
        Where to train; ``None`` takes the configuration (`portable_rnn.set_config`).
    split_lines : bool
        Train on the corpus's lines as separate sequences (`LineBatches`): each
        non-empty line, with its newline as the last target, from the zero state,
        batched by padding, the loss averaged over real characters only; lines
        longer than ``seq_len - 1`` characters cut into pieces of ``seq_len``
        steps; the last lines held out. ``False``: truncated BPTT over the text
        as one stream.
    nonlinearity : {"tanh", "relu"}
        The RNN's activation (``cell="rnn"`` only; the other cells take ``"tanh"``).
        Part of the model: its checkpoints keep it, and sampling, export and a resumed
        run use it (a checkpoint without it is a tanh model).
    dropout : float
        Dropout probability, in ``[0, 1)``, on the inputs of every recurrent layer but
        the first (PyTorch's placement; a one-layer model has none, so nothing changes).
        Training only: validation and samples run without it. The masks of step ``k``
        are drawn from `dropout_seed` ``(seed, k)``, so a resumed run is the run that
        was not interrupted.
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
    split_lines: bool = False
    nonlinearity: str = "tanh"
    dropout: float = 0.0

    def __post_init__(self):
        positive = ("hidden", "layers", "embed", "seq_len", "batch", "steps", "eval_every")
        for name in positive:
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {shown(v)}")
        if self.save_every is not None and (not _is_int(self.save_every) or self.save_every < 1):
            raise ValueError(
                f"save_every must be a positive int or None, got {shown(self.save_every)}"
            )
        if self.cell not in ("lstm", "gru", "rnn"):
            raise ValueError(f"cell must be one of lstm, gru, rnn, got {shown(self.cell)}")
        if not (_is_number(self.lr) and 0 < self.lr < math.inf):
            raise ValueError(f"lr must be a positive number, got {shown(self.lr)}")
        if not (
            isinstance(self.betas, (tuple, list))
            and len(self.betas) == 2
            and all(_is_number(b) and 0 <= b < 1 for b in self.betas)
        ):
            raise ValueError(f"betas must be two numbers in [0, 1), got {shown(self.betas)}")
        if not (_is_number(self.eps) and 0 < self.eps < math.inf):
            raise ValueError(f"eps must be a positive number, got {shown(self.eps)}")
        if not (_is_number(self.clip) and 0 <= self.clip < math.inf):
            raise ValueError(f"clip must be a number >= 0 (0: no clipping), got {shown(self.clip)}")
        if self.max_minutes is not None and not (
            _is_number(self.max_minutes) and self.max_minutes > 0
        ):
            raise ValueError(
                f"max_minutes must be a positive number, got {shown(self.max_minutes)}"
            )
        if not (isinstance(self.val_fraction, float) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in (0, 1), got {shown(self.val_fraction)}")
        if not _is_int(self.sample_length) or not 0 <= self.sample_length <= MAX_SAMPLE_LENGTH:
            raise ValueError(
                f"sample_length must be an integer in [0, {MAX_SAMPLE_LENGTH}], "
                f"got {shown(self.sample_length)}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {shown(self.seed)}")
        if self.dtype not in (None, *RUN_DTYPES):
            raise ValueError(
                f"dtype must be {', '.join(RUN_DTYPES)} or None, got {shown(self.dtype)}"
            )
        if self.backend is not None and not isinstance(self.backend, str):
            raise ValueError(f"backend must be a str or None, got {shown(self.backend)}")
        if not isinstance(self.split_lines, bool):
            raise ValueError(f"split_lines must be True or False, got {shown(self.split_lines)}")
        if self.nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be tanh or relu, got {shown(self.nonlinearity)}")
        if self.nonlinearity != "tanh" and self.cell != "rnn":
            raise ValueError(
                f"nonlinearity {self.nonlinearity} is the RNN's activation (cell rnn); "
                f"cell {self.cell} has its own gates"
            )
        if not (_is_number(self.dropout) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be a number in [0, 1), got {shown(self.dropout)}")
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "dropout", float(self.dropout))

    @classmethod
    def from_checkpoint(cls, path, **overrides) -> TrainConfig:
        """The configuration a checkpoint was trained with, with ``overrides``.

        Raises
        ------
        CheckpointError
            The checkpoint cannot be read or has a bad header (the field is named), or
            an override changes the model or the batches (`STRUCTURAL`), which a
            resumed run cannot (the option is named).
        """
        header = read_run(path, groups=())[0]
        saved = saved_config(header)
        check_structural(path, saved, overrides)
        saved.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**saved)


def placement(config) -> dict:
    """``backend``, ``device`` and ``dtype`` of ``config``."""
    return {"backend": config.backend, "device": config.device, "dtype": config.dtype}


def saved_config(header: dict) -> dict:
    """The `TrainConfig` fields of a checked header's ``config`` (older headers: defaults)."""
    names = {f.name for f in fields(TrainConfig)}
    return {**_ADDED_LATER, **{k: v for k, v in header["config"].items() if k in names}}


def check_structural(path, saved: dict, given: dict) -> None:
    """Refuse a `STRUCTURAL` option of ``given`` (``None``: not given) unlike ``saved``'s."""
    for name in STRUCTURAL:
        if given.get(name) is not None and given[name] != saved.get(name):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is for {name} {saved.get(name)!r}, not "
                f"{given[name]!r}; a resumed run keeps the model and the batches"
            )


def check_header(header: dict, path) -> tuple[TrainConfig, Vocabulary]:
    """Check every field of a run's checkpoint header; its config and vocabulary.

    Raises
    ------
    CheckpointError
        One line naming the file and the first bad field (all missing ones at once).
    """
    where = f"checkpoint {str(path)!r}"
    required = ("config", "vocab", "step", "dtype", "corpus")
    missing = [k for k in required if k not in header]
    if missing:
        raise CheckpointError(f"{where} lacks the header fields {', '.join(missing)}")

    def bad(field: str, what: str, value) -> CheckpointError:
        return CheckpointError(f"{where}: header field {field} must be {what}, got {shown(value)}")

    saved = header["config"]
    if not isinstance(saved, dict):
        raise bad("config", "a JSON object", saved)
    absent = [k for k in STRUCTURAL if k not in saved and k not in _ADDED_LATER]
    if absent:
        raise CheckpointError(f"{where}: header field config lacks {', '.join(absent)}")
    for name in ("backend", "device"):
        if saved.get(name) is not None and not isinstance(saved[name], str):
            raise bad(f"config.{name}", "a str or null", saved[name])
    try:
        config = TrainConfig(**saved_config(header))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: header field config: {exc}") from None
    chars = header["vocab"]
    if not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
        raise bad("vocab", "a non-empty str of distinct characters", chars)
    try:
        chars.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("vocab", "text (it has a lone surrogate)", chars) from None
    step = header["step"]
    if not _is_int(step) or step < 0:
        raise bad("step", "an integer >= 0", step)
    if header["dtype"] not in RUN_DTYPES:
        raise bad("dtype", ", ".join(RUN_DTYPES), header["dtype"])
    corpus = header["corpus"]
    if not isinstance(corpus, dict):
        raise bad("corpus", "a JSON object with source, sha256 and chars", corpus)
    source = corpus.get("source")
    if not isinstance(source, str) or not source or "\x00" in source or len(source) > _MAX_SOURCE:
        raise bad("corpus.source", f"a file name (a str of 1 to {_MAX_SOURCE} characters)", source)
    if not isinstance(corpus.get("sha256"), str) or not _SHA256.fullmatch(corpus["sha256"]):
        raise bad("corpus.sha256", "64 hexadecimal digits", corpus.get("sha256"))
    if not _is_int(corpus.get("chars")) or corpus["chars"] < 1:
        raise bad("corpus.chars", "an integer >= 1", corpus.get("chars"))
    for name in ("saved_by", "trained_on"):
        note = header.get(name, "")
        if not (isinstance(note, str) and len(note) <= _MAX_NOTE):
            raise bad(name, f"a str of at most {_MAX_NOTE} characters", note)
    return config, Vocabulary(chars)


def param_shapes(config: TrainConfig, vocab_size: int) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter of the model of ``config`` (as `init_char_model` makes)."""
    spec = CELLS[config.cell]
    V, E, H = vocab_size, config.embed, config.hidden
    shapes: dict[str, tuple[int, ...]] = {"embed": (V, E)}
    for k in range(config.layers):
        for key in spec.layer_keys:
            shapes[f"layer{k}.{key}"] = spec.shape(key, E if k == 0 else H, H, V)
    shapes.update({"Wy": (V, H), "by": (V, 1)})
    return shapes


def check_model_size(config: TrainConfig, vocab_size: int, itemsize: int) -> None:
    """Refuse a model whose checkpoint (parameters, Adam's moments) no load would read.

    Raises
    ------
    ValueError
        Its parameters and Adam's two moments take more than `MAX_CHECKPOINT_BYTES`.
    """
    count = sum(math.prod(s) for s in param_shapes(config, vocab_size).values())
    size = 3 * count * itemsize
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(
            f"the {config.cell} model of hidden {config.hidden}, layers {config.layers}, embed "
            f"{config.embed} and {vocab_size} characters has {count:,} parameters: its "
            f"checkpoint (parameters and Adam's moments, {size:,} bytes) would be more than "
            f"MAX_CHECKPOINT_BYTES ({MAX_CHECKPOINT_BYTES:,}); use a smaller model"
        )


def model_layout(header: dict, path) -> dict[str, ArraySpec]:
    """Every array a run's checkpoint may hold, with the shape and dtype its header implies."""
    config, vocab = check_header(header, path)
    spec = CELLS[config.cell]
    H, L = config.hidden, config.layers
    shapes = param_shapes(config, len(vocab))
    dtype = (master_dtype(header["dtype"]),)  # a half-precision run keeps float32
    layout = {
        f"{group}/{key}": ArraySpec(shape, dtype)
        for group in ("params", "adam_m", "adam_v")
        for key, shape in shapes.items()
    }
    for key in ("h", "c") if "c" in spec.carry else ("h",):  # the carried state: optional
        layout[f"state/{key}"] = ArraySpec((L, H, config.batch), dtype, required=False)
    layout["history/train"] = ArraySpec((header["step"],), ("float64",))
    layout["history/val"] = ArraySpec((None, 2), ("float64",))
    return layout


def read_run(path, groups=GROUPS) -> tuple[dict, dict]:
    """A run's checkpoint, every field and array checked; only ``groups`` are read.

    Beyond `read_checkpoint`'s checks (sizes, dtypes, the shapes the header implies,
    before anything is allocated): the parameters, Adam's moments and the carried
    state are finite, Adam's second moments are >= 0, the loss history is finite and
    its validations are at steps 0 to ``step``.

    Raises
    ------
    CheckpointError
        One line naming the file and what is wrong.
    """
    header, arrays = read_checkpoint(path, groups=groups, layout=lambda h: model_layout(h, path))
    where = f"checkpoint {str(path)!r}"
    for group in ("params", "adam_m", "adam_v", "state", "history"):
        for name, a in arrays.get(group, {}).items():
            if not np.all(np.isfinite(a)):
                raise CheckpointError(f"{where}: {group}/{name} has NaN or infinite values")
    if not all(np.all(a >= 0) for a in arrays.get("adam_v", {}).values()):
        raise CheckpointError(f"{where}: adam_v (Adam's second moments) has negative values")
    if "state" in arrays:
        carry = ("h", "c") if "c" in CELLS[header["config"]["cell"]].carry else ("h",)
        missing = [k for k in carry if k not in arrays["state"]]
        if missing:
            raise CheckpointError(f"{where}: the carried state lacks state/{missing[0]}")
    val = arrays.get("history", {}).get("val")
    if val is not None and val.size:
        steps = val[:, 0]
        integral = np.all(steps == np.round(steps))
        if not (integral and np.all((steps >= 0) & (steps <= header["step"]))):
            raise CheckpointError(
                f"{where}: history/val has validations at steps that are not 0 to {header['step']}"
            )
    return header, arrays
