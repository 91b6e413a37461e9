"""Training throughput of the main job: ours on each backend next to ``torch.nn.LSTM``.

The main job is ``portable-rnn train``'s default model (an embedding of 64, one LSTM layer
of 256 units, a linear output; batch 32 x 64 steps of truncated BPTT, float32, Adam 2e-3,
global-norm clipping at 5) on the default corpus. For each backend this script runs
`portable_rnn.train.fit` for ``--steps`` steps (no validation but the last, no samples) and
reads its characters per second, which leave out the first step (JAX compiles there) and
the validation; ``--repeat`` runs, median reported.

The reference is the same model in PyTorch (``nn.Embedding``, ``nn.LSTM``, ``nn.Linear``,
cross-entropy, ``torch.optim.Adam``, ``clip_grad_norm_``) trained with autograd on the same
batches (the same `TextBatches` streams, the state carried and detached from chunk to
chunk), timed the same way: every step but the first, each waited for. On a CPU
``torch.nn.LSTM`` is oneDNN's fused LSTM, on a GPU cuDNN's, both in full float32 here
(TF32 off).

Usage::

    python benchmarks/train_throughput.py                       # every CPU backend installed
    python benchmarks/train_throughput.py --backends cupy,jax:gpu,torch:gpu --torch-device cuda
    python benchmarks/train_throughput.py --steps 100 --repeat 3 --output train.md

No test asserts a timing; ``tests/test_bench.py`` runs it for two steps.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from dataclasses import replace

from portable_rnn import train as tr
from portable_rnn._tools.bench import _versions  # the versions `portable-rnn bench` reports
from portable_rnn._tools.process import keep_freed_memory
from portable_rnn.testing import full_precision

#: the main job's model and batches: `TrainConfig`'s defaults, without validation or samples
MAIN_JOB = tr.TrainConfig(sample_length=0, dtype="float32")


def ours(spec: str, steps: int) -> float:
    """Characters per second of `fit` on ``spec`` (``backend`` or ``backend:device``)."""
    backend, _, device = spec.partition(":")
    config = replace(
        MAIN_JOB, steps=steps, eval_every=steps, backend=backend, device=device or None
    )
    return tr.fit(config).chars_per_second


def torch_reference(steps: int, device: str) -> float:
    """Characters per second of the same model as ``torch.nn`` modules with autograd."""
    import torch

    c = MAIN_JOB
    corpus = tr.read_corpus()
    train_ids, _ = tr.split_corpus(corpus.ids, c.val_fraction)
    batches = tr.TextBatches(train_ids, c.batch, c.seq_len)
    torch.manual_seed(c.seed)
    V = len(corpus.vocab)
    embed = torch.nn.Embedding(V, c.embed)
    lstm = torch.nn.LSTM(c.embed, c.hidden, num_layers=c.layers, batch_first=True)
    head = torch.nn.Linear(c.hidden, V)
    modules = torch.nn.ModuleList([embed, lstm, head]).to(device)
    opt = torch.optim.Adam(modules.parameters(), lr=c.lr, betas=c.betas, eps=c.eps)
    state = None
    busy, chars = 0.0, 0
    for step in range(steps):
        x, y = (torch.from_numpy(a).long().to(device) for a in batches[step % len(batches)])
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out, (h, cell) = lstm(embed(x), state)
        logits = head(out)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.clip:
            torch.nn.utils.clip_grad_norm_(modules.parameters(), c.clip)
        opt.step()
        state = (h.detach(), cell.detach())
        loss.item()  # waits for the step, as `fit` does
        if step:  # the first step warms up: left out, as `fit` leaves it out
            busy += time.perf_counter() - t0
            chars += x.numel()
    return chars / busy


def _gpu_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default="numpy,jax,torch,array_api_strict",
        help="comma-separated backend or backend:device (default: %(default)s)",
    )
    parser.add_argument("--torch-device", default="cpu", help="the reference's device (cpu, cuda)")
    parser.add_argument("--no-reference", action="store_true", help="time only ours")
    parser.add_argument("--steps", type=int, default=100, help="steps per run (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, median (default 3)")
    parser.add_argument("--output", help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.repeat < 1:
        parser.error("--steps must be at least 2 and --repeat at least 1")
    full_precision()
    keep_freed_memory()  # as the commands do (`portable-rnn train`)
    rows: dict[str, list[float]] = {}
    for _ in range(args.repeat):  # the rows take turns: a busy machine's noise falls on all
        for spec in [s.strip() for s in args.backends.split(",") if s.strip()]:
            rows.setdefault(f"ours ({spec})", []).append(ours(spec, args.steps))
        if not args.no_reference:
            rate = torch_reference(args.steps, args.torch_device)
            rows.setdefault(f"torch.nn.LSTM + autograd ({args.torch_device})", []).append(rate)
    c = MAIN_JOB
    lines = [
        f"# Training throughput, {datetime.date.today().isoformat()}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads"
        + (f", GPU: {_gpu_name(args.torch_device)}" if args.torch_device != "cpu" else "")
        + f"; Python {platform.python_version()}, {_versions()}.",
        f"Model: {c.cell} {c.hidden} units, embedding {c.embed}, {c.layers} layer; batch "
        f"{c.batch} x {c.seq_len} steps; float32; Adam {c.lr}, clip {c.clip}. "
        f"{args.steps} steps per run, median of {args.repeat} runs, the first step left out.",
        "",
        "| implementation | characters per second | runs |",
        "|---|---|---|",
    ]
    for name, rates in rows.items():
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        lines.append(f"| {name} | {statistics.median(rates):,.0f} | {runs} |")
    report = "\n".join(lines)
    print(report)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
