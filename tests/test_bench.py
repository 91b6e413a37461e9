"""portable-rnn bench keeps working (a tiny smoke run; no timing is asserted)."""

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
