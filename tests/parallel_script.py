"""Data-parallel training on 1, 2 and 4 CPU devices: run by tests/test_parallel.py.

Run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (JAX
reads it when it starts, so the pytest process, whose JAX has one device, cannot), it
trains, resumes and times, and writes what it found as JSON to the path given; the test
file asserts on it, one test per claim.

``python tests/parallel_script.py OUT.json WORKDIR``
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

STEPS, HALF = 20, 10


def _rel(a, b) -> float:
    """The largest difference relative to the array's largest magnitude."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(b), initial=0.0)) or 1.0
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def _compare(a, b) -> dict:
    """Largest relative differences of two runs (`TrainResult`), per part."""
    from portable_rnn.testing import to_numpy

    return {
        "train_loss": _rel(a.train_loss, b.train_loss),
        "val_loss": _rel([v for _, v in a.val_loss], [v for _, v in b.val_loss]),
        "params": max(_rel(to_numpy(a.params[k]), to_numpy(b.params[k])) for k in b.params),
        "steps": [a.step, b.step],
    }


def docs_example_code() -> str:
    """The Python block of "Scaling out" (docs/scaling.md)."""
    import re

    page = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"
    found = re.search(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    assert found is not None, "docs/scaling.md has no python block"
    return found.group(1)


def _docs_example() -> list:
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(docs_example_code(), namespace)
    return namespace["losses"]


def _cli_error(argv, cwd: Path) -> dict:
    """``portable-rnn`` run in this process: exit status, stderr, files left in ``cwd``."""
    import os

    from portable_rnn.__main__ import main

    before = set(os.listdir(cwd))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse
            status = exc.code
    return {
        "status": status,
        "stderr": err.getvalue().strip().splitlines(),
        "new_files": sorted(set(os.listdir(cwd)) - before),
    }


def main(out: str, workdir: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from test_train import _text  # this file's directory is on sys.path: python tests/...

    from portable_rnn import train as tr
    from portable_rnn.train import _loop

    work = Path(workdir)
    corpus = work / "text.txt"
    corpus.write_text(_text(), encoding="utf-8")
    report: dict = {"devices": len(jax.devices())}
    base = tr.TrainConfig(
        cell="lstm",
        hidden=12,
        layers=1,
        embed=6,
        seq_len=10,
        batch=4,
        steps=HALF,
        lr=1e-2,
        clip=1.0,
        eval_every=HALF,
        sample_length=0,
        dtype="float64",
        backend="jax",
    )

    def fit(config, devices, name, resume=None):
        return tr.fit(config, corpus=corpus, out=work / name, resume=resume, devices=devices)

    # 20 steps on 1, 2 and 4 devices; with dropout (the masks of the traced seed) on 1 and 4
    full = replace(base, steps=STEPS)
    runs, timing = {}, {}
    for n in (1, 2, 4):
        t0 = time.perf_counter()
        runs[n] = fit(full, n, f"d{n}.npz")
        timing[n] = {
            "seconds": time.perf_counter() - t0,
            "chars_per_second": runs[n].chars_per_second,
        }
    report["vs_one_device"] = {str(n): _compare(runs[n], runs[1]) for n in (2, 4)}
    report["timing"] = {str(n): t for n, t in timing.items()}
    dropout = replace(full, cell="rnn", layers=2, dropout=0.25)
    report["dropout_4_vs_1"] = _compare(fit(dropout, 4, "p4.npz"), fit(dropout, 1, "p1.npz"))

    # checkpoints cross between device counts and backends (without dropout, whose masks
    # NumPy draws on the host and a compiled JAX step with jax.random)
    fit(base, 4, "four.npz")
    fit(base, 1, "one.npz")
    fit(replace(base, backend="numpy"), None, "numpy.npz")
    on_numpy = replace(full, backend="numpy")
    ref_numpy = fit(on_numpy, None, "refn.npz")
    ref = runs[1]
    report["resume"] = {
        "4->1": _compare(fit(full, 1, "a.npz", resume=work / "four.npz"), ref),
        "4->numpy": _compare(fit(on_numpy, None, "b.npz", resume=work / "four.npz"), ref_numpy),
        "1->4": _compare(fit(full, 4, "c.npz", resume=work / "one.npz"), ref),
        "numpy->4": _compare(fit(full, 4, "d.npz", resume=work / "numpy.npz"), ref),
        "jax_vs_numpy": _compare(ref, ref_numpy),
    }

    # lines of different lengths: the lengths split over the devices with the batch
    lines = replace(base, cell="gru", layers=1, split_lines=True)
    report["lines"] = _compare(fit(lines, 2, "l2.npz"), fit(lines, 1, "l1.npz"))

    # the compiled data-parallel step reduces the gradients across devices
    from portable_rnn.train._model import init_char_model, init_char_state

    mesh = _loop._mesh(base, 4)
    params = init_char_model(20, cell="rnn", hidden=12, layers=1, embed=6, backend="jax")
    m = {k: jax.numpy.zeros_like(a) for k, a in params.items()}
    step = _loop._make_train_step(1.0, (0.9, 0.999), 1e-8)
    x = np.zeros((4, 10), np.int32)
    args = (params, m, m, init_char_state(params, 4), x, x, 1e-2, 1.0, None)
    sharded = _loop._data_parallel_step(step, mesh, False).lower(*args).compile().as_text()
    single = jax.jit(step).lower(*args).compile().as_text()
    report["hlo"] = {
        "sharded_all_reduce": sharded.count("all-reduce("),
        "single_all_reduce": single.count("all-reduce("),
    }

    # bad input: one line, exit status 2, nothing written
    cli = work / "cli"
    cli.mkdir()
    common = ["train", "--corpus", str(corpus), "--steps", "2", "--no-progress", "--out"]
    jax_run = ["--backend", "jax", "--devices"]
    report["cli"] = {
        "too_many": _cli_error([*common, str(cli / "a.npz"), *jax_run, "8"], cli),
        "not_dividing": _cli_error(
            [*common, str(cli / "b.npz"), *jax_run, "4", "--batch", "6"], cli
        ),
        "numpy": _cli_error(
            [*common, str(cli / "c.npz"), "--backend", "numpy", "--devices", "2"], cli
        ),
        "zero": _cli_error([*common, str(cli / "d.npz"), *jax_run, "0"], cli),
        "device_index": _cli_error(
            [*common, str(cli / "e.npz"), "--device", "cpu:1", *jax_run, "2"], cli
        ),
    }

    # the public helper's placement and its error
    from portable_rnn import parallel

    state = {"h": np.zeros((1, 3, 8)), "c": np.zeros((1, 3, 8))}
    placed = parallel.shard_batch({"state": state}, mesh, axis=-1)
    try:
        parallel.shard_batch({"state": {"h": np.zeros((1, 3, 6))}}, mesh, axis=-1)
        message = None
    except ValueError as exc:
        message = str(exc)
    report["api"] = {"not_splitting": message, "spec": list(placed["state"]["h"].sharding.spec)}
    # the worked example of docs/scaling.md, on every device
    report["docs_example"] = _docs_example()
    Path(out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
