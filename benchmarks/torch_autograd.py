"""Time forward + ``loss.backward()`` of `portable_rnn.torch` against two references.

For each cell it times, on PyTorch CPU tensors, the median of ``--repeat`` runs after
``--warmup`` runs of forward then ``loss.backward()`` (``loss = out.sum()``):

* ``pt.<CELL> module``: `portable_rnn.torch.LSTM/GRU/RNN` (PyTorch layout, parameter mapping
  and portable_rnn's hand-written backward through ``torch.autograd.Function``);
* ``pt.multilayer_forward``: the same Function called on column-dialect leaves directly;
* ``autograd through prnn``: `portable_rnn.multilayer_forward` on tensors that require
  grad, so that PyTorch's autograd differentiates portable_rnn's forward op by op (the
  hand-written backward is not used);
* ``torch.nn.<CELL>``: PyTorch's own module (oneDNN's fused kernels on CPU), for scale.

Usage::

    python benchmarks/torch_autograd.py --hidden 128 --steps 100 --batch 32 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import portable_rnn as prnn
import portable_rnn.torch as pt

MODULES = {
    "rnn": (pt.RNN, torch.nn.RNN),
    "lstm": (pt.LSTM, torch.nn.LSTM),
    "gru": (pt.GRU, torch.nn.GRU),
}


def _median_ms(cases: dict, repeat: int, warmup: int) -> dict:
    """name -> median milliseconds; the cases take turns, so that a busy machine's noise
    falls on all of them alike."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _cases(cell: str, args, dtype):
    """name -> a callable running one forward + backward."""
    D = 2 if args.bidirectional else 1
    ours_cls, theirs_cls = MODULES[cell]
    kw = {"num_layers": args.layers, "bidirectional": args.bidirectional, "dtype": dtype}
    torch.manual_seed(0)
    ours = ours_cls(args.input, args.hidden, **kw)
    theirs = theirs_cls(args.input, args.hidden, **kw)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(args.steps, args.batch, args.input, dtype=dtype)
    x_col = x.permute(2, 1, 0).contiguous()  # (n_x, m, T)
    with prnn.config_context(backend="torch", dtype=str(dtype).removeprefix("torch.")):
        layers = prnn.init_multilayer_params(
            cell, args.input, args.hidden, num_layers=args.layers, bidirectional=D == 2, seed=0
        )
    layers = [{k: v.requires_grad_() for k, v in p.items()} for p in layers]

    def module(m):
        def run():
            out, _ = m(x)
            out.sum().backward()

        return run

    def functional():
        out, _, _ = pt.multilayer_forward(x_col, layers, cell=cell, bidirectional=D == 2)
        out.sum().backward()

    def plain():
        out, _, _, _ = prnn.multilayer_forward(x_col, layers, cell=cell, bidirectional=D == 2)
        out.sum().backward()

    name = cell.upper()
    return {
        f"pt.{name} module": module(ours),
        "pt.multilayer_forward": functional,
        "autograd through prnn": plain,
        f"torch.nn.{name}": module(theirs),
    }


def main(argv=None) -> None:
    """Parse the arguments, time every case, print a markdown table.

    Parameters
    ----------
    argv : list of str, optional
        The command line (``sys.argv[1:]`` when ``None``).
    """
    parser = argparse.ArgumentParser(
        description="Time forward + loss.backward() of portable_rnn.torch against references."
    )
    parser.add_argument("--hidden", type=int, default=128, help="hidden units H")
    parser.add_argument("--input", type=int, default=64, help="input features H_in")
    parser.add_argument("--steps", type=int, default=100, help="time steps T")
    parser.add_argument("--batch", type=int, default=32, help="batch N")
    parser.add_argument("--layers", type=int, default=1, help="num_layers")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--cells", default="lstm,gru,rnn", help="comma-separated cells")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    print(
        f"T={args.steps} N={args.batch} H_in={args.input} H={args.hidden} "
        f"layers={args.layers} bidirectional={args.bidirectional} {args.dtype}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"median of {args.repeat} (taking turns) after {args.warmup} warm-up, forward + backward"
    )
    print()
    print("| cell | implementation | ms | x torch.nn |")
    print("|---|---|---:|---:|")
    for cell in args.cells.split(","):
        cases = _cases(cell, args, dtype)
        times = _median_ms(cases, args.repeat, args.warmup)
        ref = times[f"torch.nn.{cell.upper()}"]
        for name, ms in times.items():
            print(f"| {cell} | {name} | {ms:.1f} | {ms / ref:.2f} |")


if __name__ == "__main__":
    main()
