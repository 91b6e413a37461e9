"""The CS231n dialect (rows), as in seed 001: thin layers over the shared cell code.

Dimension letters: ``N`` examples in the batch (one per row), ``T`` time
steps, ``D`` input features, ``H`` hidden units.

* RNN: ``next_h = tanh(x @ Wx + prev_h @ Wh + b)`` with ``Wx (D, H)``,
  ``Wh (H, H)``, ``b (H,)``.
* LSTM: ``a = x @ Wx + prev_h @ Wh + b`` with fused ``Wx (D, 4H)``,
  ``Wh (H, 4H)``, ``b (4H,)``, gate order **i, f, o, g** along the ``4H`` axis;
  ``next_c = f * prev_c + i * g`` and ``next_h = o * tanh(next_c)``.

Every function here transposes its arguments into the column layout and calls
the same cell and sequence code as `portable_rnn.rnn_forward` and
`portable_rnn.lstm_forward` (one implementation of the math; transposes are
views or fused by the backends). Forwards return ``(out, cache)``; backwards
take ``(dout, cache)`` and return the gradients in the order of the forward's
inputs. Caches are opaque.

* Temporal affine (``x (N, T, D) @ w (D, M) + b``), ``temporal_softmax_loss(x, y, mask)``
  (scores ``(N, T, V)``, labels ``(N, T)`` in ``[0, V)``, loss summed over unmasked steps
  and divided by ``N``), word embeddings (``x (N, T)`` indices into ``W (V, D)``).
* GRU (not in CS231n; PyTorch's equations): ``Wx (D, 3H)``, ``Wh (H, 3H)``,
  ``b (3H,)``, ``bhn (H,)``, gate order **r, z, n**.
"""

from __future__ import annotations

from . import _backend, _gru, _lstm, _rnn, _validate
from ._temporal import (
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)

__all__ = [
    "gru_backward",
    "gru_forward",
    "gru_step_backward",
    "gru_step_forward",
    "lstm_backward",
    "lstm_forward",
    "lstm_step_backward",
    "lstm_step_forward",
    "rnn_backward",
    "rnn_forward",
    "rnn_step_backward",
    "rnn_step_forward",
    "temporal_affine_backward",
    "temporal_affine_forward",
    "temporal_softmax_loss",
    "word_embedding_backward",
    "word_embedding_forward",
]


def _col(xp, b):
    """A bias ``(k,)`` as a column ``(k, 1)``."""
    return xp.reshape(b, (b.shape[0], 1))


def _to_col_seq(xp, x):
    """``(N, T, D)`` -> ``(D, N, T)``."""
    return xp.permute_dims(x, (2, 0, 1))


def _to_row_seq(xp, a):
    """``(H, N, T)`` -> ``(N, T, H)``."""
    return xp.permute_dims(a, (1, 2, 0))


# -- vanilla RNN ------------------------------------------------------------


def _rnn_dims(x_name, x, x_letters, h_name, h, Wx, Wh, b):
    dims = _validate.Dims()
    dims.check(x_name, x, x_letters)
    dims.check("Wh", Wh, "H H")
    dims.check("Wx", Wx, "D H")
    dims.check("b", b, "H")
    dims.check(h_name, h, "N H")
    return dims


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla RNN step, ``next_h = tanh(x @ Wx + prev_h @ Wh + b)``.

    Parameters
    ----------
    x : array, shape (N, D)
        Input of this step.
    prev_h : array, shape (N, H)
        Previous hidden state.
    Wx : array, shape (D, H)
        Input-to-hidden weights.
    Wh : array, shape (H, H)
        Hidden-to-hidden weights.
    b : array, shape (H,)
        Biases.

    Returns
    -------
    next_h : array, shape (N, H)
        Next hidden state.
    cache : tuple
        For `rnn_step_backward`.
    """
    xp = _validate.check_arrays({"x": x, "prev_h": prev_h, "Wx": Wx, "Wh": Wh, "b": b})
    _rnn_dims("x", x, "N D", "prev_h", prev_h, Wx, Wh, b)
    next_h = _rnn._step(xp, (x @ Wx + b).T, prev_h.T, Wh.T).T
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    """Backward pass of one vanilla RNN step.

    Parameters
    ----------
    dnext_h : array, shape (N, H)
        Gradient of the loss with respect to ``next_h``.
    cache : tuple
        From `rnn_step_forward`.

    Returns
    -------
    dx : array, shape (N, D)
    dprev_h : array, shape (N, H)
    dWx : array, shape (D, H)
    dWh : array, shape (H, H)
    db : array, shape (H,)
    """
    x, prev_h, Wx, Wh, next_h = _validate.unpack_cache(cache, 5, "rnn_step_forward")
    xp = _validate.check_arrays({"dnext_h": dnext_h, "x": x, "prev_h": prev_h, "Wx": Wx, "Wh": Wh})
    dims = _validate.Dims()
    dims.check("next_h", next_h, "N H")
    dims.check("dnext_h", dnext_h, "N H")
    dz, dprev = _rnn._step_backward(xp, dnext_h.T, next_h.T, Wh.T)  # dz: (H, N)
    return (Wx @ dz).T, dprev.T, (dz @ x).T, (dz @ prev_h).T, xp.sum(dz, axis=1)


def rnn_forward(x, h0, Wx, Wh, b):
    """Run a vanilla RNN over a whole sequence.

    Parameters
    ----------
    x : array, shape (N, T, D)
        Inputs of every step (``T >= 1``).
    h0 : array, shape (N, H)
        Initial hidden state.
    Wx : array, shape (D, H)
    Wh : array, shape (H, H)
    b : array, shape (H,)

    Returns
    -------
    h : array, shape (N, T, H)
        Hidden states of every step.
    cache : tuple
        For `rnn_backward`.
    """
    xp = _validate.check_arrays({"x": x, "h0": h0, "Wx": Wx, "Wh": Wh, "b": b})
    dims = _rnn_dims("x", x, "N T D", "h0", h0, Wx, Wh, b)
    dims.require_steps("T", "x", x)
    x_col, h0_col = _to_col_seq(xp, x), h0.T
    states, a = _rnn._forward(xp, x_col, h0_col, Wx.T, Wh.T, _col(xp, b))
    return _to_row_seq(xp, a), (states, a, h0_col, x_col, Wx, Wh)


def rnn_backward(dh, cache):
    """Backpropagation through time for the vanilla RNN.

    Parameters
    ----------
    dh : array, shape (N, T, H)
        Upstream gradients of all hidden states.
    cache : tuple
        From `rnn_forward`.

    Returns
    -------
    dx : array, shape (N, T, D)
    dh0 : array, shape (N, H)
    dWx : array, shape (D, H)
    dWh : array, shape (H, H)
    db : array, shape (H,)
    """
    states, a, h0_col, x_col, Wx, Wh = _validate.unpack_cache(cache, 6, "rnn_forward")
    xp = _validate.check_arrays({"dh": dh, "x": x_col, "Wx": Wx})
    dims = _validate.Dims()
    dims.check("h", _to_row_seq(xp, a), "N T H")
    dims.check("dh", dh, "N T H")
    g = _rnn._backward(xp, _to_col_seq(xp, dh), states, a, h0_col, x_col, Wx.T, Wh.T)
    return (
        _to_row_seq(xp, g["dx"]),
        g["da0"].T,
        g["dWax"].T,
        g["dWaa"].T,
        g["dba"][:, 0],
    )


# -- LSTM -------------------------------------------------------------------

# Rows of the stacked column weights are in the order f, i, o, c(g) (_lstm.FUSED);
# CS231n's 4H axis is i, f, o, g. The permutation of blocks [1, 0, 2, 3] maps
# either order to the other (it is its own inverse).
_SWAP = (1, 0, 2, 3)


def _reorder(xp, M, H: int):
    """Swap gate blocks of ``H`` rows: CS231n (i, f, o, g) <-> ours (f, i, o, c)."""
    return xp.concat([M[k * H : (k + 1) * H, ...] for k in _SWAP], axis=0)


def _fused_col(xp, Wx, Wh, b, H: int):
    """CS231n ``Wx (D, 4H)``, ``Wh (H, 4H)``, ``b (4H,)`` -> ours ``W (4H, H + D)``,
    ``b (4H, 1)``."""
    W = _reorder(xp, xp.concat([Wh.T, Wx.T], axis=1), H)
    return W, _reorder(xp, _col(xp, b), H)


def _weight_grads(xp, dW, db, H: int):
    """Ours ``dW (4H, H + D)``, ``db (4H, 1)`` -> CS231n ``dWx (D, 4H)``,
    ``dWh (H, 4H)``, ``db (4H,)``."""
    dW = _reorder(xp, dW, H)
    return dW[:, H:].T, dW[:, :H].T, _reorder(xp, db, H)[:, 0]


def _lstm_dims(x_name, x, x_letters, h_name, h, Wx, Wh, b):
    dims = _validate.Dims()
    dims.check(x_name, x, x_letters)
    dims.check(h_name, h, "N H")
    dims.define("4H", 4 * dims["H"], f"4 * H from {h_name}")
    dims.check("Wx", Wx, "D 4H")
    dims.check("Wh", Wh, "H 4H")
    dims.check("b", b, "4H")
    return dims


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step (CS231n gate order i, f, o, g).

    Parameters
    ----------
    x : array, shape (N, D)
        Input of this step.
    prev_h : array, shape (N, H)
        Previous hidden state.
    prev_c : array, shape (N, H)
        Previous cell state.
    Wx : array, shape (D, 4H)
        Input-to-hidden weights, gates i, f, o, g.
    Wh : array, shape (H, 4H)
        Hidden-to-hidden weights, gates i, f, o, g.
    b : array, shape (4H,)
        Biases, gates i, f, o, g.

    Returns
    -------
    next_h : array, shape (N, H)
    next_c : array, shape (N, H)
    cache : tuple
        For `lstm_step_backward`.
    """
    named = {"x": x, "prev_h": prev_h, "prev_c": prev_c, "Wx": Wx, "Wh": Wh, "b": b}
    xp = _validate.check_arrays(named)
    dims = _lstm_dims("x", x, "N D", "prev_h", prev_h, Wx, Wh, b)
    dims.check("prev_c", prev_c, "N H")
    H = dims["H"]
    W, bc = _fused_col(xp, Wx, Wh, b, H)
    concat = xp.concat([prev_h.T, x.T], axis=0)
    f, i, cc, o, c, tc, a = _lstm._step(xp, W @ concat + bc, prev_c.T, H)
    return a.T, c.T, (concat, prev_c.T, W, (f, i, cc, o, tc), H)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward pass of one LSTM step.

    Parameters
    ----------
    dnext_h : array, shape (N, H)
        Gradient of the loss with respect to ``next_h``.
    dnext_c : array, shape (N, H)
        Gradient of the loss with respect to ``next_c``.
    cache : tuple
        From `lstm_step_forward`.

    Returns
    -------
    dx : array, shape (N, D)
    dprev_h : array, shape (N, H)
    dprev_c : array, shape (N, H)
    dWx : array, shape (D, 4H)
    dWh : array, shape (H, 4H)
    db : array, shape (4H,)
    """
    concat, c_prev, W, (f, i, cc, o, tc), H = _validate.unpack_cache(cache, 5, "lstm_step_forward")
    xp = _validate.check_arrays({"dnext_h": dnext_h, "dnext_c": dnext_c, "W": W})
    dims = _validate.Dims()
    dims.check("prev_c", c_prev.T, "N H")
    dims.check("dnext_h", dnext_h, "N H")
    dims.check("dnext_c", dnext_c, "N H")
    dz, dc_prev = _lstm._step_backward(xp, dnext_h.T, dnext_c.T, f, i, cc, o, c_prev, tc)
    dconcat = W.T @ dz
    dWx, dWh, db = _weight_grads(xp, dz @ concat.T, xp.sum(dz, axis=1, keepdims=True), H)
    return dconcat[H:, :].T, dconcat[:H, :].T, dc_prev.T, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """Run an LSTM over a whole sequence; the cell state starts at zero.

    Parameters
    ----------
    x : array, shape (N, T, D)
        Inputs of every step (``T >= 1``).
    h0 : array, shape (N, H)
        Initial hidden state.
    Wx : array, shape (D, 4H)
    Wh : array, shape (H, 4H)
    b : array, shape (4H,)

    Returns
    -------
    h : array, shape (N, T, H)
        Hidden states of every step.
    cache : tuple
        For `lstm_backward`.
    """
    xp = _validate.check_arrays({"x": x, "h0": h0, "Wx": Wx, "Wh": Wh, "b": b})
    dims = _lstm_dims("x", x, "N T D", "h0", h0, Wx, Wh, b)
    dims.require_steps("T", "x", x)
    H = dims["H"]
    W, bc = _fused_col(xp, Wx, Wh, b, H)
    x_col, h0_col = _to_col_seq(xp, x), h0.T
    c0 = _backend.zeros_like_state(xp, h0_col.shape, h0_col)
    states, a, _ = _lstm._forward(xp, x_col, h0_col, c0, W, bc)
    return _to_row_seq(xp, a), (states, a, h0_col, c0, x_col, W, H)


def lstm_backward(dh, cache):
    """Backpropagation through time for the LSTM.

    Parameters
    ----------
    dh : array, shape (N, T, H)
        Upstream gradients of all hidden states.
    cache : tuple
        From `lstm_forward`.

    Returns
    -------
    dx : array, shape (N, T, D)
    dh0 : array, shape (N, H)
    dWx : array, shape (D, 4H)
    dWh : array, shape (H, 4H)
    db : array, shape (4H,)
    """
    states, a, h0_col, c0, x_col, W, H = _validate.unpack_cache(cache, 7, "lstm_forward")
    xp = _validate.check_arrays({"dh": dh, "x": x_col, "W": W})
    dims = _validate.Dims()
    dims.check("h", _to_row_seq(xp, a), "N T H")
    dims.check("dh", dh, "N T H")
    g = _lstm._backward(xp, _to_col_seq(xp, dh), states, a, h0_col, c0, x_col, W)
    dWx, dWh, db = _weight_grads(xp, g["dW"], g["db"], H)
    return _to_row_seq(xp, g["dx"]), g["da0"].T, dWx, dWh, db


# -- GRU --------------------------------------------------------------------
# Rows dialect of the column GRU (PyTorch equations, gate order r, z, n along 3H):
#   Wx (D, 3H) = weight_ih.T, Wh (H, 3H) = weight_hh.T,
#   b (3H,) = [b_ir + b_hr, b_iz + b_hz, b_in], bhn (H,) = b_hn.


def _gru_dims(x_name, x, x_letters, h_name, h, Wx, Wh, b, bhn):
    dims = _validate.Dims()
    dims.check(x_name, x, x_letters)
    dims.check(h_name, h, "N H")
    dims.define("3H", 3 * dims["H"], f"3 * H from {h_name}")
    dims.check("Wx", Wx, "D 3H")
    dims.check("Wh", Wh, "H 3H")
    dims.check("b", b, "3H")
    dims.check("bhn", bhn, "H")
    return dims


def _gru_col(xp, Wx, Wh, b, bhn):
    """Rows GRU weights -> the column core's ``W (3H, H + D)``, ``b (3H, 1)``, ``bhn (H, 1)``."""
    return xp.concat([Wh.T, Wx.T], axis=1), _col(xp, b), _col(xp, bhn)


def _gru_grads(dW, db, dbhn, H):
    """Column ``dW (3H, H + D)``, ``db``, ``dbhn`` -> rows ``dWx (D, 3H)``, ``dWh (H, 3H)``,
    ``db (3H,)``, ``dbhn (H,)``."""
    return dW[:, H:].T, dW[:, :H].T, db[:, 0], dbhn[:, 0]


def gru_step_forward(x, prev_h, Wx, Wh, b, bhn):
    """One GRU step, PyTorch equations, gate order r, z, n.

    ``r = sigmoid(x @ Wx_r + prev_h @ Wh_r + b_r)``, ``z`` likewise,
    ``n = tanh(x @ Wx_n + b_n + r * (prev_h @ Wh_n + bhn))``,
    ``next_h = (1 - z) * n + z * prev_h``.

    Parameters
    ----------
    x : array, shape (N, D)
        Input of this step.
    prev_h : array, shape (N, H)
        Previous hidden state.
    Wx : array, shape (D, 3H)
        Input weights, gates r, z, n (PyTorch's ``weight_ih`` transposed).
    Wh : array, shape (H, 3H)
        Hidden weights, gates r, z, n (``weight_hh`` transposed).
    b : array, shape (3H,)
        Biases ``[b_ir + b_hr, b_iz + b_hz, b_in]``.
    bhn : array, shape (H,)
        Hidden-side bias of the candidate, inside the reset product (``b_hn``).

    Returns
    -------
    next_h : array, shape (N, H)
    cache : tuple
        For `gru_step_backward`.
    """
    named = {"x": x, "prev_h": prev_h, "Wx": Wx, "Wh": Wh, "b": b, "bhn": bhn}
    xp = _validate.check_arrays(named)
    dims = _gru_dims("x", x, "N D", "prev_h", prev_h, Wx, Wh, b, bhn)
    H = dims["H"]
    W, bc, bhn_c = _gru_col(xp, Wx, Wh, b, bhn)
    a_prev = prev_h.T
    r, z, n, hn, a = _gru._step(xp, W[:, H:] @ x.T + bc, W[:, :H] @ a_prev, bhn_c, a_prev, H)
    return a.T, (x, a_prev, W, (r, z, n, hn), H)


def gru_step_backward(dnext_h, cache):
    """Backward pass of one GRU step.

    Parameters
    ----------
    dnext_h : array, shape (N, H)
        Gradient of the loss with respect to ``next_h``.
    cache : tuple
        From `gru_step_forward`.

    Returns
    -------
    dx : array, shape (N, D)
    dprev_h : array, shape (N, H)
    dWx : array, shape (D, 3H)
    dWh : array, shape (H, 3H)
    db : array, shape (3H,)
    dbhn : array, shape (H,)
    """
    x, a_prev, W, (r, z, n, hn), H = _validate.unpack_cache(cache, 5, "gru_step_forward")
    xp = _validate.check_arrays({"dnext_h": dnext_h, "x": x, "W": W})
    dims = _validate.Dims()
    dims.check("prev_h", a_prev.T, "N H")
    dims.check("dnext_h", dnext_h, "N H")
    dxw, dha, direct = _gru._step_backward(xp, dnext_h.T, r, z, n, hn, a_prev)
    dprev = W[:, :H].T @ dha + direct
    dW = xp.concat([dha @ a_prev.T, dxw @ x], axis=1)
    db = xp.sum(dxw, axis=1, keepdims=True)
    dbhn = xp.sum(dha[2 * H :, :], axis=1, keepdims=True)
    return ((W[:, H:].T @ dxw).T, dprev.T, *_gru_grads(dW, db, dbhn, H))


def gru_forward(x, h0, Wx, Wh, b, bhn):
    """Run a GRU over a whole sequence (PyTorch equations, gate order r, z, n).

    Parameters
    ----------
    x : array, shape (N, T, D)
        Inputs of every step (``T >= 1``).
    h0 : array, shape (N, H)
        Initial hidden state.
    Wx : array, shape (D, 3H)
    Wh : array, shape (H, 3H)
    b : array, shape (3H,)
    bhn : array, shape (H,)

    Returns
    -------
    h : array, shape (N, T, H)
        Hidden states of every step.
    cache : tuple
        For `gru_backward`.
    """
    named = {"x": x, "h0": h0, "Wx": Wx, "Wh": Wh, "b": b, "bhn": bhn}
    xp = _validate.check_arrays(named)
    dims = _gru_dims("x", x, "N T D", "h0", h0, Wx, Wh, b, bhn)
    dims.require_steps("T", "x", x)
    W, bc, bhn_c = _gru_col(xp, Wx, Wh, b, bhn)
    x_col, h0_col = _to_col_seq(xp, x), h0.T
    states, a = _gru._forward(xp, x_col, h0_col, W, bc, bhn_c)
    return _to_row_seq(xp, a), (states, a, h0_col, x_col, W, dims["H"])


def gru_backward(dh, cache):
    """Backpropagation through time for the GRU.

    Parameters
    ----------
    dh : array, shape (N, T, H)
        Upstream gradients of all hidden states.
    cache : tuple
        From `gru_forward`.

    Returns
    -------
    dx : array, shape (N, T, D)
    dh0 : array, shape (N, H)
    dWx : array, shape (D, 3H)
    dWh : array, shape (H, 3H)
    db : array, shape (3H,)
    dbhn : array, shape (H,)
    """
    states, a, h0_col, x_col, W, H = _validate.unpack_cache(cache, 6, "gru_forward")
    xp = _validate.check_arrays({"dh": dh, "x": x_col, "W": W})
    dims = _validate.Dims()
    dims.check("h", _to_row_seq(xp, a), "N T H")
    dims.check("dh", dh, "N T H")
    g = _gru._backward(xp, _to_col_seq(xp, dh), states, a, h0_col, x_col, W)
    return (_to_row_seq(xp, g["dx"]), g["da0"].T, *_gru_grads(g["dW"], g["db"], g["dbhn"], H))
