"""``portable-rnn score``: a trained model's bits per character over a large text.

The text is never read whole. A first streaming pass (`index_corpus`) checks the file
(a UTF-8 text of at least 2 characters, no NUL byte, every character in the model's
vocabulary) and records the byte offset of every block; then each block is read on its
own (`read_block`: seek to its offset, decode its characters) and scored, on one
machine (any backend) or on Dask workers (each reads its own blocks from the file).

The definition of the score
---------------------------
The characters of the text (UTF-8, indexed by the checkpoint's vocabulary), ``n`` of
them, ``ids[0 .. n-1]``, are cut into fixed chunks of ``L`` (``chunk_len``) characters to
predict: chunk ``k`` reads ``ids[kL : kL+L]`` and predicts ``ids[kL+1 : kL+L+1]``, so
consecutive chunks share one character and every character but the first is predicted
exactly once (``n - 1`` predictions in ``ceil((n-1)/L)`` chunks; the last chunk may be
shorter, run with the library's ``lengths``). **Every chunk starts from the zero state**:
the chunks are independent, which is what lets them run in parallel (and why a score
depends on ``L``: a longer chunk gives the model more context). The result is the sum of
the ``n - 1`` per-character cross-entropies over ``n - 1``, in bits (nats / ln 2).

``B`` (``block``) chunks make a block: one call of the model on ``(B, L)`` characters, one
Dask task. A model trained with ``--split-lines`` is scored on the same fixed chunks (not
line by line): the number is comparable between models, whatever they were trained on.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import compat as _compat
from .._backend.devices import HALF_DTYPES
from .._backend.seam import arange_like, compile_function
from ._model import _run, describe_model, to_device_like
from ._text import (
    _CODE_POINTS,
    DEFAULT_CHUNK_SIZE,
    CorpusError,
    Vocabulary,
    _Chunks,
    _code_points,
    _open,
)

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_CHUNK_LEN",
    "CorpusIndex",
    "ScoreResult",
    "add_score_parser",
    "index_corpus",
    "read_block",
    "run_score",
    "score",
]

#: Characters predicted per chunk, ``L`` (default).
DEFAULT_CHUNK_LEN = 256
#: Chunks per block, ``B`` (default): a block's logits are ``(B, L, V)``, 8 MB for
#: ``V = 32`` in float64; the whole block's forward about 60 MB for a small model (its
#: temporaries and per-step values; NumPy scores as fast as with larger blocks).
DEFAULT_BLOCK = 128
#: Dask workers of the LocalCluster started without ``--scheduler`` (default).
DEFAULT_WORKERS = 2
#: Seconds to wait for a ``--scheduler`` (default).
DEFAULT_TIMEOUT = 10.0
_LN2 = math.log(2.0)
_DASK_HINT = "the Dask path needs dask and distributed: pip install portable_rnn[dask]"


@dataclass(frozen=True)
class CorpusIndex:
    """A checked corpus and where its blocks start, from `index_corpus`.

    Attributes
    ----------
    path : str
        The file, as given.
    chars : int
        Characters in the file, ``n >= 2``.
    predictions : int
        Characters to predict: ``n - 1``, or fewer with ``max_chars`` (the first ones).
    chunk_len, block : int
        ``L`` and ``B``.
    offsets : tuple of int, length ``blocks``
        The byte offset of the first character of every block: block ``b`` reads
        characters ``b B L`` to ``min((b+1) B L, predictions)`` (the last one its overlap
        with the next block) from ``offsets[b]``.
    size : int
        The file's size in bytes when it was indexed.
    """

    path: str
    chars: int
    predictions: int
    chunk_len: int
    block: int
    offsets: tuple[int, ...]
    size: int

    @property
    def chunks(self) -> int:
        """Chunks, ``ceil((n-1) / L)``."""
        return -(-self.predictions // self.chunk_len)

    @property
    def blocks(self) -> int:
        """Blocks, ``ceil(chunks / B)``."""
        return len(self.offsets)

    def rows(self, b: int) -> int:
        """Chunks of block ``b``: ``B``, fewer in the last block."""
        return min(self.block, self.chunks - b * self.block)

    def span(self, b: int) -> int:
        """Characters block ``b`` reads: its chunks' inputs and the last target."""
        per_block = self.block * self.chunk_len
        return min(per_block, self.predictions - b * per_block) + 1


@dataclass(frozen=True)
class ScoreResult:
    """What `score` found.

    Attributes
    ----------
    loss : float
        Mean cross-entropy per predicted character, nats.
    bits_per_char : float
        ``loss / ln 2``.
    chars : int
        Characters predicted, ``n - 1``.
    chunks, blocks : int
        How the text was cut.
    seconds : float
        Wall time of the scoring pass (after the index).
    """

    loss: float
    bits_per_char: float
    chars: int
    chunks: int
    blocks: int
    seconds: float

    @property
    def chars_per_second(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else math.inf


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


class _Lookup:
    """Code points -> vocabulary indices, vectorised (a table of every code point, 4.5 MB);
    names the first character not in the vocabulary."""

    def __init__(self, vocab: Vocabulary):
        points = np.array([ord(c) for c in vocab.chars], dtype=np.int64)
        self.table = np.full(_CODE_POINTS, -1, dtype=np.int32)
        self.table[points] = np.arange(len(points), dtype=np.int32)

    def __call__(self, codes: np.ndarray) -> tuple[np.ndarray, int]:
        """``(ids, first)``: int32 indices (-1 where not in the vocabulary), and the position
        of the first code point not in it (``-1``: none)."""
        ids = self.table[codes]
        first = int(np.argmin(ids)) if ids.size else 0
        return ids, (first if ids.size and ids[first] < 0 else -1)


def _not_in_vocab(name: str, codes: np.ndarray, first: int, before: int) -> CorpusError:
    ch = chr(int(codes[first]))
    return CorpusError(
        f"corpus {name!r} has a character not in the checkpoint's vocabulary: {ch!r} "
        f"(U+{ord(ch):04X}) at character {before + first}"
    )


def index_corpus(
    path,
    vocab: Vocabulary,
    *,
    chunk_len: int,
    block: int,
    max_chars: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> CorpusIndex:
    """Check a corpus file in one streaming pass and find where its blocks start.

    The file is read ``chunk_size`` bytes at a time (never whole): it must exist, be a
    file, be UTF-8 text (no NUL byte), hold at least 2 characters and only characters
    of ``vocab``. Memory: a few times ``chunk_size`` and 8 bytes per block.

    Parameters
    ----------
    path : str or path-like
        A UTF-8 text file.
    vocab : Vocabulary
        The model's characters.
    chunk_len, block : int, keyword-only
        ``L`` characters predicted per chunk and ``B`` chunks per block, positive.
    max_chars : int, optional, keyword-only
        Predict only the first ``max_chars`` characters (after the first); the whole
        file is checked all the same. ``None``: all ``n - 1``.
    chunk_size : int, optional, keyword-only
        Bytes read at a time.

    Returns
    -------
    CorpusIndex
        ``offsets`` of length ``ceil(ceil((n-1)/L) / B)``.

    Raises
    ------
    CorpusError
        One line naming the file: missing, not a file, unreadable, empty, shorter than
        2 characters, binary or not UTF-8 (byte offset named), or a character not in
        ``vocab`` (named, with its character offset).
    ValueError
        ``chunk_len``, ``block`` or ``chunk_size`` not a positive int.
    """
    L = _positive_int("chunk_len", chunk_len)
    B = _positive_int("block", block)
    _positive_int("chunk_size", chunk_size)
    if max_chars is not None:
        _positive_int("max_chars", max_chars)
    if path is None:
        raise TypeError("a corpus path is required")
    lookup = _Lookup(vocab)
    span = L * B
    stream, name = _open(path)
    offsets = [0]
    chars = nbytes = 0
    with stream:
        for data, text in _Chunks(stream, name, chunk_size):
            codes = _code_points(data, text)
            _, first = lookup(codes)
            if first >= 0:
                raise _not_in_vocab(name, codes, first, chars)
            n = codes.shape[0]
            # block starts (multiples of span) that fall in this piece
            start = max(-(-chars // span), 1) * span  # the first block start not yet seen
            if start < chars + n:
                wanted = np.arange(start, chars + n, span, dtype=np.int64) - chars
                if text is None:  # ASCII: one byte per character
                    offsets.extend(int(nbytes + w) for w in wanted)
                else:  # the UTF-8 bytes of the characters before each block start
                    at, done = 0, nbytes
                    for w in wanted.tolist():
                        done += len(text[at:w].encode("utf-8"))
                        offsets.append(done)
                        at = w
            chars += n
            nbytes += len(data) if text is None else len(text.encode("utf-8"))
        size = nbytes
    if chars == 0:
        raise CorpusError(f"corpus {name!r} is empty")
    if chars < 2:
        raise CorpusError(
            f"corpus {name!r} is too short: {chars} character, at least 2 needed "
            "(one to read, one to predict)"
        )
    predictions = chars - 1 if max_chars is None else min(chars - 1, max_chars)
    chunks = -(-predictions // L)
    blocks = -(-chunks // B)
    return CorpusIndex(
        path=name,
        chars=chars,
        predictions=predictions,
        chunk_len=L,
        block=B,
        offsets=tuple(offsets[:blocks]),
        size=size,
    )


def read_block(index: CorpusIndex, b: int, vocab: Vocabulary, lookup=None) -> np.ndarray:
    """The characters block ``b`` reads, as vocabulary indices, read from its own offset.

    Opens the file, seeks to ``index.offsets[b]`` (binary), decodes
    ``index.span(b)`` characters and looks them up: what a Dask worker runs for its
    block (the file must be readable there, at the same path).

    Returns
    -------
    ids : numpy.ndarray of int32, shape (index.span(b),)

    Raises
    ------
    CorpusError
        The file changed since it was indexed (too few characters, or one not in the
        vocabulary), or cannot be read.
    """
    lookup = _Lookup(vocab) if lookup is None else lookup
    return _read_chars(index.path, index.offsets[b], index.span(b), lookup)


def _read_chars(name: str, offset: int, count: int, lookup: _Lookup) -> np.ndarray:
    """``count`` characters from byte ``offset`` of file ``name``, as int32 indices."""
    try:
        with open(name, "rb") as raw:
            raw.seek(offset)
            with io.TextIOWrapper(raw, encoding="utf-8", newline="") as stream:
                text = stream.read(count)
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"corpus {name!r} cannot be read at byte {offset}: {exc}") from None
    if text.isascii():
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids, first = lookup(codes)
    if codes.shape[0] != count or first >= 0:
        raise CorpusError(f"corpus {name!r} changed while it was being scored; score it again")
    return ids


def block_rows(ids: np.ndarray, rows: int, chunk_len: int) -> np.ndarray:
    """A block's characters as its chunks: ``(rows, L + 1)`` int32, zeros past the text.

    Row ``j`` is ``ids[jL : jL + L + 1]``: chunk ``j``'s inputs (``[:, :-1]``) and targets
    (``[:, 1:]``); ``rows`` may exceed the block's chunks (rows of zeros, length 0).
    """
    L = chunk_len
    padded = np.zeros(rows * L + 1, dtype=np.int32)
    padded[: ids.shape[0]] = ids[: rows * L + 1]
    out = np.empty((rows, L + 1), dtype=np.int32)
    out[:, :L] = padded[:-1].reshape(rows, L)
    out[:, L] = padded[L::L]
    return out


def chunk_lengths(first_chunk: int, rows: int, predictions: int, chunk_len: int) -> np.ndarray:
    """Characters predicted by chunks ``first_chunk ..`` (``rows`` of them): int32, 0 to L."""
    k = np.arange(first_chunk, first_chunk + rows, dtype=np.int64)
    return np.clip(predictions - k * chunk_len, 0, chunk_len).astype(np.int32)


@functools.cache
def _block_step(nonlinearity: str):
    """The summed loss of a block of chunks, each from the zero state: one function per
    ``nonlinearity``, so that ``jax.jit`` compiles it once.

    ``step(params, x, y, lengths)``: ``x``, ``y`` ``(m, T)`` inputs and targets, ``lengths``
    ``(m,)``; returns the sum over the real steps of ``-log softmax(logits)[target]``, nats,
    a 0-D array (float32 for a half model). The logits are the model's
    (`char_model_logits`, ``(V, m T)`` inside); the loss is their log-sum-exp minus the
    target's logit, without the gradient `char_model_forward` also computes.
    """

    def step(params, x, y, lengths):
        xp, _, logits, _, _ = _run(params, x, None, lengths, nonlinearity)  # (V, m T)
        if _compat.dtype_name(logits.dtype) in HALF_DTYPES:
            logits = xp.astype(logits, xp.float32)
        V, n = (int(d) for d in logits.shape)
        T = int(x.shape[1])
        top = xp.max(logits, axis=0)
        lse = xp.log(xp.sum(xp.exp(logits - top[None, :]), axis=0)) + top
        # the target's logit: column j of (V, n) holds step j; row-major index y * n + j
        where = xp.reshape(xp.astype(y, xp.int64 if n * V >= 2**31 else y.dtype), (n,))
        picked = xp.take(xp.reshape(logits, (V * n,)), where * n + arange_like(xp, n, where))
        real = arange_like(xp, T, lengths)[None, :] < lengths[:, None]  # (m, T)
        losses = xp.where(xp.reshape(real, (n,)), lse - picked, xp.zeros_like(lse))
        return xp.sum(losses)

    return step


def _block_sum(total, lengths: np.ndarray) -> tuple[float, int]:
    """``(sum of the block's losses in nats, characters)``."""
    return float(total), int(lengths.sum(dtype=np.int64))


def _result(sums: list[float], counts: list[int], index: CorpusIndex, seconds: float):
    chars = sum(counts)
    if chars != index.predictions:  # pragma: no cover - a bug, not an input
        raise RuntimeError(f"scored {chars} characters, expected {index.predictions}")
    loss = math.fsum(sums) / chars
    return ScoreResult(
        loss=loss,
        bits_per_char=loss / _LN2,
        chars=chars,
        chunks=index.chunks,
        blocks=index.blocks,
        seconds=seconds,
    )


def score(
    params,
    corpus,
    vocab: Vocabulary,
    *,
    chunk_len: int = DEFAULT_CHUNK_LEN,
    block: int = DEFAULT_BLOCK,
    nonlinearity: str = "tanh",
    max_chars: int | None = None,
    progress: bool = False,
    client=None,
) -> ScoreResult:
    """A model's mean cross-entropy over a text file, read in pieces.

    The text's ``n`` characters are cut into chunks of ``L = chunk_len`` characters to
    predict: chunk ``k`` reads ``ids[kL : kL+L]`` and predicts ``ids[kL+1 : kL+L+1]``
    (consecutive chunks share one character; every character but the first is
    predicted once; the last chunk may be shorter). Every chunk starts from the zero
    state, so chunks are independent; ``B = block`` of them run as one ``(B, L)`` call
    of `char_model_forward`. The file is checked and indexed first (`index_corpus`),
    then read one block at a time (`read_block`); memory does not grow with the file.

    Parameters
    ----------
    params : dict
        From `init_char_model` or a checkpoint (``read_run(path)[1]["params"]``). Without
        ``client``: on any backend and device (the blocks go there, and the block's
        function is compiled once on JAX: the last block is padded to ``B`` rows of
        length 0). With ``client``: NumPy arrays (they are sent to every worker once).
    corpus : str or path-like
        A UTF-8 text file of at least 2 characters, all in ``vocab``. With ``client``,
        the workers read it themselves: it must be readable at this path on every
        worker (as with ``dask.dataframe.read_csv``).
    vocab : Vocabulary
        The model's characters (``Vocabulary(header["vocab"])``).
    chunk_len, block : int, keyword-only
        ``L`` and ``B``, positive. A block's logits are ``(B, L, V)``.
    nonlinearity : {"tanh", "relu"}, keyword-only
        The RNN's activation (the checkpoint's ``config.nonlinearity``).
    max_chars : int, optional, keyword-only
        Score only the first ``max_chars`` predictions (the whole file is still checked).
    progress : bool, keyword-only
        A tqdm bar over the blocks (on stderr).
    client : distributed.Client, optional, keyword-only
        Score on Dask: a ``dask.array`` of shape ``(chunks, L + 1)`` in blocks of
        ``(B, L + 1)``, each read by a worker from its byte offset, scored there with
        NumPy (the whole chunk length in one call, not a graph of ``L`` steps) to
        ``(loss sum, characters)``; the per-block sums are added on the client in block
        order (``math.fsum``). The caller owns the client (and its cluster).

    Returns
    -------
    ScoreResult
        ``loss`` in nats per character, ``bits_per_char``, ``chars = n - 1``, ``seconds``
        (of the scoring, after the index).

    Raises
    ------
    CorpusError
        A bad corpus (see `index_corpus`), or one that changed while it was scored.
    ValueError
        ``chunk_len`` or ``block`` not a positive int; ``params`` not a model of
        ``len(vocab)`` characters.
    """
    spec = describe_model(params)
    if spec["vocab_size"] != len(vocab):
        raise ValueError(
            f"params are a model of {spec['vocab_size']} characters, the vocabulary has "
            f"{len(vocab)}"
        )
    index = index_corpus(corpus, vocab, chunk_len=chunk_len, block=block, max_chars=max_chars)
    if client is not None:
        return _score_dask(params, index, vocab, nonlinearity, progress, client)
    return _score_here(params, index, vocab, nonlinearity, progress)


def _bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="block", dynamic_ncols=True, leave=False)


def _score_here(params, index: CorpusIndex, vocab, nonlinearity, progress) -> ScoreResult:
    like = params["Wy"]
    forward = compile_function(_block_step(nonlinearity), like)
    compiled = forward is not _block_step(nonlinearity)
    # a compiled function sees one shape: every block of B rows (unless there is one block)
    rows = min(index.block, index.chunks) if compiled else None
    lookup = _Lookup(vocab)
    sums, counts = [], []
    bar = _bar(progress, index.blocks)
    start = time.perf_counter()
    try:
        for b in range(index.blocks):
            n_rows = rows or index.rows(b)
            chunks = block_rows(read_block(index, b, vocab, lookup), n_rows, index.chunk_len)
            lengths = chunk_lengths(b * index.block, n_rows, index.predictions, index.chunk_len)
            x, y, lens = (to_device_like(a, like) for a in (chunks[:, :-1], chunks[:, 1:], lengths))
            total, count = _block_sum(forward(params, x, y, lens), lengths)
            sums.append(total)
            counts.append(count)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return _result(sums, counts, index, time.perf_counter() - start)


# ---------------------------------------------------------------------------- Dask


def _read_rows(path, offset, span, rows, chunk_len, vocab_chars) -> np.ndarray:
    """A Dask worker's read of one block: ``(rows, L + 1)`` int32 (see `block_rows`)."""
    ids = _read_chars(path, offset, span, _Lookup(Vocabulary(vocab_chars)))
    return block_rows(ids, rows, chunk_len)


def _score_rows(
    chunks, params=None, predictions=0, nonlinearity="tanh", first_row=0, block_info=None
):
    """A Dask block of chunks ``(rows, L + 1)`` -> ``[[loss sum in nats, characters]]``;
    ``first_row``: the chunk index of the array's first row (its window's start)."""
    assert block_info is not None  # dask.array passes it to a function that takes it
    first = first_row + block_info[0]["array-location"][0][0]
    L = chunks.shape[1] - 1
    lengths = chunk_lengths(first, chunks.shape[0], predictions, L)
    loss = _block_step(nonlinearity)(params, chunks[:, :-1], chunks[:, 1:], lengths)
    total, count = _block_sum(loss, lengths)
    return np.array([[total, float(count)]])


#: Blocks a Dask run has in flight at once (see `_score_dask`).
DASK_WINDOW = 256


def _score_dask(params, index: CorpusIndex, vocab, nonlinearity, progress, client):
    import dask.array as da
    from dask.delayed import delayed
    from distributed import as_completed

    if not all(isinstance(v, np.ndarray) for v in params.values()):
        raise TypeError("score on Dask takes NumPy params (to_backend(params, 'numpy'))")
    host = dict(params)
    start = time.perf_counter()
    L, nb = index.chunk_len, index.blocks
    shipped = client.scatter([host], broadcast=True)[0]  # once to every worker
    bar = _bar(progress, nb)
    results = []
    try:
        # the blocks in windows: the client holds one window's graph and futures at a
        # time, so its memory does not grow with the file (all 5,738 blocks of a 200 MB
        # file at once held 295 MB in the client)
        for w0 in range(0, nb, DASK_WINDOW):
            window = range(w0, min(nb, w0 + DASK_WINDOW))
            parts = [
                da.from_delayed(
                    delayed(_read_rows, pure=True)(
                        index.path,
                        index.offsets[b],
                        index.span(b),
                        index.rows(b),
                        L,
                        vocab.chars,
                    ),
                    shape=(index.rows(b), L + 1),
                    dtype=np.int32,
                )
                for b in window
            ]
            ids = da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
            per_block = ids.map_blocks(
                _score_rows,
                params=shipped,
                predictions=index.predictions,
                nonlinearity=nonlinearity,
                first_row=w0 * index.block,
                chunks=((1,) * len(window), (2,)),
                dtype=np.float64,
                meta=np.empty((0, 0), dtype=np.float64),
            )
            futures = client.compute(list(per_block.to_delayed().ravel()))
            try:
                for _ in as_completed(futures):
                    if bar is not None:
                        bar.update(1)
                # in block order; raises a worker's error (a CorpusError of a file it
                # cannot read) here
                results.extend(np.asarray(f.result()) for f in futures)
            finally:
                client.cancel(futures)
    finally:
        if bar is not None:
            bar.close()
    sums = [float(r[0, 0]) for r in results]
    counts = [int(r[0, 1]) for r in results]
    return _result(sums, counts, index, time.perf_counter() - start)


def _import_dask():
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError(f"--dask: {_DASK_HINT}") from None


# ---------------------------------------------------------------------------- the command

_DESCRIPTION = (
    "Compute a checkpoint's bits per character over a text file of any size, read in "
    "pieces (never whole). The text's characters (UTF-8, indexed by the checkpoint's "
    "vocabulary) are cut into chunks of L (--chunk-len) characters to predict: chunk k "
    "reads characters kL .. kL+L-1 and predicts kL+1 .. kL+L, so consecutive chunks share "
    "one character and every character but the first is predicted exactly once (the last "
    "chunk may be shorter). Every chunk starts from the zero state: chunks are independent, "
    "which is what makes them parallel, and a longer chunk gives more context. The result "
    "is the sum of the per-character losses over their number, in bits. A model trained "
    "with --split-lines is scored on the same fixed chunks, not line by line. A first pass "
    "checks the whole file (UTF-8 text, every character in the vocabulary) and records "
    "where every block of B (--block) chunks starts; then the blocks are scored, on one "
    "machine (any backend) or with --dask on Dask workers, which read their own blocks "
    "from the file (the path must be readable by every worker). Without --scheduler, "
    "--dask starts a LocalCluster of --workers processes with one thread each (processes: "
    "the per-step Python loop holds the GIL). Nothing is written."
)


def add_score_parser(sub) -> None:
    """Register ``portable-rnn score`` on the subparsers ``sub``."""
    from ._cli import _add_target

    p = sub.add_parser(
        "score",
        help="a checkpoint's bits/char over a large text, on one machine or on Dask",
        description=_DESCRIPTION,
    )
    p.add_argument("--checkpoint", metavar="PATH", required=True, help="from portable-rnn train")
    p.add_argument(
        "--corpus", metavar="FILE", required=True, help="a UTF-8 text file, read in pieces"
    )
    p.add_argument(
        "--chunk-len",
        metavar="L",
        type=int,
        default=DEFAULT_CHUNK_LEN,
        help=f"L, characters predicted per chunk, each chunk from the zero state "
        f"(default {DEFAULT_CHUNK_LEN})",
    )
    p.add_argument(
        "--block",
        metavar="B",
        type=int,
        default=DEFAULT_BLOCK,
        help=f"B, chunks scored at once (one model call, one Dask task; its logits are "
        f"B x L x vocabulary) (default {DEFAULT_BLOCK})",
    )
    p.add_argument(
        "--max-chars",
        metavar="N",
        type=int,
        default=None,
        help="score only the first N predicted characters (the whole file is still checked; "
        "default: all)",
    )
    _add_target(
        p,
        "default: the checkpoint's (float32 for a half-precision run)",
        dtypes=("float32", "float64"),
    )
    p.add_argument(
        "--dask",
        action="store_true",
        help="score on Dask workers with NumPy (pip install portable_rnn[dask]); without "
        "--scheduler, on a LocalCluster of --workers processes",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="the address of a running Dask scheduler (tcp://host:8786); implies --dask",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help=f"worker processes of the LocalCluster, one thread each (default {DEFAULT_WORKERS})",
    )
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for --scheduler (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (bits_per_char, loss_nats, chars, seconds, "
        "chars_per_second, peak_rss_bytes of this process: with --dask the client's...)",
    )


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size in bytes (``None`` where unknown)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # KiB on Linux


def _check_args(args) -> None:
    sizes = (("--chunk-len", args.chunk_len), ("--block", args.block))
    if args.max_chars is not None:
        sizes += (("--max-chars", args.max_chars),)
    for option, v in sizes:
        if v < 1:
            raise ValueError(f"{option} must be a positive int, got {v}")
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers must be a positive int, got {args.workers}")
        if args.scheduler is not None:
            raise ValueError("--workers is for the LocalCluster; a --scheduler has its own")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if (args.dask or args.scheduler) and (args.backend or args.device):
        if (args.backend or "numpy") != "numpy" or args.device not in (None, "cpu"):
            raise ValueError(
                "--dask scores with NumPy on the workers' CPUs; --backend and --device "
                "are for one machine"
            )


def run_score(args) -> int:
    """``portable-rnn score``: 0, or 2 with one line on stderr for every bad input."""
    from .._creation import to_backend
    from ._checkpoint import CheckpointError
    from ._cli import USER_ERRORS, _enable_x64_if_needed, _fail
    from ._runfile import master_dtype, read_run, saved_config

    dask = bool(args.dask or args.scheduler)
    try:
        _check_args(args)
        if dask:
            _import_dask()
        try:
            header, arrays = read_run(args.checkpoint, groups=("params",))  # all checked
        except CheckpointError as exc:
            raise CheckpointError(f"--checkpoint: {exc}") from None
        saved = saved_config(header)
        vocab, params = Vocabulary(header["vocab"]), arrays["params"]
        dtype = args.dtype or master_dtype(header["dtype"])
        if dask:
            params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
        else:
            _enable_x64_if_needed(args.backend, dtype)
            params = to_backend(params, args.backend, args.device, dtype=dtype)
        started = time.perf_counter()
        try:
            index = index_corpus(
                args.corpus,
                vocab,
                chunk_len=args.chunk_len,
                block=args.block,
                max_chars=args.max_chars,
            )
        except CorpusError as exc:
            raise CorpusError(f"--corpus: {exc}") from None
        index_seconds = time.perf_counter() - started
        options = {"nonlinearity": saved["nonlinearity"], "progress": not args.no_progress}
        if dask:
            result, where = _run_on_dask(args, params, index, vocab, options)
        else:
            result = _score_here(params, index, vocab, options["nonlinearity"], options["progress"])
            where = _placement(params["Wy"])
    except USER_ERRORS as exc:
        return _fail("score", exc)
    except OSError as exc:  # the scheduler: unreachable, or gone
        return _fail("score", exc)
    peak = peak_rss_bytes()
    report: dict[str, Any] = {
        "bits_per_char": result.bits_per_char,
        "loss_nats": result.loss,
        "chars": result.chars,
        "corpus_chars": index.chars,
        "chunks": result.chunks,
        "chunk_len": index.chunk_len,
        "block": index.block,
        "blocks": result.blocks,
        "seconds": result.seconds,
        "index_seconds": index_seconds,
        "chars_per_second": result.chars_per_second,
        "peak_rss_bytes": peak,
        "where": where,
        "dtype": dtype,
        "corpus": index.path,
        "checkpoint": os.fspath(args.checkpoint),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    rss = "unknown" if peak is None else f"{peak / 2**20:,.1f} MiB"
    first = "" if index.predictions == index.chars - 1 else f"the first {result.chars:,} of "
    print(
        f"{result.bits_per_char:.4f} bits/char ({result.loss:.4f} nats) over {first}"
        f"{index.chars - 1 if first else result.chars:,} chars of {index.path} in "
        f"{result.chunks:,} chunks of {index.chunk_len} (each from the zero state)"
    )
    print(
        f"{where}, {dtype}: {result.seconds:.2f} s ({result.chars_per_second:,.0f} chars/s) "
        f"after a {index_seconds:.2f} s check of the file; peak RSS {rss}"
    )
    return 0


def _placement(like) -> str:
    """``numpy cpu``, ``jax gpu:0``...: the backend and device, as `fit`'s first line says."""
    from ._loop import _device_label

    return f"{_compat.backend_name(_compat.array_namespace(like))} {_device_label(like)}"


def _run_on_dask(args, params, index, vocab, options) -> tuple[ScoreResult, str]:
    from distributed import Client, LocalCluster

    if args.scheduler is not None:
        with Client(args.scheduler, timeout=args.timeout) as client:
            where = f"dask scheduler {args.scheduler}"
            return _score_dask(params, index, vocab, client=client, **options), where
    workers = args.workers or DEFAULT_WORKERS
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,  # type: ignore[arg-type]  # None: no dashboard (documented)
            # a worker's error (a block it cannot read) reaches the client, which reports
            # it in one line: not also logged by the worker
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        where = f"dask LocalCluster of {workers} worker processes"
        return _score_dask(params, index, vocab, client=client, **options), where
