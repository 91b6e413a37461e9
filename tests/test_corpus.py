"""Reading a corpus: in chunks, checked as it is read, in bounded memory (issue 17, point 4).

- `read_corpus` gives the indices, vocabulary and digest the whole-text functions
  (`load_corpus`, `Vocabulary.from_text`, `Vocabulary.encode`, `corpus_digest`) give,
  with any chunk size, characters split across chunks included;
- a NUL byte or bytes that are not UTF-8 are refused with their byte offset, at the
  first chunk that holds them: a 2 GiB (sparse) file of NUL bytes after one chunk;
- the indices take the smallest unsigned dtype; memory stays within the indices plus
  a few chunks; `TextBatches` are views of the indices with the old batches' values;
- a checkpoint's digest and vocabulary are still what the code before streaming wrote,
  so checkpoints made before resume.
"""

import tracemalloc

import numpy as np
import pytest

from portable_rnn import train as tr
from portable_rnn.train import _text
from portable_rnn.train._loop import _Run

# 1-, 2-, 3- and 4-byte characters, a byte-order mark, CR LF and a tab
MIXED = "\ufeffNaïve café — €5 at 𝄞 o'clock,\r\nthe 日本 text\tends 😀.\n"


def _write(tmp_path, data, name="corpus.txt"):
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def _old_style(text):
    """What the code before streaming computed from the whole text."""
    vocab = tr.Vocabulary.from_text(text)
    return vocab, vocab.encode(text), tr.corpus_digest(text)


# -- the same result as the whole-text functions ---------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64, tr.DEFAULT_CHUNK_SIZE])
def test_read_corpus_equals_the_whole_text_functions(chunk_size, tmp_path):
    text = MIXED * 37
    path = _write(tmp_path, text)
    corpus = tr.read_corpus(path, chunk_size=chunk_size)
    vocab, ids, digest = _old_style(text)
    assert corpus.vocab == vocab
    assert corpus.ids.dtype == np.uint8 and corpus.ids.shape == (len(text),)
    assert np.array_equal(corpus.ids, ids)
    assert corpus.digest == digest
    assert corpus.chars == len(text) and corpus.source == str(path)
    assert not corpus.ids.flags.writeable
    assert tr.load_corpus(path) == (text, str(path))


def test_characters_split_across_chunks_are_decoded_whole(tmp_path):
    # every boundary of a 3-byte chunk cuts some 2-, 3- or 4-byte character
    text = "é€𝄞a" * 10
    data = text.encode()
    assert any(0x80 <= data[k] < 0xC0 for k in range(3, len(data), 3))  # a continuation byte
    corpus = tr.read_corpus(_write(tmp_path, data), chunk_size=3)
    assert corpus.vocab.chars == "a\xe9\u20ac\U0001d11e"
    assert corpus.ids.tolist() == [1, 2, 3, 0] * 10


def test_the_default_corpus_goes_through_the_same_path():
    corpus = tr.read_corpus()
    text, source = tr.load_corpus()
    vocab, ids, digest = _old_style(text)
    assert corpus.source == source == tr.DEFAULT_CORPUS
    assert corpus.vocab == vocab and corpus.digest == digest
    assert corpus.ids.dtype == np.uint8 and np.array_equal(corpus.ids, ids)


@pytest.mark.parametrize(
    ("distinct", "dtype"),
    [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65_536, np.uint16), (65_537, np.uint32)],
)
def test_indices_take_the_smallest_unsigned_dtype(distinct, dtype, tmp_path):
    points = [p for p in range(0x20, 0x20 + distinct + 2048) if not 0xD800 <= p < 0xE000]
    text = "".join(map(chr, points[:distinct]))
    text = text + text[::-1]
    corpus = tr.read_corpus(_write(tmp_path, text), chunk_size=4096)
    assert len(corpus.vocab) == distinct and corpus.ids.dtype == dtype
    vocab, ids, digest = _old_style(text)
    assert corpus.vocab == vocab and np.array_equal(corpus.ids, ids) and corpus.digest == digest


def test_a_given_vocabulary_indexes_the_text(tmp_path):
    text = MIXED * 3
    path = _write(tmp_path, text)
    extra = "".join(sorted(set(text) | set("XYZ")))[::-1]  # a superset, in another order
    vocab = tr.Vocabulary(extra)
    corpus = tr.read_corpus(path, vocab, chunk_size=5)
    assert corpus.vocab is vocab
    assert np.array_equal(corpus.ids, vocab.encode(text)) and corpus.ids.dtype == np.uint8
    assert corpus.digest == tr.corpus_digest(text)


def test_characters_outside_a_given_vocabulary_are_named(tmp_path):
    path = _write(tmp_path, "abc abd\n" * 100 + "zebra")
    with pytest.raises(tr.CorpusError) as info:
        tr.read_corpus(path, tr.Vocabulary("abcd \n"), chunk_size=16)
    message = str(info.value)
    assert str(path) in message and "'erz'" in message and "\n" not in message


# -- refused, with the file and the byte offset --------------------------------------------


@pytest.mark.parametrize(
    ("data", "offset", "chunk_size"),
    [
        (b"a" * 5000 + b"\xff" + b"b" * 100, 5000, 1024),  # a byte that is never UTF-8
        (b"a" * 1023 + b"\xe2\x82" + b"x" * 10, 1023, 1024),  # a broken 3-byte character
        (b"a" * 1023 + "€".encode()[:2], 1023, 1024),  # cut at the end of the file
        ("é".encode() * 600 + b"\x80", 1200, 1000),  # a stray continuation byte
        (b"ok " * 10 + b"\xc0\xaf", 30, 4),  # an overlong encoding of '/'
        (b"ok " * 10 + b"\xed\xa0\x80", 30, 4),  # a surrogate
        (b"abc\xc3\x00def", 3, 1024),  # a character cut by a NUL: the character first
    ],
)
def test_bytes_that_are_not_utf8_are_refused_with_their_offset(data, offset, chunk_size, tmp_path):
    path = _write(tmp_path, data)
    for read in (
        lambda: tr.read_corpus(path, chunk_size=chunk_size),
        lambda: tr.load_corpus(path),
    ):
        with pytest.raises(tr.CorpusError, match="not UTF-8") as info:
            read()
        assert str(path) in str(info.value) and f"byte {offset} " in str(info.value)
        assert "\n" not in str(info.value)


def test_a_nul_after_the_first_chunk_is_refused_with_its_offset(tmp_path):
    path = _write(tmp_path, b"a" * 3000 + b"\x00" + b"b" * 10)
    with pytest.raises(tr.CorpusError, match="binary") as info:
        tr.read_corpus(path, chunk_size=1024)
    assert str(path) in str(info.value) and "byte 3000" in str(info.value)


class _Counting:
    """A binary stream that counts the bytes read from it."""

    def __init__(self, stream):
        self.stream, self.read_bytes = stream, 0

    def read(self, n):
        data = self.stream.read(n)
        self.read_bytes += len(data)
        return data

    def seek(self, offset):
        return self.stream.seek(offset)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()


def test_a_large_nul_file_is_refused_after_its_first_chunk(tmp_path, monkeypatch):
    path = tmp_path / "zeros.bin"
    with open(path, "wb") as fh:
        fh.truncate(2 << 30)  # 2 GiB of NUL bytes, sparse: nothing large is written
    opened = []

    def counting_open(p):
        stream, name = open_(p)
        opened.append(_Counting(stream))
        return opened[-1], name

    open_ = _text._open
    monkeypatch.setattr(_text, "_open", counting_open)
    for read in (lambda: tr.read_corpus(path), lambda: tr.load_corpus(path)):
        with pytest.raises(tr.CorpusError, match="NUL byte at byte 0"):
            read()
        assert opened[-1].read_bytes == tr.DEFAULT_CHUNK_SIZE
    assert len(opened) == 2


@pytest.mark.parametrize(
    ("where", "message"),
    [("empty", "is empty"), ("missing", "does not exist"), ("directory", "is not a file")],
)
def test_empty_missing_or_directory_is_refused(where, message, tmp_path):
    path = {
        "empty": _write(tmp_path, b""),
        "missing": tmp_path / "missing.txt",
        "directory": tmp_path,
    }[where]
    for read in (lambda: tr.read_corpus(path), lambda: tr.load_corpus(path)):
        with pytest.raises(tr.CorpusError, match=message) as info:
            read()
        assert str(path) in str(info.value)


def test_bad_arguments_are_named(tmp_path):
    path = _write(tmp_path, "text")
    with pytest.raises(TypeError, match="corpus path"):
        tr.read_corpus(3)
    with pytest.raises(TypeError, match="vocab"):
        tr.read_corpus(path, "text")
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="chunk_size"):
            tr.read_corpus(path, chunk_size=bad)


class _Failing:
    """A stream that gives one chunk, then fails as a disk or network error would."""

    def __init__(self):
        self.calls = 0

    def read(self, n):
        self.calls += 1
        if self.calls > 1:
            raise OSError(5, "Input/output error")
        return b"a" * n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_a_read_error_is_a_corpus_error_naming_the_file(monkeypatch):
    monkeypatch.setattr(_text, "_open", lambda p: (_Failing(), "remote.txt"))
    with pytest.raises(
        tr.CorpusError, match="'remote.txt' cannot be read at byte 64: Input/output"
    ):
        tr.read_corpus("remote.txt", chunk_size=64)


class _Changing:
    """A stream whose content is ``first`` until it is rewound, then ``second``."""

    def __init__(self, first, second):
        self.data, self.second, self.pos = first, second, 0

    def read(self, n):
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def seek(self, offset):
        self.data, self.pos = self.second, offset

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.mark.parametrize(
    "second", [b"abcd" * 100, b"abce" + b"abcd" * 99, b"abcd" * 99, b"abcd" * 101]
)
def test_a_file_that_changes_between_the_passes_is_refused(second, monkeypatch):
    first = b"abcd" * 100
    monkeypatch.setattr(_text, "_open", lambda p: (_Changing(first, second), "moving.txt"))
    if second == first:
        assert tr.read_corpus("moving.txt", chunk_size=64).chars == 400
        return
    with pytest.raises(tr.CorpusError, match="'moving.txt' changed while"):
        tr.read_corpus("moving.txt", chunk_size=64)


# -- memory -----------------------------------------------------------------------------------


def test_memory_is_the_indices_plus_a_few_chunks(tmp_path):
    block = ("Le café — naïve 𝄞 text, " * 40 + "plain ascii words, more of them.\n" * 200).encode()
    path = _write(tmp_path, block * (20_000_000 // len(block) + 1))  # 20 MB, 4-byte characters
    chunk_size = 1 << 18
    tracemalloc.start()
    try:
        corpus = tr.read_corpus(path, chunk_size=chunk_size)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        batches = tr.TextBatches(corpus.ids, batch=32, seq_len=64)
        x, y = batches[len(batches) - 1]
        after, batch_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert corpus.ids.dtype == np.uint8 and corpus.chars > 19_000_000
    # the indices (1 byte a character), the working set of a chunk (17 bytes a byte at
    # worst) and the code-point tables (1.1 MB each); the text as a str would be 4 bytes
    # a character here, int32 indices 4, the code before streaming about 20
    assert peak < corpus.chars + 32 * chunk_size + 4_000_000
    assert peak < 2 * corpus.chars
    # batches are views: what they hold beyond the indices is the one chunk asked for
    assert batch_peak - before < 4 * x.nbytes + 100_000 and after - before < 2 * x.nbytes + 10_000


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
@pytest.mark.parametrize(
    "text", ["", "\n", "\n\n", "a", "ab\n", "\nab", "ab\n\n\ncd\nef", MIXED * 3]
)
def test_line_spans_are_the_non_empty_lines_in_any_block_size(block, text, monkeypatch):
    monkeypatch.setattr(_text, "_LINE_BLOCK", block)
    vocab = tr.Vocabulary.from_text(text or "x")
    ids = vocab.encode(text).astype(np.uint8)
    nl = vocab.chars.index("\n") if "\n" in vocab.chars else None
    starts, ends = tr.line_spans(ids, nl)
    assert starts.dtype == ends.dtype == np.int32
    assert [text[a:b] for a, b in zip(starts, ends, strict=True)] == [
        line for line in text.split("\n") if line
    ]


def test_lines_take_a_few_bytes_a_sequence():
    rng = np.random.default_rng(0)
    n = 20_000_000
    ids = rng.integers(1, 60, n).astype(np.uint8)
    ids[rng.integers(0, n, n // 50)] = 0  # newlines: lines of 50 characters on average
    tracemalloc.start()
    try:
        starts, ends = tr.line_spans(ids, 0)
        spans, spans_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        batches = tr.LineBatches(ids, 0, 32, 64, spans=(starts, ends), seed=0)
        batches.at(len(batches) + 1)  # a shuffled pass holds its order
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines, sequences = len(starts), batches.sequences
    assert lines > 350_000 and sequences > lines  # some lines are cut into pieces
    # ids are never copied; the spans 8 bytes a line (block temporaries aside: 9 MB),
    # the batches 10 bytes a sequence (position, length, the pass's order)
    assert spans <= 8 * lines + 1000 and spans_peak < 24 * lines + 9_000_000
    assert held - spans < 10 * sequences + 100_000 and peak - spans < 40 * sequences


# -- batches ----------------------------------------------------------------------------------


def _old_batches(ids, batch, seq_len):
    """The construction of `TextBatches` before it took views (int64 fancy indexing)."""
    per_stream = (len(ids) - 1) // batch
    starts = np.arange(batch) * per_stream
    cols = np.arange(per_stream)
    inputs, targets = ids[starts[:, None] + cols], ids[starts[:, None] + cols + 1]
    cut = [slice(j * seq_len, (j + 1) * seq_len) for j in range(per_stream // seq_len)]
    return [(inputs[:, c], targets[:, c]) for c in cut]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.int64])
@pytest.mark.parametrize(("n", "batch", "seq_len"), [(1000, 4, 7), (1001, 4, 7), (641, 10, 64)])
def test_batches_have_the_values_of_the_old_construction(dtype, n, batch, seq_len):
    ids = np.random.default_rng(n).integers(0, 200, n).astype(dtype)
    kept = ids.copy()
    batches = tr.TextBatches(ids, batch, seq_len)
    old = _old_batches(ids, batch, seq_len)
    assert len(batches) == len(old) >= 1
    for j, (x_old, y_old) in enumerate(old):
        x, y = batches[j]
        assert x.dtype == y.dtype == np.int32 and x.shape == y.shape == (batch, seq_len)
        assert np.array_equal(x, x_old) and np.array_equal(y, y_old)
        x[...] = -1  # a batch is the caller's: writing to it changes nothing else
    assert np.array_equal(ids, kept) and np.array_equal(batches[0][0], old[0][0])


def test_batches_of_read_only_indices_run_a_model_step(tmp_path):
    corpus = tr.read_corpus(_write(tmp_path, MIXED * 20))
    batches = tr.TextBatches(corpus.ids, batch=3, seq_len=8)
    params = tr.init_char_model(len(corpus.vocab), cell="gru", hidden=5, embed=4, seed=0)
    x, y = (tr.to_device_like(a, params["Wy"]) for a in batches[0])
    loss, _, _ = tr.char_model_loss_and_grads(params, x, y, None)
    assert np.isfinite(float(loss))


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        (np.zeros(100, dtype=np.float32), TypeError, "integer dtype"),
        (np.zeros((10, 10), dtype=np.int32), ValueError, "1-D"),
        (np.full(100, -1, dtype=np.int32), ValueError, r"\[0, 2\*\*31\)"),
        (np.full(100, 2**31, dtype=np.int64), ValueError, r"\[0, 2\*\*31\)"),
    ],
)
def test_batches_refuse_ids_that_are_not_indices(ids, error, match):
    with pytest.raises(error, match=match):
        tr.TextBatches(ids, batch=2, seq_len=4)


# -- checkpoints --------------------------------------------------------------------------------

TINY = dict(cell="gru", hidden=6, layers=1, embed=4, seq_len=8, batch=2, steps=3, eval_every=3)


def test_a_checkpoint_keeps_the_digest_and_vocabulary_of_before_and_resumes(tmp_path):
    text = MIXED * 40
    path = _write(tmp_path, text)
    config = tr.TrainConfig(**TINY, sample_length=0, backend="numpy", dtype="float64")
    tr.fit(config, corpus=path, out=tmp_path / "a.npz")
    header, arrays = tr.load_checkpoint(tmp_path / "a.npz")
    # what the code before streaming wrote, from the whole text
    vocab, _, digest = _old_style(text)
    assert header["corpus"] == {"source": str(path), "sha256": digest, "chars": len(text)}
    assert header["vocab"] == vocab.chars
    more = tr.TrainConfig(**{**TINY, "steps": 5}, sample_length=0, backend="numpy")
    resumed = tr.fit(more, corpus=path, resume=tmp_path / "a.npz")
    assert resumed.step == 5 and len(resumed.train_loss) == 5


def test_a_checkpoint_vocabulary_in_another_order_indexes_the_corpus(tmp_path):
    text = MIXED * 40
    path = _write(tmp_path, text)
    config = tr.TrainConfig(**TINY, sample_length=0, backend="numpy", dtype="float64")
    tr.fit(config, corpus=path, out=tmp_path / "a.npz")
    header, arrays = tr.load_checkpoint(tmp_path / "a.npz")
    header["vocab"] = header["vocab"][::-1]  # same size, so the parameters still fit
    tr.save_checkpoint(tmp_path / "b.npz", header, arrays)
    run = _Run(config, path, tmp_path / "b.npz")
    assert run.vocab.chars == header["vocab"]
    expected = tr.TextBatches(
        tr.split_corpus(tr.Vocabulary(header["vocab"]).encode(text), 0.1)[0], 2, 8
    )
    for j in (0, len(expected) - 1):
        assert all(np.array_equal(a, b) for a, b in zip(run.train[j], expected[j], strict=True))
