"""``portable-rnn check``: cross-backend conformance of every public function.

Each case builds NumPy inputs, runs on NumPy float64 (the reference, from the
inputs rounded to the tested dtype) and on a backend and dtype, and compares
every output within `portable_rnn.testing.tolerances`.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from .. import rnn_layers
from .. import testing as _testing
from .._backend import compat as _compat
from .._core.spec import CELLS

__all__ = ["CASES", "run_check"]


def _rng():
    return np.random.default_rng(1234)


def _params(kind, rng, n_x, n_a, n_y=2):
    """Parameters of a one-layer ``kind`` cell with an output layer (column dialect).

    Drawn in the order of the cell's keys; the recurrent layer's are halved.
    """
    spec = CELLS[kind]
    p = {}
    for key in spec.keys:
        scale = 1.0 if key in spec.output_keys else 0.5
        p[key] = rng.standard_normal(spec.shape(key, n_x, n_a, n_y)) * scale
    return p


def _seq(fwd, bwd, kind):
    def run(v):
        import portable_rnn as prnn

        out = getattr(prnn, fwd)(v["x"], v["a0"], v["p"])
        return {"a": out[0], "y": out[1], **getattr(prnn, bwd)(v["da"], out[-1])}

    def inputs():
        rng = _rng()
        p = _params(kind, rng, 3, 5)
        return {
            "x": rng.standard_normal((3, 4, 7)),
            "a0": rng.standard_normal((5, 4)),
            "p": p,
            "da": rng.standard_normal((5, 4, 7)),
        }

    return inputs, run


def _cell(fwd, bwd, kind):
    def run(v):
        import portable_rnn as prnn

        if kind == "lstm":
            a, c, y, cache = prnn.lstm_cell_forward(v["x"], v["a0"], v["c0"], v["p"])
            return {"a": a, "c": c, "y": y, **prnn.lstm_cell_backward(v["da"], v["dc"], cache)}
        a, y, cache = getattr(prnn, fwd)(v["x"], v["a0"], v["p"])
        return {"a": a, "y": y, **getattr(prnn, bwd)(v["da"], cache)}

    def inputs():
        rng = _rng()
        p = _params(kind, rng, 3, 5)
        return {
            "x": rng.standard_normal((3, 4)),
            "a0": rng.standard_normal((5, 4)),
            "c0": rng.standard_normal((5, 4)),
            "p": p,
            "da": rng.standard_normal((5, 4)),
            "dc": rng.standard_normal((5, 4)),
        }

    return inputs, run


def _multilayer(cell, lengths=None):
    """The stack of two bidirectional layers; with ``lengths`` (a list), as variable lengths
    of an integer array of the backend (the batch has one example per length)."""
    m = 2 if lengths is None else len(lengths)

    def inputs():
        import portable_rnn as prnn

        rng = _rng()
        layers = prnn.init_multilayer_params(
            cell, 3, 4, num_layers=2, bidirectional=True, seed=1, backend="numpy"
        )
        v = {
            "x": rng.standard_normal((3, m, 6)),
            "layers": layers,
            "dout": rng.standard_normal((8, m, 6)),
        }
        return v if lengths is None else {**v, "lengths": np.asarray(lengths)}

    def run(v):
        import portable_rnn as prnn

        out, a_n, _, cache = prnn.multilayer_forward(
            v["x"], v["layers"], cell=cell, bidirectional=True, lengths=v.get("lengths")
        )
        g = prnn.multilayer_backward(v["dout"], cache)
        res = {"out": out, "a_n": a_n, "dx": g["dx"], "da0": g["da0"]}
        for k, layer in enumerate(g["layers"]):
            res.update({f"{k}:{key}": val for key, val in layer.items()})
        return res

    return inputs, run


def _rows(kind):
    G = CELLS[kind].n_blocks

    def inputs():
        rng = _rng()
        N, Tn, D, H = 3, 5, 4, 6
        v = {
            "x": rng.standard_normal((N, Tn, D)),
            "h0": rng.standard_normal((N, H)),
            "Wx": rng.standard_normal((D, G * H)) * 0.5,
            "Wh": rng.standard_normal((H, G * H)) * 0.5,
            "b": rng.standard_normal(G * H),
            "dh": rng.standard_normal((N, Tn, H)),
        }
        if CELLS[kind].hidden_biases:
            v["bhn"] = rng.standard_normal(H)
        return v

    def run(v):
        args = [v[k] for k in ("x", "h0", "Wx", "Wh", "b", "bhn") if k in v]
        h, cache = getattr(rnn_layers, f"{kind}_forward")(*args)
        grads = getattr(rnn_layers, f"{kind}_backward")(v["dh"], cache)
        return {"h": h, **{f"g{i}": g for i, g in enumerate(grads)}}

    return inputs, run


def _temporal():
    def inputs():
        rng = _rng()
        N, Tn, D, V = 3, 4, 5, 6
        return {
            "x": rng.standard_normal((N, Tn, D)),
            "w": rng.standard_normal((D, V)),
            "b": rng.standard_normal(V),
            "y": rng.integers(0, V, size=(N, Tn)),
            "mask": rng.random((N, Tn)) < 0.7,
            "W": rng.standard_normal((V, D)),
            "dout": rng.standard_normal((N, Tn, D)),
        }

    def run(v):
        L = rnn_layers
        scores, cache = L.temporal_affine_forward(v["x"], v["w"], v["b"])
        loss, dscores = L.temporal_softmax_loss(scores, v["y"], v["mask"])
        dx, dw, db = L.temporal_affine_backward(dscores, cache)
        emb, ecache = L.word_embedding_forward(v["y"], v["W"])
        return {
            "scores": scores,
            "loss": loss,
            "dx": dx,
            "dw": dw,
            "db": db,
            "emb": emb,
            "dW": L.word_embedding_backward(v["dout"], ecache),
        }

    return inputs, run


def _activations():
    def inputs():
        return {"z": _rng().standard_normal((4, 7)) * 5}

    def run(v):
        import portable_rnn as prnn

        return {
            "sigmoid": prnn.sigmoid(v["z"]),
            "softmax": prnn.softmax(v["z"]),
            "softmax1": prnn.softmax(v["z"], axis=1),
        }

    return inputs, run


#: name -> (make NumPy inputs, run on converted inputs -> dict of outputs)
CASES = {
    "sigmoid, softmax": _activations(),
    "rnn_cell_forward/backward": _cell("rnn_cell_forward", "rnn_cell_backward", "rnn"),
    "rnn_forward/backward": _seq("rnn_forward", "rnn_backward", "rnn"),
    "lstm_cell_forward/backward": _cell(None, None, "lstm"),
    "lstm_forward/backward": _seq("lstm_forward", "lstm_backward", "lstm"),
    "gru_cell_forward/backward": _cell("gru_cell_forward", "gru_cell_backward", "gru"),
    "gru_forward/backward": _seq("gru_forward", "gru_backward", "gru"),
    **{
        f"multilayer_forward/backward ({c}, 2 layers, bidirectional)": _multilayer(c) for c in CELLS
    },
    "multilayer_forward/backward (lstm, 2 layers, bidirectional, lengths 6, 3, 0, 1)": (
        _multilayer("lstm", [6, 3, 0, 1])
    ),
    **{f"rnn_layers.{c}_forward/backward": _rows(c) for c in CELLS},
    "rnn_layers temporal affine, softmax loss, word embedding": _temporal(),
}


def _convert(tree, make):
    if isinstance(tree, dict):
        return {k: _convert(v, make) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_convert(v, make) for v in tree]
    return make(np.asarray(tree))


def _round(a, dtype):
    return a.astype(dtype).astype(np.float64) if np.issubdtype(a.dtype, np.floating) else a


def _check_one(backend, dtype):
    """``(passed, failures, largest difference, seconds)`` for one backend and dtype."""
    rtol, atol = _testing.tolerances(dtype)
    ref_backend = _testing.Backend("numpy", "numpy", "cpu")
    passed, failures, worst = 0, [], 0.0
    start = time.perf_counter()
    for name, (inputs, run) in CASES.items():
        v = inputs()
        try:
            want = run(_convert(v, lambda a: _round(a, dtype)))
            got = run(
                _convert(
                    v,
                    lambda a: backend.asarray(
                        a, dtype=dtype if np.issubdtype(a.dtype, np.floating) else None
                    ),
                )
            )
            bad = []
            keys = [key for key, ref in want.items() if ref is not None]
            for key in keys:
                _testing._check_meta(  # backend, shape, dtype, device
                    got[key],
                    ref_backend.asarray(want[key]),
                    xp=backend,
                    dtype=dtype,
                    device=backend.array_device,
                    err_msg=key,
                )
            # read together: Dask computes the case's graph once, not once per output
            host = dict(zip(keys, _compat.read_values(*(got[k] for k in keys)), strict=True))
            for key in keys:
                ref = want[key]
                diff = np.abs(
                    _testing.to_numpy(host[key]).astype(np.float64) - _testing.to_numpy(ref)
                )
                worst = max(worst, float(diff.max(initial=0.0)))
                if not np.all(diff <= atol + rtol * np.abs(_testing.to_numpy(ref))):
                    bad.append(key)
            if bad:
                failures.append(f"{name}: {', '.join(bad)} beyond tolerance")
            else:
                passed += 1
        except Exception as exc:  # report, go on with the other cases
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    return passed, failures, worst, time.perf_counter() - start


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_check(
    backends=None, dtypes=("float64", "float32"), as_json=False, out=print, err=_stderr
) -> int:
    """Run the conformance check; print a table (or JSON); return the exit status.

    Parameters
    ----------
    backends : list of str, optional
        Backend names (as `portable_rnn.testing.BACKEND_NAMES`); default: all
        that can run here.
    dtypes : sequence of {"float64", "float32"}
    as_json : bool
        Print one JSON document instead of the table.
    out, err : callable
        Where lines go: the report, and the errors of a bad request.

    Returns
    -------
    status : int
        0 if every function agrees on every backend, 1 if any disagrees, 2 for
        a bad request (unknown backend, or one asked for that cannot run).
    """
    _testing.full_precision()
    try:
        listed = _testing.select_backends(None)
        chosen = (
            _testing.select_backends(backends)
            if backends
            else [(b, why) for b, why in listed if why is None]
        )
    except ValueError as exc:
        err(f"portable-rnn check: {exc}")
        return 2
    rows = []
    for b, _ in chosen:
        for dtype in dtypes:
            with b.settings():
                passed, failures, worst, seconds = _check_one(b, dtype)
            rows.append(
                {
                    "backend": b.name,
                    "device": b.describe(),
                    "dtype": dtype,
                    "passed": passed,
                    "total": len(CASES),
                    "max_abs_diff": worst,
                    "seconds": round(seconds, 3),
                    "failures": failures,
                }
            )
    status = 0 if all(not r["failures"] for r in rows) else 1
    if as_json:
        out(json.dumps({"cases": list(CASES), "results": rows, "ok": status == 0}, indent=2))
        return status
    out(f"portable_rnn check: {len(CASES)} groups of public functions against NumPy float64")
    header = ("backend", "device", "dtype", "passed", "max |diff|", "time s")
    out("{:<26} {:<22} {:<8} {:>9} {:>11} {:>7}".format(*header))
    for r in rows:
        out(
            f"{r['backend']:<26} {r['device'][:22]:<22} {r['dtype']:<8} "
            f"{r['passed']:>4}/{r['total']:<4} {r['max_abs_diff']:>11.3e} {r['seconds']:>7.2f}"
        )
        for f in r["failures"]:
            out(f"    FAILED {f}")
    for b, why in listed:
        if why and not backends:
            out(f"{b.name:<26} not run: {why}")
    out("all backends agree" if status == 0 else "SOME BACKENDS DISAGREE")
    return status
