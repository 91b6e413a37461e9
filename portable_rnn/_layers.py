"""Layer objects: `LSTM`, `GRU` and `RNN`, in the spirit of ``torch.nn.LSTM`` and Keras 3.

One object holds the parameters of a stack (`init_multilayer_params`' list of column-dialect
dicts, PyTorch's order) on one backend, device and dtype, and runs it on inputs in PyTorch's
layout: ``x (T, N, input_size)`` (``(N, T, input_size)`` with ``batch_first``), states
``(num_layers * num_directions, N, hidden_size)``. Thin over the functions: calling a layer
transposes its arguments into the column dialect (``(n_x, m, T_x)``, views where the backend
has them), runs `multilayer_forward` (and `multilayer_backward`), and transposes back. No
recurrence is written here.

On JAX the objects are pytrees (registered lazily, once JAX is imported): the parameters are
the leaves, the configuration is static, so ``jax.jit`` and ``jax.grad`` take functions of a
layer, and ``jax.grad`` returns a layer of gradients.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from . import interop
from ._backend import compat, pytrees
from ._backend.devices import (
    FLOAT_DTYPES,
    HALF_DTYPES,
    backend_dtypes,
    check_backend,
    from_numpy_as,
    lacking,
    to_numpy,
)
from ._column.stacked import check_dropout, multilayer_backward, multilayer_forward
from ._config import get_config
from ._core.spec import CELLS, CLASSIC, OPTION_SHAPES, CellSpec, Options, check_options
from ._creation import (
    check_seed,
    check_sizes,
    init_multilayer_params,
    resolve_target,
    to_backend,
)
from ._npz import ArraySpec, NpzFile, write_atomic
from ._validate import check_is_array

__all__ = ["GRU", "LSTM", "RNN", "RNNBase"]

#: The format name in every saved layer's header.
FORMAT = "portable_rnn.layer"
#: The version of the layout; a file of another version is refused.
FORMAT_VERSION = 1
_HEADER_KEYS = (
    "format",
    "version",
    "cell",
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "batch_first",
    "dtype",
)
#: the header's optional fields: the cell variants and dropout, written when not at their
#: defaults (a classic layer's file is as before), each checked on load
_OPTION_FIELDS = (
    "nonlinearity",
    "reset_after",
    "proj_size",
    "peepholes",
    "clip",
    "input_forget",
    "dropout",
)
_MAX_HEADER_BYTES = 64 * 2**10
_MAX_FILE_BYTES = 4 * 2**30  # the arrays of one file, checked before anything is read
#: the dtype a layer's arrays are stored in: NumPy has no bfloat16 (float32 holds it exactly)
_STORED = {"bfloat16": "float32"}


def _flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _first(layers) -> Any:
    return next(iter(layers[0].values()))


class _Variant(NamedTuple):
    """A layer's cell variant and dropout, as checked by `_variant`."""

    options: Options = CLASSIC  #: ``proj`` and ``peepholes`` set as the keys say
    proj_size: int = 0
    dropout: float = 0.0

    def header(self) -> dict:
        """The header fields of the values not at their defaults."""
        values = {"proj_size": self.proj_size, "dropout": self.dropout}
        defaults = {"proj_size": 0, "dropout": 0.0}
        fields = {}
        for name in _OPTION_FIELDS:  # the constructor's order
            value = values[name] if name in values else getattr(self.options, name)
            if value != (defaults[name] if name in defaults else getattr(CLASSIC, name)):
                fields[name] = value
        return fields

    def keywords(self) -> dict:
        """`multilayer_forward`'s keywords for the options (not the keys, not dropout)."""
        o = self.options
        return {
            "nonlinearity": o.nonlinearity,
            "reset_after": o.reset_after,
            "clip": o.clip,
            "input_forget": o.input_forget,
        }

    def extra_keys(self, spec: CellSpec) -> tuple[str, ...]:
        """The optional parameter keys of every dict: ``Wp``, then ``Pi``, ``Pf``, ``Po``."""
        keys = spec.option_keys
        return (keys["proj"] if self.proj_size else ()) + (
            keys["peepholes"] if self.options.peepholes else ()
        )


def _variant(
    spec: CellSpec,
    hidden_size: int,
    *,
    nonlinearity=None,
    reset_after=None,
    proj_size=0,
    peepholes=False,
    clip=None,
    input_forget=False,
    dropout=0.0,
) -> _Variant:
    """The constructor's options, checked: one the cell does not have is named."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)):
        raise TypeError(f"proj_size must be a non-negative integer, got {proj_size!r}")
    proj_size = int(proj_size)
    if proj_size and "proj" not in spec.options:
        raise ValueError(
            f"proj_size={proj_size!r} is the LSTM's option; cell {spec.name!r} has no proj_size"
        )
    if proj_size < 0 or proj_size >= hidden_size:
        raise ValueError(
            f"proj_size must be 0 (none) or in [1, hidden_size) = [1, {hidden_size}), "
            f"got {proj_size}"
        )
    options = check_options(
        spec,
        nonlinearity=nonlinearity,
        reset_after=reset_after,
        peepholes=peepholes,
        clip=clip,
        input_forget=input_forget,
    )
    p_drop, _ = check_dropout(dropout, 0)  # the seed comes per call
    return _Variant(dataclasses.replace(options, proj=bool(proj_size)), proj_size, p_drop)


def _init_layers(spec: CellSpec, variant: _Variant, sizes, D: int, seed, place) -> list:
    """The dicts of a stack with a projection or peepholes (the classic ones are
    `init_multilayer_params`'): each drawn as it draws, from its own stream of ``seed``
    (``SeedSequence([seed, k])``), uniform in ``±1/sqrt(hidden_size)`` in float64 NumPy:
    the cell's keys (gate weights ``(H, n_h + n_in)``, ``n_h`` the projected size), then
    ``Wp`` (P, H), then ``Pi``, ``Pf``, ``Po`` (H, 1). Without a projection the cell's
    keys are `init_multilayer_params`' numbers."""
    n_x, H, L = sizes
    backend, xp, dev, name = resolve_target(*place)
    n_h = variant.proj_size or H
    shapes = dict(spec.shapes)
    shapes.update({k: OPTION_SHAPES[k] for k in variant.extra_keys(spec)})
    bound = 1.0 / np.sqrt(H)
    layers = []
    for k in range(L * D):
        stream = None if seed is None else np.random.SeedSequence([seed, k])
        rng = np.random.default_rng(stream)
        n_in = n_x if k < D else D * n_h
        sizes_k = {"n_x": n_in, "n_a": H, "n_p": n_h, "n_y": 1}
        draws = {}
        for key in (*spec.layer_keys, *variant.extra_keys(spec)):
            letters = shapes[key].replace("n_a+n_x", "n_p+n_x")
            shape = tuple(
                int(t) if t.isdigit() else sum(sizes_k[part] for part in t.split("+"))
                for t in letters.split()
            )
            draws[key] = rng.uniform(-bound, bound, size=shape)
        layers.append({key: from_numpy_as(xp, backend, v, dev, name) for key, v in draws.items()})
    return layers


@pytrees.node(children=("stack",), static=("cell", "batch_first", "unbatched"))
class _LayerCache:
    """What `RNNBase.forward` returns for `RNNBase.backward`: the stack's cache and the
    layout of the layer's arrays. A pytree on JAX (the stack's arrays are its leaves)."""

    __slots__ = ("batch_first", "cell", "stack", "unbatched")

    def __init__(self, stack, cell: str, batch_first: bool, unbatched: bool) -> None:
        self.stack = stack
        self.cell = cell
        self.batch_first = batch_first
        self.unbatched = unbatched

    def __repr__(self) -> str:
        return f"<cache of a {self.cell.upper()} layer forward>"


class RNNBase:
    """The base of `LSTM`, `GRU` and `RNN`: a stack of one cell on one backend.

    Not made directly: make an `LSTM`, `GRU` or `RNN`, or `RNNBase.load` a file (which
    gives the subclass the file holds) or `RNNBase.from_torch` a module.

    Attributes
    ----------
    layers : list of dict
        ``num_layers * num_directions`` parameter dicts in PyTorch's order (layer 0
        forward, [layer 0 reverse,] layer 1 forward, ...), the column dialect of
        `multilayer_forward`: gate weights ``(hidden_size, hidden_size + n_in)`` and
        biases ``(hidden_size, 1)`` (``Wax (hidden_size, n_in)``, ``Waa``, ``ba`` for
        the RNN), with ``n_in = input_size`` for layer 0 and
        ``num_directions * hidden_size`` above. A projected LSTM (``proj_size = P``) reads
        ``P`` hidden features (gate weights ``(hidden_size, P + n_in)``, ``n_in =
        num_directions * P`` above layer 0) and holds ``Wp`` (P, hidden_size); a peephole
        LSTM ``Pi``, ``Pf``, ``Po`` (hidden_size, 1).

    The cell variants (``nonlinearity``, ``reset_after``, ``proj_size``, ``peepholes``,
    ``clip``, ``input_forget``) and ``dropout`` are constructor options, read-only
    properties, saved in the file's header and carried by `from_torch` and `to_torch`; an
    option of another cell is a ``ValueError`` naming it. The layer starts in training
    mode, as a PyTorch module: with ``dropout`` (and more than one layer) every call then
    needs ``seed=``; `eval` turns the dropout off.
    """

    #: the cell of the subclass
    _spec: ClassVar[CellSpec]
    layers: list

    # set by `_assemble`, the one place that makes an object
    _input_size: int
    _hidden_size: int
    _num_layers: int
    _bidirectional: bool
    _batch_first: bool
    _backend: str
    _device: Any
    _dtype: str
    _variant: _Variant
    _training: bool

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        *,
        bidirectional=False,
        batch_first=False,
        nonlinearity=None,
        reset_after=None,
        proj_size=0,
        peepholes=False,
        clip=None,
        input_forget=False,
        dropout=0.0,
        seed=None,
        backend=None,
        device=None,
        dtype=None,
    ) -> None:
        if type(self) is RNNBase:
            raise TypeError("RNNBase is the base class; make an LSTM, GRU or RNN")
        check_sizes(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        bidirectional = _flag(bidirectional, "bidirectional")
        batch_first = _flag(batch_first, "batch_first")
        variant = _variant(
            self._spec,
            int(hidden_size),
            nonlinearity=nonlinearity,
            reset_after=reset_after,
            proj_size=proj_size,
            peepholes=peepholes,
            clip=clip,
            input_forget=input_forget,
            dropout=dropout,
        )
        check_seed(seed)
        if variant.extra_keys(self._spec):
            D = 2 if bidirectional else 1
            sizes = (int(input_size), int(hidden_size), int(num_layers))
            layers = _init_layers(self._spec, variant, sizes, D, seed, (backend, device, dtype))
        else:
            layers = init_multilayer_params(
                self._spec.name,
                int(input_size),
                int(hidden_size),
                num_layers=int(num_layers),
                bidirectional=bidirectional,
                seed=seed,
                backend=backend,
                device=device,
                dtype=dtype,
            )
        self._set(layers, input_size, hidden_size, num_layers, bidirectional, batch_first, variant)

    # -- construction -----------------------------------------------------------------

    def _set(
        self,
        layers,
        input_size,
        hidden_size,
        num_layers,
        bidirectional,
        batch_first,
        variant=None,
        training=True,
    ):
        first = _first(layers)
        self._variant = _Variant() if variant is None else variant
        self._training = bool(training)
        self.layers = list(layers)
        self._input_size = int(input_size)
        self._hidden_size = int(hidden_size)
        self._num_layers = int(num_layers)
        self._bidirectional = bool(bidirectional)
        self._batch_first = bool(batch_first)
        self._backend = compat.backend_name(compat.array_namespace(first))
        self._device = compat.device(first)
        self._dtype = compat.dtype_name(first.dtype)
        pytrees.ensure()  # JAX imported by now if the arrays are JAX's: register the classes

    @staticmethod
    def _assemble(
        cell: str,
        layers,
        input_size,
        hidden_size,
        num_layers,
        bidirectional,
        batch_first,
        variant=None,
        training=True,
    ):
        """A layer of ``cell`` holding ``layers`` (checked by the caller), without drawing."""
        obj = object.__new__(_CLASSES[cell])
        obj._set(
            layers,
            input_size,
            hidden_size,
            num_layers,
            bidirectional,
            batch_first,
            variant,
            training,
        )
        return obj

    def _like(self, layers):
        return RNNBase._assemble(
            self._spec.name,
            layers,
            self._input_size,
            self._hidden_size,
            self._num_layers,
            self._bidirectional,
            self._batch_first,
            self._variant,
            self._training,
        )

    # -- properties -------------------------------------------------------------------

    @property
    def cell(self) -> str:
        """The cell: ``"lstm"``, ``"gru"`` or ``"rnn"``."""
        return self._spec.name

    @property
    def input_size(self) -> int:
        """Input features of the first layer."""
        return self._input_size

    @property
    def hidden_size(self) -> int:
        """Hidden units of every layer and direction."""
        return self._hidden_size

    @property
    def num_layers(self) -> int:
        """Layers in the stack."""
        return self._num_layers

    @property
    def bidirectional(self) -> bool:
        """Whether every layer also runs over the reversed sequence."""
        return self._bidirectional

    @property
    def batch_first(self) -> bool:
        """Whether inputs and outputs are ``(N, T, features)`` rather than ``(T, N, features)``."""
        return self._batch_first

    @property
    def nonlinearity(self) -> str:
        """The RNN's activation: ``"tanh"`` or ``"relu"`` (``"tanh"`` for the others)."""
        return self._variant.options.nonlinearity

    @property
    def reset_after(self) -> bool:
        """The GRU's reset after the recurrent product (PyTorch's) or before it (``True``
        for the others)."""
        return self._variant.options.reset_after

    @property
    def proj_size(self) -> int:
        """The LSTM's projected hidden size ``P`` (``Wp`` (P, hidden_size) in every dict);
        0: none."""
        return self._variant.proj_size

    @property
    def peepholes(self) -> bool:
        """Whether the LSTM has peephole connections (``Pi``, ``Pf``, ``Po`` in every dict)."""
        return self._variant.options.peepholes

    @property
    def clip(self) -> float | None:
        """The LSTM's cell clip (gate pre-activations clipped to ``[-clip, clip]``), or None."""
        return self._variant.options.clip

    @property
    def input_forget(self) -> bool:
        """Whether the LSTM's input and forget gates are coupled (``f = 1 - i``)."""
        return self._variant.options.input_forget

    @property
    def dropout(self) -> float:
        """Dropout on the outputs of every layer but the last, in training mode only."""
        return self._variant.dropout

    @property
    def training(self) -> bool:
        """Training mode (the default, as PyTorch's): `dropout` applies, and a call needs a
        ``seed``. `eval` and `train` set it."""
        return self._training

    def train(self, mode=True):
        """Set training mode (``mode=False``: evaluation), as ``torch.nn.Module.train``.

        Parameters
        ----------
        mode : bool
            Training (`dropout` applies) or evaluation (none).

        Returns
        -------
        layer : same class
            This layer (changed in place).
        """
        self._training = _flag(mode, "mode")
        return self

    def eval(self):
        """Set evaluation mode: no dropout (``train(False)``).

        Returns
        -------
        layer : same class
            This layer (changed in place).
        """
        return self.train(False)

    @property
    def _n_h(self) -> int:
        """The hidden state's size: ``proj_size`` with a projection, else ``hidden_size``."""
        return self._variant.proj_size or self._hidden_size

    @property
    def backend(self) -> str:
        """The backend of the parameters: ``"numpy"``, ``"jax"``, ``"torch"``..."""
        return self._backend

    @property
    def device(self) -> Any:
        """The device of the parameters, as the backend names it (``"cpu"``, a ``torch.device``)."""
        return self._device

    @property
    def dtype(self) -> str:
        """The dtype of the parameters: ``"float32"`` or ``"float64"``."""
        return self._dtype

    def num_parameters(self) -> int:
        """The number of parameters (array elements) of `layers`.

        The column dialect keeps one bias per gate (PyTorch's ``bias_ih + bias_hh``, the GRU's
        candidate excepted), so this is ``num_layers * num_directions * n_blocks *
        hidden_size`` fewer than PyTorch counts for the same module (``n_blocks`` 4 for the
        LSTM, 2 for the GRU, 1 for the RNN).

        Returns
        -------
        count : int
        """
        return sum(math.prod(v.shape) for layer in self.layers for v in layer.values())

    def __repr__(self) -> str:
        parts = [str(self._input_size), str(self._hidden_size)]
        if self._num_layers != 1:
            parts.append(f"num_layers={self._num_layers}")
        if self._bidirectional:
            parts.append("bidirectional=True")
        if self._batch_first:
            parts.append("batch_first=True")
        parts += [f"{k}={v!r}" for k, v in self._variant.header().items()]
        parts.append(f"backend={self._backend!r}")
        if self._device is not None and "cpu" not in str(self._device).lower():
            parts.append(f"device={str(self._device)!r}")
        parts.append(f"dtype={self._dtype!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- checks and layouts -----------------------------------------------------------

    @property
    def _directions(self) -> int:
        return 2 if self._bidirectional else 1

    def _check_array(self, name: str, arr):
        """``arr``'s namespace, once it is an array of this layer's backend, dtype, device."""
        check_is_array(name, arr)
        xp = compat.array_namespace(arr)
        got = compat.backend_name(xp)
        what = f"this {type(self).__name__}'s parameters"
        if got != self._backend:
            raise TypeError(
                f"{name} is a {got} array but {what} are {self._backend} arrays; move {name} "
                f"with portable_rnn.to_backend({name}, {self._backend!r}) or the layer with "
                f".to(backend={got!r})"
            )
        if not xp.isdtype(arr.dtype, "real floating"):
            raise TypeError(f"{name} must have a real floating dtype, got {arr.dtype}")
        dtype = compat.dtype_name(arr.dtype)
        if dtype != self._dtype:
            raise TypeError(
                f"{name} has dtype {dtype} but {what} are {self._dtype}; portable_rnn does not "
                f"mix dtypes: convert {name} (portable_rnn.to_backend(..., dtype=...)) or the "
                "layer (.to(dtype=...))"
            )
        dev = compat.device(arr)
        if not compat.same_device(dev, self._device):
            raise ValueError(
                f"{name} is on device {dev} but {what} are on {self._device}; move {name} "
                "(portable_rnn.to_backend) or the layer (.to(device=...))"
            )
        return xp

    def _layout(self, unbatched: bool, features: str) -> str:
        if unbatched:
            return f"(T, {features})"
        return f"(N, T, {features})" if self._batch_first else f"(T, N, {features})"

    def _check_sequence(self, name: str, arr, width: int, features: str, expect=None):
        """``(xp, unbatched, N, T)`` of a sequence in the layer's layout, checked."""
        xp = self._check_array(name, arr)
        shape = tuple(arr.shape)
        if expect is not None:
            unbatched, N, T = expect
            want = (
                (T, width) if unbatched else ((N, T, width) if self._batch_first else (T, N, width))
            )
            if shape != want:
                raise ValueError(
                    f"{name} must have shape {self._layout(unbatched, features)} = {want} "
                    f"(from the forward), got {shape}"
                )
            return xp, unbatched, N, T
        if len(shape) not in (2, 3):
            raise ValueError(
                f"{name} must have shape {self._layout(False, features)} "
                f"(or {self._layout(True, features)} unbatched), got {shape}"
            )
        unbatched = len(shape) == 2
        if unbatched:
            (T, got), N = shape, 1
        else:
            (N, T, got) = shape if self._batch_first else (shape[1], shape[0], shape[2])
        if got != width:
            raise ValueError(
                f"{name} must have shape {self._layout(unbatched, features)} with "
                f"{features} = {width}, got {shape}"
            )
        if T < 1:
            raise ValueError(f"{name} must have at least one time step, got shape {shape}")
        return xp, unbatched, N, T

    def _state_parts(self, name: str, state, optional_parts: bool) -> list:
        """The state's arrays (``[h]`` or ``[h, c]``, each maybe ``None``), named as given."""
        if state is None:
            return [None] * len(self._spec.carry)
        if len(self._spec.carry) == 1:
            if isinstance(state, (tuple, list)):
                raise TypeError(
                    f"{name} of a {type(self).__name__} is one array "
                    f"(num_layers * num_directions, N, hidden_size), not a {type(state).__name__}"
                )
            return [state]
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            got = f"a {type(state).__name__}" + (
                f" of {len(state)}" if isinstance(state, (tuple, list)) else ""
            )
            raise TypeError(f"{name} of an LSTM must be a tuple (h, c) of two arrays, got {got}")
        if not optional_parts:
            for k, part in enumerate(state):
                check_is_array(f"{name}[{k}]", part)
        return list(state)

    def _check_state(self, name: str, state, unbatched: bool, N: int, optional_parts=False):
        parts = self._state_parts(name, state, optional_parts)
        LD = self._num_layers * self._directions
        many = len(parts) > 1
        for k, part in enumerate(parts):
            if part is None:
                continue
            # a projected LSTM's h has proj_size rows, its c hidden_size
            H, size = (
                (self._n_h, "proj_size")
                if k == 0 and self.proj_size
                else (
                    self._hidden_size,
                    "hidden_size",
                )
            )
            want = (LD, H) if unbatched else (LD, N, H)
            letters = "(num_layers * num_directions, " + ("" if unbatched else "N, ") + size + ")"
            where = f"{name}[{k}]" if many else name
            self._check_array(where, part)
            if tuple(part.shape) != want:
                raise ValueError(
                    f"{where} must have shape {letters} = {want}, got {tuple(part.shape)}"
                )
        return parts

    def _seq_in(self, xp, arr, unbatched: bool):
        """A sequence in the layer's layout -> the column dialect ``(features, N, T)``."""
        if unbatched:
            return xp.expand_dims(xp.permute_dims(arr, (1, 0)), axis=1)
        return xp.permute_dims(arr, (2, 0, 1) if self._batch_first else (2, 1, 0))

    def _seq_out(self, xp, arr, unbatched: bool):
        """A column-dialect sequence ``(features, N, T)`` -> the layer's layout."""
        if unbatched:
            return xp.permute_dims(arr[:, 0, :], (1, 0))
        return xp.permute_dims(arr, (1, 2, 0) if self._batch_first else (2, 1, 0))

    @staticmethod
    def _state_in(xp, arr, unbatched: bool):
        if arr is None:
            return None
        if unbatched:
            return xp.expand_dims(arr, axis=2)
        return xp.permute_dims(arr, (0, 2, 1))

    @staticmethod
    def _state_out(xp, arr, unbatched: bool):
        if arr is None:
            return None
        if unbatched:
            return arr[:, :, 0]
        return xp.permute_dims(arr, (0, 2, 1))

    def _pack(self, parts):
        return tuple(parts) if len(self._spec.carry) > 1 else parts[0]

    # -- running ----------------------------------------------------------------------

    def _dropout_keywords(self, seed) -> dict:
        """``dropout`` and ``seed`` for `multilayer_forward`: none in evaluation mode or with
        one layer; in training mode with `dropout`, ``seed`` is required."""
        if not (self._variant.dropout and self._training and self._num_layers > 1):
            return {}
        if seed is None:
            raise ValueError(
                f"this {type(self).__name__} has dropout={self._variant.dropout} and is in "
                "training mode: pass seed= (an int; the masks are drawn from it, and the "
                "backward uses the forward's), or call .eval() to run without dropout"
            )
        return {"dropout": self._variant.dropout, "seed": seed}

    def forward(self, x, state=None, *, lengths=None, seed=None):
        """Run the stack and keep what `backward` needs.

        Parameters
        ----------
        x : array, shape (T, N, input_size), or (N, T, input_size) with ``batch_first``
            The input sequences, on the layer's backend and device, in its dtype; or one
            unbatched sequence ``(T, input_size)``.
        state : array or tuple of two arrays, optional
            The initial state, shape (num_layers * num_directions, N, hidden_size)
            (``(num_layers * num_directions, hidden_size)`` unbatched), as PyTorch lays it
            out: ``h0`` for the GRU and RNN, ``(h0, c0)`` for the LSTM. Zeros when omitted.
        lengths : array of int, shape (N,), or list of int, optional, keyword-only
            Each sequence's number of real steps, with PyTorch's packed-sequence semantics
            (see `multilayer_forward`); batched inputs only.
        seed : int, optional, keyword-only
            The dropout masks' seed: required in training mode when the layer has
            `dropout` and more than one layer (the same seed, the same masks on every
            backend); ignored otherwise.

        Returns
        -------
        out : array, shape (T, N, num_directions * hidden_size), or (N, T, ...) with ``batch_first``
            The last layer's hidden states, both directions stacked (forward first); zero at
            padded steps. ``(T, num_directions * hidden_size)`` unbatched.
        state : array or tuple of two arrays
            The final state, laid out as ``state`` (``(h_n, c_n)`` for the LSTM).
        cache : object
            For `backward`; opaque (a pytree on JAX).
        """
        pytrees.ensure()
        xp, unbatched, N, _ = self._check_sequence("x", x, self._input_size, "input_size")
        parts = self._check_state("state", state, unbatched, N)
        if lengths is not None and unbatched:
            raise ValueError("lengths needs batched x (T, N, input_size); x is one sequence")
        drop = self._dropout_keywords(seed)
        inits = [self._state_in(xp, p, unbatched) for p in parts]
        out, a_n, c_n, stack = multilayer_forward(
            self._seq_in(xp, x, unbatched),
            self.layers,
            cell=self._spec.name,
            bidirectional=self._bidirectional,
            a0=inits[0],
            c0=inits[1] if len(inits) > 1 else None,
            lengths=lengths,
            **self._variant.keywords(),
            **drop,
        )
        finals = [self._state_out(xp, s, unbatched) for s in (a_n, c_n)[: len(parts)]]
        cache = _LayerCache(stack, self._spec.name, self._batch_first, unbatched)
        return self._seq_out(xp, out, unbatched), self._pack(finals), cache

    def __call__(self, x, state=None, *, lengths=None, seed=None):
        """Run the stack: ``out, state = layer(x, state)``, as ``torch.nn.LSTM`` does.

        Parameters
        ----------
        x : array, shape (T, N, input_size), or (N, T, input_size) with ``batch_first``
            As for `forward`; or ``(T, input_size)`` unbatched.
        state : array or tuple of two arrays, optional
            Shape (num_layers * num_directions, N, hidden_size); ``(h0, c0)`` for the LSTM.
        lengths : array of int, shape (N,), or list of int, optional, keyword-only
            As for `forward`.
        seed : int, optional, keyword-only
            The dropout masks' seed, as for `forward`.

        Returns
        -------
        out : array, shape (T, N, num_directions * hidden_size), or (N, T, ...) with ``batch_first``
            The last layer's hidden states.
        state : array or tuple of two arrays
            Shape (num_layers * num_directions, N, hidden_size); ``(h_n, c_n)`` for the LSTM.
        """
        out, state, _ = self.forward(x, state, lengths=lengths, seed=seed)
        return out, state

    def backward(self, dout, cache, *, dstate=None):
        """Backpropagation through time through the forward that made ``cache``.

        Parameters
        ----------
        dout : array, shape (T, N, num_directions * hidden_size), or (N, T, ...) if batch_first
            Gradient of the loss with respect to ``out`` (laid out as ``out``).
        cache : object
            From `forward` of this layer (or one of the same configuration).
        dstate : array or tuple, optional, keyword-only
            Gradient with respect to the final state, shape (num_layers * num_directions, N,
            hidden_size); for the LSTM a tuple ``(dh_n, dc_n)``, either of which may be
            ``None``. ``None``: no gradient there.

        Returns
        -------
        dx : array, shape (T, N, input_size), or (N, T, input_size) with ``batch_first``
            Gradient with respect to ``x`` (zero at padded steps).
        dstate0 : array or tuple of two arrays
            Gradient with respect to the initial state, shape (num_layers * num_directions,
            N, hidden_size); ``(dh0, dc0)`` for the LSTM.
        grads : list of dict
            One dict per dict of `layers`, each key prefixed with ``d`` (``dWf``, ``dbf``...;
            ``dWax``, ``dWaa``, ``dba`` for the RNN), each of its parameter's shape.
        """
        name = type(self).__name__
        if not isinstance(cache, _LayerCache):
            raise TypeError(
                f"cache must be the cache returned by {name}.forward, got {type(cache).__name__}"
            )
        stack = cache.stack
        n_x, N, T = (int(d) for d in stack.x.shape)
        if cache.cell != self._spec.name:
            raise ValueError(
                f"cache comes from the forward of a {_CLASSES[cache.cell].__name__}, "
                f"not of this {self!r}"
            )
        made = (n_x, stack.n_a, stack.L, stack.D == 2, cache.batch_first)
        mine = (
            self._input_size,
            self._n_h,
            self._num_layers,
            self._bidirectional,
            self._batch_first,
        )
        if made != mine:
            raise ValueError(
                f"cache comes from the forward of {_CLASSES[cache.cell].__name__}({made[0]}, "
                f"{made[1]}, num_layers={made[2]}, bidirectional={made[3]}, "
                f"batch_first={made[4]}), not of this {self!r}"
            )
        unbatched = cache.unbatched
        width = self._directions * self._n_h
        features = "num_directions * " + ("proj_size" if self.proj_size else "hidden_size")
        xp, *_ = self._check_sequence("dout", dout, width, features, (unbatched, N, T))
        parts = self._check_state("dstate", dstate, unbatched, N, optional_parts=True)
        dfinals = [self._state_in(xp, p, unbatched) for p in parts]
        g = multilayer_backward(
            self._seq_in(xp, dout, unbatched),
            stack,
            da_n=dfinals[0],
            dc_n=dfinals[1] if len(dfinals) > 1 else None,
        )
        dinits = [g["da0"], g.get("dc0")][: len(parts)]
        dstate0 = self._pack([self._state_out(xp, d, unbatched) for d in dinits])
        return self._seq_out(xp, g["dx"], unbatched), dstate0, g["layers"]

    # -- moving -----------------------------------------------------------------------

    def to(self, backend=None, device=None, dtype=None):
        """This layer on another backend, device or dtype: a new object (this one is unchanged).

        Parameters
        ----------
        backend : str, optional
            ``"numpy"``, ``"jax"``, ``"torch"``, ``"cupy"``, ``"array_api_strict"``; ``None``
            keeps the layer's.
        device : str or device object, optional
            ``"cpu"``, ``"gpu:0"``...; ``None`` keeps the layer's device when the backend is
            kept, else the new backend's default.
        dtype : {"float32", "float64"}, optional
            ``None`` keeps the layer's.

        Returns
        -------
        layer : same class
            Its `layers` moved with `portable_rnn.to_backend` (DLPack where it can; arrays
            that need no move are shared with this layer, not copied).
        """
        if backend is None:
            backend = self._backend
            if device is None:
                device = self._device
        return self._like(to_backend(self.layers, backend, device, dtype=dtype))

    # -- PyTorch ----------------------------------------------------------------------

    @classmethod
    def from_torch(cls, module, *, backend=None, device=None, dtype=None):
        """A layer holding the weights of a ``torch.nn.LSTM``, ``GRU`` or ``RNN``.

        Parameters
        ----------
        module : torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN
            Any ``num_layers``; ``bidirectional``, ``batch_first``, the RNN's
            ``nonlinearity``, the LSTM's ``proj_size`` (its ``weight_hr`` becoming ``Wp``),
            ``dropout`` and the training mode (``module.training``) are copied. In training
            mode with dropout, calls need a ``seed``: the masks are portable_rnn's, not
            PyTorch's. Called on `RNNBase`, any of the three; on a subclass, its own.
        backend, device, dtype : optional, keyword-only
            Where the layer goes, as for `to`; by default PyTorch tensors on the module's
            device, in its dtype.

        Returns
        -------
        layer : LSTM, GRU or RNN
            Outputs and gradients equal the module's (see `portable_rnn.interop.from_torch`).
        """
        with warnings.catch_warnings():  # the dropout is carried over here, as an option
            warnings.filterwarnings("ignore", "module.dropout is", UserWarning)
            found = interop.from_torch(module)  # refuses all but PyTorch's recurrent modules
        import torch

        if not isinstance(module, torch.nn.RNNBase):
            raise TypeError(
                f"module must be a torch.nn.LSTM, GRU or RNN (a whole sequence), got "
                f"{type(module).__name__}; a cell's weights go to portable_rnn.interop.from_torch"
            )
        cell = next(
            n for n, s in CELLS.items() if isinstance(module, getattr(torch.nn, s.torch_module))
        )
        if cls is not RNNBase and cls._spec.name != cell:
            raise TypeError(
                f"module is a torch.nn.{CELLS[cell].torch_module}, not a torch.nn."
                f"{cls._spec.torch_module}; use portable_rnn.{_CLASSES[cell].__name__}.from_torch "
                "or portable_rnn.RNNBase.from_torch"
            )
        layers = found if isinstance(found, list) else [found]
        variant = _variant(
            CELLS[cell],
            module.hidden_size,
            nonlinearity=getattr(module, "nonlinearity", None),
            proj_size=getattr(module, "proj_size", 0),
            dropout=float(module.dropout),
        )
        layer = RNNBase._assemble(
            cell,
            layers,
            module.input_size,
            module.hidden_size,
            module.num_layers,
            module.bidirectional,
            module.batch_first,
            variant,
            module.training,
        )
        if backend is None and device is None and dtype is None:
            return layer
        return layer.to(backend, device, dtype)

    def to_torch(self):
        """A ``torch.nn.LSTM``, ``GRU`` or ``RNN`` holding this layer's weights.

        Returns
        -------
        module : torch.nn.LSTM, GRU or RNN
            With this layer's ``num_layers``, ``bidirectional``, ``batch_first``,
            ``nonlinearity`` (RNN), ``proj_size`` (LSTM), ``dropout`` and training mode, on
            its device when the layer is PyTorch's (else the CPU), in its dtype (see
            `portable_rnn.interop.to_torch`).

        Raises
        ------
        ValueError
            A variant no PyTorch module has, named: the LSTM's ``peepholes``, ``clip`` or
            ``input_forget``, the GRU's ``reset_after=False``.
        """
        module = interop.to_torch(
            self.layers,
            bidirectional=self._bidirectional,
            batch_first=self._batch_first,
            **self._variant.keywords(),
        )
        module.dropout = self._variant.dropout
        return module.train(self._training)

    # -- files ------------------------------------------------------------------------

    def save(self, path):
        """Write the layer to a ``.npz`` file, atomically.

        The file holds every parameter as a NumPy array under ``layers.{k}.{name}`` (``k``
        the index in `layers`), in the layer's dtype, and ``header``: a JSON object
        (format and version, cell, sizes, ``num_layers``, ``bidirectional``,
        ``batch_first``, dtype, and the options not at their defaults: ``nonlinearity``,
        ``reset_after``, ``proj_size``, ``peepholes``, ``clip``, ``input_forget``,
        ``dropout``) stored as a uint8 array. The training mode is not saved. A bfloat16
        layer's arrays are stored as float32 (which holds them exactly; NumPy has no
        bfloat16), the header saying ``"bfloat16"``. It is written to a temporary file
        beside ``path`` and renamed over it, so an interrupted save leaves the previous file
        (a symbolic link is written through).

        Parameters
        ----------
        path : str or path-like
            The file, written as named (no suffix is added).

        Returns
        -------
        path : pathlib.Path

        Raises
        ------
        OSError
            The file could not be written; a previous file at ``path`` is as it was.
        """
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "cell": self._spec.name,
            "input_size": self._input_size,
            "hidden_size": self._hidden_size,
            "num_layers": self._num_layers,
            "bidirectional": self._bidirectional,
            "batch_first": self._batch_first,
            "dtype": self._dtype,
            **self._variant.header(),
        }
        arrays: dict[str, Any] = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
        for k, layer in enumerate(self.layers):
            for key, value in layer.items():  # bfloat16 comes back as float32, exactly
                arrays[f"layers.{k}.{key}"] = np.ascontiguousarray(to_numpy(value))
        path = Path(path)
        write_atomic(path, arrays)
        return path

    @classmethod
    def load(cls, path, *, backend=None, device=None, dtype=None):
        """Read a layer written by `save`, defensively.

        Nothing is unpickled, and nothing is read before it is checked: every header field
        (format, version, cell, sizes, flags, dtype), the set of arrays the header implies,
        and each array's dtype and shape (from its ``.npy`` header, before its data) at most
        4 GiB in all. The parameters must be finite.

        Parameters
        ----------
        path : str or path-like
            A file written by `save`.
        backend, device : optional, keyword-only
            Where the layer goes; the configuration's by default (see `set_config`).
        dtype : {"float32", "float64", "float16", "bfloat16"}, optional, keyword-only
            Convert to it; the file's dtype by default (a half dtype the backend lacks,
            bfloat16 on NumPy, is refused unless ``dtype`` is given).

        Returns
        -------
        layer : LSTM, GRU or RNN
            The class the file holds. Called on a subclass (``LSTM.load``), a file of another
            cell is refused.

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            The file is truncated, not a layer file, of another format version or cell, or
            holds a field, array, shape, dtype or value it should not (one line, naming the
            path and the field or array); a half dtype the backend lacks.
        """
        where = f"layer file {str(path)!r}"
        header, arrays = _read(path, where)
        cell = header["cell"]
        if cls is not RNNBase and cell != cls._spec.name:
            raise ValueError(
                f"{where} holds a {_CLASSES[cell].__name__}, not a {cls.__name__}; load it "
                f"with portable_rnn.{_CLASSES[cell].__name__}.load or portable_rnn.RNNBase.load"
            )
        D = 2 if header["bidirectional"] else 1
        variant = _header_variant(header, where)
        keys = CELLS[cell].layer_keys + variant.extra_keys(CELLS[cell])
        host = [
            {key: arrays[f"layers.{k}.{key}"] for key in keys}
            for k in range(header["num_layers"] * D)
        ]
        if dtype is None and header["dtype"] in HALF_DTYPES:
            place = get_config().backend if backend is None else check_backend(backend, "backend")
            if header["dtype"] not in backend_dtypes(place):
                raise ValueError(
                    f"{where} holds a {header['dtype']} layer, {lacking(place)}; "
                    "load it with dtype='float32' (or another the backend has)"
                )
            dtype = header["dtype"]  # bfloat16 is stored as float32
        layers = to_backend(host, backend, device, dtype=dtype)
        return RNNBase._assemble(
            cell,
            layers,
            header["input_size"],
            header["hidden_size"],
            header["num_layers"],
            header["bidirectional"],
            header["batch_first"],
            variant,
        )


# -- reading a file -----------------------------------------------------------------------


def _header_variant(header: dict, where: str) -> _Variant:
    """The options of a checked header (`_check_header` checked them)."""
    fields = {k: header[k] for k in _OPTION_FIELDS if k in header}
    try:
        return _variant(CELLS[header["cell"]], header["hidden_size"], **fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: header {err}") from None


def _check_header(header: dict, where: str) -> dict:
    missing = [k for k in _HEADER_KEYS if k not in header]
    extra = sorted(k for k in header if k not in _HEADER_KEYS + _OPTION_FIELDS)
    if missing or extra:
        what = (
            f"lacks {', '.join(missing)}" if missing else f"has unknown fields {', '.join(extra)}"
        )
        raise ValueError(f"{where}: header {what}")
    if header["format"] != FORMAT:
        raise ValueError(f"{where}: header format is {header['format']!r:.60}, not {FORMAT!r}")
    version = header["version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(
            f"{where}: header version is {version!r:.60}; this portable_rnn reads {FORMAT_VERSION}"
        )
    if header["cell"] not in CELLS:
        raise ValueError(
            f"{where}: header cell is {header['cell']!r:.60}; expected one of {', '.join(CELLS)}"
        )
    for key in ("input_size", "hidden_size", "num_layers"):
        value = header[key]
        if type(value) is not int or value < 1:
            raise ValueError(f"{where}: header {key} must be a positive integer, got {value!r:.60}")
    for key in ("bidirectional", "batch_first"):
        if type(header[key]) is not bool:
            raise ValueError(
                f"{where}: header {key} must be true or false, got {header[key]!r:.60}"
            )
    if header["dtype"] not in FLOAT_DTYPES:
        raise ValueError(
            f"{where}: header dtype is {header['dtype']!r:.60}; expected one of "
            f"{', '.join(FLOAT_DTYPES)}"
        )
    for key in ("reset_after", "peepholes", "input_forget"):
        if key in header and type(header[key]) is not bool:
            raise ValueError(
                f"{where}: header {key} must be true or false, got {header[key]!r:.60}"
            )
    for key, kinds in (("proj_size", (int,)), ("clip", (int, float)), ("dropout", (int, float))):
        if key in header and (type(header[key]) not in kinds):
            raise ValueError(f"{where}: header {key} must be a number, got {header[key]!r:.60}")
    if "nonlinearity" in header and type(header["nonlinearity"]) is not str:
        raise ValueError(
            f"{where}: header nonlinearity must be a string, got {header['nonlinearity']!r:.60}"
        )
    _header_variant(header, where)  # the values, and options of another cell
    return header


def _expected(header: dict) -> dict[str, ArraySpec]:
    """Every array the header implies: its name, shape and stored dtype; finite values."""
    spec = CELLS[header["cell"]]
    D = 2 if header["bidirectional"] else 1
    n_a = header["hidden_size"]
    variant = _header_variant(header, "")
    n_h = variant.proj_size or n_a  # the hidden state's rows
    name: str = header["dtype"]
    dtypes = (_STORED.get(name, name),)
    found = {}
    for k in range(header["num_layers"] * D):
        n_x = header["input_size"] if k < D else D * n_h
        for key in spec.layer_keys:
            shape = spec.shape(key, n_x, n_a, 1)
            if variant.proj_size and spec.shapes[key] == "n_a n_a+n_x":
                shape = (n_a, n_h + n_x)
            found[f"layers.{k}.{key}"] = ArraySpec(shape=shape, dtypes=dtypes, finite=True)
        for key in variant.extra_keys(spec):
            shape = (n_h, n_a) if key == "Wp" else (n_a, 1)
            found[f"layers.{k}.{key}"] = ArraySpec(shape=shape, dtypes=dtypes, finite=True)
    return found


def _read(path, where: str) -> tuple[dict, dict]:
    """The checked header and host arrays of a layer file."""
    with NpzFile(
        path,
        what="portable_rnn layer file",
        where=where,
        missing=FileNotFoundError,
        limit=_MAX_FILE_BYTES,
        limit_name="a layer file may hold",
    ) as npz:
        header = _check_header(
            npz.read_json("header", kind="uint8", max_bytes=_MAX_HEADER_BYTES), where
        )
        spec = CELLS[header["cell"]]
        D = 2 if header["bidirectional"] else 1
        n_keys = len(spec.layer_keys) + len(_header_variant(header, where).extra_keys(spec))
        count = header["num_layers"] * D * n_keys
        held = len(npz.members) - 1
        if held != count:  # checked before the names are built: a huge num_layers
            raise ValueError(f"{where} holds {held} arrays; its header implies {count}")
        specs = _expected(header)
        unexpected = sorted(k for k in npz.members if k != "header" and k not in specs)
        if unexpected:
            raise ValueError(
                f"{where} holds arrays its header does not: {', '.join(unexpected[:3])}"
            )
        npz.check_declared(specs)
        arrays = {key: npz.read_array(key, s) for key, s in specs.items()}
    return header, arrays


# -- the cells ----------------------------------------------------------------------------

_CHILDREN = ("layers",)
_STATIC = (
    "_input_size",
    "_hidden_size",
    "_num_layers",
    "_bidirectional",
    "_batch_first",
    "_backend",
    "_device",
    "_dtype",
    "_variant",
    "_training",
)


@pytrees.node(children=_CHILDREN, static=_STATIC)
class LSTM(RNNBase):
    """A stack of LSTM layers, as ``torch.nn.LSTM``, with ONNX's variants.

    ``LSTM(input_size, hidden_size, num_layers=1, *, bidirectional=False, batch_first=False,
    proj_size=0, peepholes=False, clip=None, input_forget=False, dropout=0.0, seed=None,
    backend=None, device=None, dtype=None)``. ``out, (h_n, c_n) = lstm(x)``; with dropout
    in training mode ``lstm(x, seed=0)``.
    The methods (`RNNBase.forward`, `RNNBase.backward`, `RNNBase.to`, `RNNBase.save`,
    `RNNBase.load`, `RNNBase.from_torch`...) and properties are documented on `RNNBase`.

    Parameters
    ----------
    input_size : int
        Input features.
    hidden_size : int
        Hidden units of every layer and direction.
    num_layers : int, optional
        Layers in the stack.
    bidirectional : bool, optional, keyword-only
        Also run every layer over the reversed sequence (``num_directions = 2``).
    batch_first : bool, optional, keyword-only
        Inputs and outputs ``(N, T, features)`` rather than ``(T, N, features)``.
    proj_size : int, optional, keyword-only
        ``P``, PyTorch's projection (``0 < P < hidden_size``; 0: none): ``h = Wp (o *
        tanh(c))``, ``Wp`` (P, hidden_size) in every dict. The hidden states (``out``,
        ``h``) then have ``P`` features, the cell states ``hidden_size``.
    peepholes : bool, optional, keyword-only
        Peephole connections (ONNX ``P``): ``Pi``, ``Pf``, ``Po`` (hidden_size, 1) in every
        dict. No PyTorch module has them (`to_torch` refuses).
    clip : float, optional, keyword-only
        Cell clip (ONNX): gate pre-activations clipped to ``[-clip, clip]``.
    input_forget : bool, optional, keyword-only
        Coupled input and forget gates (ONNX): ``f = 1 - i``.
    dropout : float, optional, keyword-only
        Dropout on the outputs of every layer but the last, in ``[0, 1)``, in training mode
        (the default; see `RNNBase.train`, `RNNBase.eval`) only, where every call needs
        ``seed=``. PyTorch's placement; the masks are portable_rnn's (the same for one seed
        on every backend).
    seed : int or None, optional, keyword-only
        As for `init_multilayer_params` (uniform in ``±1/sqrt(hidden_size)``); one seed gives
        the same numbers on every backend. ``Wp`` and the peepholes are drawn the same way,
        uniform in ``±1/sqrt(hidden_size)`` (``Wp`` as PyTorch's ``weight_hr``), after each
        dict's gate weights and biases (which, without ``proj_size``, are
        `init_multilayer_params`' numbers).
    backend, device, dtype : optional, keyword-only
        Where the parameters go; the configuration's by default (see `set_config`).

    Attributes
    ----------
    layers : list of dict
        ``num_layers * num_directions`` dicts in PyTorch's order: ``Wf``, ``Wi``, ``Wc``,
        ``Wo`` (hidden_size, n_h + n_in), ``bf``, ``bi``, ``bc``, ``bo``
        (hidden_size, 1), [``Wp`` (proj_size, hidden_size),] [``Pi``, ``Pf``, ``Po``
        (hidden_size, 1),] ``n_h`` being ``proj_size`` or ``hidden_size``, ``n_in``
        ``input_size`` for layer 0 and ``num_directions * n_h`` above.

    Examples
    --------
    >>> import numpy as np, portable_rnn as prnn
    >>> lstm = prnn.LSTM(3, 4, num_layers=2, seed=0, backend="numpy", dtype="float64")
    >>> out, (h_n, c_n) = lstm(np.ones((5, 2, 3)))          # x (T, N, input_size)
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 2, 4), (2, 2, 4), (2, 2, 4))
    """

    _spec = CELLS["lstm"]


@pytrees.node(children=_CHILDREN, static=_STATIC)
class GRU(RNNBase):
    """A stack of GRU layers, as ``torch.nn.GRU``.

    ``GRU(input_size, hidden_size, num_layers=1, *, bidirectional=False, batch_first=False,
    reset_after=True, dropout=0.0, seed=None, backend=None, device=None, dtype=None)``.
    ``out, h_n = gru(x)``.
    The methods (`RNNBase.forward`, `RNNBase.backward`, `RNNBase.to`, `RNNBase.save`,
    `RNNBase.load`, `RNNBase.from_torch`...) and properties are documented on `RNNBase`.

    Parameters
    ----------
    input_size : int
        Input features.
    hidden_size : int
        Hidden units of every layer and direction.
    num_layers : int, optional
        Layers in the stack.
    reset_after : bool, optional, keyword-only
        ``True`` (PyTorch's): the reset gate applied after the recurrent product; ``False``
        (Keras ``reset_after=False``, ONNX ``linear_before_reset=0``): before it (no
        PyTorch module; `to_torch` refuses).
    bidirectional, batch_first, dropout, seed, backend, device, dtype : optional, keyword-only
        As for `LSTM`.

    Attributes
    ----------
    layers : list of dict
        ``num_layers * num_directions`` dicts in PyTorch's order: ``Wr``, ``Wz``, ``Wn``
        (hidden_size, hidden_size + n_in), ``br``, ``bz``, ``bn``, ``bhn`` (hidden_size, 1).
    """

    _spec = CELLS["gru"]


@pytrees.node(children=_CHILDREN, static=_STATIC)
class RNN(RNNBase):
    """A stack of vanilla (tanh or relu) RNN layers, as ``torch.nn.RNN``.

    ``RNN(input_size, hidden_size, num_layers=1, *, bidirectional=False, batch_first=False,
    nonlinearity="tanh", dropout=0.0, seed=None, backend=None, device=None, dtype=None)``.
    ``out, h_n = rnn(x)``.
    The methods (`RNNBase.forward`, `RNNBase.backward`, `RNNBase.to`, `RNNBase.save`,
    `RNNBase.load`, `RNNBase.from_torch`...) and properties are documented on `RNNBase`.

    Parameters
    ----------
    input_size : int
        Input features.
    hidden_size : int
        Hidden units of every layer and direction.
    num_layers : int, optional
        Layers in the stack.
    nonlinearity : {"tanh", "relu"}, optional, keyword-only
        The activation (PyTorch's ``nonlinearity``).
    bidirectional, batch_first, dropout, seed, backend, device, dtype : optional, keyword-only
        As for `LSTM`.

    Attributes
    ----------
    layers : list of dict
        ``num_layers * num_directions`` dicts in PyTorch's order: ``Wax``
        (hidden_size, n_in), ``Waa`` (hidden_size, hidden_size), ``ba`` (hidden_size, 1).
    """

    _spec = CELLS["rnn"]


_CLASSES: dict[str, type[RNNBase]] = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
