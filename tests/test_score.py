"""``portable-rnn score``: a checkpoint's bits/char over a text read in pieces.

One tiny float64 LSTM checkpoint (3 steps) of a corpus with 2-, 3- and 4-byte UTF-8
characters, trained once per module. The one-machine score must equal a reference that
runs every chunk alone through `char_model_forward`; JAX and Dask (a LocalCluster of
2 worker processes, through the command line) must equal NumPy; a 200 MB file must be
checked whole in bounded memory; every bad input is one line on stderr, exit status 2,
and nothing is written.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from portable_rnn.__main__ import main
from portable_rnn.train import TrainConfig, Vocabulary, char_model_forward, fit
from portable_rnn.train._runfile import read_run
from portable_rnn.train._score import index_corpus, read_block, score

# ASCII, 2-byte (é, ï), 3-byte (€, —) and 4-byte (𝄞) UTF-8 characters
WORDS = "the quick brown fox jumps over a lazy dog café naïve 5€ — 𝄞 clef and frogs".split()


def make_text(chars: int, seed: int = 0) -> str:
    """Lines of `WORDS`, exactly ``chars`` characters long."""
    rng = random.Random(seed)
    lines, n = [], 0
    while n < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + ".\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)[:chars]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A float64 LSTM checkpoint of `make_text`'s characters, its vocabulary and params."""
    d = tmp_path_factory.mktemp("score")
    corpus = d / "train.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    config = TrainConfig(
        cell="lstm", hidden=8, layers=1, embed=4, seq_len=16, batch=4, steps=3,
        eval_every=3, sample_length=0, dtype="float64", backend="numpy",
    )  # fmt: skip
    fit(config, corpus=corpus, out=d / "m.npz", progress=False)
    header, arrays = read_run(d / "m.npz", groups=("params",))
    vocab = Vocabulary(header["vocab"])
    assert set("é€—𝄞") <= set(vocab.chars)
    return SimpleNamespace(dir=d, path=d / "m.npz", vocab=vocab, params=arrays["params"])


def reference(params, vocab: Vocabulary, text: str, chunk_len: int) -> tuple[float, int]:
    """Mean nats per predicted character: every chunk alone through `char_model_forward`."""
    ids = vocab.encode(text)
    total, count = [], 0
    for start in range(0, len(ids) - 1, chunk_len):
        x = ids[start : start + chunk_len]
        y = ids[start + 1 : start + chunk_len + 1]
        x = x[: len(y)]
        loss, _, _ = char_model_forward(params, x[None, :], y[None, :])
        total.append(float(loss) * len(y))
        count += len(y)
    assert count == len(ids) - 1
    return math.fsum(total) / count, count


def write(tmp_path: Path, text: str, name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- the numbers

# (characters, L, B): blocks and chunks that end exactly, a short last chunk, a short last
# block, one chunk shorter than L, the shortest text (2 characters: one prediction)
SHAPES = [(16 * 4 * 3 + 1, 16, 4), (1000, 16, 4), (1000, 7, 5), (10, 16, 4), (2, 16, 4)]


@pytest.mark.parametrize(("chars", "chunk_len", "block"), SHAPES)
def test_numpy_equals_chunks_scored_alone(model, tmp_path, chars, chunk_len, block):
    text = make_text(chars, seed=chars)
    path = write(tmp_path, text)
    result = score(model.params, path, model.vocab, chunk_len=chunk_len, block=block)
    want, count = reference(model.params, model.vocab, text, chunk_len)
    assert result.chars == count == chars - 1
    assert result.chunks == -(-count // chunk_len)
    assert result.blocks == -(-result.chunks // block)
    assert result.loss == pytest.approx(want, rel=1e-12, abs=0)
    assert result.bits_per_char == pytest.approx(want / math.log(2), rel=1e-12, abs=0)


def test_max_chars_scores_the_first_characters_and_checks_them_all(model, tmp_path):
    text = make_text(1000)
    path = write(tmp_path, text)
    result = score(model.params, path, model.vocab, chunk_len=16, block=4, max_chars=100)
    want, _ = reference(model.params, model.vocab, text[:101], 16)
    assert result.chars == 100
    assert result.loss == pytest.approx(want, rel=1e-12, abs=0)
    write(tmp_path, text + "\x01")  # a bad character far past the first 100 is found
    with pytest.raises(ValueError, match=r"'\\x01' \(U\+0001\) at character 1000"):
        score(model.params, path, model.vocab, chunk_len=16, block=4, max_chars=100)


@pytest.mark.parametrize("piece", [1, 3, 7, 4096])
def test_block_offsets_are_byte_offsets_of_their_first_character(model, tmp_path, piece):
    # pieces of 1, 3 and 7 bytes split 2-, 3- and 4-byte characters between reads
    text = make_text(500, seed=1)
    path = write(tmp_path, text)
    index = index_corpus(path, model.vocab, chunk_len=5, block=3, chunk_size=piece)
    assert index.chars == 500
    assert index.blocks == math.ceil(math.ceil(499 / 5) / 3)
    starts = [b * 15 for b in range(index.blocks)]
    assert list(index.offsets) == [len(text[:s].encode("utf-8")) for s in starts]
    for b, s in enumerate(starts):
        want = model.vocab.encode(text[s : min(s + 15, 499) + 1])
        np.testing.assert_array_equal(read_block(index, b, model.vocab), want)


def test_jax_equals_numpy(model, tmp_path):
    jax = pytest.importorskip("jax")
    from portable_rnn import to_backend

    assert jax.config.jax_enable_x64  # tests/conftest.py: full_precision()
    text = make_text(1000, seed=2)
    path = write(tmp_path, text)
    on_jax = to_backend(model.params, "jax", dtype="float64")
    # 63 chunks of 16 in blocks of 4: the last block padded with length-0 rows
    got = score(on_jax, path, model.vocab, chunk_len=16, block=4)
    want = score(model.params, path, model.vocab, chunk_len=16, block=4)
    assert got.chars == want.chars == 999
    assert got.loss == pytest.approx(want.loss, rel=1e-12, abs=0)


def run_cli(*args, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portable_rnn", "score", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False,
    )  # fmt: skip


def test_cli_json_equals_the_library(model, tmp_path, capsys):
    text = make_text(1000, seed=3)
    path = write(tmp_path, text)
    args = ["--checkpoint", model.path, "--corpus", path, "--chunk-len", 16, "--block", 4]
    assert main(["score", *map(str, args), "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    want = score(model.params, path, model.vocab, chunk_len=16, block=4)
    assert report["bits_per_char"] == want.bits_per_char
    assert report["chars"] == 999 and report["dtype"] == "float64"
    assert report["where"] == "numpy cpu" and report["peak_rss_bytes"] > 0
    assert main(["score", *map(str, args), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{want.bits_per_char:.4f} bits/char")
    assert "999 chars" in out and "peak RSS" in out


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="dask[distributed] is not installed"
)
def test_dask_local_cluster_equals_numpy(model, tmp_path):
    text = make_text(3000, seed=4)
    path = write(tmp_path, text)
    want = score(model.params, path, model.vocab, chunk_len=16, block=8)
    result = run_cli(
        "--checkpoint", model.path, "--corpus", path, "--chunk-len", 16, "--block", 8,
        "--dask", "--workers", 2, "--json", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["where"] == "dask LocalCluster of 2 worker processes"
    assert report["chars"] == 2999 and report["blocks"] == 24
    assert report["loss_nats"] == pytest.approx(want.loss, rel=1e-12, abs=0)
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]  # nothing written (no dask-scratch)


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="dask[distributed] is not installed"
)
def test_dask_in_windows_of_blocks_equals_numpy(model, tmp_path, monkeypatch):
    """The blocks go to Dask a window at a time (the client's memory does not grow with the
    file); 24 blocks in windows of 5, the last one short, on an in-process cluster."""
    from distributed import Client

    from portable_rnn.train import _score

    monkeypatch.setattr(_score, "DASK_WINDOW", 5)
    path = write(tmp_path, make_text(3000, seed=4))
    want = score(model.params, path, model.vocab, chunk_len=16, block=8)
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        got = score(model.params, path, model.vocab, chunk_len=16, block=8, client=c)
    assert got.blocks == 24 and got.chars == want.chars == 2999
    assert got.loss == pytest.approx(want.loss, rel=1e-12, abs=0)


# --------------------------------------------------------------------------- a large file

MB = 10**6
RSS_OF_CHILD = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def peak_rss_of(*args, cwd) -> tuple[int, dict, float]:
    """``(peak RSS in bytes, JSON report, seconds)`` of ``portable-rnn score`` alone."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", RSS_OF_CHILD, sys.executable, "-m", "portable_rnn", "score",
         *map(str, args), "--json", "--no-progress"],
        capture_output=True, text=True, cwd=cwd, check=False, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    report, peak = result.stdout.splitlines()
    return int(peak) * 1024, json.loads(report), seconds  # ru_maxrss: KiB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB, fork: Linux")
def test_a_200_mb_file_is_checked_whole_in_bounded_memory(model, tmp_path):
    # Measured on the project's 2-core machine (NumPy, float64, the defaults L = 256 and
    # B = 128, a vocabulary of 41 characters, 1 to 4 UTF-8 bytes): a 2,000-character file
    # peaks at 54 MB (Python, NumPy, portable_rnn, one block); this 200 MB file at 111 MB
    # (81 MB while it is checked), the check of its 180 M characters takes 6 s, and 1 M
    # characters are scored in 5 s (190,000 chars/s: all 180 M would take 16 minutes on
    # one core, hence --max-chars here; see the report of `portable-rnn score`'s commit).
    piece = make_text(1_000_000, seed=5)
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8", newline="") as fh:
        while fh.tell() < 200 * MB:
            fh.write(piece)
    size = path.stat().st_size
    chars = len(piece) * (size // len(piece.encode("utf-8")))
    small = write(tmp_path, make_text(2000), "small.txt")
    base, _, _ = peak_rss_of("--checkpoint", model.path, "--corpus", small, cwd=tmp_path)
    args = ("--checkpoint", model.path, "--corpus", path, "--max-chars", 1_000_000)
    peak, report, seconds = peak_rss_of(*args, cwd=tmp_path)
    rate, check = report["chars_per_second"], report["index_seconds"]
    print(f"\nbaseline {base / MB:.0f} MB; 200 MB file: peak {peak / MB:.0f} MB, {seconds:.1f} s")
    print(f"check {check:.1f} s, {rate:,.0f} chars/s")
    assert report["corpus_chars"] == chars  # the whole file was read
    assert report["chars"] == 1_000_000
    assert peak < 150 * MB < size
    assert peak - base < 80 * MB
    # a character not in the vocabulary at the very end is found, in the same memory
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\x01")
    result = run_cli(*args, "--no-progress", cwd=tmp_path)
    assert result.returncode == 2
    assert f"'\\x01' (U+0001) at character {chars}" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["big.txt", "small.txt"]


# --------------------------------------------------------------------------- bad input


def snapshot(directory) -> dict:
    return {p.name: p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def one_error_line(capsys, *keywords: str) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("portable-rnn score: error: "), lines[0]
    for word in keywords:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]


BAD_CORPORA = {
    "missing": (None, "does not exist"),
    "directory": ("dir", "not a file"),
    "binary": (b"abc\x00def", "NUL byte"),
    "not-utf8": (b"caf\xe9 au lait", "not UTF-8"),
    "empty": (b"", "empty"),
    "one-character": (b"a", "too short"),
    "outside-vocabulary": (b"the fox ate a Kiwi", "'K' (U+004B) at character 14"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CORPORA))
def test_bad_corpus(kind, model, tmp_path, monkeypatch, capsys):
    data, keyword = BAD_CORPORA[kind]
    monkeypatch.chdir(tmp_path)
    if data == "dir":
        (tmp_path / "corpus.txt").mkdir()
    elif data is not None:
        (tmp_path / "corpus.txt").write_bytes(data)
    before = snapshot(tmp_path)
    args = ["score", "--checkpoint", str(model.path), "--corpus", "corpus.txt", "--no-progress"]
    assert main(args) == 2
    one_error_line(capsys, "--corpus", "corpus.txt", keyword)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("checkpoint", "keyword"), [("missing.npz", "does not exist"), ("garbage.npz", "checkpoint")]
)
def test_bad_checkpoint(checkpoint, keyword, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.npz").write_text("not a zip\n")
    (tmp_path / "corpus.txt").write_text("the fox\n")
    before = snapshot(tmp_path)
    assert main(["score", "--checkpoint", checkpoint, "--corpus", "corpus.txt"]) == 2
    one_error_line(capsys, "--checkpoint", checkpoint, keyword)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "option",
    [
        ("--chunk-len", "0"),
        ("--block", "-1"),
        ("--max-chars", "0"),
        ("--workers", "0"),
        ("--timeout", "0"),
        ("--timeout", "nan"),
        ("--dask", "--backend", "jax"),
        ("--scheduler", "tcp://127.0.0.1:1", "--workers", "2"),
    ],
)
def test_bad_option(option, model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("the fox\n")
    before = snapshot(tmp_path)
    args = ["score", "--checkpoint", str(model.path), "--corpus", "corpus.txt", *option]
    assert main(args) == 2
    one_error_line(capsys, option[-2] if option[0] == "--dask" else option[0])
    assert snapshot(tmp_path) == before


def test_dask_without_dask_says_what_to_install(model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("the fox\n")
    for name in ("dask", "dask.array", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import dask: ImportError
    before = snapshot(tmp_path)
    args = ["score", "--checkpoint", str(model.path), "--corpus", "corpus.txt", "--dask"]
    assert main(args) == 2
    one_error_line(capsys, "--dask", "pip install portable_rnn[dask]")
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None, reason="dask[distributed] is not installed"
)
def test_unreachable_scheduler_is_one_line_within_the_timeout(model, tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "corpus.txt").write_text("the fox\n")
    start = time.perf_counter()
    result = run_cli(
        "--checkpoint", model.path, "--corpus", "corpus.txt",
        "--scheduler", f"tcp://127.0.0.1:{port}", "--timeout", 2, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("portable-rnn score: error: "), lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
    assert seconds < 15  # Python, dask's imports and the 2 s timeout
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]


def test_help_defines_the_chunks(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    out = " ".join(re.sub(r"-\n\s*", "-", capsys.readouterr().out).split())
    for words in ("zero state", "exactly once", "--split-lines", "readable by every worker",
                  "LocalCluster", "holds the GIL", "Nothing is written"):  # fmt: skip
        assert words in out, words
