"""portable-rnn bench keeps working (a tiny smoke run; no timing is asserted)."""

import numpy as np

from portable_rnn.__main__ import _sizes, main


def test_bench_smoke_tiny_size(capsys, tmp_path):
    report = tmp_path / "bench.md"
    status = main(
        [
            "bench",
            "--sizes",
            "3,2,4,5",
            "--cells",
            "lstm,gru,rnn",
            "--backends",
            "numpy,torch",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--output",
            str(report),
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    for name in (
        "ours (numpy)",
        "ours (torch)",
        "torch.nn.LSTM",
        "torch.nn.GRU",
        "torch.nn.RNN",
        "seed loop (NumPy)",
    ):
        assert name in out
    assert "| 3x2x4x5 (3, 2, 4, 5) | gru |" in out
    assert report.read_text().startswith("# portable-rnn bench")


def test_bench_times_jax_eagerly_too(capsys):
    import pytest

    pytest.importorskip("jax", reason="--eager times ours on JAX outside jax.jit")
    # 40 steps: at least one compiled chunk of the eager time loop
    argv = ["bench", "--sizes", "40,2,3,4", "--cells", "gru", "--backends", "jax"]
    status = main([*argv, "--eager", "--no-references", "--repeat", "1", "--warmup", "0"])
    assert status == 0
    out = capsys.readouterr().out
    assert "| 40x2x3x4 (40, 2, 3, 4) | gru | ours (jax) |" in out
    assert "| 40x2x3x4 (40, 2, 3, 4) | gru | ours (jax, eager) |" in out
    assert "ours (jax, eager) outside it" in out


def test_bench_refuses_bad_requests(capsys):
    assert main(["bench", "--sizes", "XL"]) == 2
    assert "unknown size 'XL'" in capsys.readouterr().err
    assert main(["bench", "--sizes", "1,2,3"]) == 2
    assert main(["bench", "--sizes", "S", "--cells", "tcn"]) == 2
    assert "unknown cell(s) tcn" in capsys.readouterr().err
    assert main(["bench", "--sizes", "S", "--backends", "numpy,nope"]) == 2
    assert "unknown backend(s) nope" in capsys.readouterr().err
    assert main(["bench", "--repeat", "0"]) == 2


def test_sizes_parser():
    assert _sizes("S,M") == ["S", "M"]
    assert _sizes("50,32,64,128") == [(50, 32, 64, 128)]
    assert _sizes("10,2,3,4;L") == [(10, 2, 3, 4), "L"]
    assert _sizes("long,long-wide") == ["long", "long-wide"]


def test_keep_freed_memory_takes_on_glibc_and_is_called_only_by_commands():
    import ctypes.util
    import subprocess
    import sys

    from portable_rnn._tools.process import keep_freed_memory

    on_glibc = sys.platform.startswith("linux") and "libc.so" in (
        ctypes.util.find_library("c") or ""
    )
    assert keep_freed_memory() is on_glibc
    # importing the library changes no allocator setting: only main() of our commands calls it
    code = (
        "import portable_rnn, portable_rnn.train, portable_rnn._tools.process as b, sys; "
        "b.keep_freed_memory = lambda: sys.exit('called on import'); import portable_rnn.__main__"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_bench_lengths_mixed_reports_masked_over_unmasked(capsys):
    import re

    import pytest

    pytest.importorskip("jax", reason="ours on JAX runs under jax.jit with traced lengths")
    argv = ["bench", "--sizes", "6,4,3,5", "--cells", "gru", "--backends", "numpy,jax"]
    argv += ["--lengths", "mixed", "--no-references", "--repeat", "1", "--warmup", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lengths mixed: ours (..., masked)" in out
    assert "| fwd masked / unmasked | fwd+bwd masked / unmasked |" in out
    for backend in ("numpy", "jax"):  # on JAX under jax.jit, the lengths traced
        assert f"| 6x4x3x5 (6, 4, 3, 5) | gru | ours ({backend}, masked) | cpu |" in out
        ratio = rf"\| 6x4x3x5 \(6, 4, 3, 5\) \| gru \| ours \({backend}\) \| " + (
            r"\d+\.\d\dx \| \d+\.\d\dx \|"
        )
        assert re.search(ratio, out), f"no masked / unmasked ratio on {backend}"


def test_mixed_lengths_are_a_fixed_unsorted_spread():
    from portable_rnn._tools.bench import mixed_lengths

    lengths = mixed_lengths(100, 64)
    assert lengths.shape == (64,) and lengths.dtype.kind == "i"
    assert lengths.max() == 100 and lengths.min() == 25
    assert np.array_equal(lengths, mixed_lengths(100, 64))  # deterministic
    assert not np.array_equal(lengths, np.sort(lengths))  # and not sorted
    assert np.all(mixed_lengths(3, 5) >= 1) and list(mixed_lengths(7, 1)) == [7]


def test_bench_refuses_unknown_lengths(capsys):
    import pytest

    from portable_rnn._tools.bench import run_bench

    lines = []
    assert run_bench(sizes=("S",), lengths="half", out=lines.append, err=lines.append) == 2
    assert "unknown lengths 'half'" in lines[-1]
    with pytest.raises(SystemExit):
        main(["bench", "--lengths", "half"])
    assert "invalid choice: 'half'" in capsys.readouterr().err


def _train_throughput():
    """benchmarks/train_throughput.py, imported from its path (benchmarks/ is no package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_throughput_smoke(capsys, tmp_path):
    """Two steps of the main job on NumPy and of its torch.nn.LSTM twin: a row each."""
    import re

    import pytest

    pytest.importorskip("torch", reason="the reference is torch.nn.LSTM")
    out = tmp_path / "train.md"
    args = ["--backends", "numpy", "--steps", "2", "--repeat", "1", "--output", str(out)]
    assert _train_throughput().main(args) == 0
    report = capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == report
    row = r"^\| (ours \(numpy\)|torch\.nn\.LSTM [^|]*) \| ([\d,]+) \|"
    rates = dict(re.findall(row, report, re.M))
    assert set(rates) == {"ours (numpy)", "torch.nn.LSTM + autograd (cpu)"}, report
    assert all(int(r.replace(",", "")) > 0 for r in rates.values()), report


def test_train_throughput_refuses_one_step(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        _train_throughput().main(["--steps", "1"])
    assert exc.value.code == 2
    assert "--steps must be at least 2" in capsys.readouterr().err
