"""``portable-rnn bench``: timings of RNN, LSTM and GRU next to PyTorch and JAX references.

What is timed, per size, cell and implementation, in float32:

* **ours** on every selected backend and device: the rows-dialect sequence
  (`portable_rnn.rnn_layers.{cell}_forward`, and ``_backward`` for fwd+bwd), i.e.
  the hidden-state recurrence exactly as ``torch.nn.LSTM`` computes it, through
  the same shared sequence code as the column dialect; on JAX under ``jax.jit``
  (where the time loop is ``lax.scan``), like the reference, and with ``eager``
  (``--eager``) also outside ``jit``, as called directly (where sequences of 32 steps
  or more run in compiled chunks: see `portable_rnn._backend.seam.time_loop`);
* **torch.nn.RNN/LSTM/GRU** on the same device (cuDNN on a GPU), autograd for the
  backward;
* **JAX lax.scan** reference: a hand-written fused-gate ``lax.scan`` under ``jit``
  with the input product hoisted, ``jax.vjp`` for the backward;
* **seed loop** (NumPy, LSTM, forward only): the notebooks' per-step loop;
* with ``--lengths mixed``, **ours with masking** too (``ours (numpy, masked)``): the same
  call given ``lengths`` (`mixed_lengths`: spread evenly from ``T`` down to about ``T/4``, in
  a fixed shuffled order), as variable-length batches run it, timed call by call in turn
  with the unmasked one; a last table gives the median of masked / unmasked over those
  pairs, forward and forward+backward (the references run full length).

Precision is equalised: full float32 matrix products everywhere (no TF32:
``jax_default_matmul_precision="highest"``, ``CUPY_TF32=0``,
``torch.backends.*.allow_tf32 = False``). Each timing is the median of
``--repeat`` runs after warm-up runs, with the device synchronised; peak device
memory is reported on GPUs. Ratios are to the fastest reference (torch or JAX)
of the same row group.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from .. import rnn_layers
from .. import testing as _testing
from .._core.spec import CELLS

__all__ = ["LENGTHS", "SIZES", "mixed_lengths", "run_bench"]

#: name -> (T, B, D, H); "long" and "long-wide" are the long sequences of issue 17
#: (the column dialect's n_x = D, n_a = H, m = B), best timed with ``eager``
SIZES = {
    "S": (50, 32, 64, 128),
    "M": (100, 64, 256, 512),
    "L": (200, 256, 512, 1024),
    "long": (10000, 4, 8, 16),
    "long-wide": (10000, 32, 64, 128),
}


#: the ``--lengths`` choices: every sequence full, or also ours with `mixed_lengths`
LENGTHS = ("full", "mixed")


def mixed_lengths(T: int, B: int, seed: int = 0) -> np.ndarray:
    """``B`` lengths in ``1 .. T``, spread evenly from ``T`` down to about ``T/4``, shuffled.

    Parameters
    ----------
    T : int
        Steps of the padded batch; the longest length (``B >= 1``) is ``T``.
    B : int
        Examples in the batch.
    seed : int, optional
        Seed of the shuffle: the same arguments always give the same lengths.

    Returns
    -------
    lengths : numpy.ndarray, shape (B,), int64
    """
    lengths = np.round(np.linspace(T, max(1.0, T / 4), B)).astype(np.int64)
    np.random.default_rng(seed).shuffle(lengths)
    return lengths


def _sync(backend: str, value) -> None:
    if backend == "jax":
        import jax

        jax.block_until_ready(value)
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    elif backend == "cupy":  # pragma: no cover - needs a GPU
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def _peak_reset(backend: str, device) -> None:
    if backend == "torch" and str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def _peak(backend: str, device):
    """Peak device memory in MiB since the last reset, or None (CPU)."""
    try:
        if backend == "torch" and str(device).startswith("cuda"):
            import torch

            return torch.cuda.max_memory_allocated(device) / 2**20
        if backend == "cupy":  # pragma: no cover - needs a GPU
            import cupy

            return cupy.get_default_memory_pool().total_bytes() / 2**20
        if backend == "jax" and getattr(device, "platform", "cpu") != "cpu":  # pragma: no cover
            stats = device.memory_stats() or {}
            return stats.get("peak_bytes_in_use", 0) / 2**20
    except Exception:  # pragma: no cover - memory statistics are best effort
        return None
    return None


def _time(fn, backend, repeat, warmup):
    for _ in range(warmup):
        _sync(backend, fn())
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        _sync(backend, fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _time_pair(fn, base, backend, repeat, warmup):
    """Time ``fn`` in turn with ``base``: ``(median ms of fn, median of fn / base per pair)``.

    One call of each after the other, so that a load changing during the run (other work on
    a shared machine) weighs on both alike: the ratio holds where separate medians do not.
    """
    for _ in range(warmup):
        _sync(backend, base())
        _sync(backend, fn())
    times, ratios = [], []
    for _ in range(repeat):
        pair = []
        for f in (base, fn):
            start = time.perf_counter()
            _sync(backend, f())
            pair.append(time.perf_counter() - start)
        times.append(pair[1])
        ratios.append(pair[1] / pair[0])
    return statistics.median(times) * 1e3, statistics.median(ratios)


def _is_oom(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "resource_exhausted" in text


def _problem(cell, size, seed=0):
    T, B, D, H = size
    rng = np.random.default_rng(seed)
    G = CELLS[cell].n_blocks
    s = 1 / np.sqrt(H)
    v = {
        "x": rng.standard_normal((B, T, D)).astype(np.float32),
        "h0": np.zeros((B, H), np.float32),
        "Wx": rng.uniform(-s, s, (D, G * H)).astype(np.float32),
        "Wh": rng.uniform(-s, s, (H, G * H)).astype(np.float32),
        "b": rng.uniform(-s, s, G * H).astype(np.float32),
        "dh": rng.standard_normal((B, T, H)).astype(np.float32),
    }
    if CELLS[cell].hidden_biases:
        v["bhn"] = rng.uniform(-s, s, H).astype(np.float32)
    return v


def _ours(backend, cell, v, *, eager=False, lengths=None):
    args = {k: backend.asarray(a, dtype="float32") for k, a in v.items()}
    names = [k for k in ("x", "h0", "Wx", "Wh", "b", "bhn") if k in args]
    forward = getattr(rnn_layers, f"{cell}_forward")
    backward = getattr(rnn_layers, f"{cell}_backward")
    lens = None if lengths is None else backend.asarray(lengths)  # an argument, also to jit

    def run(lens, *a):
        return forward(*a) if lens is None else forward(*a, lengths=lens)

    def run_fwd(lens, *a):
        return run(lens, *a)[0]

    def run_fwd_bwd(lens, dh, *a):
        _, cache = run(lens, *a)
        return backward(dh, cache)

    if backend.backend == "jax" and not eager:  # as the reference: under jit (lax.scan)
        import jax

        run_fwd, run_fwd_bwd = jax.jit(run_fwd), jax.jit(run_fwd_bwd)
    inputs = [args[k] for k in names]
    return (lambda: run_fwd(lens, *inputs)), (lambda: run_fwd_bwd(lens, args["dh"], *inputs))


def _torch_ref(cell, v, device):
    import torch

    D, H = v["x"].shape[2], v["h0"].shape[1]
    cls = getattr(torch.nn, CELLS[cell].torch_module)
    module = cls(D, H, batch_first=True, device=device, dtype=torch.float32)
    x = torch.from_numpy(v["x"]).to(device).requires_grad_(True)
    dh = torch.from_numpy(v["dh"]).to(device)

    def fwd():
        with torch.no_grad():
            return module(x)[0]

    def fwd_bwd():
        module.zero_grad(set_to_none=True)
        out = module(x)[0]
        out.backward(dh)
        return out

    return fwd, fwd_bwd


def _jax_ref(cell, v, device):
    import jax
    import jax.numpy as jnp

    H = v["h0"].shape[1]
    put = {k: jax.device_put(jnp.asarray(a), device) for k, a in v.items()}

    def run(x, h0, Wx, Wh, b, bhn):
        xw = jnp.einsum("btd,dg->tbg", x, Wx) + b  # hoisted input product, time-major

        def step(carry, xw_t):
            h, c = carry
            hw = h @ Wh
            if cell == "rnn":
                h = jnp.tanh(xw_t + hw)
            elif cell == "lstm":
                i, f, g, o = jnp.split(xw_t + hw, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
            else:
                xr, xz, xn = jnp.split(xw_t, 3, axis=-1)
                hr, hz, hn = jnp.split(hw, 3, axis=-1)
                r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
                n = jnp.tanh(xn + r * (hn + bhn))
                h = (1 - z) * n + z * h
            return (h, c), h

        _, hs = jax.lax.scan(step, (h0, jnp.zeros_like(h0)), xw)
        return jnp.swapaxes(hs, 0, 1)

    bhn = put.get("bhn", jnp.zeros((H,), jnp.float32))
    args = (put["x"], put["h0"], put["Wx"], put["Wh"], put["b"], bhn)
    fwd_jit = jax.jit(run)

    @jax.jit
    def fwd_bwd_jit(*a):
        _, pullback = jax.vjp(run, *a)
        return pullback(put["dh"])

    return (lambda: fwd_jit(*args)), (lambda: fwd_bwd_jit(*args))


def _seed_loop(v):
    """Seed 002's LSTM forward: per step a concatenate, four gate products, separate passes."""
    x, h0, Wx, Wh, b = (v[k] for k in ("x", "h0", "Wx", "Wh", "b"))
    H = h0.shape[1]
    W = np.concatenate([Wh.T, Wx.T], axis=1)  # (4H, H + D), gates i, f, o, g
    Wi, Wf, Wo, Wc = (W[k * H : (k + 1) * H] for k in range(4))
    bi, bf, bo, bc = (b[k * H : (k + 1) * H, None] for k in range(4))
    xs = np.transpose(x, (2, 0, 1))  # (D, B, T)

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    def fwd():
        B, T = x.shape[0], x.shape[1]
        a = np.zeros((H, B, T), np.float32)
        a_t, c_t = h0.T, np.zeros((H, B), np.float32)
        for t in range(T):
            concat = np.concatenate((a_t, xs[:, :, t]), axis=0)
            ft = sigmoid(Wf @ concat + bf)
            it = sigmoid(Wi @ concat + bi)
            cct = np.tanh(Wc @ concat + bc)
            c_t = ft * c_t + it * cct
            ot = sigmoid(Wo @ concat + bo)
            a_t = ot * np.tanh(c_t)
            a[:, :, t] = a_t
        return a

    return fwd


def _versions() -> str:
    import importlib.metadata as md

    found = []
    for name in (
        "numpy",
        "array-api-compat",
        "jax",
        "jaxlib",
        "torch",
        "cupy-cuda12x",
        "cupy-cuda13x",
    ):
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            continue
    return ", ".join(found)


def _fmt(ms):
    return "-" if ms is None else (ms if isinstance(ms, str) else f"{ms:.2f}")


def run_bench(
    sizes=("S", "M"),
    cells=("lstm", "gru", "rnn"),
    backends=None,
    repeat=5,
    warmup=2,
    references=True,
    out=print,
    err=None,
    eager=False,
    lengths="full",
) -> int:
    """Time the implementations; print a markdown report; return the exit status.

    Parameters
    ----------
    sizes : sequence of str or (T, B, D, H)
        Names from `SIZES`, or tuples.
    cells : sequence of {"rnn", "lstm", "gru"}
    backends : list of str, optional
        `portable_rnn.testing.BACKEND_NAMES` to time ours on; default: the
        non-read-only backends that can run here, without array_api_strict
        (a correctness backend, not a fast one).
    repeat, warmup : int
        Timed and untimed runs per measurement; the median is reported.
    references : bool
        Also time torch.nn, the JAX lax.scan reference and the seed loop.
    out, err : callable
        Where the report and the errors go.
    eager : bool
        Also time ours on every selected JAX backend outside ``jax.jit``
        (``ours (jax, eager)``), as called directly.
    lengths : {"full", "mixed"}
        ``"mixed"``: also time every ours with `mixed_lengths` (``ours (numpy, masked)``),
        and end with a table of masked / unmasked times.

    Returns
    -------
    status : int
        0, or 2 for a bad request (unknown size, cell, backend or lengths, or a backend
        that cannot run).
    """
    err = err or (lambda line: print(line, file=sys.stderr))
    resolved = []
    for s in sizes:
        if isinstance(s, str) and s in SIZES:
            resolved.append((s, SIZES[s]))
        elif isinstance(s, tuple) and len(s) == 4 and all(isinstance(n, int) and n > 0 for n in s):
            resolved.append(("x".join(map(str, s)), s))
        else:
            err(f"portable-rnn bench: unknown size {s!r}; use {', '.join(SIZES)} or T,B,D,H")
            return 2
    if lengths not in LENGTHS:
        err(f"portable-rnn bench: unknown lengths {lengths!r}; use {' or '.join(LENGTHS)}")
        return 2
    bad = [c for c in cells if c not in CELLS]
    if bad:
        err(f"portable-rnn bench: unknown cell(s) {', '.join(bad)}; valid: {', '.join(CELLS)}")
        return 2
    try:
        if backends:
            chosen = [b for b, _ in _testing.select_backends(backends)]
        else:  # array_api_strict checks correctness, it is not meant to be fast
            chosen = [
                b
                for b, why in _testing.select_backends(None)
                if why is None and not b.readonly and b.backend != "array_api_strict"
            ]
    except ValueError as exc:
        err(f"portable-rnn bench: {exc}")
        return 2
    _testing.full_precision()

    gpu = next((b for b in chosen if b.device != "cpu"), None)
    out("# portable-rnn bench")
    out("")
    out(f"- date: {datetime.date.today().isoformat()}")
    out(
        f"- machine: {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} CPU threads" + (f", GPU: {gpu.describe()}" if gpu else "")
    )
    out(f"- versions: Python {platform.python_version()}, {_versions()}")
    out("- precision: float32, full float32 matrix products everywhere (no TF32)")
    out(f"- median of {repeat} runs after {warmup} warm-up runs, device synchronised; ms")
    if eager:
        out("- ours (jax) runs under jax.jit; ours (jax, eager) outside it, as called directly")
    if lengths == "mixed":
        out(
            "- lengths mixed: ours (..., masked) is given lengths spread evenly from T down "
            "to about T/4, shuffled (seed 0); the references run full length"
        )
    out("")
    out(
        "| size (T, B, D, H) | cell | implementation | device | fwd ms | fwd+bwd ms "
        "| fwd / best ref | fwd+bwd / best ref | peak MiB |"
    )
    out("|---|---|---|---|---|---|---|---|---|")
    groups = []
    for size_name, size in resolved:
        for cell in cells:
            overhead = _bench_group(
                size_name, size, cell, chosen, references, repeat, warmup, out, eager, lengths
            )
            groups.append((size_name, size, cell, overhead))
    if lengths == "mixed":
        _masking_table(groups, out)
    return 0


def _masking_table(groups, out) -> None:
    """Each ours' masking overhead: the median of masked / unmasked over interleaved calls."""
    out("")
    out(
        "Masking overhead: ours with mixed lengths over ours with none (same padded batch), "
        "median over calls made in turn."
    )
    out("")
    out(
        "| size (T, B, D, H) | cell | implementation "
        "| fwd masked / unmasked | fwd+bwd masked / unmasked |"
    )
    out("|---|---|---|---|---|")
    for size_name, size, cell, overhead in groups:
        for name, ratios in overhead.items():
            r_f, r_fb = (f"{r:.2f}x" if isinstance(r, float) else _fmt(r) for r in ratios)
            out(f"| {size_name} {size} | {cell} | {name} | {r_f} | {r_fb} |")


def _masked_name(name: str) -> str:
    """``ours (numpy)`` -> ``ours (numpy, masked)``."""
    return name[:-1] + ", masked)"


def _ours_eager(backend, cell, v, lengths=None):
    return _ours(backend, cell, v, eager=True, lengths=lengths)


def _ours_masked(backend, cell, v, lengths):
    return _ours(backend, cell, v, lengths=lengths)


def _implementations(cell, v, chosen, references, eager=False, lengths=None):
    """``(name, device name, backend, device, factory, args, is_reference)`` to time;
    with ``lengths``, every ours also masked (``ours (numpy, masked)``) right after it."""
    impls: list[tuple[Any, ...]] = []
    for b in chosen:
        dev = (b.describe(), b.backend, b.array_device)
        ours: list[tuple[str, Any, Any]] = [(f"ours ({b.name})", _ours, _ours_masked)]
        if eager and b.backend == "jax":
            ours.append((f"ours ({b.name}, eager)", _ours_eager, _ours_eager))
        for name, factory, masked in ours:
            impls.append((name, *dev, factory, (b, cell, v), False))
            if lengths is not None:
                impls.append((_masked_name(name), *dev, masked, (b, cell, v, lengths), False))
    if not references:
        return impls
    import importlib.util

    torch_backends = [b for b in chosen if b.backend == "torch"]
    if not torch_backends and importlib.util.find_spec("torch") is not None:
        torch_backends = [_testing.Backend("torch", "torch", "cpu")]
    module = CELLS[cell].torch_module
    for b in torch_backends:
        impls.append(
            (
                f"torch.nn.{module}",
                b.describe(),
                "torch",
                b.array_device,
                _torch_ref,
                (cell, v, b.array_device),
                True,
            )
        )
    for b in [b for b in chosen if b.backend == "jax"]:
        impls.append(
            (
                "JAX lax.scan reference",
                b.describe(),
                "jax",
                b.array_device,
                _jax_ref,
                (cell, v, b.array_device),
                True,
            )
        )
    if cell == "lstm" and any(b.backend == "numpy" for b in chosen):
        impls.append(
            (
                "seed loop (NumPy)",
                "cpu",
                "numpy",
                "cpu",
                lambda v: (_seed_loop(v), None),
                (v,),
                False,
            )
        )
    return impls


def _bench_group(
    size_name, size, cell, chosen, references, repeat, warmup, out, eager=False, lengths="full"
):
    """Time one size and cell and print its rows. Returns the masking overhead: ours' name
    -> (fwd, fwd+bwd) masked / unmasked (empty without lengths)."""
    v = _problem(cell, size)
    lens = mixed_lengths(size[0], size[1]) if lengths == "mixed" else None
    rows = []  # (name, device name, fwd ms, fwd+bwd ms, peak MiB, is_reference)
    overhead = {}
    unmasked = None  # the last ours timed, (name, fwd, fwd_bwd): its masked run comes next
    for name, dev_name, backend, device, factory, args, is_ref in _implementations(
        cell, v, chosen, references, eager, lens
    ):
        masked_of = unmasked if unmasked and name == _masked_name(unmasked[0]) else None
        try:
            fwd, fwd_bwd = factory(*args)
            _peak_reset(backend, device)
            if masked_of:  # in turn with the unmasked run, for the ratio
                t_f, r_f = _time_pair(fwd, masked_of[1], backend, repeat, warmup)
                t_fb, r_fb = _time_pair(fwd_bwd, masked_of[2], backend, repeat, warmup)
                overhead[masked_of[0]] = (r_f, r_fb)
            else:
                t_f = _time(fwd, backend, repeat, warmup)
                t_fb = None if fwd_bwd is None else _time(fwd_bwd, backend, repeat, warmup)
            peak = _peak(backend, device)
        except Exception as exc:  # an out-of-memory size is reported, and the run goes on
            if not _is_oom(exc):
                raise
            t_f, t_fb, peak = "OOM", "OOM", None
            fwd = fwd_bwd = None
            if masked_of:
                overhead[masked_of[0]] = ("OOM", "OOM")
        is_ours = lens is not None and not is_ref and name.startswith("ours (") and not masked_of
        unmasked = (name, fwd, fwd_bwd) if is_ours and fwd is not None else None
        rows.append((name, dev_name, t_f, t_fb, peak, is_ref))
    for name, dev_name, t_f, t_fb, peak, _ in rows:
        refs = [r for r in rows if r[5] and r[1] == dev_name]
        ratios = []
        for k, ours_t in ((2, t_f), (3, t_fb)):
            best = [r[k] for r in refs if isinstance(r[k], float)]
            ok = best and isinstance(ours_t, float)
            ratios.append(f"{ours_t / min(best):.2f}x" if ok else "-")
        out(
            f"| {size_name} {size} | {cell} | {name} | {dev_name} | {_fmt(t_f)} | {_fmt(t_fb)} "
            f"| {ratios[0]} | {ratios[1]} | {_fmt(peak)} |"
        )
    return overhead
