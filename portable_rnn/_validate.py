"""Input checks shared by every public function.

All checks run before any arithmetic, and none of them modifies its inputs.
The rules (documented in ``docs/conventions.md``):

* every array argument is an array of one backend (NumPy, CuPy, JAX, PyTorch,
  array_api_strict...), all from the same backend -> else ``TypeError``;
* every array has a real floating dtype -> else ``TypeError``;
* **mixed floating dtypes are refused**: every array must have the dtype of
  the first array argument (``x`` or ``xt`` for the forwards, the upstream
  gradient for the backwards) -> else ``TypeError`` naming both.  Nothing is
  promoted silently, as in ``torch.nn.LSTM``;
* all arrays are on one device -> else ``ValueError`` naming both;
* every shape is checked against the sizes read from the other arguments ->
  else ``ValueError`` naming the argument, the expected and the actual shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._backend.compat import array_namespace, backend_name, device, is_array, same_device

__all__ = ["Dims", "MissingParameterError", "check_arrays", "get_params", "unpack_cache"]


class MissingParameterError(KeyError, ValueError):
    """A parameter dictionary lacks a key (both a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def check_arrays(named: Mapping[str, Any]):
    """Check that the named arrays share one backend, floating dtype and device.

    Parameters
    ----------
    named : mapping of str to array or None
        Argument name -> array, in the order the arguments are reported;
        ``None`` values are skipped.

    Returns
    -------
    xp : namespace
        The array API namespace of the arrays.
    """
    items = [(k, v) for k, v in named.items() if v is not None]
    for name, arr in items:
        if not is_array(arr):
            raise TypeError(
                f"{name} must be an array (NumPy, CuPy, JAX, PyTorch or any array "
                f"API array), got {type(arr).__name__}"
            )
    first_name, first = items[0]
    xp = array_namespace(first)
    for name, arr in items[1:]:
        other = array_namespace(arr)
        if other is not xp:
            raise TypeError(
                f"{first_name} is a {backend_name(xp)} array but {name} is a "
                f"{backend_name(other)} array; pass arrays of one backend "
                "(portable_rnn.to_backend moves them)"
            )
    for name, arr in items:
        if not xp.isdtype(arr.dtype, "real floating"):
            raise TypeError(
                f"{name} must have a real floating dtype (float32 or float64), got {arr.dtype}"
            )
    dtype = first.dtype
    for name, arr in items[1:]:
        if arr.dtype != dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {first_name} has dtype {dtype}; "
                "portable_rnn does not mix floating dtypes: convert them to one "
                "(for example with portable_rnn.to_backend(..., dtype=...))"
            )
    dev = device(first)
    for name, arr in items[1:]:
        other = device(arr)
        if not same_device(dev, other):
            raise ValueError(
                f"{first_name} is on device {dev} but {name} is on device {other}; "
                "pass arrays on one device (portable_rnn.to_backend moves them)"
            )
    return xp


def get_params(parameters, keys: tuple[str, ...], name: str = "parameters", optional=()) -> dict:
    """Return ``{key: parameters[key]}`` for ``keys``, refusing missing keys.

    ``optional`` names a group of keys (the output layer ``Wy``, ``by``) that
    may be left out together; giving only some of them is an error.
    """
    if not isinstance(parameters, Mapping):
        raise TypeError(f"{name} must be a dict of arrays, got {type(parameters).__name__}")
    required = [k for k in keys if k not in optional]
    missing = [k for k in required if k not in parameters]
    given = [k for k in optional if k in parameters]
    if given and len(given) < len(optional):
        missing += [k for k in optional if k not in parameters]
    if missing:
        raise MissingParameterError(
            f"{name} is missing the key(s) {', '.join(repr(k) for k in missing)}; "
            f"expected keys: {', '.join(keys)}"
            + (f" ({' and '.join(optional)} together or neither)" if optional else "")
        )
    return {k: parameters[k] for k in keys if k in parameters}


def unpack_cache(cache, n: int, what: str):
    """``cache`` if it is the ``n``-tuple a forward returns, else a ``TypeError`` naming it."""
    if not (isinstance(cache, tuple) and len(cache) == n):
        raise TypeError(f"cache must be the cache returned by {what}")
    return cache


class Dims:
    """Sizes (``n_x``, ``m``, ``n_a``...) read from arguments and checked against the rest.

    ``dims.check("Wax", Wax, "n_a n_x")`` checks that ``Wax`` is 2-D, that its
    sizes agree with the letters already known, and records the letters not yet
    known (remembering which argument they came from, for the error message).
    """

    def __init__(self) -> None:
        self.size: dict[str, int] = {}
        self._source: dict[str, str] = {}

    def __getitem__(self, letter: str) -> int:
        return self.size[letter]

    def define(self, letter: str, value: int, source: str) -> None:
        self.size[letter] = int(value)
        self._source[letter] = source

    def check(self, name: str, arr, letters: str) -> None:
        spec = letters.split()
        shape = tuple(int(s) for s in arr.shape)
        wanted = ", ".join(spec)
        if len(shape) != len(spec):
            raise ValueError(
                f"{name} must be {len(spec)}-D with shape ({wanted}), got shape {shape}"
            )
        if any(
            self._expected(letter) not in (None, actual)
            for letter, actual in zip(spec, shape, strict=True)
        ):
            expected = "(" + ", ".join(str(self._expected(lt) or "?") for lt in spec) + ")"
            known = "; ".join(
                f"{letter} = {self.size[letter]} from {self._source[letter]}"
                for letter in dict.fromkeys(spec)
                if letter in self.size
            )
            raise ValueError(
                f"{name} must have shape ({wanted}) = {expected}, got {shape}"
                + (f" ({known})" if known else "")
            )
        for letter, actual in zip(spec, shape, strict=True):
            if self._expected(letter) is None:
                self.define(letter, actual, name)

    def require_steps(self, letter: str, name: str, arr) -> None:
        """Refuse an empty time axis: sequences need at least one step."""
        if self.size[letter] < 1:
            raise ValueError(
                f"{name} must have at least one time step, got shape {tuple(arr.shape)}"
            )

    def _expected(self, letter: str) -> int | None:
        """The size a letter stands for: a literal ("1") or one already read."""
        return int(letter) if letter.isdigit() else self.size.get(letter)
