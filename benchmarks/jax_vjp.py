"""Time ``jax.jit(jax.grad(loss))`` through portable_rnn's hand-written backward as a custom
VJP (`portable_rnn.jax`) against JAX's own autodiff through the plain forward.

For each cell (RNN, LSTM, GRU): the loss is ``sum(w * a)`` over every hidden state of a
sequence (the column dialect's ``rnn_forward``/``lstm_forward``/``gru_forward``, no output
layer; with ``--layers`` > 1 or ``--bidirectional``, ``multilayer_forward``'s ``out``), its
gradient taken with respect to ``x`` and every weight. Printed per cell, as a markdown
table: the jitted forward alone, the jitted gradient with the custom VJP and with plain
autodiff (medians over ``--repeat`` runs after ``--warmup`` runs, each waited for with
``block_until_ready``), their ratio, the first call of each (compile time included), and
the largest difference of the two gradients relative to the largest gradient.

    python benchmarks/jax_vjp.py --hidden 128 --steps 100 --batch 32 --dtype float32 --repeat 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

__all__ = ["main"]


def _parse(argv):
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=128, help="hidden units n_a (128)")
    parser.add_argument("--inputs", type=int, default=None, help="input features n_x (--hidden)")
    parser.add_argument("--steps", type=int, default=100, help="time steps T_x (100)")
    parser.add_argument("--batch", type=int, default=32, help="examples m (32)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs, median (5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs after the first (1)")
    parser.add_argument("--cells", default="lstm,gru,rnn", help="comma-separated (lstm,gru,rnn)")
    parser.add_argument("--layers", type=int, default=1, help="layers; > 1 uses the stack (1)")
    parser.add_argument("--bidirectional", action="store_true", help="use a bidirectional stack")
    args = parser.parse_args(argv)
    if min(args.hidden, args.steps, args.batch, args.repeat, args.layers) < 1 or args.warmup < 0:
        parser.error("sizes, --repeat and --layers must be at least 1, --warmup at least 0")
    return args


def _seconds(fn, *args, repeat: int, warmup: int):
    """``(first, median)``: the first call (compilation included), then the median."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def _problem(cell: str, args, jnp):
    """``(x, params, w)``: inputs, parameters (a dict, or a list for the stack), weights."""
    from portable_rnn._core.spec import cell_spec

    spec = cell_spec(cell)
    rng = np.random.default_rng(0)
    n_x, n_a, m, T = args.inputs or args.hidden, args.hidden, args.batch, args.steps
    D = 2 if args.bidirectional else 1
    bound = 1 / np.sqrt(n_a)

    def layer(n_in):
        return {
            k: jnp.asarray(rng.uniform(-bound, bound, spec.shape(k, n_in, n_a, 1)), args.dtype)
            for k in spec.layer_keys
        }

    if args.layers == 1 and D == 1:
        params = layer(n_x)
    else:
        params = [layer(n_x if k < D else D * n_a) for k in range(args.layers * D)]
    x = jnp.asarray(rng.standard_normal((n_x, m, T)), args.dtype)
    w = jnp.asarray(rng.standard_normal((D * n_a, m, T)), args.dtype)
    return x, params, w


def _losses(cell: str, args, jnp):
    """``(forward, loss)`` for a module (``portable_rnn`` or ``portable_rnn.jax``)."""

    def make(module):
        stack = args.layers > 1 or args.bidirectional
        column = None if stack else getattr(module, f"{cell}_forward")

        def forward(x, params):
            if column is not None:
                return column(x, None, params)[0]
            return module.multilayer_forward(
                x, params, cell=cell, bidirectional=args.bidirectional
            )[0]

        def loss(x, params, w):
            return jnp.sum(w * forward(x, params))

        return forward, loss

    return make


def main(argv=None) -> int:
    """Run the benchmark and print its table; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The command-line arguments (``sys.argv[1:]`` when omitted).

    Returns
    -------
    status : int
        0.
    """
    args = _parse(argv)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    import jax.numpy as jnp

    import portable_rnn as prnn
    import portable_rnn.jax as pj

    D = 2 if args.bidirectional else 1
    what = "column" if args.layers == 1 and D == 1 else f"stack L={args.layers} D={D}"
    print(
        f"JAX {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or '?'}), "
        f"{args.dtype}; n_x={args.inputs or args.hidden} n_a={args.hidden} m={args.batch} "
        f"T_x={args.steps}; {what}; median of {args.repeat} after {args.warmup} warm-up"
    )
    print()
    print(
        "| cell | forward (jit) ms | grad, custom VJP ms | grad, autodiff ms | autodiff / custom "
        "| first call custom / autodiff s | max grad diff (rel) |"
    )
    print("|---|---|---|---|---|---|---|")
    for cell in args.cells.split(","):
        x, params, w = _problem(cell, args, jnp)
        make = _losses(cell, args, jnp)
        forward, _ = make(prnn)
        _, loss_custom = make(pj)
        _, loss_plain = make(prnn)
        fwd = jax.jit(forward)
        g_custom = jax.jit(jax.grad(loss_custom, argnums=(0, 1)))
        g_plain = jax.jit(jax.grad(loss_plain, argnums=(0, 1)))
        _, t_fwd = _seconds(fwd, x, params, repeat=args.repeat, warmup=args.warmup)
        c_custom, t_custom = _seconds(
            g_custom, x, params, w, repeat=args.repeat, warmup=args.warmup
        )
        c_plain, t_plain = _seconds(g_plain, x, params, w, repeat=args.repeat, warmup=args.warmup)
        a = jax.tree_util.tree_leaves(g_custom(x, params, w))
        b = jax.tree_util.tree_leaves(g_plain(x, params, w))
        scale = max(float(jnp.max(jnp.abs(v))) for v in b)
        diff = max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, b, strict=True)) / scale
        print(
            f"| {cell} | {t_fwd * 1e3:.2f} | {t_custom * 1e3:.2f} | {t_plain * 1e3:.2f} "
            f"| {t_plain / t_custom:.2f}x | {c_custom:.1f} / {c_plain:.1f} | {diff:.1e} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
