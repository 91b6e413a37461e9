"""Checkpoints read defensively: crafted zip files, ``.npy`` headers and JSON headers.

Every crafted file is small on disk and written by hand (zipfile and numpy.lib.format);
a header that lies about a size must be refused before anything is allocated (checked
with tracemalloc, which sees NumPy's allocations). Each case is refused by a
`CheckpointError` naming the file and the member or field, and, through the commands,
by one line on stderr with exit status 2.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format
import pytest

import portable_rnn.train._checkpoint as checkpoint_module
from portable_rnn import train as tr
from portable_rnn.__main__ import main
from portable_rnn._npz import NpzFile
from portable_rnn.train._runfile import read_run

from .test_train_cli import make_text, one_error_line

HEADER = "__header__.npy"
PEAK_LIMIT = 8 * 2**20  # bytes: far below what any lying header asks for


def tiny_config(cell="lstm", **kw) -> tr.TrainConfig:
    base = dict(
        cell=cell, hidden=4, layers=1, embed=3, seq_len=5, batch=2, steps=2, eval_every=1,
        sample_length=0, backend="numpy", dtype="float64",
    )  # fmt: skip
    return tr.TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real 2-step checkpoint of a tiny LSTM (float64); read it, never write it."""
    d = tmp_path_factory.mktemp("run")
    corpus = d / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    out = d / "real.npz"
    tr.fit(tiny_config(), corpus=corpus, out=out)
    return out


def members(path) -> dict[str, bytes]:
    """The raw bytes of every member of a zip (each a ``.npy`` file)."""
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_zip(path, named: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in named.items():
            zf.writestr(name, data)
    return Path(path)


def npy(array=None, *, shape=None, descr=None, fortran=False, data=None, version=(1, 0)):
    """A ``.npy`` file: a header (which may lie) followed by ``data``."""
    buf = io.BytesIO()
    if array is not None:
        array = np.asarray(array)
    d = {
        "descr": descr if descr is not None else npy_format.dtype_to_descr(array.dtype),
        "fortran_order": fortran,
        "shape": shape if shape is not None else array.shape,
    }
    if version == (1, 0):
        npy_format.write_array_header_1_0(buf, d)
    else:
        npy_format.write_array_header_2_0(buf, d)
    buf.write(data if data is not None else array.tobytes(order="F" if fortran else "C"))
    return buf.getvalue()


def header_of(path) -> dict:
    raw = members(path)[HEADER]
    return json.loads(np.load(io.BytesIO(raw), allow_pickle=False).item())


def with_header(src, dst, header: dict) -> Path:
    named = members(src)
    named[HEADER] = npy(np.array(json.dumps(header)))
    return write_zip(dst, named)


def with_member(src, dst, name: str, data: bytes | None) -> Path:
    """A copy of ``src`` with member ``name`` (``"params/Wy"``) replaced, or removed."""
    named = members(src)
    if data is None:
        del named[f"{name}.npy"]
    else:
        named[f"{name}.npy"] = data
    return write_zip(dst, named)


def refused(path, *words, reader=read_run, **kw) -> str:
    """The message of the CheckpointError that ``reader`` raises; it names the file and words."""
    with pytest.raises(tr.CheckpointError) as exc:
        reader(path, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    for word in words:
        assert word.lower() in msg.lower(), f"{word!r} not in {msg!r}"
    return msg


def peak_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# --------------------------------------------------------------------------- sizes


def test_a_real_checkpoint_reads_back_whole(run):
    header, arrays = read_run(run)
    assert header["step"] == 2 and set(arrays) == {"params", "adam_m", "adam_v", "state", "history"}
    generic = tr.load_checkpoint(run)[1]
    for group, named in arrays.items():
        for name, value in named.items():
            assert value.tobytes() == generic[group][name].tobytes()


@pytest.mark.parametrize("reader", [read_run, tr.load_checkpoint])
def test_a_lying_npy_shape_is_refused_without_allocating(reader, run, tmp_path):
    """(1e7, 1e7) float64 is 728 TiB: the old loader asked for it (MemoryError)."""
    bad = with_member(run, tmp_path / "bad.npz", "params/Wy",
                      npy(shape=(10**7, 10**7), descr="<f8", data=b"\0" * 64))  # fmt: skip
    assert bad.stat().st_size < 100_000
    peak = peak_while(lambda: refused(bad, "params/Wy", reader=reader))
    assert peak < PEAK_LIMIT


@pytest.mark.parametrize(
    ("shape", "words"),
    [((-5, 3), ["shape"]), ((True,), ["shape"]), ((2,) * 33, ["shape"])],
)
def test_an_impossible_npy_shape_is_refused(shape, words, run, tmp_path):
    bad = with_member(run, tmp_path / "bad.npz", "params/by",
                      npy(shape=shape, descr="<f8", data=b""))  # fmt: skip
    refused(bad, "params/by", *words, reader=tr.load_checkpoint)


def test_a_shape_unlike_the_header_is_refused(run, tmp_path):
    wy = tr.load_checkpoint(run)[1]["params"]["Wy"]
    bad = with_member(run, tmp_path / "bad.npz", "params/Wy", npy(np.zeros(wy.shape[::-1])))
    refused(bad, "params/Wy", "shape", str(tuple(wy.shape)))


def test_a_compressed_member_is_refused_by_its_declared_size(run, tmp_path, monkeypatch):
    """A zip bomb: 2 KiB on disk, 8 MiB declared; refused before any of it is inflated."""
    named = members(run)
    named["params/Wy.npy"] = npy(np.zeros(2**20))  # 8 MiB of zeros
    bomb = write_zip(tmp_path / "bomb.npz", named, zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 64 * 2**10
    monkeypatch.setattr(checkpoint_module, "MAX_CHECKPOINT_BYTES", 2**20)
    peak = peak_while(lambda: refused(bomb, "MAX_CHECKPOINT_BYTES", reader=tr.load_checkpoint))
    assert peak < 2**20
    # read_run also refuses it (its shape is not the header's), and so do the commands
    refused(bomb, "params/Wy")
    assert main(["sample", "--checkpoint", str(bomb)]) == 2


def _patch_central_directory(data: bytes, name: str, crc: int, size: int) -> bytes:
    """Make the zip directory's entry of ``name`` declare ``size`` bytes with CRC ``crc``."""
    eocd = data.rindex(b"PK\x05\x06")
    (at,) = struct.unpack_from("<I", data, eocd + 16)  # the directory's first entry
    while True:
        (name_len,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46 : at + 46 + name_len] == name.encode():
            break
        extra, comment = struct.unpack_from("<HH", data, at + 30)
        at += 46 + name_len + extra + comment
    patched = bytearray(data)
    struct.pack_into("<I", patched, at + 16, crc)
    struct.pack_into("<I", patched, at + 24, size)
    return bytes(patched)


def test_a_lying_zip_directory_never_gives_more_than_it_declares(tmp_path):
    """The directory says 100 float64; the deflated stream inflates to 8 MiB."""
    small = npy(np.arange(100.0))
    payload = small + bytes(8 * 2**20)
    path = write_zip(tmp_path / "lying.npz",
                     {HEADER: npy(np.array(json.dumps({"format": tr.FORMAT, "version": 1}))),
                      "params/w.npy": payload}, zipfile.ZIP_DEFLATED)  # fmt: skip
    lying = _patch_central_directory(path.read_bytes(), "params/w.npy",
                                     zlib.crc32(small), len(small))  # fmt: skip
    path.write_bytes(lying)
    result = {}
    peak = peak_while(lambda: result.update(tr.load_checkpoint(path)[1]))
    np.testing.assert_array_equal(result["params"]["w"], np.arange(100.0))
    assert peak < 2 * 2**20  # the 8 MiB behind the declared end is never inflated
    # and a directory that lies with the CRC of the whole stream is caught by the CRC
    path.write_bytes(_patch_central_directory(lying, "params/w.npy", zlib.crc32(payload),
                                              len(small)))  # fmt: skip
    refused(path, "truncated", reader=tr.load_checkpoint)


def test_a_data_size_unlike_the_npy_header_is_refused(run, tmp_path):
    by = tr.load_checkpoint(run)[1]["params"]["by"]
    short = npy(shape=by.shape, descr="<f8", data=by.tobytes()[:-8])
    refused(with_member(run, tmp_path / "short.npz", "params/by", short), "params/by", "bytes")
    long = npy(shape=by.shape, descr="<f8", data=by.tobytes() + b"\0" * 8)
    refused(with_member(run, tmp_path / "long.npz", "params/by", long), "params/by", "bytes")


# --------------------------------------------------------------------------- dtypes, layout


@pytest.mark.parametrize(
    "descr", ["<i8", "<c16", "<f2", "|O", "<U3", "|b1", [("a", "<f8")], "<M8[s]"]
)
def test_only_float32_and_float64_arrays_are_read(descr, run, tmp_path):
    by = tr.load_checkpoint(run)[1]["params"]["by"]
    itemsize = np.dtype(descr).itemsize if descr != "|O" else 8
    data = npy(shape=by.shape, descr=descr, data=b"\0" * (itemsize * by.size))
    bad = with_member(run, tmp_path / "bad.npz", "params/by", data)
    refused(bad, "params/by", reader=tr.load_checkpoint)
    refused(bad, "params/by")


def test_a_model_array_of_another_dtype_than_the_header_is_refused(run, tmp_path):
    by = tr.load_checkpoint(run)[1]["params"]["by"]
    bad = with_member(run, tmp_path / "bad.npz", "params/by", npy(by.astype(np.float32)))
    refused(bad, "params/by", "float32", "allowed: float64")


def test_fortran_order_and_big_endian_arrays_read_right(run, tmp_path):
    wy = tr.load_checkpoint(run)[1]["params"]["Wy"]
    fortran = with_member(run, tmp_path / "f.npz", "params/Wy", npy(wy, fortran=True))
    np.testing.assert_array_equal(read_run(fortran)[1]["params"]["Wy"], wy)
    big = with_member(run, tmp_path / "b.npz", "params/Wy", npy(wy.astype(">f8")))
    got = read_run(big)[1]["params"]["Wy"]
    assert got.dtype == np.float64 and got.dtype.isnative
    np.testing.assert_array_equal(got, wy)
    v2 = with_member(run, tmp_path / "v2.npz", "params/Wy", npy(wy, version=(2, 0)))
    np.testing.assert_array_equal(read_run(v2)[1]["params"]["Wy"], wy)


def _npy_v3(array) -> bytes:
    raw = npy(array)
    return raw[:6] + b"\x03\x00" + raw[8:]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("unexpected", ["params/extra"]),
        ("missing", ["lacks", "adam_v/Wy"]),
        ("not-npy", ["notes.txt", "not an array"]),
        ("no-group", ["'lonely'", "group/name"]),
        ("npy-v3", ["version"]),
        ("bzip2", ["method"]),
    ],
)
def test_members_must_be_the_arrays_the_header_implies(change, words, run, tmp_path):
    named = members(run)
    compression = zipfile.ZIP_STORED
    if change == "unexpected":
        named["params/extra.npy"] = npy(np.ones(3))
    elif change == "missing":
        del named["adam_v/Wy.npy"]
    elif change == "not-npy":
        named["notes.txt"] = b"hello"
    elif change == "no-group":
        named["lonely.npy"] = npy(np.ones(3))
    elif change == "npy-v3":
        named["params/by.npy"] = _npy_v3(tr.load_checkpoint(run)[1]["params"]["by"])
    else:
        compression = zipfile.ZIP_BZIP2
    bad = write_zip(tmp_path / "bad.npz", named, compression)
    refused(bad, *words)


def test_a_duplicate_member_is_refused(run, tmp_path):
    bad = Path(tmp_path / "dup.npz")
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in members(run).items():
            zf.writestr(name, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("params/by.npy", members(run)["params/by.npy"])
    refused(bad, "twice", reader=tr.load_checkpoint)


def test_too_many_members_are_refused(run, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "_MAX_MEMBERS", 5)
    refused(run, "members", reader=tr.load_checkpoint)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (np.array(5), ["no JSON header"]),
        (np.array(["{}", "{}"]), ["no JSON header"]),
        (np.array("not json {"), ["not JSON"]),
        (np.array("[" * 100_000 + "]" * 100_000), ["not JSON"]),
        (np.array("[1, 2]"), ["list", "not a JSON object"]),
        (np.array('{"format": "\\u001b[31mevil"}'), ["format", "\\x1b"]),
        (np.array(json.dumps({"format": tr.FORMAT, "version": True})), ["version True"]),
    ],
)
def test_a_bad_json_header_is_refused(payload, words, run, tmp_path):
    """The old loader said 'the JSON object must be str...' for a header that is no str."""
    named = members(run)
    named[HEADER] = npy(payload)
    bad = write_zip(tmp_path / "bad.npz", named)
    msg = refused(bad, *words, reader=tr.load_checkpoint)
    assert "\x1b" not in msg


# --------------------------------------------------------------------------- header fields


def _config_change(**kw):
    def change(h):
        h["config"].update(kw)

    return change


def _drop(*names):
    def change(h):
        for name in names:
            h.pop(name)

    return change


def _set(**kw):
    def change(h):
        h.update(kw)

    return change


def _corpus(**kw):
    def change(h):
        h["corpus"].update(kw)

    return change


def _drop_config(name):
    def change(h):
        del h["config"][name]

    return change


# (change, words its error names). The old loader's answers are in the comments.
HEADER_CASES = {
    "no-corpus": (_drop("corpus"), ["lacks", "corpus"]),  # KeyError: 'corpus'
    "no-step": (_drop("step"), ["lacks", "step"]),  # KeyError: 'step'
    "no-vocab": (_drop("vocab"), ["lacks", "vocab"]),  # KeyError: 'vocab'
    "corpus-str": (_set(corpus="abc"), ["corpus", "JSON object"]),  # string indices must be...
    "betas>1": (_config_change(betas=[0.9, 2.0]), ["betas", "[0, 1)"]),  # math domain error
    "betas=1": (_config_change(betas=[1.0, 0.999]), ["betas"]),  # float division by zero
    "eps<0": (_config_change(eps=-1.0), ["eps"]),  # accepted
    "eps=0": (_config_change(eps=0.0), ["eps"]),  # accepted
    "lr-nan": (_config_change(lr=float("nan")), ["lr"]),
    "sample_length": (_config_change(sample_length=10**9), ["sample_length", "100000"]),  # hangs
    "seed<0": (_config_change(seed=-1), ["seed"]),
    "hidden-str": (_config_change(hidden="4"), ["hidden"]),
    "no-hidden": (_drop_config("hidden"), ["config", "lacks", "hidden"]),
    "config-list": (_set(config=[1, 2]), ["config", "JSON object"]),
    "device-int": (_config_change(device=5), ["config.device"]),
    "step<0": (_set(step=-1), ["step", "integer >= 0"]),
    "step-str": (_set(step="2"), ["step"]),
    "step-bool": (_set(step=True), ["step"]),
    "vocab-empty": (_set(vocab=""), ["vocab"]),
    "vocab-repeats": (_set(vocab="aab"), ["vocab", "distinct"]),
    "vocab-list": (_set(vocab=["a", "b"]), ["vocab"]),
    "vocab-surrogate": (_set(vocab="ab\ud800"), ["vocab", "surrogate"]),
    "dtype": (_set(dtype="float8"), ["dtype"]),
    "sha256": (_corpus(sha256="xyz"), ["corpus.sha256", "64 hexadecimal"]),
    "chars": (_corpus(chars=0), ["corpus.chars"]),
    "source": (_corpus(source=7), ["corpus.source"]),
    "source-nul": (_corpus(source="a\x00b"), ["corpus.source"]),
    "trained_on": (_set(trained_on=["numpy"]), ["trained_on"]),
    "saved_by-long": (_set(saved_by="x" * 1000), ["saved_by"]),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_every_header_field_is_checked(case, run, tmp_path, capsys):
    change, words = HEADER_CASES[case]
    header = header_of(run)
    change(header)
    bad = with_header(run, tmp_path / "bad.npz", header)
    before = bad.read_bytes()
    refused(bad, *words, groups=())
    refused(bad, *words)
    assert main(["sample", "--checkpoint", str(bad), "--length", "3"]) == 2
    one_error_line(capsys, "sample", str(bad), *words, stdout="")
    assert main(["train", "--resume", str(bad), "--no-progress"]) == 2
    one_error_line(capsys, "train", str(bad), *words, stdout="")
    assert bad.read_bytes() == before


def test_a_history_longer_than_the_step_is_refused(run, tmp_path):
    header = header_of(run)
    header["step"] = 5  # history/train holds 2 losses
    refused(with_header(run, tmp_path / "bad.npz", header), "history/train", "(5,)")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("params/Wy", np.nan, ["params/Wy", "NaN"]),
        ("params/embed", np.inf, ["params/embed", "infinite"]),
        ("adam_m/by", -np.inf, ["adam_m/by"]),
        ("adam_v/Wy", np.nan, ["adam_v/Wy"]),
        ("adam_v/Wy", -1.0, ["adam_v", "negative"]),
        ("state/c", np.nan, ["state/c"]),
        ("history/train", np.nan, ["history/train"]),
        ("history/val", 99.0, ["history/val", "steps"]),
    ],
)
def test_non_finite_or_impossible_values_are_refused(name, value, words, run, tmp_path, capsys):
    """NaN parameters used to sample garbage with exit status 0, and to train on."""
    group, _, key = name.partition("/")
    arr = tr.load_checkpoint(run)[1][group][key].copy()
    arr.flat[0] = value
    bad = with_member(run, tmp_path / "bad.npz", name, npy(arr))
    refused(bad, *words)
    assert main(["train", "--resume", str(bad), "--no-progress"]) == 2
    one_error_line(capsys, "train", str(bad), *words, stdout="")
    if group == "params":
        assert main(["sample", "--checkpoint", str(bad), "--length", "5"]) == 2
        one_error_line(capsys, "sample", str(bad), *words, stdout="")


def test_a_partial_carried_state_is_refused(run, tmp_path):
    refused(with_member(run, tmp_path / "bad.npz", "state/c", None), "state/c")


def test_sample_reads_only_the_parameters(run, tmp_path, capsys):
    """A broken optimizer state does not stop sampling (nor is it read), but stops a resume."""
    bad = with_member(run, tmp_path / "bad.npz", "adam_m/Wy",
                      npy(shape=(10**7, 10**7), descr="<f8", data=b""))  # fmt: skip
    read = []
    real = NpzFile.read_array

    def spy(self, key, *args):
        read.append(key)
        return real(self, key, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NpzFile, "read_array", spy)
        assert main(["sample", "--checkpoint", str(bad), "--length", "5", "--seed", "0"]) == 0
    assert read and all(key.startswith("params/") for key in read)
    out, err = capsys.readouterr()
    assert err == "" and len(out) == 1 + 5 + 1
    assert main(["train", "--resume", str(bad), "--no-progress"]) == 2
    one_error_line(capsys, "train", str(bad), "adam_m/Wy")


def test_header_text_is_escaped_before_printing(run, tmp_path, capsys):
    header = header_of(run)
    header["trained_on"] = "\x1b[31mnumpy\x1b]0;pwned\x07"
    header["config"]["steps"] = 2
    bad = with_header(run, tmp_path / "esc.npz", header)
    assert main(["train", "--resume", str(bad), "--steps", "3", "--no-progress",
                 "--backend", "numpy", "--out", str(tmp_path / "o.npz")]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "\x1b" not in out and "\x07" not in out and err == ""
    assert "(trained on \\x1b[31mnumpy\\x1b]0;pwned\\x07)" in out
    # a corpus name from the header, in the error of another corpus, is escaped too
    header = header_of(run)
    header["corpus"]["source"] = "\x1b[2Jgone.txt"
    other = with_header(run, tmp_path / "src.npz", header)
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(seed=4), encoding="utf-8")
    assert main(["train", "--resume", str(other), "--corpus", str(corpus), "--steps", "3",
                 "--no-progress", "--backend", "numpy"]) == 2  # fmt: skip
    line = one_error_line(capsys, "train", "gone.txt")
    assert "\x1b" not in line and "\\x1b[2J" in line


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_checkpoints_of_every_cell_and_depth_read_back(cell, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    config = tiny_config(cell, layers=2, dtype="float32", steps=1)
    tr.fit(config, corpus=corpus, out=tmp_path / "m.npz")
    header, arrays = read_run(tmp_path / "m.npz")
    assert header["dtype"] == "float32" and header["config"]["layers"] == 2
    assert {a.dtype for g in ("params", "adam_m", "adam_v") for a in arrays[g].values()} == {
        np.dtype(np.float32)
    }
    more = tr.fit(tiny_config(cell, layers=2, dtype="float32", steps=2), corpus=corpus,
                  resume=tmp_path / "m.npz")  # fmt: skip
    assert more.step == 2


def test_save_refuses_what_load_would_refuse(tmp_path):
    with pytest.raises(ValueError, match="params/n.*int64"):
        tr.save_checkpoint(tmp_path / "a.npz", {}, {"params": {"n": np.arange(3)}})
    with pytest.raises(ValueError, match="group"):
        tr.save_checkpoint(tmp_path / "a.npz", {}, {"a/b": {"w": np.ones(2)}})
    assert list(tmp_path.iterdir()) == []
