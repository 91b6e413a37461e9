"""A valid call of every public array function, for the tests that change one argument.

`calls(xp)` gives one `Call` per public function of ``portable_rnn`` (the array
functions), ``portable_rnn.rnn_layers`` and ``portable_rnn.interop``, with small inputs
on the backend ``xp``; `PUBLIC` names every public function, so that a test can check
that the table leaves none out. Used by ``test_errors.py`` (``None`` for every argument)
and ``test_aliasing.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import numpy as np

import portable_rnn as prnn
from portable_rnn import interop, rnn_layers

from . import reference as ref


@dataclasses.dataclass
class Call:
    """A valid call: ``fn(*positional, **keywords)`` from ``args`` (in signature order)."""

    name: str
    fn: Callable
    args: dict
    optional: tuple = ()  #: argument names the signature lets be ``None``

    def __call__(self, args: dict | None = None):
        args = self.args if args is None else args
        params = inspect.signature(self.fn).parameters
        positional = [v for k, v in args.items() if params[k].kind is not params[k].KEYWORD_ONLY]
        keywords = {k: v for k, v in args.items() if params[k].kind is params[k].KEYWORD_ONLY}
        return self.fn(*positional, **keywords)

    def replaced(self, path: tuple, value) -> dict:
        """A copy of ``args`` with the entry at ``path`` (``("x",)``, ``("parameters", "Wf")``,
        ``("layers", 0, "Wf")``) replaced by ``value`` (dicts and lists copied on the way)."""
        new = dict(self.args)
        parent = new
        for k in path[:-1]:
            child = parent[k]
            child = dict(child) if isinstance(child, dict) else list(child)
            parent[k] = child
            parent = child
        parent[path[-1]] = value
        return new

    def paths(self):
        """Every argument, and every entry of a parameter dict (or list of dicts)."""
        for name, v in self.args.items():
            if isinstance(v, dict):
                yield from ((name, key) for key in v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                yield from ((name, k, key) for k, layer in enumerate(v) for key in layer)
            else:
                yield (name,)


def _to(xp, tree, dtype="float64"):
    if isinstance(tree, dict):
        return {k: _to(xp, v, dtype) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to(xp, v, dtype) for v in tree]
    return xp.asarray(tree, dtype=dtype)


def _rows_weights(rng, D, H, cell):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    w = {
        "Wx": rng.standard_normal((D, G * H)) * 0.5,
        "Wh": rng.standard_normal((H, G * H)) * 0.5,
        "b": rng.standard_normal(G * H) * 0.5,
    }
    if cell == "gru":
        w["bhn"] = rng.standard_normal(H) * 0.5
    return w


def column_problem(xp, cell: str, seed: int = 0):
    """``x (3, 4, 6)``, ``a0``, ``c0 (5, 4)``, the parameters (with output layer), ``da``."""
    rng = np.random.default_rng(seed)
    if cell == "lstm":
        x, a0, c0, p, da = ref.lstm_problem(rng)
    elif cell == "gru":
        x, a0, p, da = ref.gru_problem(rng)
        c0 = rng.standard_normal(a0.shape)
    else:
        x, a0, p, da = ref.rnn_problem(rng)
        c0 = rng.standard_normal(a0.shape)
    return _to(xp, x), _to(xp, a0), _to(xp, c0), _to(xp, p), _to(xp, da)


def rows_problem(xp, cell: str, seed: int = 0):
    """``x (N, T, D) = (3, 5, 4)``, ``h0``, ``c0 (3, 6)``, the weights, ``dh``."""
    rng = np.random.default_rng(seed)
    N, T, D, H = 3, 5, 4, 6
    w = _rows_weights(rng, D, H, cell)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H)) * 0.5
    c0, dh = rng.standard_normal((N, H)) * 0.5, rng.standard_normal((N, T, H))
    return _to(xp, x), _to(xp, h0), _to(xp, c0), _to(xp, w), _to(xp, dh)


def calls(xp) -> list[Call]:
    """One valid call of every public array function, on ``xp``."""
    out = []
    rng = np.random.default_rng(5)
    z = _to(xp, rng.standard_normal((3, 4)))
    out += [
        Call("sigmoid", prnn.sigmoid, {"z": z}),
        Call("softmax", prnn.softmax, {"z": z}),
        Call("sftmax", prnn.sftmax, {"x": z}),
    ]
    for cell in ("rnn", "lstm", "gru"):
        x, a0, c0, p, da = column_problem(xp, cell)
        lstm = cell == "lstm"
        fwd = getattr(prnn, f"{cell}_cell_forward")
        cell_args = {"xt": x[:, :, 0], "a_prev": a0, **({"c_prev": c0} if lstm else {})}
        out.append(Call(fwd.__name__, fwd, {**cell_args, "parameters": p}))
        cache = fwd(*cell_args.values(), p)[-1]
        bwd = getattr(prnn, f"{cell}_cell_backward")
        grads = {"da_next": da[:, :, 0], **({"dc_next": c0} if lstm else {})}
        out.append(Call(bwd.__name__, bwd, {**grads, "cache": cache}))
        fwd = getattr(prnn, f"{cell}_forward")
        args = {"x": x, "a0": a0, "parameters": p, **({"c0": c0} if lstm else {})}
        out.append(Call(fwd.__name__, fwd, args, optional=("a0", "c0")))
        bwd = getattr(prnn, f"{cell}_backward")
        out.append(Call(bwd.__name__, bwd, {"da": da, "caches": fwd(x, a0, p)[-1]}))

        layers = _to(xp, prnn.init_multilayer_params(cell, 3, 5, num_layers=2, seed=1))
        states = _to(xp, rng.standard_normal((2, 5, 4)))
        kw = {"cell": cell, "a0": states, **({"c0": states} if lstm else {})}
        out.append(
            Call(
                f"multilayer_forward ({cell})",
                prnn.multilayer_forward,
                {"x": x, "layers": layers, **kw},
                optional=("a0", "c0"),
            )
        )
        stack = prnn.multilayer_forward(x, layers, **kw)[-1]
        finals = {"da_n": states, **({"dc_n": states} if lstm else {})}
        out.append(
            Call(
                f"multilayer_backward ({cell})",
                prnn.multilayer_backward,
                {"dout": da, "cache": stack, **finals},
                optional=("da_n", "dc_n"),
            )
        )

        x, h0, c0, w, dh = rows_problem(xp, cell)
        fwd = getattr(rnn_layers, f"{cell}_step_forward")
        step_args = {"x": x[:, 0, :], "prev_h": h0, **({"prev_c": c0} if lstm else {}), **w}
        out.append(Call(f"rnn_layers.{fwd.__name__}", fwd, step_args))
        cache = fwd(*step_args.values())[-1]
        bwd = getattr(rnn_layers, f"{cell}_step_backward")
        grads = {"dnext_h": dh[:, 0, :], **({"dnext_c": c0} if lstm else {})}
        out.append(Call(f"rnn_layers.{bwd.__name__}", bwd, {**grads, "cache": cache}))
        fwd = getattr(rnn_layers, f"{cell}_forward")
        out.append(Call(f"rnn_layers.{fwd.__name__}", fwd, {"x": x, "h0": h0, **w}))
        bwd = getattr(rnn_layers, f"{cell}_backward")
        cache = fwd(x, h0, *w.values())[-1]
        out.append(Call(f"rnn_layers.{bwd.__name__}", bwd, {"dh": dh, "cache": cache}))

    x, w, b = (_to(xp, rng.standard_normal(s)) for s in ((2, 3, 4), (4, 5), (5,)))
    L = rnn_layers
    out.append(
        Call(
            "rnn_layers.temporal_affine_forward",
            L.temporal_affine_forward,
            {"x": x, "w": w, "b": b},
        )
    )
    cache = L.temporal_affine_forward(x, w, b)[-1]
    dout = _to(xp, rng.standard_normal((2, 3, 5)))
    out.append(
        Call(
            "rnn_layers.temporal_affine_backward",
            L.temporal_affine_backward,
            {"dout": dout, "cache": cache},
        )
    )
    labels = xp.asarray(rng.integers(0, 5, size=(2, 3)))
    mask = xp.asarray(rng.random((2, 3)) < 0.7)
    out.append(
        Call(
            "rnn_layers.temporal_softmax_loss",
            L.temporal_softmax_loss,
            {"x": dout, "y": labels, "mask": mask},
        )
    )
    W = _to(xp, rng.standard_normal((5, 4)))
    out.append(
        Call("rnn_layers.word_embedding_forward", L.word_embedding_forward, {"x": labels, "W": W})
    )
    cache = L.word_embedding_forward(labels, W)[-1]
    out.append(
        Call(
            "rnn_layers.word_embedding_backward",
            L.word_embedding_backward,
            {"dout": x, "cache": cache},
        )
    )

    rp = {
        "U": rng.standard_normal((3, 5)),
        "W": rng.standard_normal((5, 5)) * 0.5,
        "V": rng.standard_normal((2, 5)),
        "bx": rng.standard_normal((5, 1)),
        "by": rng.standard_normal((2, 1)),
    }
    lp = {
        f"W{s}{g}": rng.standard_normal((3 if s == "x" else 5, 5)) * 0.5
        for s in "xh"
        for g in "fico"
    }
    lp |= {f"b{g}": rng.standard_normal((5, 1)) for g in "fico"}
    lp |= {"Wy": rng.standard_normal((5, 2)), "by": rng.standard_normal((2, 1))}
    x, h0, _, _, _ = column_problem(xp, "rnn", seed=3)
    out += [
        Call("fwdProp", prnn.fwdProp, {"hprev": h0, "xt": x[:, :, 0], "params": _to(xp, rp)}),
        Call("fwdPropSeq", prnn.fwdPropSeq, {"x": x, "h0": h0, "params": _to(xp, rp)}),
        Call(
            "LSTMfwdProp",
            prnn.LSTMfwdProp,
            {"X": x, "h0": h0, "c0": h0, "params": _to(xp, lp)},
            optional=("c0",),
        ),
    ]
    return out


#: every public function, by the name `calls` gives it (multilayer ones once per cell)
PUBLIC = sorted(
    {n for n in prnn.__all__ if inspect.isfunction(getattr(prnn, n))}
    | {f"rnn_layers.{n}" for n in rnn_layers.__all__}
    | {f"interop.{n}" for n in interop.__all__}
)
#: public functions that take no array (configuration, creation, interop with PyTorch):
#: covered by their own tests in test_errors.py, test_config.py and test_interop.py
NO_ARRAYS = {
    "config_context",
    "get_config",
    "set_config",
    "init_gru_params",
    "init_lstm_params",
    "init_multilayer_params",
    "init_rnn_params",
    "init_state",
    "to_backend",
    "interop.from_torch",
    "interop.to_torch",
}
