"""The names of seed notebook 000, corrected, as thin layers over the shared math.

Seed 000 stores its weights transposed, ``(in, out)``, and applies them as
``U.T @ x``. Its ``fwdProp`` mixed ``U.T @ x`` with ``W @ h``; here every
input and recurrent weight is applied transposed, consistently
(``U.T @ x + W.T @ h``), and the output weight as the seed's sequence test
shapes it: ``V`` is ``(n_y, n_h)``, applied as ``V @ h``. In the LSTM, ``Wy`` is
``(n_h, n_y)`` and applied as ``Wy.T @ h``, as in the seed.

Dimension letters: ``n_x`` inputs, ``n_h`` hidden units, ``n_y`` outputs,
``m`` batch (columns), ``T`` time steps.
"""

from __future__ import annotations

from .._backend.seam import zeros_like_state
from .._core import lstm, rnn, sequence
from .._core.activations import softmax
from .._core.spec import LSTM
from .._validate import Dims, check_arrays, float32_inside, get_params

__all__ = ["LSTMfwdProp", "fwdProp", "fwdPropSeq", "sftmax"]

# Seed 000's own names: the RNN's transposed U (n_x, n_h), W (n_h, n_h); the LSTM's
# Wx{g} (n_x, n_h) and Wh{g} (n_h, n_h) per gate of the LSTM, and Wy (n_h, n_y).
_RNN_KEYS = ("U", "W", "V", "bx", "by")
_LSTM_KEYS = (
    *(f"W{s}{g}" for s in "xh" for g in LSTM.gates),
    "Wy",
    *(f"b{g}" for g in LSTM.gates),
    "by",
)


def _check_rnn(dims: Dims, p: dict) -> None:
    dims.check("W", p["W"], "n_h n_h")
    dims.check("U", p["U"], "n_x n_h")
    dims.check("V", p["V"], "n_y n_h")
    dims.check("bx", p["bx"], "n_h 1")
    dims.check("by", p["by"], "n_y 1")


@float32_inside()
def sftmax(x):
    """Seed 000's softmax, per column (shifted by each column's own maximum).

    Parameters
    ----------
    x : array, shape (n_y, m)

    Returns
    -------
    p : array, shape (n_y, m)
        Each column sums to one.
    """
    xp = check_arrays({"x": x})
    return softmax(xp, x, axis=0)


@float32_inside(returns_cache=True)
def fwdProp(hprev, xt, params):
    """One vanilla RNN step with seed 000's names and transposed weights.

    Parameters
    ----------
    hprev : array, shape (n_h, m)
        Previous hidden state.
    xt : array, shape (n_x, m)
        Input of this step.
    params : dict
        ``U`` (n_x, n_h), ``W`` (n_h, n_h), ``V`` (n_y, n_h), ``bx`` (n_h, 1),
        ``by`` (n_y, 1).

    Returns
    -------
    ht : array, shape (n_h, m)
        ``tanh(U.T @ xt + W.T @ hprev + bx)``.
    yt : array, shape (n_y, m)
        ``softmax(V @ ht + by)`` per column.
    cache : list
        ``[(hprev, ht, xt, params)]``, as in the seed.
    """
    p = get_params(params, _RNN_KEYS, "params")
    xp = check_arrays({"hprev": hprev, "xt": xt, **p})
    dims = Dims()
    dims.check("xt", xt, "n_x m")
    _check_rnn(dims, p)
    dims.check("hprev", hprev, "n_h m")
    ht = rnn.activate(xp, p["U"].T @ xt + p["bx"], p["W"].T @ hprev)
    yt = softmax(xp, p["V"] @ ht + p["by"], axis=0)
    return ht, yt, [(hprev, ht, xt, params)]


@float32_inside(returns_cache=True)
def fwdPropSeq(x, h0, params):
    """The vanilla RNN over a sequence, seed 000's ``fwdPropSeq``.

    Parameters
    ----------
    x : array, shape (n_x, m, T)
    h0 : array, shape (n_h, m)
    params : dict
        As for `fwdProp`.

    Returns
    -------
    Ypred : array, shape (n_y, m, T)
    H : array, shape (n_h, m, T)
    caches : list of length T
        The `fwdProp` cache of every step.
    """
    p = get_params(params, _RNN_KEYS, "params")
    xp = check_arrays({"x": x, "h0": h0, **p})
    dims = Dims()
    dims.check("x", x, "n_x m T")
    dims.require_steps("T", "x", x)
    _check_rnn(dims, p)
    dims.check("h0", h0, "n_h m")
    w = sequence.separate_weights(p["U"].T, p["W"].T, p["bx"])
    states = sequence.forward(xp, rnn.CELL, w, x, rnn.Carry(h0))
    H = states.last_axis(xp, "a")
    Ypred = sequence.outputs(xp, p["V"], p["by"], H)
    hs = [states[t].a for t in range(len(states))]
    prev = [h0, *hs[:-1]]
    caches = [[(prev[t], hs[t], x[:, :, t], params)] for t in range(len(hs))]
    return Ypred, H, caches


@float32_inside()
def LSTMfwdProp(X, h0, c0, params):
    """The LSTM over a sequence, seed 000's ``LSTMfwdProp``, carrying the cell state.

    Parameters
    ----------
    X : array, shape (n_x, m, T)
    h0 : array, shape (n_h, m)
        Initial hidden state.
    c0 : array, shape (n_h, m), or None
        Initial cell state (zeros if ``None``); carried from step to step
        (the seed never updated it).
    params : dict
        ``Wxf``, ``Wxi``, ``Wxc``, ``Wxo`` (n_x, n_h); ``Whf``, ``Whi``,
        ``Whc``, ``Who`` (n_h, n_h); ``bf``, ``bi``, ``bc``, ``bo`` (n_h, 1);
        ``Wy`` (n_h, n_y); ``by`` (n_y, 1). Gates use ``Wx?.T @ x + Wh?.T @ h + b?``.

    Returns
    -------
    h : array, shape (n_h, m, T)
    c : array, shape (n_h, m, T)
    y : array, shape (n_y, m, T)
        ``softmax(Wy.T @ h + by)`` per column.
    """
    p = get_params(params, _LSTM_KEYS, "params")
    xp = check_arrays({"X": X, "h0": h0, "c0": c0, **p}, optional=("c0",))
    dims = Dims()
    dims.check("X", X, "n_x m T")
    dims.require_steps("T", "X", X)
    for g in LSTM.gates:
        dims.check(f"Wh{g}", p[f"Wh{g}"], "n_h n_h")
    for g in LSTM.gates:
        dims.check(f"Wx{g}", p[f"Wx{g}"], "n_x n_h")
        dims.check(f"b{g}", p[f"b{g}"], "n_h 1")
    dims.check("Wy", p["Wy"], "n_h n_y")
    dims.check("by", p["by"], "n_y 1")
    dims.check("h0", h0, "n_h m")
    if c0 is None:
        c0 = zeros_like_state(xp, (dims["n_h"], dims["m"]), X)
    dims.check("c0", c0, "n_h m")
    gates = LSTM.stacked  # the stacking order of the shared LSTM code
    W = xp.concat([xp.concat([p[f"Wh{g}"].T, p[f"Wx{g}"].T], axis=1) for g in gates], axis=0)
    b = xp.concat([p[f"b{g}"] for g in gates], axis=0)
    w = sequence.stacked_weights(W, b, dims["n_h"])
    states = sequence.forward(xp, lstm.CELL, w, X, lstm.Carry(h0, c0))
    h, c = states.last_axis(xp, "a"), states.last_axis(xp, "c")
    y = sequence.outputs(xp, p["Wy"].T, p["by"], h)
    return h, c, y
