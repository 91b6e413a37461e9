"""The ``portable-rnn train`` and ``portable-rnn sample`` commands, run in-process through `main`.

Every run is a tiny model on a tiny deterministic corpus on NumPy, so the whole file
takes seconds. Bad input must give exit status 2, exactly one line on stderr and leave
every file as it was; checkpoints are written atomically (also under SIGKILL).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import portable_rnn.train._checkpoint as checkpoint_module
import portable_rnn.train._loop as loop_module
from portable_rnn.__main__ import main
from portable_rnn.train import FORMAT_VERSION, load_checkpoint, save_checkpoint

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
    "jovial frogs and many old kings ride back from the river at night"
).split()
TINY = (
    "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch", "2", "--eval-every", "2",
    "--sample-length", "10", "--no-progress", "--backend", "numpy",
)  # fmt: skip
PRIME = "the fox"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# the plot extra: installed in CI (dev extra), maybe not on a GPU machine's offline install
NEEDS_MPL = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib (the plot extra) is not installed",
)
VALIDATION_LINE = re.compile(
    r"^step (\d+): train \d+\.\d{3} bits/char, validation (\d+\.\d{3}) bits/char, "
)

STARTUP_LINE = re.compile(
    r"^portable-rnn train: (lstm|gru|rnn) \d+ x \d+ \([\d,]+ parameters\) on \S+ \S+ float(32|64); "
    r"corpus .+ \([\d,]+ chars, \d+ symbols\)(, split into lines)?$"
)


def make_text(chars: int = 2000, seed: int = 0) -> str:
    """Sentences of `WORDS`, one a line, about ``chars`` characters long."""
    rng = random.Random(seed)
    lines, n = [], 0
    while n < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + ".\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)


def train(*args) -> int:
    return main(["train", *TINY, *(str(a) for a in args)])


def sample_cmd(*args) -> int:
    return main(["sample", *(str(a) for a in args)])


def snapshot(directory) -> dict:
    """Every file under ``directory`` (hidden ones too) with its bytes."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(Path(directory).rglob("*"))
        if p.is_file()
    }


def one_error_line(capsys, command: str, *keywords: str, stdout=None) -> str:
    """The single stderr line of a failed command; it names every keyword (case-insensitive).

    ``stdout``: what standard output must be (not checked when ``None``).
    """
    out, err = capsys.readouterr()
    if stdout is not None:
        assert out == stdout
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    line = lines[0]
    assert line.startswith(f"portable-rnn {command}: error: "), line
    assert "Traceback" not in line
    for word in keywords:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def rewrite_header(src, dst, **changes) -> Path:
    """A copy of checkpoint ``src`` at ``dst`` with ``changes`` made to its JSON header."""
    with np.load(src, allow_pickle=False) as npz:
        flat = {key: npz[key] for key in npz.files}
    header = json.loads(flat["__header__"].item())
    header.update(changes)
    flat["__header__"] = np.array(json.dumps(header))
    np.savez(dst, **flat)
    return Path(dst)


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A float32 and a float64 LSTM checkpoint (4 steps) of one corpus; read them, never write."""
    d = tmp_path_factory.mktemp("trained")
    corpus = d / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    f32, f64 = d / "f32.npz", d / "f64.npz"
    assert train("--corpus", corpus, "--steps", 4, "--out", f32, "--dtype", "float32") == 0
    assert train("--corpus", corpus, "--steps", 4, "--out", f64, "--dtype", "float64") == 0
    return SimpleNamespace(dir=d, corpus=corpus, text=corpus.read_text(), f32=f32, f64=f64)


@pytest.fixture
def checkpoint(trained, tmp_path) -> Path:
    """A writable copy of the float32 checkpoint in this test's directory."""
    return Path(shutil.copy(trained.f32, tmp_path / "model.npz"))


# --------------------------------------------------------------------------- happy path


def test_train_writes_checkpoint_and_reports(tmp_path, corpus, capsys):
    out = tmp_path / "model.npz"
    assert train("--corpus", corpus, "--steps", 4, "--out", out) == 0
    stdout, stderr = capsys.readouterr()
    assert stderr == ""
    lines = stdout.splitlines()
    validations = [VALIDATION_LINE.match(line) for line in lines]
    validations = [m for m in validations if m]
    assert [int(m.group(1)) for m in validations] == [2, 4]
    done = lines[-1]
    assert done.startswith("done: step 4, validation ")
    assert "bits/char" in done and done.endswith(f"checkpoint {out}")
    assert f"validation {validations[-1].group(2)} bits/char" in done

    header, arrays = load_checkpoint(out)
    assert header["step"] == 4
    assert header["version"] == FORMAT_VERSION
    assert header["dtype"] == "float32"  # the command line's default
    assert {k: header["config"][k] for k in ("cell", "hidden", "embed", "seq_len", "batch")} == {
        "cell": "lstm", "hidden": 8, "embed": 4, "seq_len": 8, "batch": 2,
    }  # fmt: skip
    assert header["vocab"] == "".join(sorted(set(corpus.read_text())))
    history = arrays["history"]
    assert history["train"].shape == (4,) and np.all(np.isfinite(history["train"]))
    assert history["val"][:, 0].tolist() == [2.0, 4.0]
    assert f"{history['val'][-1, 1] / np.log(2):.3f}" == validations[-1].group(2)
    assert set(arrays["params"]) >= {"embed", "Wy"}
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt", "model.npz"]  # no temporary left


def test_train_prints_a_startup_line_and_delimited_samples(tmp_path, corpus, capsys):
    out = tmp_path / "model.npz"
    assert train("--corpus", corpus, "--steps", 4, "--out", out, "--dtype", "float64") == 0
    lines = capsys.readouterr().out.splitlines()
    header, arrays = load_checkpoint(out)
    count = sum(a.size for a in arrays["params"].values())
    text = corpus.read_text()
    assert lines[0] == (
        f"portable-rnn train: lstm 1 x 8 ({count:,} parameters) on numpy cpu float64; "
        f"corpus {corpus} ({len(text):,} chars, {len(header['vocab'])} symbols)"
    )
    assert STARTUP_LINE.match(lines[0])
    for step in (2, 4):  # validation line, opening delimiter, the sample, closing delimiter
        at = lines.index(f"--- sample (step {step}) ---")
        assert VALIDATION_LINE.match(lines[at - 1]).group(1) == str(step)
        end = lines.index("---", at + 1)
        sampled = "\n".join(lines[at + 1 : end])
        assert 0 < len(sampled) <= 10 and set(sampled) <= set(text)
    assert lines[-1].startswith("done: step 4, ")


def test_train_default_out_is_charlm_npz_in_cwd(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train("--corpus", corpus, "--steps", 2) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("checkpoint charlm.npz")
    assert load_checkpoint(tmp_path / "charlm.npz")[0]["step"] == 2


def test_sample_starts_with_prime_and_has_length(trained, capsys):
    assert set(PRIME) <= set(trained.text)
    args = ("--checkpoint", trained.f32, "--length", 30, "--seed", 3, "--prime", PRIME)
    assert sample_cmd(*args) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.endswith("\n")  # print's newline
    text = out[:-1]
    assert text.startswith(PRIME)
    assert len(text) == len(PRIME) + 30
    assert set(text) <= set(trained.text)


def test_sample_without_prime_starts_with_newline(trained, capsys):
    assert sample_cmd("--checkpoint", trained.f32, "--length", 12, "--seed", 0) == 0
    text = capsys.readouterr().out[:-1]
    assert len(text) == 1 + 12 and text[0] == "\n"


def test_sample_same_seed_same_text(trained, capsys):
    texts = []
    for seed in (3, 3, 4):
        args = ("--checkpoint", trained.f32, "--length", 30, "--seed", seed, "--prime", PRIME)
        assert sample_cmd(*args) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]  # the seed matters


def test_sample_same_text_on_array_api_strict(trained, capsys):
    assert load_checkpoint(trained.f64)[0]["dtype"] == "float64"
    texts = {}
    for backend in ("numpy", "array_api_strict"):
        args = ("--checkpoint", trained.f64, "--length", 30, "--seed", 3, "--prime", PRIME)
        assert sample_cmd(*args, "--backend", backend) == 0
        texts[backend] = capsys.readouterr().out
    assert len(texts["numpy"]) == len(PRIME) + 30 + 1
    assert texts["array_api_strict"] == texts["numpy"]


# --------------------------------------------------------------------------- plot


@NEEDS_MPL
def test_plot_writes_png(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train("--corpus", corpus, "--steps", 4, "--out", "m.npz", "--plot", "loss.png") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "plot: loss.png"
    data = (tmp_path / "loss.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


@NEEDS_MPL
def test_plot_in_missing_directory_fails_before_training(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    args = ("--corpus", corpus, "--steps", 2, "--out", "m.npz", "--plot", "nowhere/loss.png")
    assert train(*args) == 2
    one_error_line(capsys, "train", "plot", "does not exist")
    assert snapshot(tmp_path) == before


@NEEDS_MPL
def test_plot_over_the_checkpoint_is_refused(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert train("--corpus", corpus, "--steps", 2, "--out", "m.png", "--plot", "m.png") == 2
    one_error_line(capsys, "train", "plot", "m.png", "checkpoint", stdout="")
    assert snapshot(tmp_path) == before


@NEEDS_MPL
def test_plot_unsupported_format_is_a_user_error(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train("--corpus", corpus, "--steps", 2, "--out", "m.npz", "--plot", "loss.xyz") == 2
    one_error_line(capsys, "train", "xyz")


# --------------------------------------------------------------------------- resume


def test_resume_gives_the_uninterrupted_losses(tmp_path, corpus, capsys):
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    assert train("--corpus", corpus, "--steps", 4, "--out", a) == 0
    assert train("--corpus", corpus, "--steps", 2, "--out", b) == 0
    assert load_checkpoint(b)[0]["step"] == 2
    b2 = Path(shutil.copy(b, tmp_path / "b2.npz"))
    b2_bytes = b2.read_bytes()
    capsys.readouterr()

    assert main(["train", "--resume", str(b), "--steps", "4", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith(f"resuming {b}")
    assert STARTUP_LINE.match(out.splitlines()[1])  # after the resuming line
    steps = [int(m.group(1)) for m in map(VALIDATION_LINE.match, out.splitlines()) if m]
    assert steps == [4]
    assert out.splitlines()[-1].startswith("done: step 4, ")
    # the copy, resumed to another file, is left as it was
    assert main(["train", "--resume", str(b2), "--steps", "4", "--out", str(c), "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    assert b2.read_bytes() == b2_bytes

    ha, aa = load_checkpoint(a)
    for resumed in (b, c):
        header, arrays = load_checkpoint(resumed)
        assert header["step"] == 4
        assert arrays["history"]["train"].shape == (4,)
        assert arrays["history"]["train"].tobytes() == aa["history"]["train"].tobytes()
        assert arrays["history"]["val"].tobytes() == aa["history"]["val"].tobytes()
        assert arrays["params"].keys() == aa["params"].keys()
        for name, value in aa["params"].items():
            assert arrays["params"][name].tobytes() == value.tobytes(), name
    assert b.read_bytes() != b2_bytes  # the resumed run did write b


def test_interrupt_saves_a_checkpoint_that_resumes(tmp_path, corpus, monkeypatch, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert train("--corpus", corpus, "--steps", 4, "--out", a) == 0
    real_evaluate = loop_module.evaluate

    def interrupted(*args, **kwargs):  # Ctrl-C at the first validation (after step 2)
        monkeypatch.setattr(loop_module, "evaluate", real_evaluate)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "evaluate", interrupted)
    capsys.readouterr()
    assert train("--corpus", corpus, "--steps", 4, "--out", b) == 130
    assert capsys.readouterr().err == f"portable-rnn train: interrupted; resume with --resume {b}\n"
    header, arrays = load_checkpoint(b)
    assert header["step"] == 2
    assert arrays["history"]["train"].shape == (2,)

    assert main(["train", "--resume", str(b), "--no-progress", "--backend", "numpy"]) == 0
    assert load_checkpoint(b)[0]["step"] == 4
    expected = load_checkpoint(a)[1]["history"]["train"]
    assert load_checkpoint(b)[1]["history"]["train"].tobytes() == expected.tobytes()


def test_resume_at_its_last_step_has_nothing_to_do(checkpoint, capsys):
    before = snapshot(checkpoint.parent)
    args = ["train", "--resume", str(checkpoint), "--steps", "4", "--no-progress"]
    assert main([*args, "--backend", "numpy"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "nothing to do" in out and "step 4" in out
    assert not any(VALIDATION_LINE.match(line) for line in out.splitlines())
    assert not any(STARTUP_LINE.match(line) for line in out.splitlines())
    assert "nan" not in out and "None" not in out
    assert snapshot(checkpoint.parent) == before


@pytest.mark.parametrize(
    ("option", "name"),
    [(("--cell", "gru"), "cell"), (("--hidden", "16"), "hidden"), (("--seq-len", "4"), "seq_len")],
)
def test_resume_refuses_another_model(checkpoint, option, name, capsys):
    before = snapshot(checkpoint.parent)
    assert main(["train", "--resume", str(checkpoint), *option, "--no-progress"]) == 2
    one_error_line(capsys, "train", name, "resume")
    assert snapshot(checkpoint.parent) == before


def test_resume_refuses_another_corpus(checkpoint, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text(make_text(seed=1), encoding="utf-8")
    before = snapshot(tmp_path)
    args = ["train", "--resume", str(checkpoint), "--corpus", str(other), "--steps", "6"]
    assert main([*args, "--no-progress", "--backend", "numpy"]) == 2
    one_error_line(capsys, "train", "corpus", str(other))
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- bad input


SENTINEL = b"sentinel: not a checkpoint, must not change\n"
BAD_CORPORA = {
    "empty": (b"", "empty"),
    "nul": (b"some text\x00more text\n" * 50, "binary"),
    "not-utf8": (b"\xff\xfe\xfa" + make_text().encode(), "binary"),
    "latin1": ("caf\xe9 ".encode("latin-1") * 300, "utf-8"),
    "too-short": (b"hello", "too short"),
    "held-out-too-short": (make_text()[:40].encode(), "shorter than one sequence"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CORPORA))
def test_train_bad_corpus(kind, tmp_path, monkeypatch, capsys):
    data, keyword = BAD_CORPORA[kind]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_bytes(data)
    (tmp_path / "out.npz").write_bytes(SENTINEL)
    before = snapshot(tmp_path)
    assert train("--corpus", "corpus.txt", "--steps", 4, "--out", "out.npz") == 2
    one_error_line(capsys, "train", "corpus" if kind != "held-out-too-short" else "held-out",
                   keyword)  # fmt: skip
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("where", "keyword"), [("missing.txt", "does not exist"), (".", "not a file")]
)
def test_train_corpus_not_a_file(where, keyword, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.npz").write_bytes(SENTINEL)
    before = snapshot(tmp_path)
    assert train("--corpus", where, "--steps", 4, "--out", "out.npz") == 2
    one_error_line(capsys, "train", "corpus", keyword)
    assert snapshot(tmp_path) == before


def test_train_bad_corpus_without_out_writes_no_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_bytes(b"")
    assert train("--corpus", "corpus.txt", "--steps", 4) == 2
    one_error_line(capsys, "train", "empty")
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]


def test_train_out_in_missing_directory(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert train("--corpus", corpus, "--steps", 2, "--out", "nowhere/m.npz") == 2
    one_error_line(capsys, "train", "does not exist")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("option", [("--steps", "0"), ("--hidden", "-3"), ("--lr", "0")])
def test_train_bad_option(option, tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert train("--corpus", corpus, *option) == 2
    one_error_line(capsys, "train", option[0][2:])
    assert snapshot(tmp_path) == before


def bad_checkpoint(kind: str, real: Path, directory: Path) -> tuple[Path, str]:
    """A broken checkpoint of ``kind`` in ``directory`` and the word its error names."""
    path = directory / "bad.npz"
    if kind == "truncated":
        data = real.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "truncated"
    if kind == "version":
        # the rewrite itself keeps a loadable checkpoint: only the version is wrong
        assert load_checkpoint(rewrite_header(real, path))[0]["step"] == 4
        rewrite_header(real, path, version=99)
        return path, "version 99"
    if kind == "not-a-checkpoint":
        np.savez(path, w=np.ones(3))
        return path, "not a portable_rnn checkpoint"
    if kind == "text-file":
        path.write_text("just some text, not a zip\n")
        return path, "checkpoint"
    assert kind == "missing"
    return path, "does not exist"


CHECKPOINT_KINDS = [
    "truncated",
    "version",
    "not-a-checkpoint",
    "text-file",
    "missing",
]


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_resume_bad_checkpoint(kind, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path, keyword = bad_checkpoint(kind, trained.f32, tmp_path)
    before = snapshot(tmp_path)
    args = ["train", "--resume", str(path), "--corpus", str(trained.corpus), "--no-progress"]
    assert main([*args, "--backend", "numpy"]) == 2
    one_error_line(capsys, "train", keyword, str(path))
    assert snapshot(tmp_path) == before  # also: a missing one is not created


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_sample_bad_checkpoint(kind, trained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path, keyword = bad_checkpoint(kind, trained.f32, tmp_path)
    before = snapshot(tmp_path)
    assert sample_cmd("--checkpoint", path, "--length", 5, "--seed", 0) == 2
    one_error_line(capsys, "sample", keyword, str(path), stdout="")
    assert snapshot(tmp_path) == before


def test_sample_checkpoint_without_vocabulary(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "bare.npz", {"step": 1}, {"params": {"w": np.ones(3)}})
    assert sample_cmd("--checkpoint", path, "--length", 5) == 2
    one_error_line(capsys, "sample", str(path), "lacks", "vocab", "config", "corpus")
    assert main(["train", "--resume", str(path), "--no-progress"]) == 2
    one_error_line(capsys, "train", str(path), "lacks", "vocab", "config", "corpus")


@pytest.mark.parametrize("temperature", ["-1", "-0.5", "nan", "inf"])
def test_sample_bad_temperature(temperature, checkpoint, capsys):
    before = checkpoint.read_bytes()
    args = ("--checkpoint", checkpoint, "--length", 5, "--seed", 0, "--temperature", temperature)
    assert sample_cmd(*args) == 2
    line = one_error_line(capsys, "sample", "temperature", stdout="")
    assert temperature in line
    assert checkpoint.read_bytes() == before


def test_sample_bad_length(checkpoint, capsys):
    assert sample_cmd("--checkpoint", checkpoint, "--length", -1) == 2
    one_error_line(capsys, "sample", "length")


@pytest.mark.parametrize("prime", ["@#%", "the f\u00f6x \u20ac"])
def test_sample_prime_outside_vocabulary(prime, checkpoint, trained, capsys):
    missing = [c for c in dict.fromkeys(prime) if c not in trained.text]
    assert missing
    assert sample_cmd("--checkpoint", checkpoint, "--length", 5, "--prime", prime) == 2
    line = one_error_line(capsys, "sample", "vocabulary", "prime", stdout="")
    for c in missing:
        assert c in line


# --------------------------------------------------------------------------- atomic writes


KILL_SCRIPT = r"""
import sys, time
from pathlib import Path
import numpy as np
import portable_rnn.train._checkpoint as ck
from portable_rnn.train import save_checkpoint

path, marker = Path(sys.argv[1]), Path(sys.argv[2])
save_checkpoint(path, {"step": 1, "note": "first"}, {"params": {"w": np.ones(3)}})

def stalled(fh, arrays):
    fh.write(b"PK\x03\x04 half of a checkpoint")
    fh.flush()
    marker.write_text("writing")
    time.sleep(60)

ck._write = stalled
save_checkpoint(path, {"step": 2, "note": "second"}, {"params": {"w": np.zeros(5)}})
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_checkpoint_survives_kill_during_write(tmp_path):
    path, marker = tmp_path / "ckpt.npz", tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(path), str(marker)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the writer exited early: {proc.communicate()[1].decode()}")
            assert time.monotonic() < deadline, "the writer never reached _write"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    header, arrays = load_checkpoint(path)
    assert header["step"] == 1 and header["note"] == "first"
    assert arrays["params"]["w"].dtype == np.float64
    np.testing.assert_array_equal(arrays["params"]["w"], np.ones(3))
    # the half-written bytes went to a temporary next to it, not over the checkpoint
    partial = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(partial) == 1 and partial[0].read_bytes().startswith(b"PK\x03\x04 half")


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_old_checkpoint_and_no_temporary(error, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"step": 1}, {"params": {"w": np.ones(3)}})
    before = path.read_bytes()

    def failing(fh, arrays):
        fh.write(b"PK\x03\x04 partial")
        fh.flush()
        raise error

    monkeypatch.setattr(checkpoint_module, "_write", failing)
    with pytest.raises(type(error)):
        save_checkpoint(path, {"step": 2}, {"params": {"w": np.zeros(5)}})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    header, arrays = load_checkpoint(path)
    assert header["step"] == 1
    np.testing.assert_array_equal(arrays["params"]["w"], np.ones(3))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_checkpoint_mode_follows_umask(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = save_checkpoint(tmp_path / "ckpt.npz", {"step": 1}, {"params": {"w": np.ones(3)}})
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


# --------------------------------------------------------------------------- help


def test_train_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--resume", "--plot", "--corpus", "--out", "--cell", "--steps"):
        assert option in out


def test_sample_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--checkpoint", "--temperature", "--prime", "--length", "--seed"):
        assert option in out


def test_keep_best_writes_the_best_validation_checkpoint(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train("--corpus", corpus, "--steps", 6, "--out", "m.npz", "--keep-best") == 0
    out = capsys.readouterr().out
    best_line = [line for line in out.splitlines() if line.startswith("best: step ")]
    assert len(best_line) == 1 and best_line[0].endswith("m.best.npz")
    header, arrays = load_checkpoint(tmp_path / "m.best.npz")
    val = load_checkpoint(tmp_path / "m.npz")[1]["history"]["val"]
    best = val[np.argmin(val[:, 1])]
    assert header["step"] == int(best[0]) and f"step {int(best[0])}," in best_line[0]


def test_resume_goes_on_where_the_first_run_was_asked_to_run(tmp_path, corpus, capsys):
    out = tmp_path / "s.npz"
    strict = [a if a != "numpy" else "array_api_strict" for a in TINY]
    assert main(["train", *strict, "--corpus", str(corpus), "--steps", "2", "--out", str(out)]) == 0
    assert load_checkpoint(out)[0]["config"]["backend"] == "array_api_strict"
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "4", "--no-progress"]) == 0
    assert "at step 2 on array_api_strict (trained on array_api_strict)" in capsys.readouterr().out
    assert main(["train", "--resume", str(out), "--steps", "6", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    assert "on numpy (trained on array_api_strict)" in capsys.readouterr().out
    assert load_checkpoint(out)[0]["step"] == 6


# --------------------------------------------------------------------------- nothing is lost

NEEDS_LINUX_SYSFS = pytest.mark.skipif(
    not Path("/sys/kernel").is_dir() or not Path("/proc/self").is_dir(),
    reason="needs Linux's /sys and /proc (places where not even root can create a file)",
)


def temporaries(directory) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(
    ("where", "words"),
    [
        pytest.param("/sys/portable_rnn_test.npz", ["cannot write", "permission denied"],
                     marks=NEEDS_LINUX_SYSFS),
        pytest.param("/proc/portable_rnn_test.npz", ["cannot write", "no such file"],
                     marks=NEEDS_LINUX_SYSFS),
        ("adir", ["is a directory"]),
        ("fifo", ["not a regular file"]),
        ("corpus.txt", ["is the corpus"]),
    ],
)  # fmt: skip
def test_an_out_that_cannot_be_written_is_refused_before_training(
    where, words, tmp_path, monkeypatch, capsys
):
    """These used to fail with a traceback at the first save, after the training."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text(make_text(), encoding="utf-8")
    (tmp_path / "adir").mkdir()
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
    elif where == "fifo":
        pytest.skip("needs os.mkfifo (POSIX)")
    before = snapshot(tmp_path)
    assert train("--corpus", "corpus.txt", "--steps", 2, "--out", where) == 2
    one_error_line(capsys, "train", "out", where, *words, stdout="")  # no step was trained
    assert snapshot(tmp_path) == before
    assert (tmp_path / "fifo").exists() == hasattr(os, "mkfifo")


def test_a_keep_best_path_that_cannot_be_written_is_refused(tmp_path, corpus, capsys):
    (tmp_path / "m.best.npz").mkdir()
    assert train("--corpus", corpus, "--steps", 2, "--out", tmp_path / "m.npz", "--keep-best") == 2
    one_error_line(capsys, "train", "best_out", "m.best.npz", "directory", stdout="")
    assert not (tmp_path / "m.npz").exists()


def _fail_second(kind: str, monkeypatch, out: Path):
    """Make the second checkpoint write fail as a full disk, a too-large file or no permission."""
    calls = []
    if kind in ("ENOSPC", "EFBIG"):
        real_write = checkpoint_module._write

        def write(fh, arrays):
            calls.append(1)
            if len(calls) == 2:
                fh.write(b"PK\x03\x04 partial")
                raise OSError(getattr(errno, kind), os.strerror(getattr(errno, kind)))
            real_write(fh, arrays)

        monkeypatch.setattr(checkpoint_module, "_write", write)
    else:
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst) == out:
                calls.append(1)
                if len(calls) == 2:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(checkpoint_module.os, "replace", replace)


@pytest.mark.parametrize("kind", ["ENOSPC", "EFBIG", "EACCES"])
def test_a_failed_save_is_one_line_and_keeps_the_last_checkpoint(
    kind, tmp_path, corpus, monkeypatch, capsys
):
    """A full disk used to be a traceback (the old checkpoint did stay intact)."""
    out = tmp_path / "m.npz"
    _fail_second(kind, monkeypatch, out)
    assert train("--corpus", corpus, "--steps", 6, "--out", out) == 2
    line = one_error_line(capsys, "train", str(out), "step 4", kind, "as it was")
    assert os.strerror(getattr(errno, kind)).lower() in line.lower()
    header, arrays = load_checkpoint(out)
    assert header["step"] == 2 and arrays["history"]["train"].shape == (2,)
    assert temporaries(tmp_path) == []


SIGTERM_ARGS = ("--eval-every", "1", "--sample-length", "0", "--save-every", "100000")


def _start_training(out: Path, corpus: Path, *extra, script=None) -> subprocess.Popen:
    args = ["train", *TINY, *SIGTERM_ARGS, "--corpus", str(corpus), "--steps", "100000",
            "--out", str(out), *extra]  # fmt: skip
    command = [sys.executable, "-c", script, *args] if script else [
        sys.executable, "-m", "portable_rnn", *args
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32",
                    reason="needs POSIX signals")  # fmt: skip
def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, corpus, capsys):
    """SIGTERM used to kill the run and lose every step since the last save."""
    out = tmp_path / "m.npz"
    proc = _start_training(out, corpus)
    try:
        assert STARTUP_LINE.match(proc.stdout.readline()), proc.poll()
        for _ in range(3):  # three validations: the loop is running, its handler in place
            line = proc.stdout.readline()
            assert VALIDATION_LINE.match(line), (line, proc.poll())
        proc.send_signal(signal.SIGTERM)
    finally:
        stdout, stderr = _stop(proc)
    assert proc.returncode == 143, stderr
    assert stderr == f"portable-rnn train: terminated (SIGTERM); resume with --resume {out}\n"
    header, arrays = load_checkpoint(out)
    step = header["step"]
    assert step >= 3 and arrays["history"]["train"].shape == (step,)
    assert temporaries(tmp_path) == []
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", str(step + 1), "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    assert load_checkpoint(out)[0]["step"] == step + 1


STALLED_WRITE = r"""
import sys, time
from pathlib import Path
import portable_rnn.train._checkpoint as ck
from portable_rnn.__main__ import main

real, calls = ck._write, []

def stalled(fh, arrays):  # the first write stalls half-way, as a slow disk would
    calls.append(1)
    if len(calls) == 1:
        fh.write(b"PK\x03\x04 half of a checkpoint")
        fh.flush()
        print("writing", flush=True)
        time.sleep(60)
    real(fh, arrays)

ck._write = stalled
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32",
                    reason="needs POSIX signals")  # fmt: skip
def test_sigterm_during_a_write_leaves_a_whole_checkpoint_and_no_temporary(tmp_path, corpus):
    """A SIGTERM during a write used to leave the .tmp file behind (and no checkpoint)."""
    out = tmp_path / "m.npz"
    proc = _start_training(out, corpus, "--save-every", "2", script=STALLED_WRITE)
    try:
        lines = []
        while not lines or lines[-1] != "writing\n":
            lines.append(proc.stdout.readline())
            assert lines[-1], (lines, proc.poll())
        assert temporaries(tmp_path) != []  # the stalled write's temporary file
        proc.send_signal(signal.SIGTERM)
    finally:
        _, stderr = _stop(proc)
    assert proc.returncode == 143, stderr
    assert temporaries(tmp_path) == []
    header, arrays = load_checkpoint(out)  # written again, whole, by the handler
    assert header["step"] == 2 and arrays["history"]["train"].shape == (2,)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locks and names")
def test_stale_temporaries_are_removed_at_the_next_start(tmp_path, corpus, capsys):
    import fcntl

    old = time.time() - 3600
    names = {
        ".m.npz.abc_1234.tmp": False,  # a killed writer's: removed
        ".m.npz.fresh123.tmp": True,  # written a moment ago: maybe another trainer's
        ".m.npz.locked12.tmp": True,  # old, but a living writer holds its lock
        ".m.npz.abcd1234.tmp.keep": True,  # not the pattern
        ".m.npz.ABCD1234.tmp": True,  # not mkstemp's alphabet
        ".other.npz.abcd1234.tmp": True,  # another checkpoint's
        "m.npz.abcd1234.tmp": True,  # not hidden
    }
    for name in names:
        (tmp_path / name).write_bytes(b"PK\x03\x04 partial")
        if name != ".m.npz.fresh123.tmp":
            os.utime(tmp_path / name, (old, old))
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a temporary")
    os.symlink(target, tmp_path / ".m.npz.link1234.tmp")  # a link named like one: kept
    names[".m.npz.link1234.tmp"] = True
    fd = os.open(tmp_path / ".m.npz.locked12.tmp", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert train("--corpus", corpus, "--steps", 2, "--out", tmp_path / "m.npz") == 0
    finally:
        os.close(fd)
    out = capsys.readouterr().out
    assert f"removed {str(tmp_path / '.m.npz.abc_1234.tmp')!r}" in out
    assert out.count("removed ") == 1
    for name, kept in names.items():
        assert (tmp_path / name).exists() == kept, name
    assert target.read_text() == "not a temporary"


def _loss_goes_bad(monkeypatch, at_call: int, what: str):
    real = loop_module.char_model_loss_and_grads
    calls = []

    def bad(params, x, y, state=None):
        loss, grads, state = real(params, x, y, state)
        calls.append(1)
        if len(calls) == at_call:
            if what == "loss":
                loss = loss * float("nan")
            else:
                grads = {k: g + float("inf") for k, g in grads.items()}
        return loss, grads, state

    monkeypatch.setattr(loop_module, "char_model_loss_and_grads", bad)


@pytest.mark.parametrize(
    ("what", "clip", "words"),
    [("loss", "5", ["the loss is nan"]), ("grads", "5", ["gradient norm"]),
     ("grads", "0", ["gradient norm"])],
)  # fmt: skip
def test_a_non_finite_step_stops_the_run_and_keeps_the_last_checkpoint(
    what, clip, words, tmp_path, corpus, monkeypatch, capsys
):
    """A run whose loss turned NaN used to go on, and save NaN checkpoints."""
    out = tmp_path / "m.npz"
    _loss_goes_bad(monkeypatch, 3, what)
    assert train("--corpus", corpus, "--steps", 6, "--out", out, "--clip", clip) == 1
    one_error_line(capsys, "train", "diverged at step 3", *words, f"{str(out)!r} keeps step 2")
    header, arrays = load_checkpoint(out)
    assert header["step"] == 2
    assert all(np.all(np.isfinite(a)) for a in arrays["params"].values())
    assert temporaries(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_symlinked_out_is_written_through(tmp_path, corpus):
    real = tmp_path / "real"
    real.mkdir()
    link, dangling = tmp_path / "m.npz", tmp_path / "new.npz"
    (real / "m.npz").write_bytes(SENTINEL)
    os.symlink(real / "m.npz", link)
    os.symlink(real / "new.npz", dangling)  # its target does not exist yet
    assert train("--corpus", corpus, "--steps", 2, "--out", link) == 0
    assert train("--corpus", corpus, "--steps", 2, "--out", dangling) == 0
    for name in ("m.npz", "new.npz"):
        assert (tmp_path / name).is_symlink()
        assert os.readlink(tmp_path / name) == str(real / name)
        assert load_checkpoint(real / name)[0]["step"] == 2
    assert main(["train", "--resume", str(link), "--steps", "4", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    assert link.is_symlink() and load_checkpoint(real / "m.npz")[0]["step"] == 4
    assert temporaries(tmp_path) == [] and temporaries(real) == []


@pytest.mark.parametrize("temperature", ["1e-308", "5e-324", "1e-30"])
def test_a_tiny_temperature_is_greedy_and_does_not_overflow(temperature, trained, tmp_path, capsys):
    """--temperature 1e-308 used to overflow (a RuntimeWarning, then garbage)."""
    from portable_rnn.train import Vocabulary, char_model_logits, init_char_state

    sharp = tmp_path / "sharp.npz"  # scores of tens: 1e-308 overflowed where |score| > 1.8
    with np.load(trained.f64, allow_pickle=False) as npz:
        flat = {key: npz[key] for key in npz.files}
    flat["params/Wy"], flat["params/by"] = 50 * flat["params/Wy"], 50 * flat["params/by"]
    np.savez(sharp, **flat)
    assert sample_cmd("--checkpoint", sharp, "--length", 20, "--seed", 1,
                      "--temperature", temperature) == 0  # fmt: skip
    text = capsys.readouterr().out[:-1]
    header, arrays = load_checkpoint(sharp)
    params, vocab = arrays["params"], Vocabulary(header["vocab"])
    state, current, greedy = init_char_state(params, 1), vocab.encode("\n")[0], []
    for _ in range(20):
        logits, state = char_model_logits(params, np.array([[current]]), state)
        current = int(np.argmax(logits.reshape(-1)))
        greedy.append(current)
    assert text == "\n" + vocab.decode(greedy)


def test_temperature_zero_is_greedy_whatever_the_seed(trained, capsys):
    """--temperature 0 used to be refused; it is greedy decoding (the argmax at every step)."""
    from portable_rnn.train import Vocabulary, char_model_logits, init_char_state, sample

    header, arrays = load_checkpoint(trained.f64)
    params, vocab = arrays["params"], Vocabulary(header["vocab"])
    state, current, greedy = init_char_state(params, 1), vocab.encode("\n")[0], []
    for _ in range(30):
        logits, state = char_model_logits(params, np.array([[current]]), state)
        current = int(np.argmax(logits.reshape(-1)))
        greedy.append(current)
    expected = "\n" + vocab.decode(greedy)
    texts = set()
    for seed in (0, 1, 12345):
        assert sample_cmd("--checkpoint", trained.f64, "--length", 30, "--seed", seed,
                          "--temperature", 0) == 0  # fmt: skip
        texts.add(capsys.readouterr().out[:-1])
        texts.add(sample(params, vocab, length=30, temperature=0, seed=seed))
    texts.add(sample(params, vocab, length=30, temperature=0.0))  # no seed
    assert texts == {expected}
    # a vocabulary without a newline: the default prime is its first character, not drawn
    no_newline = Vocabulary(header["vocab"].replace("\n", "~"))
    first = {sample(params, no_newline, length=5, temperature=0, seed=s) for s in (0, 1, 2)}
    assert len(first) == 1 and first.pop()[0] == no_newline.chars[0]
    with pytest.raises(ValueError, match="temperature"):
        sample(params, vocab, length=5, temperature=-0.5)


def test_lengths_are_bounded(checkpoint, corpus, capsys):
    from portable_rnn.train import MAX_SAMPLE_LENGTH

    assert sample_cmd("--checkpoint", checkpoint, "--length", MAX_SAMPLE_LENGTH + 1) == 2
    one_error_line(capsys, "sample", "length", str(MAX_SAMPLE_LENGTH), stdout="")
    assert train("--corpus", corpus, "--sample-length", MAX_SAMPLE_LENGTH + 1) == 2
    one_error_line(capsys, "train", "sample_length", str(MAX_SAMPLE_LENGTH), stdout="")


def test_two_trainers_on_one_out_leave_a_whole_checkpoint(tmp_path, corpus):
    """Both write every step; neither removes the other's temporary file mid-write."""
    out = tmp_path / "m.npz"
    args = ["train", *TINY, "--corpus", str(corpus), "--steps", "12", "--save-every", "1",
            "--out", str(out)]  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, "-m", "portable_rnn", *args, "--seed", str(seed)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in (1, 2)
    ]  # fmt: skip
    results = [_stop(proc) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    header, arrays = load_checkpoint(out)
    assert header["step"] == 12 and header["config"]["seed"] in (1, 2)
    assert temporaries(tmp_path) == []


def test_a_model_too_large_to_load_back_is_refused_before_allocating(tmp_path, corpus, capsys):
    """--hidden 1000000000 used to be a MemoryError traceback (6.94 EiB asked for)."""
    assert train("--corpus", corpus, "--hidden", 10**9, "--out", tmp_path / "m.npz") == 2
    one_error_line(capsys, "train", "hidden 1000000000", "MAX_CHECKPOINT_BYTES", stdout="")
    assert list(tmp_path.iterdir()) == [corpus]


# --------------------------------------------------------------------------- training on lines


def test_split_lines_trains_resumes_in_its_mode_and_samples(tmp_path, corpus, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert train("--corpus", corpus, "--split-lines", "--steps", 4, "--out", a) == 0
    out = capsys.readouterr().out
    assert [int(m.group(1)) for m in map(VALIDATION_LINE.match, out.splitlines()) if m] == [2, 4]
    assert STARTUP_LINE.match(out.splitlines()[0]).group(3) == ", split into lines"
    header, arrays = load_checkpoint(a)
    assert header["config"]["split_lines"] is True and "state" not in arrays
    # resumed without the option: it goes on on lines, with the losses of the whole run
    assert train("--corpus", corpus, "--split-lines", "--steps", 2, "--out", b) == 0
    assert main(["train", "--resume", str(b), "--steps", "4", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    resumed = load_checkpoint(b)
    assert resumed[0]["config"]["split_lines"] is True
    assert resumed[1]["history"]["train"].tobytes() == arrays["history"]["train"].tobytes()
    # sampled line by line, as it was trained
    from portable_rnn.train import Vocabulary, sample

    capsys.readouterr()
    prime = "the fox\nthe"
    assert sample_cmd("--checkpoint", a, "--length", 40, "--seed", 0, "--prime", prime) == 0
    vocab, kw = Vocabulary(header["vocab"]), dict(length=40, seed=0, prime=prime)
    lines = sample(arrays["params"], vocab, **kw, lines=True)
    assert capsys.readouterr().out == lines + "\n"
    assert lines != sample(arrays["params"], vocab, **kw, lines=False)


def test_split_lines_cannot_be_switched_on_a_resume(checkpoint, capsys):
    before = snapshot(checkpoint.parent)
    assert main(["train", "--resume", str(checkpoint), "--split-lines", "--steps", "6",
                 "--no-progress", "--backend", "numpy"]) == 2  # fmt: skip
    one_error_line(capsys, "train", "split_lines", "resume")
    assert snapshot(checkpoint.parent) == before


def test_a_checkpoint_from_before_split_lines_resumes_and_samples(checkpoint, capsys):
    header = load_checkpoint(checkpoint)[0]
    config = {k: v for k, v in header["config"].items() if k != "split_lines"}
    old = rewrite_header(checkpoint, checkpoint.parent / "old.npz", config=config)
    assert "split_lines" not in load_checkpoint(old)[0]["config"]
    assert sample_cmd("--checkpoint", old, "--length", 20, "--seed", 0) == 0
    assert main(["train", "--resume", str(old), "--steps", "6", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    header, arrays = load_checkpoint(old)
    assert header["step"] == 6 and header["config"]["split_lines"] is False
    assert "state" in arrays  # the carried state of truncated BPTT, as before


@pytest.mark.parametrize(
    ("data", "keywords"),
    [
        (b"\n\n\n\n", ("no non-empty line", "--split-lines")),
        (b"\n\none line only, long enough to be read as text\n\n", ("only one", "two")),
        (b"a\nb\nc\nd\ne\n", ("training text", "fewer than one batch of 8")),
    ],
)
def test_split_lines_on_too_few_lines_is_refused(data, keywords, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_bytes(data)
    (tmp_path / "out.npz").write_bytes(SENTINEL)
    before = snapshot(tmp_path)
    args = ("--corpus", "corpus.txt", "--split-lines", "--batch", 8, "--out", "out.npz")
    assert train(*args) == 2
    one_error_line(capsys, "train", *keywords, stdout="")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- cell variants


def test_a_relu_rnn_trains_resumes_and_samples_as_relu(tmp_path, corpus, capsys):
    """--nonlinearity relu is part of the model: in the checkpoint, kept by --resume (the
    resumed run is the whole run, bit for bit) and used by sample."""
    from portable_rnn.train import Vocabulary, sample

    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    relu = ("--cell", "rnn", "--nonlinearity", "relu")
    assert train("--corpus", corpus, *relu, "--steps", 4, "--out", a) == 0
    header, arrays = load_checkpoint(a)
    assert header["config"]["nonlinearity"] == "relu" and header["config"]["dropout"] == 0.0
    assert train("--corpus", corpus, *relu, "--steps", 2, "--out", b) == 0
    assert main(["train", "--resume", str(b), "--steps", "4", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    resumed = load_checkpoint(b)
    assert resumed[0]["config"]["nonlinearity"] == "relu"
    assert resumed[1]["history"]["train"].tobytes() == arrays["history"]["train"].tobytes()
    capsys.readouterr()
    assert sample_cmd("--checkpoint", a, "--length", 60, "--seed", 0, "--prime", PRIME) == 0
    vocab, kw = Vocabulary(header["vocab"]), dict(length=60, seed=0, prime=PRIME)
    text = sample(arrays["params"], vocab, **kw, nonlinearity="relu")
    assert capsys.readouterr().out == text + "\n"
    assert text != sample(arrays["params"], vocab, **kw)  # tanh draws another text


def test_dropout_resumes_bit_for_bit_and_needs_two_layers(tmp_path, corpus, capsys):
    a, b, c, d = (tmp_path / f"{n}.npz" for n in "abcd")
    drop = ("--dropout", "0.3", "--layers", "2", "--cell", "gru")
    assert train("--corpus", corpus, *drop, "--steps", 4, "--out", a) == 0
    assert train("--corpus", corpus, *drop, "--steps", 2, "--out", b) == 0
    assert main(["train", "--resume", str(b), "--steps", "4", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    (ha, aa), (hb, ab) = load_checkpoint(a), load_checkpoint(b)
    assert ha["config"]["dropout"] == hb["config"]["dropout"] == 0.3
    for group in ("params", "adam_m", "adam_v", "state", "history"):
        for k in aa[group]:
            assert ab[group][k].tobytes() == aa[group][k].tobytes(), (group, k)
    # dropout changes a two-layer run, not a one-layer one (it has no inputs between layers)
    assert train("--corpus", corpus, "--layers", 2, "--cell", "gru", "--steps", 2,
                 "--out", c) == 0  # fmt: skip
    assert load_checkpoint(c)[1]["history"]["train"][0] != aa["history"]["train"][0]
    assert train("--corpus", corpus, "--dropout", "0.5", "--steps", 2, "--out", c) == 0
    assert train("--corpus", corpus, "--steps", 2, "--out", d) == 0
    assert load_checkpoint(c)[1]["history"]["train"].tobytes() == (
        load_checkpoint(d)[1]["history"]["train"].tobytes()
    )


@pytest.mark.parametrize(
    ("option", "name"),
    [
        (("--nonlinearity", "relu"), "--nonlinearity"),  # the default cell, lstm
        (("--nonlinearity", "relu", "--cell", "lstm"), "--nonlinearity"),
        (("--nonlinearity", "relu", "--cell", "gru"), "--nonlinearity"),
        (("--dropout", "1.0"), "--dropout"),
        (("--dropout", "-0.1"), "--dropout"),
        (("--dropout", "nan"), "--dropout"),
    ],
)
def test_bad_variant_options_are_named(option, name, tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    assert train("--corpus", corpus, "--steps", 2, *option) == 2
    one_error_line(capsys, "train", name, stdout="")
    assert snapshot(tmp_path) == before


def test_resume_keeps_the_nonlinearity_and_may_change_dropout(checkpoint, capsys):
    before = snapshot(checkpoint.parent)
    args = ["train", "--resume", str(checkpoint), "--steps", "6", "--no-progress"]
    assert main([*args, "--nonlinearity", "relu", "--backend", "numpy"]) == 2
    one_error_line(capsys, "train", "nonlinearity", "resume")
    assert snapshot(checkpoint.parent) == before
    # dropout is training, not the model: a one-layer run takes it and changes nothing
    assert main([*args, "--dropout", "0.2", "--backend", "numpy"]) == 0
    assert load_checkpoint(checkpoint)[0]["config"]["dropout"] == 0.2


def test_a_checkpoint_from_before_the_variants_is_tanh(checkpoint, capsys):
    """A header without nonlinearity and dropout is a tanh model trained without dropout:
    it samples and resumes as before."""
    header = load_checkpoint(checkpoint)[0]
    config = {k: v for k, v in header["config"].items() if k not in ("nonlinearity", "dropout")}
    old = rewrite_header(checkpoint, checkpoint.parent / "old.npz", config=config)
    assert {"nonlinearity", "dropout"}.isdisjoint(load_checkpoint(old)[0]["config"])
    capsys.readouterr()
    assert sample_cmd("--checkpoint", old, "--length", 20, "--seed", 0) == 0
    first = capsys.readouterr().out
    assert sample_cmd("--checkpoint", checkpoint, "--length", 20, "--seed", 0) == 0
    assert capsys.readouterr().out == first
    assert main(["train", "--resume", str(old), "--steps", "6", "--no-progress",
                 "--backend", "numpy"]) == 0  # fmt: skip
    config = load_checkpoint(old)[0]["config"]
    assert config["nonlinearity"] == "tanh" and config["dropout"] == 0.0


def test_train_help_names_the_variants(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--nonlinearity {tanh,relu}" in out and "--dropout" in out
    assert "with --layers 1 it changes nothing" in out
