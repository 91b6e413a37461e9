"""``python -m portable_rnn``: the same LSTM on every installed backend.

Runs a small LSTM forward and backward on NumPy float64 and then on every
other backend that can run here, and prints, per backend, the largest
difference from NumPy. Exit status 1 if any backend disagrees.
"""

from __future__ import annotations

import sys

import numpy as np

from . import init_lstm_params, lstm_backward, lstm_forward, to_backend
from .testing import available_backends, to_numpy, tolerances


def _enable_jax_float64() -> None:
    """This process is ours: let JAX run float64 too (it is off by default)."""
    import importlib.util

    if importlib.util.find_spec("jax") is not None:
        import jax

        jax.config.update("jax_enable_x64", True)


def main(argv=None) -> int:
    _enable_jax_float64()
    rng = np.random.default_rng(0)
    n_x, n_a, n_y, m, T = 8, 16, 4, 5, 12
    params = init_lstm_params(n_x, n_a, n_y, seed=0, backend="numpy", dtype="float64")
    x = rng.standard_normal((n_x, m, T))
    da = rng.standard_normal((n_a, m, T))
    a, y, c, caches = lstm_forward(x, None, params)
    ref = {"a": a, "y": y, "c": c, **lstm_backward(da, caches)}

    print(f"portable_rnn LSTM demo: n_x={n_x} n_a={n_a} n_y={n_y} m={m} T_x={T}")
    print(f"{'backend':<18}{'dtype':<9}{'max |diff| vs numpy float64':>30}  agrees")
    failures = 0
    for b in available_backends():
        if b.readonly:
            continue
        for dtype in ("float64", "float32"):
            inputs = to_backend({"x": x, "p": params, "da": da}, b.backend, b.device, dtype=dtype)
            a_, y_, c_, caches_ = lstm_forward(inputs["x"], None, inputs["p"])
            out = {"a": a_, "y": y_, "c": c_, **lstm_backward(inputs["da"], caches_)}
            rtol, atol = tolerances(dtype)
            worst, ok = 0.0, True
            for k, v in ref.items():
                diff = np.abs(to_numpy(out[k]).astype(np.float64) - v)
                worst = max(worst, float(diff.max()))
                ok &= bool(np.all(diff <= atol + rtol * np.abs(v)))
            failures += not ok
            print(f"{b.name:<18}{dtype:<9}{worst:>30.3e}  {'yes' if ok else 'NO'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
