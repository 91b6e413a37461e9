"""JAX: portable_rnn's hand-written backward as the VJP that ``jax.grad`` uses.

``import portable_rnn.jax as pj``. The functions here take and return what the plain
forwards do, minus the caches, and are ``jax.custom_vjp`` functions: under ``jax.grad``,
``jax.vjp`` and friends the gradient of the recurrent part is computed by
`portable_rnn.multilayer_backward` (backpropagation through time written by hand, one
weight-gradient product per layer after the loop) instead of by JAX differentiating the
forward's time loop. They compose with ``jax.jit`` and ``jax.vmap``. Forward-mode
differentiation (``jax.jvp``, ``jax.jacfwd``) is not available through a ``custom_vjp``.

Every recurrent stack is one ``custom_vjp`` (`multilayer_forward`); the column dialect's
sequence functions (`rnn_forward`, `lstm_forward`, `gru_forward`) are its one-layer
case, and compute their output layer ``y`` outside it, so that JAX differentiates that
layer (``Wy``/``Wya``, ``by``) itself.

Non-differentiable inputs: ``cell`` and ``bidirectional`` are static; ``lengths`` (an
integer array, traced or not, or a list of ints) gets no cotangent (JAX gives integer
inputs a ``float0`` zero); an initial state left out (``None``) gets none either. The
residual the backward reads is the plain forward's cache (a JAX pytree of its arrays:
every layer's input, initial state, per-step values and fused weights).

Dimension letters as in the conventions: ``n_x`` inputs, ``n_a`` hidden units, ``n_y``
outputs, ``m`` examples (columns), ``T_x`` steps; in a stack ``L`` layers and ``D``
directions (2 when bidirectional, else 1).
"""

from __future__ import annotations

from typing import NamedTuple

try:
    import jax
except ImportError as err:  # pragma: no cover - the tests run with JAX installed
    raise ImportError(
        "portable_rnn.jax needs JAX: pip install 'portable_rnn[jax]' (or pip install jax)"
    ) from err

# modules only: the names this module defines are exactly its public API
from . import _validate
from ._backend import compat
from ._column import checks, stacked
from ._core import spec as specs

__all__ = ["gru_forward", "lstm_forward", "multilayer_forward", "rnn_forward"]


class _Static(NamedTuple):
    """The static (hashable, non-differentiable) arguments of the stack's custom VJP."""

    cell: str
    bidirectional: bool
    has_a0: bool  #: whether ``a0`` was given (else it gets no cotangent)
    has_c0: bool  #: likewise ``c0``
    options: tuple = ()  #: the variant keywords of the plain function, as (name, value) pairs


def _run(static: _Static, x, layers, a0, c0, lengths, seed):
    """The plain forward: ``((out, a_n, c_n), cache)``; ``seed`` a traced JAX seed or None
    (an int seed is among the static options)."""
    options = dict(static.options)
    if seed is not None:
        options["seed"] = seed
    out, a_n, c_n, cache = stacked.multilayer_forward(
        x,
        layers,
        cell=static.cell,
        bidirectional=static.bidirectional,
        a0=a0,
        c0=c0,
        lengths=lengths,
        **options,
    )
    return (out, a_n, c_n), cache


def _primal(static: _Static, x, layers, a0, c0, lengths, seed):
    return _run(static, x, layers, a0, c0, lengths, seed)[0]


def _fwd(static: _Static, x, layers, a0, c0, lengths, seed):
    return _run(static, x, layers, a0, c0, lengths, seed)


def _bwd(static: _Static, cache, cotangents):
    """Cotangents of ``(x, layers, a0, c0, lengths, seed)`` from those of ``(out, a_n, c_n)``."""
    dout, da_n, dc_n = cotangents  # dc_n is None for the RNN and GRU (c_n is None)
    # looked up at call time (not imported by name), so that a test can count the calls
    grads = stacked.multilayer_backward(dout, cache, da_n=da_n, dc_n=dc_n)
    dlayers = [{key[1:]: g for key, g in layer.items()} for layer in grads["layers"]]
    da0 = grads["da0"] if static.has_a0 else None
    dc0 = grads["dc0"] if static.has_c0 else None
    return grads["dx"], dlayers, da0, dc0, None, None  # lengths, seed: no cotangent


_stack = jax.custom_vjp(_primal, nondiff_argnums=(0,))
_stack.defvjp(_fwd, _bwd)


def _require_jax(xp, named: dict) -> None:
    """Refuse arrays of another backend: they would be converted silently."""
    name = compat.backend_name(xp)
    if name != "jax":
        first = next(k for k, v in named.items() if v is not None)
        raise TypeError(
            f"{first} is a {name} array, but portable_rnn.jax takes JAX arrays; convert "
            "with jax.numpy.asarray or portable_rnn.to_backend(..., 'jax'), or use "
            "portable_rnn's plain functions"
        )


def _lengths(lengths, x):
    """``lengths`` checked and as a JAX integer array ``(m,)``, or ``None``.

    Only when ``x`` has the shape of a sequence: otherwise the plain forward refuses
    ``x`` first, and never reads ``lengths``.
    """
    shape = getattr(x, "shape", ())
    if lengths is None or len(shape) != 3 or shape[-1] < 1:
        return None
    return _validate.check_lengths(lengths, x, int(shape[1]), int(shape[2]))


@_validate.float32_inside()
def multilayer_forward(
    x,
    layers,
    *,
    cell,
    bidirectional=False,
    a0=None,
    c0=None,
    lengths=None,
    nonlinearity="tanh",
    reset_after=True,
    clip=None,
    input_forget=False,
    reverse=False,
    dropout=0.0,
    seed=None,
):
    """`portable_rnn.multilayer_forward` whose VJP is `portable_rnn.multilayer_backward`.

    Same arguments, checks and results as the plain function, without the cache.

    Parameters
    ----------
    x : jax.Array, shape (n_x, m, T_x)
        Inputs of every time step.
    layers : list of dict
        ``L * D`` parameter dicts in PyTorch's order (layer 0 forward, [layer 0
        reverse,] layer 1 forward, ...), each with the keys of the cell; layer 0 has
        ``n_x`` inputs, later layers ``D * n_a``. Other keys (an output layer) are
        ignored and get zero gradients.
    cell : {"rnn", "lstm", "gru"}, keyword-only
        The cell of every layer (static).
    bidirectional : bool, keyword-only
        Also run every layer over the reversed sequence (``D = 2``; static).
    a0 : jax.Array, shape (L * D, n_a, m), optional, keyword-only
        Initial hidden states; zeros when omitted (and then no gradient).
    c0 : jax.Array, shape (L * D, n_a, m), optional, keyword-only
        Initial cell states (LSTM only); zeros when omitted (and then no gradient).
    lengths : jax.Array of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps (``0 .. T_x``), PyTorch's packed sequences;
        may be traced under ``jax.jit``. Not differentiated.
    nonlinearity, reset_after, clip, input_forget, reverse, dropout : keyword-only
        The cell variants, as in the plain function (static); the LSTM's peepholes
        (``Pi``, ``Pf``, ``Po``) and projection (``Wp``) are keys of every dict, and get
        gradients. See "Cell variants" in the conventions.
    seed : int or jax.Array, optional, keyword-only
        The dropout masks' seed (required with ``dropout``): an int is static (NumPy's
        masks, the same on every backend); a 0-d integer JAX array may be traced (one
        compilation for every seed; ``jax.random``'s masks). Not differentiated.

    Returns
    -------
    out : jax.Array, shape (D * n_a, m, T_x)
        Hidden states of the last layer, both directions stacked (forward first);
        zero at padded steps.
    a_n : jax.Array, shape (L * D, n_a, m)
        Final hidden state of every layer and direction.
    c_n : jax.Array, shape (L * D, n_a, m), or None
        Final cell states (LSTM); ``None`` for the RNN and GRU.

    Raises
    ------
    TypeError, ValueError, KeyError
        As the plain function, naming the argument, before any work; also a
        ``TypeError`` for arrays of another backend than JAX. (With two arguments
        wrong, a bad ``lengths`` is named before a bad shape of ``layers``, ``a0``
        or ``c0``; the plain function names the shape first.)

    Notes
    -----
    Under ``jax.grad`` the forward keeps its cache as the residual and the backward
    is `portable_rnn.multilayer_backward`: its results ``dx``, ``da0``, ``dc0`` and
    the per-layer ``dW...`` become the cotangents of ``x``, ``a0``, ``c0`` and
    ``layers`` (a list of dicts with the keys of the cell).
    """
    spec = specs.cell_spec(cell)
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(
            f"layers must be a non-empty list of parameter dicts, got {type(layers).__name__}"
        )
    keys = spec.layer_keys + stacked.option_keys(spec, layers)
    params = [_validate.get_params(layer, keys, f"layers[{k}]") for k, layer in enumerate(layers)]
    named = {"x": x, "a0": a0, "c0": c0}
    for k, p in enumerate(params):
        named.update({f"layers[{k}]['{key}']": v for key, v in p.items()})
    _require_jax(_validate.check_arrays(named, optional=("a0", "c0")), named)
    stacked.check_dropout(dropout, seed)
    options = {
        "nonlinearity": nonlinearity,
        "reset_after": reset_after,
        "clip": clip,
        "input_forget": input_forget,
        "reverse": reverse,
        "dropout": dropout,
    }
    traced = seed if compat.is_array(seed) else None
    if traced is None and seed is not None:
        options["seed"] = seed
    static = _Static(
        spec.name, bool(bidirectional), a0 is not None, c0 is not None, tuple(options.items())
    )
    return _stack(static, x, params, a0, c0, _lengths(lengths, x), traced)


def _column(spec: specs.CellSpec, x, a0, c0, parameters, lengths, reverse=False):
    """A column-dialect sequence as the one-layer stack: ``(a, y, c_n)``.

    Checks the arguments as the plain column forward does (naming ``x``, ``a0``,
    ``c0``, ``parameters``' keys, ``lengths``), runs the stack's custom VJP, and
    computes ``y`` from ``a`` outside it, as the plain forward does.
    """
    options = (("reverse", reverse),)
    static = _Static(spec.name, False, a0 is not None, c0 is not None, options)

    def stack(x, layers, a0, c0, lengths):  # the classic cells
        return _stack(static, x, layers, a0, c0, lengths, None)

    return checks.one_layer(spec, x, a0, c0, parameters, lengths, stack, _require_jax)


@_validate.float32_inside()
def rnn_forward(x, a0, parameters, *, lengths=None, reverse=False):
    """`portable_rnn.rnn_forward` whose VJP is the hand-written backward, without caches.

    Parameters
    ----------
    x : jax.Array, shape (n_x, m, T_x)
        Inputs of every time step (``T_x >= 1``).
    a0 : jax.Array, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros (and no gradient).
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``ba`` (n_a, 1); optionally the output
        layer ``Wya`` (n_y, n_a), ``by`` (n_y, 1), both or neither.
    lengths : jax.Array of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps (``0 .. T_x``); may be traced under
        ``jax.jit``. Not differentiated.
    reverse : bool, keyword-only
        Run from the last step to the first, outputs in time order (static; as the
        plain function).

    Returns
    -------
    a : jax.Array, shape (n_a, m, T_x)
        Hidden state of every step (zero at padded steps).
    y : jax.Array, shape (n_y, m, T_x), or None
        Softmax prediction of every step; ``None`` without an output layer.

    Notes
    -----
    The gradient at ``a`` (and so at ``x``, ``a0``, ``Wax``, ``Waa``, ``ba``) goes through
    `portable_rnn.multilayer_backward`; ``y`` is computed from ``a`` outside the
    custom VJP, and JAX differentiates it (``Wya``, ``by``, and its share of ``a``).
    """
    a, y, _ = _column(specs.cell_spec("rnn"), x, a0, None, parameters, lengths, reverse)
    return a, y


@_validate.float32_inside()
def gru_forward(x, a0, parameters, *, lengths=None, reverse=False):
    """`portable_rnn.gru_forward` whose VJP is the hand-written backward, without caches.

    Parameters
    ----------
    x : jax.Array, shape (n_x, m, T_x)
        Inputs of every time step (``T_x >= 1``).
    a0 : jax.Array, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros (and no gradient).
    parameters : dict
        ``Wr``, ``Wz``, ``Wn`` (n_a, n_a + n_x); ``br``, ``bz``, ``bn``, ``bhn``
        (n_a, 1); optionally ``Wy`` (n_y, n_a) and ``by`` (n_y, 1), both or neither.
    lengths : jax.Array of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps (``0 .. T_x``); may be traced under
        ``jax.jit``. Not differentiated.
    reverse : bool, keyword-only
        Run from the last step to the first, outputs in time order (static; as the
        plain function).

    Returns
    -------
    a : jax.Array, shape (n_a, m, T_x)
        Hidden state of every step (zero at padded steps).
    y : jax.Array, shape (n_y, m, T_x), or None
        Softmax prediction of every step; ``None`` without an output layer.

    Notes
    -----
    As `rnn_forward`: the recurrent part's VJP is `portable_rnn.multilayer_backward`,
    the output layer is differentiated by JAX.
    """
    a, y, _ = _column(specs.cell_spec("gru"), x, a0, None, parameters, lengths, reverse)
    return a, y


@_validate.float32_inside()
def lstm_forward(x, a0, parameters, *, c0=None, lengths=None, reverse=False):
    """`portable_rnn.lstm_forward` whose VJP is the hand-written backward, without caches.

    **One difference from the plain function:** the third result is the *final* cell
    state ``c_n`` ``(n_a, m)``, not the cell state of every step ``c`` ``(n_a, m, T_x)``.
    The hand-written backward takes gradients at every hidden state ``a`` and at the
    final states only, so a loss may use ``a``, ``y`` and ``c_n`` (with ``lengths``:
    each example's cell state after its own last real step, as
    ``portable_rnn.last_state(c, lengths, c0)`` of the plain function's ``c``).

    Parameters
    ----------
    x : jax.Array, shape (n_x, m, T_x)
        Inputs of every time step (``T_x >= 1``).
    a0 : jax.Array, shape (n_a, m), or None
        Initial hidden state; ``None`` means zeros (and no gradient).
    parameters : dict
        ``Wf``, ``Wi``, ``Wc``, ``Wo`` (n_a, n_a + n_x); ``bf``, ``bi``, ``bc``, ``bo``
        (n_a, 1); optionally ``Wy`` (n_y, n_a) and ``by`` (n_y, 1), both or neither.
    c0 : jax.Array, shape (n_a, m), optional, keyword-only
        Initial cell state; zeros when omitted (and then no gradient).
    lengths : jax.Array of int, shape (m,), or list of int, optional, keyword-only
        Each example's number of real steps (``0 .. T_x``); may be traced under
        ``jax.jit``. Not differentiated.
    reverse : bool, keyword-only
        Run from the last step to the first, outputs in time order (static; as the
        plain function).

    Returns
    -------
    a : jax.Array, shape (n_a, m, T_x)
        Hidden state of every step (zero at padded steps).
    y : jax.Array, shape (n_y, m, T_x), or None
        Softmax prediction of every step; ``None`` without an output layer.
    c_n : jax.Array, shape (n_a, m)
        The final cell state (not every step's: see above).

    Notes
    -----
    As `rnn_forward`: the recurrent part's VJP is `portable_rnn.multilayer_backward`,
    the output layer is differentiated by JAX.
    """
    a, y, c_n = _column(specs.cell_spec("lstm"), x, a0, c0, parameters, lengths, reverse)
    return a, y, c_n
