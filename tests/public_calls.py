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
    """A valid call: ``fn(*positional, **keywords)`` from ``args`` (in signature order),
    and what each argument may be (for the tests that change one)."""

    name: str
    fn: Callable
    args: dict
    optional: tuple = ()  #: argument names the signature lets be ``None``
    any_shape: tuple = ()  #: arguments of any shape and floating dtype (elementwise functions)
    index: dict = dataclasses.field(default_factory=dict)  #: index argument -> bound of values
    mask: tuple = ()  #: masks (any real dtype)
    lists: tuple = ()  #: integer arguments that a Python list of ints may stand for (lengths)

    @property
    def caches(self) -> tuple:
        """The names of the cache arguments (``cache``, ``caches``)."""
        return tuple(k for k in self.args if k in ("cache", "caches"))

    @property
    def returns_cache(self) -> bool:
        """Whether the last thing the function returns is a cache (an opaque object)."""
        return "_forward" in self.name or self.name in ("fwdProp", "fwdPropSeq")

    def __call__(self, args: dict | None = None):
        args = self.args if args is None else args
        params = inspect.signature(self.fn).parameters
        positional = [v for k, v in args.items() if params[k].kind is not params[k].KEYWORD_ONLY]
        keywords = {k: v for k, v in args.items() if params[k].kind is params[k].KEYWORD_ONLY}
        return self.fn(*positional, **keywords)

    def replaced(self, path: tuple, value=None, *, remove: bool = False) -> dict:
        """A copy of ``args`` with the entry at ``path`` (``("x",)``, ``("parameters", "Wf")``,
        ``("layers", 0, "Wf")``) replaced by ``value``, or removed (dicts and lists copied on
        the way)."""
        new = dict(self.args)
        parent = new
        for k in path[:-1]:
            child = parent[k]
            child = dict(child) if isinstance(child, dict) else list(child)
            parent[k] = child
            parent = child
        if remove:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        return new

    def get(self, path: tuple):
        """The entry of ``args`` at ``path``."""
        value = self.args[path[0]]
        for k in path[1:]:
            value = value[k]
        return value

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
    """A NumPy tree of floating arrays on ``xp`` in ``dtype``, each value rounded to float32
    first: the same tree in float32 and float64 holds the same numbers."""
    if isinstance(tree, dict):
        return {k: _to(xp, v, dtype) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to(xp, v, dtype) for v in tree]
    return xp.asarray(np.asarray(tree, dtype=np.float32), dtype=dtype)


#: the sizes of `calls` unless told otherwise (``layers`` and ``directions`` of the stacks)
SIZES = {"n_x": 3, "n_a": 5, "n_y": 2, "m": 4, "T": 6, "layers": 2, "directions": 1}


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


def column_problem(xp, cell: str, seed: int = 0, *, dtype="float64", **sizes):
    """``x (n_x, m, T)``, ``a0``, ``c0 (n_a, m)``, the parameters (with output layer), ``da``;
    sizes as in `reference` (``x (3, 4, 6)``, ``a0 (5, 4)``) unless given."""
    rng = np.random.default_rng(seed)
    if cell == "lstm":
        x, a0, c0, p, da = ref.lstm_problem(rng, **sizes)
    elif cell == "gru":
        x, a0, p, da = ref.gru_problem(rng, **sizes)
        c0 = rng.standard_normal(a0.shape)
    else:
        x, a0, p, da = ref.rnn_problem(rng, **sizes)
        c0 = rng.standard_normal(a0.shape)
    return tuple(_to(xp, v, dtype) for v in (x, a0, c0, p, da))


def rows_problem(xp, cell: str, seed: int = 0, *, dtype="float64", N=3, T=5, D=4, H=6):
    """``x (N, T, D) = (3, 5, 4)``, ``h0``, ``c0 (3, 6)``, the weights, ``dh``."""
    rng = np.random.default_rng(seed)
    w = _rows_weights(rng, D, H, cell)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H)) * 0.5
    c0, dh = rng.standard_normal((N, H)) * 0.5, rng.standard_normal((N, T, H))
    return tuple(_to(xp, v, dtype) for v in (x, h0, c0, w, dh))


def calls(xp, *, sizes=None, dtype="float64", seed=5) -> list[Call]:
    """One valid call of every public array function, on ``xp``, in ``dtype``.

    ``sizes`` (default `SIZES`, any keys left out taking theirs) sets ``n_x``, ``n_a``,
    ``n_y``, ``m``, ``T`` and the stacks' ``layers`` and ``directions``; the rows dialect
    uses ``N = m``, ``D = n_x``, ``H = n_a``, and the vocabulary of the temporal layers is
    ``V = n_y + 1``. The same ``sizes`` and ``seed`` give the same numbers in every dtype
    (see `_to`).
    """
    s = {**SIZES, **(sizes or {})}
    n_x, n_a, n_y, m, T, L, D = (
        s[k] for k in ("n_x", "n_a", "n_y", "m", "T", "layers", "directions")
    )
    shape = {"n_x": n_x, "n_a": n_a, "n_y": n_y, "m": m, "T": T}
    # variable lengths: a mix in 0 .. T, the first example full length
    lengths = xp.asarray((np.arange(m) * 7 + T) % (T + 1))
    var = {"optional": ("lengths",), "index": {"lengths": T + 1}, "lists": ("lengths",)}

    def conv(tree):
        return _to(xp, tree, dtype)

    out = []
    rng = np.random.default_rng(seed)
    z = conv(rng.standard_normal((n_y, m)) * 3)
    out += [
        Call("sigmoid", prnn.sigmoid, {"z": z}, any_shape=("z",)),
        Call("softmax", prnn.softmax, {"z": z}, any_shape=("z",)),
        Call("sftmax", prnn.sftmax, {"x": z}, any_shape=("x",)),
    ]
    for cell in ("rnn", "lstm", "gru"):
        x, a0, c0, p, da = column_problem(xp, cell, seed, dtype=dtype, **shape)
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
        args["lengths"] = lengths
        out.append(Call(fwd.__name__, fwd, args, **{**var, "optional": ("a0", "c0", "lengths")}))
        bwd = getattr(prnn, f"{cell}_backward")
        out.append(Call(bwd.__name__, bwd, {"da": da, "caches": fwd(x, a0, p)[-1]}))

        layers = prnn.init_multilayer_params(
            cell, n_x, n_a, num_layers=L, bidirectional=D == 2, seed=seed
        )
        layers = conv(layers)
        states = conv(rng.standard_normal((L * D, n_a, m)))
        kw = {"cell": cell, "bidirectional": D == 2, "a0": states}
        kw |= {"c0": states} if lstm else {}
        out.append(
            Call(
                f"multilayer_forward ({cell})",
                prnn.multilayer_forward,
                {"x": x, "layers": layers, **kw, "lengths": lengths},
                **{**var, "optional": ("a0", "c0", "lengths")},
            )
        )
        stack = prnn.multilayer_forward(x, layers, **kw)[-1]
        finals = {"da_n": states, **({"dc_n": states} if lstm else {})}
        dout = conv(rng.standard_normal((D * n_a, m, T)))
        out.append(
            Call(
                f"multilayer_backward ({cell})",
                prnn.multilayer_backward,
                {"dout": dout, "cache": stack, **finals},
                optional=("da_n", "dc_n"),
            )
        )

        x, h0, c0, w, dh = rows_problem(xp, cell, seed, dtype=dtype, N=m, T=T, D=n_x, H=n_a)
        fwd = getattr(rnn_layers, f"{cell}_step_forward")
        step_args = {"x": x[:, 0, :], "prev_h": h0, **({"prev_c": c0} if lstm else {}), **w}
        out.append(Call(f"rnn_layers.{fwd.__name__}", fwd, step_args))
        cache = fwd(*step_args.values())[-1]
        bwd = getattr(rnn_layers, f"{cell}_step_backward")
        grads = {"dnext_h": dh[:, 0, :], **({"dnext_c": c0} if lstm else {})}
        out.append(Call(f"rnn_layers.{bwd.__name__}", bwd, {**grads, "cache": cache}))
        fwd = getattr(rnn_layers, f"{cell}_forward")
        args = {"x": x, "h0": h0, **w, "lengths": lengths}
        out.append(Call(f"rnn_layers.{fwd.__name__}", fwd, args, **var))
        bwd = getattr(rnn_layers, f"{cell}_backward")
        cache = fwd(x, h0, *w.values())[-1]
        out.append(Call(f"rnn_layers.{bwd.__name__}", bwd, {"dh": dh, "cache": cache}))

    V = n_y + 1
    x, w, b = (conv(rng.standard_normal(shape)) for shape in ((m, T, n_x), (n_x, V), (V,)))
    out.append(
        Call(
            "rnn_layers.temporal_affine_forward",
            rnn_layers.temporal_affine_forward,
            {"x": x, "w": w, "b": b},
        )
    )
    cache = rnn_layers.temporal_affine_forward(x, w, b)[-1]
    dout = conv(rng.standard_normal((m, T, V)) * 3)
    out.append(
        Call(
            "rnn_layers.temporal_affine_backward",
            rnn_layers.temporal_affine_backward,
            {"dout": dout, "cache": cache},
        )
    )
    labels = xp.asarray(rng.integers(0, V, size=(m, T)))
    mask = xp.asarray(rng.random((m, T)) < 0.7)
    out.append(
        Call(
            "rnn_layers.temporal_softmax_loss",
            rnn_layers.temporal_softmax_loss,
            {"x": dout, "y": labels, "mask": mask},
            index={"y": V},
            mask=("mask",),
        )
    )
    W = conv(rng.standard_normal((V, n_x)))
    out.append(
        Call(
            "rnn_layers.word_embedding_forward",
            rnn_layers.word_embedding_forward,
            {"x": labels, "W": W},
            index={"x": V},
        )
    )
    cache = rnn_layers.word_embedding_forward(labels, W)[-1]
    out.append(
        Call(
            "rnn_layers.word_embedding_backward",
            rnn_layers.word_embedding_backward,
            {"dout": x, "cache": cache},
        )
    )

    rp = {
        "U": rng.standard_normal((n_x, n_a)),
        "W": rng.standard_normal((n_a, n_a)) * 0.5,
        "V": rng.standard_normal((n_y, n_a)),
        "bx": rng.standard_normal((n_a, 1)),
        "by": rng.standard_normal((n_y, 1)),
    }
    lp = {
        f"W{s}{g}": rng.standard_normal((n_x if s == "x" else n_a, n_a)) * 0.5
        for s in "xh"
        for g in "fico"
    }
    lp |= {f"b{g}": rng.standard_normal((n_a, 1)) for g in "fico"}
    lp |= {"Wy": rng.standard_normal((n_a, n_y)), "by": rng.standard_normal((n_y, 1))}
    x, h0, _, _, _ = column_problem(xp, "rnn", seed + 3, dtype=dtype, **shape)
    out += [
        Call("fwdProp", prnn.fwdProp, {"hprev": h0, "xt": x[:, :, 0], "params": conv(rp)}),
        Call("fwdPropSeq", prnn.fwdPropSeq, {"x": x, "h0": h0, "params": conv(rp)}),
        Call(
            "LSTMfwdProp",
            prnn.LSTMfwdProp,
            {"X": x, "h0": h0, "c0": h0, "params": conv(lp)},
            optional=("c0",),
        ),
    ]
    # drawn last, so that the numbers of every call above stay as they were
    a = conv(rng.standard_normal((n_a, m, T)))
    a0 = conv(rng.standard_normal((n_a, m)))
    index = {"index": {"lengths": T + 1}, "lists": ("lengths",)}
    args = {"a": a, "lengths": lengths, "a0": a0}
    out.append(Call("last_state", prnn.last_state, args, optional=("a0",), **index))
    args = {"h": xp.permute_dims(a, (1, 2, 0)), "lengths": lengths, "h0": a0.T}
    out.append(
        Call("rnn_layers.last_state", rnn_layers.last_state, args, optional=("h0",), **index)
    )

    return out


#: every public function, by the name `calls` gives it (multilayer ones once per cell)
PUBLIC = sorted(
    {n for n in prnn.__all__ if inspect.isfunction(getattr(prnn, n))}
    | {f"rnn_layers.{n}" for n in rnn_layers.__all__}
    | {f"interop.{n}" for n in interop.__all__}
)
#: public functions that take no array (configuration, creation), a PyTorch module or an
#: ONNX model, or convert whole parameter dicts for another framework (interop): covered by
#: their own tests in test_errors.py, test_config.py, test_interop.py and test_onnx.py
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
    "interop.grads_to_torch",
    "interop.torch_options",
    "interop.to_onnx",
    "interop.from_onnx",
}
