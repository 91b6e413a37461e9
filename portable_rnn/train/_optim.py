"""Adam and gradient-norm clipping on dicts of arrays of any backend.

The same arithmetic as ``torch.optim.Adam`` (no weight decay, no AMSGrad) and
``torch.nn.utils.clip_grad_norm_``, written against the array API: a run here
and a PyTorch run from the same parameters and batches give the same losses
to rounding (the tests check 20 steps in float64 to 1e-9). Functional, as
optax: nothing is updated in place.
"""

from __future__ import annotations

import math

from .._backend import compat as _compat
from .._backend.seam import zeros_like_state

__all__ = ["adam_init", "adam_update", "clip_grad_norm", "global_norm"]


def _check_tree(name: str, tree) -> None:
    if not isinstance(tree, dict) or not tree:
        raise TypeError(f"{name} must be a non-empty dict of arrays, got {type(tree).__name__}")


def _check_same_keys(name: str, tree, ref_name: str, ref) -> None:
    _check_tree(name, tree)
    if set(tree) != set(ref):  # the order may differ (a checkpoint's is its own)
        missing = [k for k in ref if k not in tree]
        extra = [k for k in tree if k not in ref]
        raise ValueError(
            f"{name} must have the keys of {ref_name}: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}"
        )
    for k in ref:
        if tuple(tree[k].shape) != tuple(ref[k].shape):
            raise ValueError(
                f"{name}[{k!r}] must have the shape of {ref_name}[{k!r}], "
                f"{tuple(ref[k].shape)}, got {tuple(tree[k].shape)}"
            )


def adam_init(params) -> dict:
    """Adam's state for ``params``: step 0 and zero moments.

    Parameters
    ----------
    params : dict of str to array
        Any shapes; any one backend.

    Returns
    -------
    state : dict
        ``"step"`` (int), ``"m"`` and ``"v"`` (dicts of zeros shaped like ``params``,
        on their backend, device and dtype).
    """
    _check_tree("params", params)
    xp = _compat.array_namespace(*params.values())
    zeros = {k: zeros_like_state(xp, tuple(p.shape), p) for k, p in params.items()}
    return {"step": 0, "m": zeros, "v": dict(zeros)}


def _check_hyper(lr, betas, eps) -> None:
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (
        isinstance(betas, (tuple, list))
        and len(betas) == 2
        and all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas)
    ):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")


def adam_scalars(step: int, lr: float, betas=(0.9, 0.999)) -> tuple[float, float]:
    """``(lr / (1 - beta1**step), sqrt(1 - beta2**step))``: the bias corrections of ``step``."""
    beta1, beta2 = betas
    return lr / (1.0 - beta1**step), math.sqrt(1.0 - beta2**step)


def adam_apply(params, grads, m, v, step_size, bc2_sqrt, betas, eps):
    """The array part of one Adam step (jit-able: the scalars may be traced)."""
    beta1, beta2 = betas
    xp = _compat.array_namespace(*params.values())
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        mk = m[k] * beta1 + g * (1.0 - beta1)
        vk = v[k] * beta2 + g * g * (1.0 - beta2)
        denom = xp.sqrt(vk) / bc2_sqrt + eps
        new_p[k] = p - step_size * (mk / denom)
        new_m[k], new_v[k] = mk, vk
    return new_p, new_m, new_v


def adam_update(params, grads, state, *, lr=2e-3, betas=(0.9, 0.999), eps=1e-8):
    """One step of Adam (Kingma and Ba), as ``torch.optim.Adam`` computes it.

    ``m = beta1 m + (1 - beta1) g``; ``v = beta2 v + (1 - beta2) g^2``;
    ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.

    Parameters
    ----------
    params, grads : dict of str to array
        The same keys and shapes; one backend and device.
    state : dict
        From `adam_init` or the previous `adam_update`.
    lr : float, keyword-only
        Learning rate.
    betas : (float, float), keyword-only
        Decay rates of the first and second moments.
    eps : float, keyword-only
        Added to the denominator.

    Returns
    -------
    params : dict
        The updated parameters (new arrays; the inputs are not modified).
    state : dict
        The new state (``step`` one more).
    """
    _check_tree("params", params)
    _check_same_keys("grads", grads, "params", params)
    if not (isinstance(state, dict) and {"step", "m", "v"} <= set(state)):
        raise TypeError("state must be the dict of adam_init or adam_update")
    _check_same_keys("state['m']", state["m"], "params", params)
    _check_same_keys("state['v']", state["v"], "params", params)
    _check_hyper(lr, betas, eps)
    step = int(state["step"]) + 1
    step_size, bc2_sqrt = adam_scalars(step, lr, betas)
    p, m, v = adam_apply(params, grads, state["m"], state["v"], step_size, bc2_sqrt, betas, eps)
    return p, {"step": step, "m": m, "v": v}


def global_norm(grads):
    """The 2-norm of all arrays of ``grads`` together (no copy to the host).

    Parameters
    ----------
    grads : dict of str to array
        Any shapes; one backend and device.

    Returns
    -------
    norm : array, shape ()
        ``sqrt(sum of the squares of every entry)``.
    """
    _check_tree("grads", grads)
    xp = _compat.array_namespace(*grads.values())
    return xp.sqrt(sum(xp.sum(g * g) for g in grads.values()))


def clip_scale(norm, max_norm: float):
    """``min(1, max_norm / (norm + 1e-6))`` as a 0-D array, as PyTorch computes it."""
    xp = _compat.array_namespace(norm)
    coef = max_norm / (norm + 1e-6)
    return xp.where(coef < 1.0, coef, xp.ones_like(coef))


def clip_grad_norm(grads, max_norm):
    """Scale ``grads`` so that their global 2-norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: every gradient is multiplied by
    ``min(1, max_norm / (norm + 1e-6))``. Computed on the device, with no
    copy to the host.

    Parameters
    ----------
    grads : dict of str to array
        Gradients of one backend and device.
    max_norm : float
        The largest norm allowed, ``> 0``.

    Returns
    -------
    grads : dict
        The scaled gradients (new arrays).
    norm : array, shape ()
        The norm before clipping.
    """
    if not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")
    norm = global_norm(grads)
    scale = clip_scale(norm, max_norm)
    return {k: g * scale for k, g in grads.items()}, norm
