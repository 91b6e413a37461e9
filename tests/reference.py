"""Independent NumPy float64 reference implementations (the seeds, corrected).

Plain loops with one matrix per gate and in-place writes into preallocated
arrays: deliberately unlike the library's fused, stacked code, so that the
two can check each other.
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z, axis=0):
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def rnn_cell_forward(xt, a_prev, p):
    a_next = np.tanh(p["Wax"] @ xt + p["Waa"] @ a_prev + p["ba"])
    return a_next, softmax(p["Wya"] @ a_next + p["by"])


def rnn_forward(x, a0, p):
    n_x, m, T = x.shape
    n_a, n_y = p["Waa"].shape[0], p["Wya"].shape[0]
    a, y = np.zeros((n_a, m, T)), np.zeros((n_y, m, T))
    a_t = np.zeros((n_a, m)) if a0 is None else a0
    for t in range(T):
        a_t, y[:, :, t] = rnn_cell_forward(x[:, :, t], a_t, p)
        a[:, :, t] = a_t
    return a, y


def rnn_cell_backward(da_next, xt, a_prev, p):
    a_next, _ = rnn_cell_forward(xt, a_prev, p)
    dtanh = (1 - a_next**2) * da_next
    return {
        "dxt": p["Wax"].T @ dtanh,
        "da_prev": p["Waa"].T @ dtanh,
        "dWax": dtanh @ xt.T,
        "dWaa": dtanh @ a_prev.T,
        "dba": dtanh.sum(axis=1, keepdims=True),
    }


def rnn_backward(da, x, a0, p):
    n_x, m, T = x.shape
    a, _ = rnn_forward(x, a0, p)
    g = {"dx": np.zeros_like(x), "dWax": 0, "dWaa": 0, "dba": 0}
    da_prev = np.zeros_like(a0)
    for t in reversed(range(T)):
        prev = a0 if t == 0 else a[:, :, t - 1]
        step = rnn_cell_backward(da[:, :, t] + da_prev, x[:, :, t], prev, p)
        g["dx"][:, :, t] = step["dxt"]
        for k in ("dWax", "dWaa", "dba"):
            g[k] = g[k] + step[k]
        da_prev = step["da_prev"]
    g["da0"] = da_prev
    return g


def lstm_cell_forward(xt, a_prev, c_prev, p):
    concat = np.concatenate([a_prev, xt], axis=0)
    f = sigmoid(p["Wf"] @ concat + p["bf"])
    i = sigmoid(p["Wi"] @ concat + p["bi"])
    cc = np.tanh(p["Wc"] @ concat + p["bc"])
    o = sigmoid(p["Wo"] @ concat + p["bo"])
    c_next = f * c_prev + i * cc
    a_next = o * np.tanh(c_next)
    y = softmax(p["Wy"] @ a_next + p["by"])
    return a_next, c_next, y, (f, i, cc, o)


def lstm_forward(x, a0, p, c0=None):
    n_x, m, T = x.shape
    n_a, n_y = p["Wf"].shape[0], p["Wy"].shape[0]
    a, c, y = np.zeros((n_a, m, T)), np.zeros((n_a, m, T)), np.zeros((n_y, m, T))
    a_t = np.zeros((n_a, m)) if a0 is None else a0
    c_t = np.zeros((n_a, m)) if c0 is None else c0
    for t in range(T):
        a_t, c_t, y[:, :, t], _ = lstm_cell_forward(x[:, :, t], a_t, c_t, p)
        a[:, :, t], c[:, :, t] = a_t, c_t
    return a, y, c


def lstm_cell_backward(da_next, dc_next, xt, a_prev, c_prev, p):
    _, c_next, _, (f, i, cc, o) = lstm_cell_forward(xt, a_prev, c_prev, p)
    n_a = a_prev.shape[0]
    tc = np.tanh(c_next)
    dc = dc_next + da_next * o * (1 - tc**2)
    dz = {
        "f": dc * c_prev * f * (1 - f),
        "i": dc * cc * i * (1 - i),
        "c": dc * i * (1 - cc**2),
        "o": da_next * tc * o * (1 - o),
    }
    concat = np.concatenate([a_prev, xt], axis=0)
    g = {"dxt": 0, "da_prev": 0, "dc_prev": dc * f}
    for k, d in dz.items():
        g[f"dW{k}"] = d @ concat.T
        g[f"db{k}"] = d.sum(axis=1, keepdims=True)
        g["da_prev"] = g["da_prev"] + p[f"W{k}"][:, :n_a].T @ d
        g["dxt"] = g["dxt"] + p[f"W{k}"][:, n_a:].T @ d
    return g


def lstm_backward(da, x, a0, p, c0=None):
    n_x, m, T = x.shape
    c0 = np.zeros_like(a0) if c0 is None else c0
    a, _, c = lstm_forward(x, a0, p, c0)
    g = {"dx": np.zeros_like(x)}
    for k in "fico":
        g[f"dW{k}"] = 0
        g[f"db{k}"] = 0
    da_prev, dc_prev = np.zeros_like(a0), np.zeros_like(a0)
    for t in reversed(range(T)):
        a_prev = a0 if t == 0 else a[:, :, t - 1]
        c_prev = c0 if t == 0 else c[:, :, t - 1]
        step = lstm_cell_backward(da[:, :, t] + da_prev, dc_prev, x[:, :, t], a_prev, c_prev, p)
        g["dx"][:, :, t] = step["dxt"]
        for k in "fico":
            g[f"dW{k}"] = g[f"dW{k}"] + step[f"dW{k}"]
            g[f"db{k}"] = g[f"db{k}"] + step[f"db{k}"]
        da_prev, dc_prev = step["da_prev"], step["dc_prev"]
    g["da0"], g["dc0"] = da_prev, dc_prev
    return g


# -- problems ---------------------------------------------------------------


def rnn_problem(rng, n_x=3, n_a=5, n_y=2, m=4, T=6, scale=0.5):
    p = {
        "Wax": rng.standard_normal((n_a, n_x)) * scale,
        "Waa": rng.standard_normal((n_a, n_a)) * scale,
        "Wya": rng.standard_normal((n_y, n_a)) * scale,
        "ba": rng.standard_normal((n_a, 1)) * scale,
        "by": rng.standard_normal((n_y, 1)) * scale,
    }
    x = rng.standard_normal((n_x, m, T))
    a0 = rng.standard_normal((n_a, m)) * scale
    da = rng.standard_normal((n_a, m, T))
    return x, a0, p, da


def lstm_problem(rng, n_x=3, n_a=5, n_y=2, m=4, T=6, scale=0.5):
    p = {}
    for k in "fico":
        p[f"W{k}"] = rng.standard_normal((n_a, n_a + n_x)) * scale
        p[f"b{k}"] = rng.standard_normal((n_a, 1)) * scale
    p["Wy"] = rng.standard_normal((n_y, n_a)) * scale
    p["by"] = rng.standard_normal((n_y, 1)) * scale
    x = rng.standard_normal((n_x, m, T))
    a0 = rng.standard_normal((n_a, m)) * scale
    c0 = rng.standard_normal((n_a, m)) * scale
    da = rng.standard_normal((n_a, m, T))
    return x, a0, c0, p, da


# -- GRU (PyTorch equations), per-gate loops ------------------------------------------


def gru_cell_forward(xt, a_prev, p):
    n_a = a_prev.shape[0]

    def split(W):
        return W[:, :n_a], W[:, n_a:]

    (Wra, Wrx), (Wza, Wzx), (Wna, Wnx) = split(p["Wr"]), split(p["Wz"]), split(p["Wn"])
    r = sigmoid(Wrx @ xt + Wra @ a_prev + p["br"])
    z = sigmoid(Wzx @ xt + Wza @ a_prev + p["bz"])
    n = np.tanh(Wnx @ xt + p["bn"] + r * (Wna @ a_prev + p["bhn"]))
    a_next = (1 - z) * n + z * a_prev
    return a_next, softmax(p["Wy"] @ a_next + p["by"])


def gru_forward(x, a0, p):
    n_x, m, T = x.shape
    n_a, n_y = p["Wr"].shape[0], p["Wy"].shape[0]
    a, y = np.zeros((n_a, m, T)), np.zeros((n_y, m, T))
    a_t = np.zeros((n_a, m)) if a0 is None else a0
    for t in range(T):
        a_t, y[:, :, t] = gru_cell_forward(x[:, :, t], a_t, p)
        a[:, :, t] = a_t
    return a, y


def gru_problem(rng, n_x=3, n_a=5, n_y=2, m=4, T=6, scale=0.5):
    p = {}
    for k in "rzn":
        p[f"W{k}"] = rng.standard_normal((n_a, n_a + n_x)) * scale
        p[f"b{k}"] = rng.standard_normal((n_a, 1)) * scale
    p["bhn"] = rng.standard_normal((n_a, 1)) * scale
    p["Wy"] = rng.standard_normal((n_y, n_a)) * scale
    p["by"] = rng.standard_normal((n_y, 1)) * scale
    x = rng.standard_normal((n_x, m, T))
    a0 = rng.standard_normal((n_a, m)) * scale
    da = rng.standard_normal((n_a, m, T))
    return x, a0, p, da
