"""Text for the character-level language model: the corpus, its vocabulary and batches.

Everything here is host-side NumPy (integer indices); the model step moves one
batch at a time to the backend (`to_device_like`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

__all__ = [
    "DEFAULT_CORPUS",
    "CorpusError",
    "TextBatches",
    "Vocabulary",
    "load_corpus",
    "split_corpus",
]

#: The name of the default corpus: the documentation topics of ``pydoc_data.topics``,
#: which ship with every CPython install (``help("topics")`` shows them).
DEFAULT_CORPUS = "pydoc_data.topics"


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


def load_corpus(path=None) -> tuple[str, str]:
    """The text to train on.

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
        The file is missing, is not a file, is empty, or is binary (holds NUL
        bytes or is not UTF-8).
    """
    if path is None:
        return _default_text(), DEFAULT_CORPUS
    p = Path(path)
    if not p.exists():
        raise CorpusError(f"corpus {str(path)!r} does not exist")
    if not p.is_file():
        raise CorpusError(f"corpus {str(path)!r} is not a file")
    data = p.read_bytes()
    if not data:
        raise CorpusError(f"corpus {str(path)!r} is empty")
    if b"\x00" in data:
        raise CorpusError(f"corpus {str(path)!r} is binary (it holds NUL bytes), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"corpus {str(path)!r} is binary or not UTF-8 (byte {exc.start} cannot be decoded)"
        ) from None
    return text, str(path)


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

    Parameters
    ----------
    ids : numpy.ndarray of int, shape (n,)
        The encoded text.
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
        per_stream = (len(ids) - 1) // batch
        if per_stream < seq_len:
            raise CorpusError(
                f"{what} is too short: {len(ids)} characters make {batch} streams of "
                f"{max(per_stream, 0)} steps, fewer than one sequence (seq_len {seq_len}); "
                "use a longer corpus or a smaller batch or seq_len"
            )
        self.batch, self.seq_len = batch, seq_len
        starts = np.arange(batch) * per_stream
        cols = np.arange(per_stream)
        self._inputs = ids[starts[:, None] + cols]
        self._targets = ids[starts[:, None] + cols + 1]
        self.chunks = per_stream // seq_len

    def __len__(self) -> int:
        return self.chunks

    def __getitem__(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``j``: ``(inputs, targets)``, each ``(batch, seq_len)`` host ``int32``."""
        if not 0 <= j < self.chunks:
            raise IndexError(f"chunk {j} out of range for {self.chunks} chunks")
        cut = slice(j * self.seq_len, (j + 1) * self.seq_len)
        return self._inputs[:, cut], self._targets[:, cut]

    @property
    def characters(self) -> int:
        """Characters predicted per pass over all chunks."""
        return self.chunks * self.batch * self.seq_len
