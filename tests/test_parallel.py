"""Data-parallel training on JAX's sharding (`portable_rnn.parallel`, ``train --devices``).

JAX fixes its number of CPU devices when it starts, so the multi-device runs happen in
fresh processes with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``:

* ``tests/parallel_script.py`` trains 20 float64 steps on 1, 2 and 4 devices, crosses
  checkpoints between 4 devices, 1 device and NumPy, compiles the sharded step and
  feeds ``portable-rnn train`` bad ``--devices``; one test below per claim;
* a real two-process job (``--distributed``, two processes of two CPU devices each,
  joined by ``jax.distributed`` with Gloo's CPU collectives) trains as one device does.

The placement helpers' own errors are checked in this process (one device).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from portable_rnn import parallel  # noqa: E402

#: float64 runs on 1, 2 and 4 devices differ only in the order of the sums over the batch
RTOL = 1e-12
SCRIPT = Path(__file__).with_name("parallel_script.py")


def _env(devices: int, **extra) -> dict:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = tmp_path_factory.mktemp("parallel")
    out = work / "report.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), str(work)],
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(out.read_text())


def test_four_cpu_devices(report):
    assert report["devices"] == 4


@pytest.mark.parametrize("devices", ["2", "4"])
def test_same_training_on_1_2_4_devices(report, devices):
    diff = report["vs_one_device"][devices]
    assert diff["steps"] == [20, 20]
    for part in ("train_loss", "val_loss", "params"):
        assert diff[part] <= RTOL, (part, diff)


def test_dropout_masks_do_not_depend_on_the_devices(report):
    """The traced seed's masks (jax.random) are the same however the batch is split."""
    diff = report["dropout_4_vs_1"]
    assert max(diff["train_loss"], diff["val_loss"], diff["params"]) <= RTOL, diff


@pytest.mark.parametrize("case", ["4->1", "4->numpy", "1->4", "numpy->4", "jax_vs_numpy"])
def test_checkpoints_cross_device_counts_and_backends(report, case):
    """A 4-device checkpoint resumes on 1 device and on NumPy, and the reverse: 20 steps
    as an uninterrupted run (JAX 1 device; NumPy for the NumPy resume)."""
    diff = report["resume"][case]
    assert diff["steps"] == [20, 20]
    for part in ("train_loss", "val_loss", "params"):
        assert diff[part] <= RTOL, (part, diff)


def test_lines_of_different_lengths_split_over_devices(report):
    diff = report["lines"]
    assert max(diff["train_loss"], diff["val_loss"], diff["params"]) <= RTOL, diff


def test_shard_batch_names_the_array_that_does_not_split(report):
    assert report["api"]["not_splitting"] == (
        "tree['state']['h'] has 6 rows along its batch axis -1, which do not split evenly "
        "over 4 devices; use a batch that is a multiple of 4"
    )
    assert report["api"]["spec"] == [None, None, "batch"]


def test_the_scaling_out_example_runs_as_on_one_device(report):
    """docs/scaling.md's example on 4 devices gives the losses of this process's one."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from parallel_script import _docs_example
    finally:
        sys.path.pop(0)
    one = _docs_example()
    assert len(one) == len(report["docs_example"]) == 5
    np.testing.assert_allclose(report["docs_example"], one, rtol=RTOL)


def test_compiled_step_reduces_across_devices(report):
    """XLA turned the backward's sums over the batch into an all-reduce; one device has none."""
    assert report["hlo"]["sharded_all_reduce"] >= 1
    assert report["hlo"]["single_all_reduce"] == 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("too_many", "devices=8 but JAX has 4 cpu device(s)"),
        ("not_dividing", "batch 6 does not divide over 4 devices"),
        ("numpy", "--devices 2 runs on JAX's sharding; the backend is numpy"),
        ("zero", "argument --devices: expected a positive int or 'all', got '0'"),
        ("device_index", "device 'cpu:1' names one device"),
    ],
)
def test_bad_devices_one_line_exit_2_nothing_written(report, case, message):
    got = report["cli"][case]
    assert got["status"] == 2
    assert message in got["stderr"][-1]
    assert got["stderr"][-1].startswith(("portable-rnn train: error:", "portable-rnn train: "))
    assert got["new_files"] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _corpus(path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "rho", "sigma", "tau"]
    text = "\n".join(" ".join(rng.choice(words, 8)) for _ in range(400)) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


TRAIN = (
    "train --backend jax --dtype float64 --cell gru --hidden 8 --embed 4 --seq-len 8 "
    "--batch 4 --steps 4 --eval-every 4 --sample-length 0 --no-progress"
).split()


def _train(corpus, out) -> list:
    return [
        sys.executable,
        "-m",
        "portable_rnn",
        *TRAIN,
        "--corpus",
        str(corpus),
        "--out",
        str(out),
    ]


def test_two_process_job_trains_as_one_device(tmp_path):
    """``--distributed``: two processes of two CPU devices each (jax.distributed, Gloo),
    ``--devices all`` a 4-device mesh across them; process 0 writes the checkpoint, the
    same (float64, 1e-12) as one device's."""
    corpus = _corpus(tmp_path / "text.txt")
    port = _free_port()
    procs = [
        subprocess.Popen(
            [*_train(corpus, tmp_path / "job.npz"), "--distributed", "--devices", "all"],
            env=_env(
                2,
                JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(i),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=600)[0])
    finally:
        for p in procs:
            p.kill()
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-3000:]
        assert "on jax 4 cpu devices (data parallel, batch 1 per device)" in text
    one = subprocess.run(
        _train(corpus, tmp_path / "one.npz"),
        env=_env(1),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    from portable_rnn.train._runfile import read_run

    job, alone = read_run(tmp_path / "job.npz")[1], read_run(tmp_path / "one.npz")[1]
    for group in ("params", "adam_m", "adam_v", "state"):
        for k, a in alone[group].items():
            scale = float(np.max(np.abs(a))) or 1.0
            assert float(np.max(np.abs(job[group][k] - a))) <= RTOL * scale, (group, k)
    np.testing.assert_allclose(job["history"]["train"], alone["history"]["train"], rtol=RTOL)


def test_distributed_without_a_job_one_line_exit_2(tmp_path):
    env = _env(1)
    for name in parallel.DISTRIBUTED_ENV:
        env.pop(name, None)
    run = subprocess.run(
        [*_train(_corpus(tmp_path / "t"), tmp_path / "x.npz"), "--distributed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portable-rnn train: error: cannot join")
    assert "JAX_COORDINATOR_ADDRESS" in lines[0]
    assert not (tmp_path / "x.npz").exists()


# ----- the helpers in this process (one CPU device) --------------------------------------


def test_make_mesh_refuses_more_devices_than_present():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=rf"devices={n + 1} but JAX has {n} cpu device"):
        parallel.make_mesh(n + 1)
    for bad in (0, -2, "some"):
        with pytest.raises(ValueError, match="devices must be a positive int or 'all'"):
            parallel.make_mesh(bad)
    assert parallel.make_mesh("all").devices.size == n


def test_shard_batch_on_one_device():
    mesh = parallel.make_mesh(1)
    placed = parallel.shard_batch({"x": np.arange(6.0).reshape(3, 2)}, mesh)
    np.testing.assert_array_equal(np.asarray(placed["x"]), np.arange(6.0).reshape(3, 2))
    assert placed["x"].sharding.spec == jax.sharding.PartitionSpec("batch", None)
    with pytest.raises(ValueError, match="out of range"):
        parallel.shard_batch({"h": np.zeros(3)}, mesh, axis=2)
    with pytest.raises(TypeError, match=r"tree\['lr'\] is not an array"):
        parallel.shard_batch({"lr": 0.1}, mesh)


def test_data_parallel_on_one_device_is_jit():
    mesh = parallel.make_mesh(1)

    def step(w, x):
        return w - 0.1 * (x.T @ (x @ w)), (x @ w) ** 2

    w, x = np.ones((3, 2)), np.arange(12.0).reshape(4, 3)
    f = parallel.data_parallel(step, mesh, in_axes=(None, 0), out_axes=(None, 0))
    got = f(w, x)
    want = jax.jit(step)(w, x)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(TypeError, match="2 arguments, but in_axes has 1"):
        parallel.data_parallel(step, mesh, in_axes=(None,), out_axes=None)(w, x)
    assert parallel.to_host(got)[1].shape == (4, 2)


def test_initialize_distributed_refuses_bad_variables():
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an int, got 'two'"):
        parallel.initialize_distributed(
            {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "two"}
        )
