"""The character-level language model: embedding -> RNN/LSTM/GRU stack -> affine -> softmax.

Forward and hand-written backward, built from the library's public layers
(`word_embedding_forward`, `multilayer_forward`, `temporal_softmax_loss` and
their backwards), so it runs on every backend the layers run on. No autodiff.

Parameters are one flat dict (the layout of checkpoints and of `adam_update`):

- ``"embed"`` (V, E): one embedding row per character;
- ``"layer{k}.{key}"``: layer ``k`` of the stack in `multilayer_forward`'s
  column layout (``layer0.Wf`` (H, H + E), ``layer0.bf`` (H, 1)...);
- ``"Wy"`` (V, H) and ``"by"`` (V, 1): the output layer.

Batches are ``(m, T)`` integer arrays of character indices (``m`` streams of
``T`` steps), and the state carried between chunks is a dict: ``"h"``
(num_layers, H, m), and for the LSTM ``"c"`` likewise.

The parameters are arrays only: the RNN's ``nonlinearity`` (``"tanh"`` or ``"relu"``)
is not among them but a keyword of every function that runs the model (a run's
checkpoint keeps it in its header, ``config.nonlinearity``), and so is dropout between
the layers (``dropout``, ``seed``), which only training uses.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, cast

import numpy as np

from .. import init_multilayer_params, multilayer_backward, multilayer_forward
from .._backend import compat as _compat
from .._backend import pytrees as _pytrees
from .._backend.devices import HALF_DTYPES, from_numpy, from_numpy_as
from .._backend.seam import arange_like, zeros_like_state
from .._core.spec import CELLS, cell_spec
from .._creation import check_sizes, resolve_target
from ..rnn_layers import temporal_softmax_loss, word_embedding_backward, word_embedding_forward

__all__ = [
    "char_model_backward",
    "char_model_forward",
    "char_model_logits",
    "char_model_loss_and_grads",
    "describe_model",
    "init_char_model",
    "init_char_state",
    "to_device_like",
]

#: the first key of each cell's layer (``Wax``, ``Wf``, ``Wr``) -> the cell
_CELL_OF_KEY = {spec.layer_keys[0]: name for name, spec in CELLS.items()}


def init_char_model(
    vocab_size,
    *,
    cell="lstm",
    hidden=256,
    layers=1,
    embed=64,
    seed=None,
    backend=None,
    device=None,
    dtype=None,
) -> dict:
    """Parameters of a character-level language model.

    The recurrent layers are drawn as `portable_rnn.init_multilayer_params`
    draws them (uniform in ``±1/sqrt(H)``, as PyTorch), the embedding from a
    standard normal (as ``torch.nn.Embedding``) and the output layer uniform in
    ``±1/sqrt(H)`` (as ``torch.nn.Linear``); one seed gives the same numbers
    on every backend.

    Parameters
    ----------
    vocab_size : int
        Characters in the vocabulary, ``V``.
    cell : {"lstm", "gru", "rnn"}, keyword-only
        The recurrent cell.
    hidden, layers, embed : int, keyword-only
        Hidden units ``H``, stacked layers, embedding width ``E``.
    seed : int or None, keyword-only
        Seed of the draws (``None``: fresh entropy).
    backend, device, dtype : optional, keyword-only
        Override the configuration (`portable_rnn.set_config`) for this call.

    Returns
    -------
    params : dict
        ``embed`` (V, E); ``layer{k}.{key}`` for every layer (see
        `portable_rnn.multilayer_forward`); ``Wy`` (V, H); ``by`` (V, 1).
    """
    cell_spec(cell)
    check_sizes(vocab_size=vocab_size, hidden=hidden, layers=layers, embed=embed)
    seed = int(cast(int, np.random.SeedSequence().entropy) % 2**63) if seed is None else seed
    stack = init_multilayer_params(
        cell,
        embed,
        hidden,
        num_layers=layers,
        seed=seed,
        backend=backend,
        device=device,
        dtype=dtype,
    )
    backend, xp, dev, name = resolve_target(backend, device, dtype)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2**20]))
    bound = 1.0 / np.sqrt(hidden)
    host = {
        "embed": rng.standard_normal((vocab_size, embed)),
        "Wy": rng.uniform(-bound, bound, (vocab_size, hidden)),
        "by": rng.uniform(-bound, bound, (vocab_size, 1)),
    }
    params = {"embed": from_numpy_as(xp, backend, host["embed"], dev, name)}
    for k, layer in enumerate(stack):
        params.update({f"layer{k}.{key}": v for key, v in layer.items()})
    for key in ("Wy", "by"):
        params[key] = from_numpy_as(xp, backend, host[key], dev, name)
    return params


def describe_model(params) -> dict:
    """``{"cell", "vocab_size", "embed", "hidden", "layers"}`` read from a model's parameters.

    Parameters
    ----------
    params : dict
        From `init_char_model` (or a checkpoint's ``params`` group).

    Returns
    -------
    spec : dict
        ``cell`` (str), ``vocab_size`` ``V``, ``embed`` ``E``, ``hidden`` ``H``, ``layers`` (ints).

    Raises
    ------
    ValueError
        ``params`` is not a model of `init_char_model` (the missing keys are named).
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    cells = {
        _CELL_OF_KEY[k.split(".", 1)[1]]
        for k in params
        if k.split(".", 1)[-1] in _CELL_OF_KEY and k.startswith("layer")
    }
    if len(cells) != 1:
        raise ValueError(
            "params must hold one stack of layer{k}.{key} arrays of one cell "
            f"(layer0.Wax, layer0.Wf or layer0.Wr), got keys {sorted(params)}"
        )
    cell = cells.pop()
    layers = 0
    while f"layer{layers}.{CELLS[cell].layer_keys[0]}" in params:
        layers += 1
    expected = [
        "embed",
        *(f"layer{k}.{key}" for k in range(layers) for key in CELLS[cell].layer_keys),
        "Wy",
        "by",
    ]
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected]
    if missing or extra:
        raise ValueError(
            f"params of a {cell} model: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    V, E = (int(s) for s in params["embed"].shape)
    return {
        "cell": cell,
        "vocab_size": V,
        "embed": E,
        "hidden": int(params["Wy"].shape[1]),
        "layers": layers,
    }


def _stack(params, spec):
    keys = CELLS[spec["cell"]].layer_keys
    return [{key: params[f"layer{k}.{key}"] for key in keys} for k in range(spec["layers"])]


def init_char_state(params, batch: int) -> dict:
    """The zero state of ``batch`` streams, on the backend, device and dtype of ``params``.

    Parameters
    ----------
    params : dict
        From `init_char_model`.
    batch : int
        Streams ``m``.

    Returns
    -------
    state : dict
        ``"h"``, shape (layers, H, m), and for the LSTM ``"c"`` of the same shape; zeros.
    """
    spec = describe_model(params)
    xp = _compat.array_namespace(params["Wy"])
    shape = (spec["layers"], spec["hidden"], int(batch))
    state = {"h": zeros_like_state(xp, shape, params["Wy"])}
    if "c" in CELLS[spec["cell"]].carry:
        state["c"] = zeros_like_state(xp, shape, params["Wy"])
    return state


def to_device_like(host, like):
    """The NumPy array ``host`` (kept in its dtype) on the backend and device of ``like``.

    An explicit host-to-device copy, as a data loader makes.

    Parameters
    ----------
    host : numpy.ndarray, any shape
        Typically a chunk of character indices, (m, T).
    like : array
        Any array of the target backend and device (``params["Wy"]``).

    Returns
    -------
    array
        ``host``'s values and shape on ``like``'s backend and device.
    """
    xp = _compat.array_namespace(like)
    return from_numpy(xp, _compat.backend_name(xp), np.asarray(host), _compat.device(like))


def _check_state(spec, state):
    if state is None:
        return None, None
    if not isinstance(state, dict) or "h" not in state:
        raise TypeError("state must be a dict with 'h' (and 'c' for the LSTM), or None")
    if "c" in CELLS[spec["cell"]].carry and "c" not in state:
        raise ValueError("state of an LSTM model needs 'c' next to 'h'")
    return state["h"], state.get("c")


def _make_cache(cls, values: dict):
    """A `_ModelCache` from its attributes, as `pytrees.node` rebuilds it."""
    n = values["n_array"] if values["n_int"] is None else values["n_int"]
    return cls(*(values[k] for k in cls._fields[:-1]), n)


@_pytrees.node(
    children=("params", "emb_cache", "rnn_cache", "flat", "dz", "n_array"),
    static=("shape", "n_int"),
    make=_make_cache,
)
class _ModelCache(NamedTuple):
    """What `char_model_forward` keeps for `char_model_backward`: a JAX pytree of its
    arrays, with ``shape`` (and ``n`` when it is an int) static."""

    params: Any
    emb_cache: Any
    rnn_cache: Any
    flat: Any  #: the stack's outputs, (H, m T)
    shape: tuple  #: (m, T)
    dz: Any  #: the loss's gradient at the logits
    n: Any  #: the number of predictions counted: an int, or an array with lengths

    @property
    def n_int(self):
        """``n`` if it is an int (static), else ``None``."""
        return self.n if isinstance(self.n, int) else None

    @property
    def n_array(self):
        """``n`` if it is an array (a leaf), else ``None``."""
        return None if isinstance(self.n, int) else self.n


def _run(params, inputs, state, lengths=None, nonlinearity="tanh", dropout=0.0, seed=None):
    """The shared forward: embedding, stack, output layer. Returns logits (V, m*T) and more."""
    spec = describe_model(params)
    h0, c0 = _check_state(spec, state)
    emb, emb_cache = word_embedding_forward(inputs, params["embed"])  # (m, T, E)
    xp = _compat.array_namespace(emb)
    x = xp.permute_dims(emb, (2, 0, 1))  # (E, m, T), the column dialect
    # lengths only when given: the call of a run on a continuous text is as it always was
    padded = {} if lengths is None else {"lengths": lengths}
    if nonlinearity != "tanh":  # refused for another cell by multilayer_forward, named
        padded["nonlinearity"] = nonlinearity
    if dropout:  # training only: masks between the layers, from ``seed``
        padded.update(dropout=dropout, seed=seed)
    out, h_n, c_n, rnn_cache = multilayer_forward(
        x, _stack(params, spec), cell=spec["cell"], a0=h0, c0=c0, **padded
    )
    H, m, T = (int(s) for s in out.shape)
    flat = xp.reshape(out, (H, m * T))
    logits = params["Wy"] @ flat + params["by"]  # (V, m*T), column n*T + t is (n, t)
    new_state = {"h": h_n} if c_n is None else {"h": h_n, "c": c_n}
    return xp, spec, logits, new_state, (params, emb_cache, rnn_cache, flat, (m, T))


def char_model_logits(params, inputs, state=None, lengths=None, *, nonlinearity="tanh"):
    """Scores of the next character after every input character.

    Parameters
    ----------
    params : dict
        From `init_char_model`.
    inputs : array of an integer dtype, shape (m, T)
        Character indices, on the backend and device of ``params``.
    state : dict, optional
        ``{"h": (layers, H, m)[, "c": ...]}`` from the previous chunk; zeros when omitted.
    lengths : array of an integer dtype, shape (m,), optional
        Variable-length sequences: steps ``t >= lengths[n]`` of row ``n`` are
        padding (see `portable_rnn.multilayer_forward`); ``None``: every step is real.
    nonlinearity : {"tanh", "relu"}, keyword-only
        The activation of an RNN model (``cell="rnn"``; the other cells take only
        ``"tanh"``, their own gates): what it was trained with.

    Returns
    -------
    logits : array, shape (m, T, V)
        Unnormalised log-probabilities of the character after ``inputs[n, t]``
        (at padding steps: those of a zero hidden state, ``by``).
    state : dict
        The state after the last step (of each row's own last step, with
        ``lengths``), for the next chunk.
    """
    xp, spec, logits, new_state, (_, _, _, _, (m, T)) = _run(
        params, inputs, state, lengths, nonlinearity
    )
    return xp.reshape(logits.T, (m, T, spec["vocab_size"])), new_state


@functools.cache
def logits_function(nonlinearity: str = "tanh"):
    """`char_model_logits` with ``nonlinearity`` fixed, one function per value.

    What a compiled sampling or evaluation step wraps: ``jax.jit`` of the same function
    object compiles once, where a new closure per call would compile anew.
    """
    if nonlinearity == "tanh":
        return char_model_logits

    def logits(params, inputs, state=None, lengths=None):
        return char_model_logits(params, inputs, state, lengths, nonlinearity=nonlinearity)

    return logits


def char_model_forward(
    params,
    inputs,
    targets,
    state=None,
    lengths=None,
    *,
    nonlinearity="tanh",
    dropout=0.0,
    seed=None,
):
    """Mean cross-entropy of the next characters, and what the backward needs.

    Parameters
    ----------
    params : dict
        From `init_char_model`.
    inputs, targets : arrays of an integer dtype, shape (m, T)
        Character indices; ``targets[n, t]`` follows ``inputs[n, t]`` in the text.
        On the backend and device of ``params``.
    state : dict, optional
        The state carried from the previous chunk (``h``, and ``c`` for the
        LSTM, each (layers, H, m)); zeros when omitted.
    lengths : array of an integer dtype, shape (m,), optional
        Variable-length sequences (`LineBatches`), on the device of ``params``:
        steps ``t >= lengths[n]`` of row ``n`` are padding. They change nothing:
        the stack carries the state through them (`portable_rnn.multilayer_forward`)
        and the loss leaves them out (``temporal_softmax_loss``'s mask), whatever
        their inputs and targets. ``None``: every step counts.
    nonlinearity : {"tanh", "relu"}, keyword-only
        The activation of an RNN model (``cell="rnn"``; the other cells take only
        ``"tanh"``, their own gates): what it was trained with.
    dropout : float, keyword-only
        Training only: dropout on the inputs of every recurrent layer but the first
        (PyTorch's placement), in ``[0, 1)``; ``0`` (the default, and to evaluate): none.
        A one-layer model has no such inputs: it changes nothing.
    seed : int or JAX integer scalar, optional, keyword-only
        The masks' seed, required with ``dropout`` (see `portable_rnn.multilayer_forward`):
        an int draws them with NumPy on the host (the same on every backend); a 0-d
        integer JAX array with ``jax.random`` (traceable: one compilation for every seed).

    Returns
    -------
    loss : array, shape ()
        (float32 for a float16 / bfloat16 model: computed from its logits upcast.)
        Mean over the ``m * T`` predictions (with ``lengths``: over the
        ``sum(lengths)`` real ones) of ``-log p(target)``, in nats (divide by
        ``log 2`` for bits per character); as ``torch.nn.CrossEntropyLoss``
        (with ``ignore_index`` at the padding). 0 when ``sum(lengths)`` is 0.
    state : dict
        The state after the last step (carried to the next chunk; truncated
        BPTT sends no gradient through it). With ``lengths``: each row's state
        after its own last real step.
    cache : object
        For `char_model_backward`.
    """
    xp, spec, logits, new_state, cache = _run(
        params, inputs, state, lengths, nonlinearity, dropout, seed
    )
    m, T = cache[-1]
    n = m * T
    V = spec["vocab_size"]
    y = xp.reshape(targets, (1, n))
    if _compat.dtype_name(logits.dtype) in HALF_DTYPES:  # the loss in float32, not rounded
        logits = xp.astype(logits, xp.float32)
    if lengths is None:
        # all-True mask, on the labels' device: every prediction counts
        total, dz = temporal_softmax_loss(xp.reshape(logits.T, (1, n, V)), y, y == y)
        return total / n, new_state, _ModelCache(*cache, dz, n)
    real = arange_like(xp, T, lengths)[None, :] < lengths[:, None]  # (m, T): not padding
    total, dz = temporal_softmax_loss(xp.reshape(logits.T, (1, n, V)), y, xp.reshape(real, (1, n)))
    count = xp.sum(xp.astype(real, logits.dtype))
    count = xp.where(count > 0, count, xp.ones_like(count))  # no real step: loss 0, not NaN
    return total / count, new_state, _ModelCache(*cache, dz, count)


def char_model_backward(cache) -> dict:
    """Gradients of `char_model_forward`'s loss with respect to every parameter.

    Parameters
    ----------
    cache : object
        From `char_model_forward`.

    Returns
    -------
    grads : dict
        The keys and shapes of ``params``.
    """
    if not (isinstance(cache, tuple) and len(cache) == 7):
        raise TypeError("cache must be the cache returned by char_model_forward")
    params, emb_cache, rnn_cache, flat, (m, T), dz, n = cache  # n: predictions counted
    xp = _compat.array_namespace(flat)
    dlogits = xp.reshape(dz, (m * T, -1)).T / n  # (V, m*T)
    if dlogits.dtype != flat.dtype:  # a half-precision model: its loss was float32
        dlogits = xp.astype(dlogits, flat.dtype)
    H = int(flat.shape[0])
    grads = {}
    dflat = params["Wy"].T @ dlogits
    g = multilayer_backward(xp.reshape(dflat, (H, m, T)), rnn_cache)
    dx = xp.permute_dims(g["dx"], (1, 2, 0))  # (m, T, E)
    grads["embed"] = word_embedding_backward(dx, emb_cache)
    for k, layer in enumerate(g["layers"]):
        grads.update({f"layer{k}.{key[1:]}": v for key, v in layer.items()})
    grads["Wy"] = dlogits @ flat.T
    grads["by"] = xp.sum(dlogits, axis=1, keepdims=True)
    return {k: grads[k] for k in params}


def char_model_loss_and_grads(
    params,
    inputs,
    targets,
    state=None,
    lengths=None,
    *,
    nonlinearity="tanh",
    dropout=0.0,
    seed=None,
):
    """`char_model_forward` then `char_model_backward`: one training step's numbers.

    Parameters
    ----------
    params : dict
        From `init_char_model`.
    inputs, targets : arrays of an integer dtype, shape (m, T)
        Character indices on the backend and device of ``params``.
    state : dict, optional
        Carried from the previous chunk (``h``[, ``c``], each (layers, H, m)).
    lengths : array of an integer dtype, shape (m,), optional
        Variable-length sequences (see `char_model_forward`); padding steps get
        no gradient and give none.
    nonlinearity, dropout, seed : keyword-only
        As `char_model_forward` takes them; the backward uses the forward's dropout masks.

    Returns
    -------
    loss : array, shape ()
        Mean cross-entropy in nats.
    grads : dict
        The keys and shapes of ``params``.
    state : dict
        The state after the last step, for the next chunk.
    """
    loss, new_state, cache = char_model_forward(
        params,
        inputs,
        targets,
        state,
        lengths,
        nonlinearity=nonlinearity,
        dropout=dropout,
        seed=seed,
    )
    return loss, char_model_backward(cache), new_state
