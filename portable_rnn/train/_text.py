"""Text for the character-level language model: the corpus, its vocabulary and batches.

Everything here is host-side NumPy (integer indices); the model step moves one
batch at a time to the backend (`to_device_like`).

A corpus file is read in chunks (`read_corpus`), twice: the first pass checks
that it is UTF-8 text, counts its characters and finds its vocabulary and
SHA-256; the second writes the index of every character into one preallocated
array of the smallest unsigned dtype that holds the vocabulary. No Python object
is made per character.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CORPUS",
    "Corpus",
    "CorpusError",
    "LineBatches",
    "TextBatches",
    "Vocabulary",
    "corpus_digest",
    "line_spans",
    "load_corpus",
    "read_corpus",
    "split_corpus",
]

#: The name of the default corpus: the documentation topics of ``pydoc_data.topics``,
#: which ship with every CPython install (``help("topics")`` shows them).
DEFAULT_CORPUS = "pydoc_data.topics"
#: Bytes read at a time from a corpus file (1 MiB).
DEFAULT_CHUNK_SIZE = 1 << 20
#: One past the largest Unicode code point.
_CODE_POINTS = 0x110000


class CorpusError(ValueError):
    """A corpus that cannot be trained on: missing, empty, binary or too short."""


def _default_text() -> str:
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # pragma: no cover - stripped Python installs
        raise CorpusError(
            "the default corpus pydoc_data.topics is missing from this Python install; "
            "pass --corpus PATH"
        ) from exc
    return "\n\n".join(topics[key] for key in sorted(topics))


def _open(path) -> tuple[BinaryIO, str]:
    """The corpus as a binary stream, and its name; every check of the path first."""
    if path is None:
        return io.BytesIO(_default_text().encode("utf-8")), DEFAULT_CORPUS
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"corpus path must be a str or path-like, got {type(path).__name__}")
    name = os.fspath(path)
    if not isinstance(name, str):
        raise TypeError(f"corpus path must be a str or path-like, got {type(name).__name__}")
    p = Path(name)
    if not p.exists():
        raise CorpusError(f"corpus {name!r} does not exist")
    if not p.is_file():
        raise CorpusError(f"corpus {name!r} is not a file")
    try:
        return p.open("rb"), name
    except OSError as exc:
        raise CorpusError(f"corpus {name!r} cannot be read: {exc.strerror}") from None


class _Chunks:
    """The chunks of a UTF-8 stream, checked, with their offset and decoded text.

    Iterating gives ``(data, text)``: ``data`` the bytes read (at most
    ``chunk_size``, ``b""`` once at the end), ``text`` the characters that
    complete in it (a character split across chunks comes with the chunk that
    ends it; ``None`` when ``data`` is ASCII and nothing is pending, so that
    ``data`` itself is the text). A NUL byte or bytes that are not UTF-8 raise
    `CorpusError` naming ``name`` and the byte offset, at the chunk that holds them;
    so does an error of the operating system while reading.
    """

    def __init__(self, stream: BinaryIO, name: str, chunk_size: int):
        self.stream, self.name, self.chunk_size = stream, name, chunk_size
        self.offset = 0  # bytes read before the current chunk

    def __iter__(self):
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        while True:
            try:
                data = self.stream.read(self.chunk_size)
            except OSError as exc:
                raise CorpusError(
                    f"corpus {self.name!r} cannot be read at byte {self.offset}: {exc.strerror}"
                ) from None
            nul = data.find(b"\x00")
            pending = decoder.getstate()[0]
            if nul < 0 and data and not pending and data.isascii():
                yield data, None
            else:
                yield data, self._decode(decoder, data, nul, len(pending))
            if not data:
                return
            self.offset += len(data)

    def _decode(self, decoder, data: bytes, nul: int, pending: int) -> str:
        try:
            # up to and with a NUL, so that bad UTF-8 before it is reported first
            text = decoder.decode(data if nul < 0 else data[: nul + 1], final=not data)
        except UnicodeDecodeError as exc:
            # exc.start counts from the bytes the decoder held back from the last chunk
            raise CorpusError(
                f"corpus {self.name!r} is binary or not UTF-8 (byte "
                f"{self.offset - pending + exc.start} cannot be decoded)"
            ) from None
        if nul >= 0:
            raise CorpusError(
                f"corpus {self.name!r} is binary (it holds a NUL byte at byte "
                f"{self.offset + nul}), not text"
            )
        return text


def _code_points(data: bytes, text: str | None) -> np.ndarray:
    """The code points of a chunk: ``data``'s bytes when it is ASCII, else ``text``'s."""
    if text is None:
        return np.frombuffer(data, dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _check_chunk_size(chunk_size) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def load_corpus(path=None) -> tuple[str, str]:
    """The text to train on, as one string.

    Read in chunks of `DEFAULT_CHUNK_SIZE` bytes and checked as it is read, so
    that a binary file is refused at its first chunk that shows it. The text
    itself takes 1 to 4 bytes per character (a Python ``str``); `read_corpus`
    gives the indices the model trains on in 1 byte per character, without the
    string.

    Parameters
    ----------
    path : str or path-like, optional
        A UTF-8 text file. ``None`` gives the default corpus, the documentation
        topics of ``pydoc_data.topics`` (about 465,000 characters, in every
        CPython install), so that training works offline.

    Returns
    -------
    text : str
        The corpus.
    source : str
        ``path`` as given, or `DEFAULT_CORPUS`.

    Raises
    ------
    CorpusError
        The file is missing, is not a file, cannot be read, is empty, or is
        binary (holds NUL bytes or is not UTF-8; the byte offset is named).
    """
    stream, name = _open(path)
    with stream:
        pieces = [
            text if text is not None else data.decode("ascii")
            for data, text in _Chunks(stream, name, DEFAULT_CHUNK_SIZE)
        ]
    text = "".join(pieces)
    if not text:
        raise CorpusError(f"corpus {name!r} is empty")
    return text, name


def corpus_digest(text: str) -> str:
    """SHA-256 of the UTF-8 text: what a checkpoint records of its corpus.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Vocabulary:
    """The characters of a corpus, sorted, with their indices.

    Attributes
    ----------
    chars : str
        Every character once, in code-point order; index ``k`` is ``chars[k]``.
    """

    chars: str
    _index: ClassVar[dict[str, int]]  # per instance, set in __post_init__; not a field

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The vocabulary of ``text``."""
        return cls("".join(sorted(set(text))))

    def __post_init__(self):
        if not isinstance(self.chars, str) or not self.chars:
            raise ValueError("a vocabulary needs at least one character")
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("a vocabulary holds every character once")
        object.__setattr__(self, "_index", {c: k for k, c in enumerate(self.chars)})

    def __len__(self) -> int:
        return len(self.chars)

    def missing(self, text: str) -> str:
        """The characters of ``text`` that are not in the vocabulary (each once, in order)."""
        return "".join(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str) -> np.ndarray:
        """``text`` as indices, a NumPy ``int32`` array of shape ``(len(text),)``.

        Raises
        ------
        ValueError
            ``text`` has characters not in the vocabulary (they are named).
        """
        missing = self.missing(text)
        if missing:
            raise ValueError(f"characters not in the vocabulary: {missing!r}")
        return np.fromiter((self._index[c] for c in text), dtype=np.int32, count=len(text))

    def decode(self, indices) -> str:
        """Indices (any iterable of ints) back to text."""
        return "".join(self.chars[int(k)] for k in indices)


def _index_dtype(size: int) -> np.dtype:
    """The smallest unsigned dtype that holds the indices ``0 .. size - 1``."""
    for dtype in (np.uint8, np.uint16):
        if size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint32)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A corpus read by `read_corpus`: the index of every character, and what it is.

    Attributes
    ----------
    ids : numpy.ndarray, shape (chars,)
        The index in ``vocab`` of every character, read-only, of the smallest
        unsigned dtype that holds ``len(vocab)`` indices: ``uint8`` up to 256
        characters, ``uint16`` up to 65,536, else ``uint32``.
    vocab : Vocabulary
        The corpus's own characters, or the vocabulary `read_corpus` was given.
    digest : str
        SHA-256 of the file's bytes, 64 hexadecimal digits: equal to
        ``corpus_digest(text)`` of its text, what a checkpoint records.
    source : str
        The path as given, or `DEFAULT_CORPUS`.
    """

    ids: np.ndarray
    vocab: Vocabulary
    digest: str
    source: str

    @property
    def chars(self) -> int:
        """Characters in the corpus, ``ids.shape[0]``."""
        return int(self.ids.shape[0])


def read_corpus(path=None, vocab=None, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Corpus:
    """Read a corpus as character indices, in chunks, in bounded memory.

    Two passes over the file, ``chunk_size`` bytes at a time. The first checks
    that it is UTF-8 text (a character split between two chunks is decoded
    whole) and finds the number of characters, the vocabulary and the SHA-256
    of the bytes; it stops at the first chunk that holds a NUL byte or bytes
    that are not UTF-8, so that a large binary file is refused after one chunk.
    The second pass writes the indices into an array allocated once, with
    vectorised NumPy (code points looked up in a table), and checks that the
    file has not changed since the first pass.

    Memory: the indices, 1 byte per character for up to 256 distinct
    characters (2 up to 65,536, else 4), plus a bounded working set that does
    not grow with the file: about 17 bytes per byte of ``chunk_size`` at
    worst (the chunk, its decoded text, its code points and NumPy's index
    temporaries; 9 for ASCII chunks) and tables of every Unicode code point
    (1.1 MB, plus 1.1 to 4.5 MB for the lookup). With the default 1 MiB
    chunks a 100 MB text takes about 100 MB plus 20 MB.

    Parameters
    ----------
    path : str or path-like, optional
        A UTF-8 text file. ``None`` reads the default corpus, the documentation
        topics of ``pydoc_data.topics`` (the text `load_corpus` gives), the same way.
    vocab : Vocabulary, optional
        Index the characters with this vocabulary (a checkpoint's, to resume);
        ``None``: the corpus's own characters, sorted (`Vocabulary.from_text`).
    chunk_size : int, optional
        Bytes read at a time, at least 1; `DEFAULT_CHUNK_SIZE` (1 MiB).

    Returns
    -------
    Corpus
        ``ids`` of shape ``(chars,)``: equal to ``vocab.encode(text)`` of the
        text, in a smaller unsigned dtype; ``digest`` equal to ``corpus_digest(text)``.

    Raises
    ------
    CorpusError
        The file is missing, is not a file, cannot be read, is empty, or is
        binary: a NUL byte or bytes that are not UTF-8 (the byte offset is
        named); characters not in ``vocab`` (they are named); the file
        changed while it was read. Every message names the file.
    TypeError
        ``path`` is not a str or path-like, or ``vocab`` not a `Vocabulary`.
    ValueError
        ``chunk_size`` is not a positive int.

    Examples
    --------
    >>> corpus = read_corpus("shakespeare.txt")
    >>> corpus.ids.dtype, corpus.chars, len(corpus.vocab)
    (dtype('uint8'), 1115394, 65)
    >>> batches = TextBatches(corpus.ids, batch=32, seq_len=64)
    """
    if vocab is not None and not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a Vocabulary or None, got {type(vocab).__name__}")
    _check_chunk_size(chunk_size)
    stream, name = _open(path)
    with stream:
        chars, seen, digest = _scan(_Chunks(stream, name, chunk_size))
        if chars == 0:
            raise CorpusError(f"corpus {name!r} is empty")
        own = np.flatnonzero(seen)
        if vocab is None:
            vocab = Vocabulary("".join(map(chr, own.tolist())))
            points = own
        else:
            points = np.array([ord(c) for c in vocab.chars], dtype=np.int64)
            missing = np.setdiff1d(own, points)
            if missing.size:
                shown = "".join(map(chr, missing[:20].tolist()))
                more = f" and {missing.size - 20} more" if missing.size > 20 else ""
                raise CorpusError(
                    f"corpus {name!r} has characters not in the vocabulary: {shown!r}{more}"
                )
        stream.seek(0)
        ids = _encode(_Chunks(stream, name, chunk_size), points, chars, digest)
    ids.flags.writeable = False
    return Corpus(ids=ids, vocab=vocab, digest=digest, source=name)


def _scan(chunks: _Chunks) -> tuple[int, np.ndarray, str]:
    """Characters, code points seen (a boolean table) and SHA-256 of the stream."""
    seen = np.zeros(_CODE_POINTS, dtype=bool)
    sha = hashlib.sha256()
    chars = 0
    for data, text in chunks:
        sha.update(data)
        points = _code_points(data, text)
        seen[points] = True
        chars += points.shape[0]
    return chars, seen, sha.hexdigest()


def _encode(chunks: _Chunks, points: np.ndarray, chars: int, digest: str) -> np.ndarray:
    """The indices of the stream's characters; ``points[k]`` is the code point of index ``k``."""
    dtype = _index_dtype(len(points))
    table = np.zeros(_CODE_POINTS, dtype=dtype)
    table[points] = np.arange(len(points), dtype=dtype)
    ids = np.empty(chars, dtype=dtype)
    sha = hashlib.sha256()
    done = 0
    for data, text in chunks:
        sha.update(data)
        codes = _code_points(data, text)
        if done + codes.shape[0] > chars:
            break
        np.take(table, codes, out=ids[done : done + codes.shape[0]])
        done += codes.shape[0]
    else:
        if done == chars and sha.hexdigest() == digest:
            return ids
    raise CorpusError(f"corpus {chunks.name!r} changed while it was being read; read it again")


def split_corpus(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The training part (first ``1 - val_fraction``) and the held-out end of ``ids``.

    Parameters
    ----------
    ids : numpy.ndarray, shape (n,)
        The encoded corpus.
    val_fraction : float
        In (0, 1); at least one element is held out.

    Returns
    -------
    train, val : numpy.ndarray
        Shapes ``(n - k,)`` and ``(k,)``, ``k = max(1, round(n * val_fraction))``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(len(ids) * val_fraction))
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


class TextBatches:
    """A corpus as ``batch`` parallel streams, cut into chunks for truncated BPTT.

    Stream ``b`` is the ``b``-th contiguous ``1/batch`` of the text, so chunk
    ``j + 1`` of every stream continues where chunk ``j`` ended: the hidden
    state at the end of one chunk is the right initial state of the next. The
    ragged end (less than one chunk per stream) is left out.

    The streams are views of ``ids`` (no copy is made, nothing is written to
    it); each chunk is converted to ``int32`` when it is asked for, so the whole
    text costs what ``ids`` costs (1 byte per character from `read_corpus` for
    up to 256 distinct characters) and one chunk ``8 * batch * seq_len`` bytes.

    Parameters
    ----------
    ids : numpy.ndarray of an integer dtype, shape (n,)
        The encoded text, ``0 <= ids < 2**31`` (any integer dtype: `read_corpus`
        gives ``uint8``, ``uint16`` or ``uint32``, `Vocabulary.encode` ``int32``).
    batch : int
        Streams, the batch size ``m``.
    seq_len : int
        Time steps per chunk, ``T``.
    what : str, optional
        How errors name the text (``"the training text"``...).

    Raises
    ------
    CorpusError
        The text is too short for one chunk of ``seq_len`` steps per stream.
    TypeError
        ``ids`` is not of an integer dtype.
    ValueError
        ``ids`` is not 1-D or has values outside ``[0, 2**31)``; ``batch`` or
        ``seq_len`` is not a positive int.

    Examples
    --------
    >>> batches = TextBatches(ids, batch=32, seq_len=64)
    >>> inputs, targets = batches[0]      # each (32, 64); targets[:, t] = inputs[:, t + 1]
    """

    def __init__(self, ids, batch: int, seq_len: int, what: str = "the text"):
        for name, v in (("batch", batch), ("seq_len", seq_len)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be of an integer dtype, got {ids.dtype}")
        if ids.size and not np.can_cast(ids.dtype, np.uint16):  # else every value fits
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high > np.iinfo(np.int32).max:
                raise ValueError(f"ids must be in [0, 2**31), got values in [{low}, {high}]")
        per_stream = (len(ids) - 1) // batch
        if per_stream < seq_len:
            raise CorpusError(
                f"{what} is too short: {len(ids)} characters make {batch} streams of "
                f"{max(per_stream, 0)} steps, fewer than one sequence (seq_len {seq_len}); "
                "use a longer corpus or a smaller batch or seq_len"
            )
        self.batch, self.seq_len = batch, seq_len
        # stream b is ids[b * per_stream : (b + 1) * per_stream], targets one further on
        self._inputs = ids[: batch * per_stream].reshape(batch, per_stream)
        self._targets = ids[1 : batch * per_stream + 1].reshape(batch, per_stream)
        self.chunks = per_stream // seq_len

    def __len__(self) -> int:
        return self.chunks

    def __getitem__(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``j``: ``(inputs, targets)``, each a new host ``int32`` ``(batch, seq_len)``."""
        if not 0 <= j < self.chunks:
            raise IndexError(f"chunk {j} out of range for {self.chunks} chunks")
        cut = slice(j * self.seq_len, (j + 1) * self.seq_len)
        return self._inputs[:, cut].astype(np.int32), self._targets[:, cut].astype(np.int32)

    @property
    def characters(self) -> int:
        """Characters predicted per pass over all chunks."""
        return self.chunks * self.batch * self.seq_len


#: Characters looked at a time when `line_spans` looks for newlines (bounded temporaries).
_LINE_BLOCK = 1 << 20


def _position_dtype(n: int) -> np.dtype:
    """``int32`` for positions in a text of fewer than ``2**31`` characters, else ``int64``."""
    return np.dtype(np.int32 if n < np.iinfo(np.int32).max else np.int64)


def line_spans(ids, newline) -> tuple[np.ndarray, np.ndarray]:
    """Where the non-empty lines of an encoded text are.

    A line ends at a newline character; a ``"\\r"`` before it is a character of the
    line. Empty lines are left out; a last line without a newline counts as a line.
    The text is looked at in blocks of a million characters, so the temporaries do
    not grow with it; the result takes 8 bytes per non-empty line (16 for a text of
    ``2**31`` characters or more).

    Parameters
    ----------
    ids : numpy.ndarray of an integer dtype, shape (n,)
        The encoded text (`Corpus.ids`).
    newline : int or None
        The index of ``"\\n"`` in the vocabulary; ``None`` when the text has none
        (then it is one line).

    Returns
    -------
    starts, ends : numpy.ndarray, shape (lines,)
        ``ids[starts[k]:ends[k]]`` is the ``k``-th non-empty line without its
        newline; ``ends[k]`` is the position of its newline, or ``n`` for a last
        line without one. ``int32`` (``int64`` for ``2**31`` characters or more).

    Examples
    --------
    >>> vocab = Vocabulary("\\nab")
    >>> line_spans(vocab.encode("ab\\n\\nb"), 0)
    (array([0, 4], dtype=int32), array([2, 5], dtype=int32))
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array, got {ids.dtype} of shape {ids.shape}")
    n = int(ids.shape[0])
    dtype = _position_dtype(n)
    if newline is None:
        breaks = np.zeros(0, dtype)
    else:
        breaks = np.concatenate(
            [
                np.flatnonzero(ids[i : i + _LINE_BLOCK] == newline).astype(dtype) + dtype.type(i)
                for i in range(0, n, _LINE_BLOCK)
            ]
            or [np.zeros(0, dtype)]
        )
    starts = np.concatenate([np.zeros(1, dtype), breaks + dtype.type(1)])
    ends = np.concatenate([breaks, np.full(1, n, dtype)])
    keep = ends > starts
    return starts[keep], ends[keep]


class LineBatches:
    """The lines of a text as batches of variable-length sequences, padded.

    Each non-empty line is one sequence: the model reads a newline and then the
    line's characters, and predicts the line's characters and then its newline
    (a last line without one is given one), so a line of ``k`` characters makes
    ``k + 1`` predictions and the model learns where lines end. A line longer
    than ``seq_len - 1`` characters is cut into consecutive pieces of at most
    ``seq_len`` steps, each a sequence of its own (it reads the character before
    its first target). Every sequence starts from the zero state: nothing is
    carried from one batch to the next. Empty lines are left out.

    A batch holds ``batch`` sequences padded to the longest of them (``T <=
    seq_len``); ``lengths[j]`` says how many steps of row ``j`` are real, the
    rest are padding (index 0 in the inputs and targets), for
    ``multilayer_forward(lengths=...)`` and the loss's mask.

    Memory: ``ids`` is not copied; 6 bytes per sequence (10 for a text of
    ``2**31`` characters or more) and 4 more for the order of a shuffled pass,
    about 35 while they are laid out, and a few dozen bytes per element of a
    batch while it is made.

    Parameters
    ----------
    ids : numpy.ndarray of an integer dtype, shape (n,)
        The encoded text (`Corpus.ids`).
    newline : int or None
        The index of ``"\\n"`` in the vocabulary (``None``: the text has none; it is
        one line, and index 0 stands for the newline it lacks).
    batch : int
        Sequences per batch, ``m``.
    seq_len : int
        The most steps of one sequence, ``T``.
    spans : (numpy.ndarray, numpy.ndarray), optional
        ``(starts, ends)`` of the lines to use, as `line_spans` gives them (a
        part of them: the training or held-out lines); default: every
        non-empty line of ``ids``.
    seed : int, optional
        ``None``: the sequences in the order of the text, every one in each pass,
        the last batch smaller if need be (validation). An int: each pass in its
        own order, a permutation drawn from ``seed`` and the pass's number, in
        ``len(self)`` full batches; the rest of the pass is left out (training).
    what : str, optional
        How errors name the text.

    Raises
    ------
    CorpusError
        No line to make a sequence of, or (with ``seed``) fewer sequences than
        ``batch``.
    ValueError
        ``batch`` or ``seq_len`` is not a positive int; ``ids`` not a 1-D integer array.

    Examples
    --------
    >>> batches = LineBatches(corpus.ids, corpus.vocab.chars.find("\\n"), 32, 64, seed=0)
    >>> inputs, targets, lengths = batches.at(step)   # (32, T), (32, T), (32,)
    """

    def __init__(
        self, ids, newline, batch: int, seq_len: int, *, spans=None, seed=None, what="the text"
    ):
        for name, v in (("batch", batch), ("seq_len", seq_len)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}")
        ids = np.asarray(ids)
        starts, ends = line_spans(ids, newline) if spans is None else spans
        if len(starts) == 0:
            raise CorpusError(f"{what} has no non-empty line")
        self._ids, self._newline = ids, 0 if newline is None else int(newline)
        self.batch, self.seq_len, self.seed = batch, seq_len, seed
        self.lines = len(starts)
        # line k predicts its characters and its newline: ends - starts + 1 steps, in pieces
        dtype = _position_dtype(len(ids) + 1)
        starts, ends = starts.astype(dtype), ends.astype(dtype)  # copies: the spans are ours
        steps = ends - starts + 1
        pieces = (steps - 1) // seq_len + 1
        total = int(pieces.sum(dtype=np.int64))
        length_dtype = np.uint16 if seq_len <= np.iinfo(np.uint16).max else np.int32
        if total == len(starts):  # no line is cut: no temporaries per piece
            self._first, self._length = starts, steps.astype(length_dtype)
        else:
            # in the positions' dtype (a piece holds a character at least: they fit)
            line = np.repeat(np.arange(len(starts), dtype=dtype), pieces)  # each piece's line
            offset = np.arange(total, dtype=dtype)
            offset -= (np.cumsum(pieces, dtype=dtype) - pieces)[line]  # the piece in its line
            offset *= seq_len  # its first step in the line
            self._first = starts[line]
            self._first += offset
            length = steps[line]
            length -= offset
            self._length = np.minimum(length, seq_len).astype(length_dtype)
        self.sequences = total
        self.characters = int(steps.sum(dtype=np.int64))
        if seed is None:
            self._batches = -(-total // batch)
        else:
            self._batches = total // batch
            if self._batches == 0:
                raise CorpusError(
                    f"{what} is too short: {self.lines} lines make {total} sequences (of at "
                    f"most seq_len {seq_len} steps), fewer than one batch of {batch}; use a "
                    "longer corpus or a smaller batch"
                )
        self._order: tuple[int, Any] = (-1, None)  # (pass, its permutation)

    def __len__(self) -> int:
        return self._batches

    def __getitem__(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch ``j`` of the first pass: ``at(j)``."""
        if not 0 <= j < self._batches:
            raise IndexError(f"batch {j} out of range for {self._batches} batches")
        return self.at(j)

    def _rows(self, step: int) -> np.ndarray:
        """The sequences of the batch of ``step``: indices into the pieces."""
        pass_, j = divmod(step, self._batches)
        cut = slice(j * self.batch, (j + 1) * self.batch)
        if self.seed is None:
            return np.arange(self.sequences)[cut]
        if self._order[0] != pass_:
            order = np.arange(self.sequences, dtype=np.uint32 if self.sequences < 2**32 else None)
            np.random.default_rng([self.seed, pass_]).shuffle(order)
            self._order = (pass_, order)
        return self._order[1][cut]

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch of training step ``step`` (``step >= 0``; pass ``step // len(self)``).

        Returns
        -------
        inputs, targets : numpy.ndarray of int32, shape (m, T)
            ``T`` is the longest of the batch's sequences; ``targets[j, t]`` follows
            ``inputs[j, t]`` in the text for ``t < lengths[j]``; 0 past it (padding).
        lengths : numpy.ndarray of int32, shape (m,)
            The real steps of every row, from 1 to ``seq_len``.
        """
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        rows = self._rows(int(step))
        first = self._first[rows].astype(np.int64)
        lengths = self._length[rows].astype(np.int32)
        T = int(lengths.max())
        pos = first[:, None] + np.arange(T)  # position of every target
        real = np.arange(T) < lengths[:, None]
        n = self._ids.shape[0]
        # the input before the text's first character, and the target after a last line
        # without a newline, are a newline
        inputs = np.where(pos > 0, np.take(self._ids, np.clip(pos - 1, 0, n - 1)), self._newline)
        targets = np.where(pos < n, np.take(self._ids, np.clip(pos, 0, n - 1)), self._newline)
        inputs = np.where(real, inputs, 0).astype(np.int32)
        targets = np.where(real, targets, 0).astype(np.int32)
        return inputs, targets, lengths
