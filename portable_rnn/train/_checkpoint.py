"""Backend-neutral checkpoints: one ``.npz`` of host arrays plus a JSON header.

The file is a NumPy ``.npz`` (a zip) holding ``__header__``, a JSON string
(format name and version, model config, vocabulary, step...), and every array
under a ``group/name`` key (``params/embed``, ``adam_m/Wy``, ``state/h``...).

Written atomically and read defensively by `portable_rnn._npz` (see there): a checkpoint's
arrays may declare at most `MAX_CHECKPOINT_BYTES`, with the shapes its header implies, and
only the groups asked for are read. `remove_stale_temporaries` removes what killed writers
left (the training loop calls it when it starts).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._backend.devices import to_numpy as _to_numpy
from .._npz import (
    MAX_MEMBERS,
    ArraySpec,
    NpzError,
    NpzFile,
    shown,
    target,
    write_atomic,
)
from .._npz import (
    remove_stale_temporaries as remove_stale_temporaries,  # for the training loop
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]

#: The format name written into every header.
FORMAT = "portable_rnn.charlm"
#: The version of the layout; a file of another version is refused.
FORMAT_VERSION = 1
#: The most bytes of arrays one load reads (4 GiB; the default model's checkpoint is about
#: 4 MB, a 3-layer LSTM of 2048 units about 1.2 GB). A checkpoint whose arrays declare more
#: is refused before anything is allocated.
MAX_CHECKPOINT_BYTES = 4 * 2**30
#: The dtypes a checkpoint's arrays may have.
DTYPES = ("float32", "float64")
_HEADER = "__header__"
_MAX_HEADER_BYTES = 64 * 2**20  # the JSON header (a vocabulary of every Unicode character fits)
_MAX_MEMBERS = MAX_MEMBERS


class CheckpointError(NpzError):
    """A checkpoint that cannot be used or written: missing, truncated, inconsistent, unwritable.

    A ``ValueError`` (through `portable_rnn._npz.NpzError`, what the shared reader raises).
    """


def printable(text: str, limit: int = 200) -> str:
    """``text`` with every non-printable character escaped as ``repr`` does (no quotes).

    No terminal control sequence (``ESC [``...) of a checkpoint's header reaches the terminal.
    """
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text)[:limit])
    return escaped + ("..." if len(text) > limit else "")


def _write(fh, arrays: dict) -> None:
    """Write the ``.npz`` payload to the open file ``fh`` (a seam the kill test patches)."""
    np.savez(fh, **arrays)


def _flat(header: dict, arrays: dict) -> dict:
    flat = {_HEADER: np.array(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **header}))}
    for group, named in arrays.items():
        if not isinstance(group, str) or not group or "/" in group:
            raise ValueError(f"a checkpoint group is a non-empty str without '/', got {group!r}")
        for name, arr in named.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"an array of group {group!r} needs a non-empty str name")
            host = np.ascontiguousarray(_to_numpy(arr))
            if host.dtype.name not in DTYPES:
                raise ValueError(
                    f"array {group}/{name} of a checkpoint must be float32 or float64, "
                    f"got {host.dtype}"
                )
            flat[f"{group}/{name}"] = host
    return flat


def save_checkpoint(path, header: dict, arrays: dict) -> Path:
    """Write a checkpoint atomically.

    An interrupted write leaves the previous file as it was (`portable_rnn._npz.write_atomic`);
    a symbolic link is written through.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file (``.npz``); replaced only once the new one is complete.
    header : dict
        JSON-serialisable; ``format`` and ``version`` are added.
    arrays : dict of str to dict of str to array
        Groups of named float32 or float64 arrays (``{"params": {...}, "adam_m": {...}}``)
        of any backend: copied to host memory (an explicit copy).

    Returns
    -------
    path : pathlib.Path
        ``path`` as given.

    Raises
    ------
    ValueError
        An array of another dtype, or a group or name that is not a non-empty str.
    OSError
        The file could not be written (full disk, no permission...); the previous file
        is as it was and no temporary file is left.
    """
    path = Path(path)
    write_atomic(path, _flat(header, arrays), write=_write, error=CheckpointError)
    return path


def check_writable(path, name: str) -> Path:
    """Refuse, before any work, a checkpoint path that `save_checkpoint` could not write.

    A temporary file is created and removed in the directory of the file ``path``
    names (its target, for a symbolic link). ``name`` names the argument in errors.

    Returns
    -------
    pathlib.Path
        The file that will be written (the link's target for a symbolic link).

    Raises
    ------
    CheckpointError
        A directory, a device or other non-regular file, a directory that does not exist,
        or one where no file can be created (read-only, no permission, ``/sys``...).
    """
    path = Path(path)
    try:
        real = target(path, CheckpointError)
    except CheckpointError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    shown_path = f"{name} {str(path)!r}"
    if real.is_dir():
        raise CheckpointError(f"{shown_path} is a directory; give a file name")
    if real.exists() and not real.is_file():
        raise CheckpointError(f"{shown_path} exists and is not a regular file")
    directory = real.parent if str(real.parent) else Path(".")
    if not directory.is_dir():
        raise CheckpointError(f"the directory of {shown_path} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{real.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write {shown_path}: {exc.strerror or exc} (in {str(directory)!r})"
        ) from None
    return real


# --------------------------------------------------------------------------- reading


def load_checkpoint(path, *, groups=None) -> tuple[dict, dict]:
    """Read a checkpoint written by `save_checkpoint`, defensively.

    Before anything is allocated, the zip directory and each array's ``.npy`` header
    are checked: every member is an array (``group/name``) of float32 or float64,
    its declared size agrees with its shape, and the arrays read declare at most
    `MAX_CHECKPOINT_BYTES` together. Exactly the declared bytes are read and the zip's
    CRC-32 is checked. Nothing is unpickled. (`fit` and the commands also check every
    field of a model's header, the shapes it implies and that the parameters are
    finite.)

    Parameters
    ----------
    path : str or path-like
    groups : iterable of str, optional, keyword-only
        The groups to read (``("params",)``); default: all.

    Returns
    -------
    header : dict
        The JSON header.
    arrays : dict of str to dict of str to numpy.ndarray
        The groups of host arrays.

    Raises
    ------
    CheckpointError
        The file is missing, truncated, inconsistent, too large or not a checkpoint,
        or of another format version (one line, naming the file).
    """
    return read_checkpoint(path, groups=groups)


def read_checkpoint(
    path, *, groups=None, layout: Callable[[dict], dict[str, ArraySpec]] | None = None
) -> tuple[dict, dict]:
    """`load_checkpoint` with the arrays a header implies.

    ``layout(header)`` (called once the header is read and checked for its format and
    version) gives every array the file may hold, ``"group/name"`` -> `ArraySpec`, or
    raises `CheckpointError`; any other array is refused. The header and the arrays
    come from one open file (a concurrent writer replaces the file, never changes it).
    """
    where = f"checkpoint {str(path)!r}"
    with NpzFile(
        path,
        what="portable_rnn checkpoint",
        where=where,
        error=CheckpointError,
        limit=MAX_CHECKPOINT_BYTES,
        limit_name="MAX_CHECKPOINT_BYTES",
        max_members=_MAX_MEMBERS,
    ) as npz:
        header = npz.read_json(_HEADER, kind="str", max_bytes=_MAX_HEADER_BYTES)
        _check_format(header, where)
        specs = layout(header) if layout is not None else None
        wanted = _select(npz.members, specs, None if groups is None else set(groups), where)
        npz.check_declared(key for key, _ in wanted)
        arrays: dict = {}
        for key, spec in wanted:
            group, _, name = key.partition("/")
            arrays.setdefault(group, {})[name] = npz.read_array(key, spec)
    return header, arrays


def _check_format(header: dict, where: str) -> None:
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{where} is not a portable_rnn checkpoint (format {shown(header.get('format'))})"
        )
    if header.get("version") != FORMAT_VERSION or isinstance(header.get("version"), bool):
        raise CheckpointError(
            f"{where} has format version {shown(header.get('version'))}; "
            f"this portable_rnn reads version {FORMAT_VERSION}"
        )


def _select(members, specs, groups, where: str):
    """``(key, spec)`` of every array to read, checked against ``specs``."""
    keys = [k for k in members if k != _HEADER]
    for key in keys:
        group, sep, name = key.partition("/")
        if not (group and sep and name):
            raise CheckpointError(f"{where} holds {shown(key)}, not a group/name array")
    if specs is not None:
        unexpected = [k for k in keys if k not in specs]
        if unexpected:
            names = ", ".join(shown(k) for k in unexpected[:3])
            more = f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""
            raise CheckpointError(f"{where} holds arrays its header does not: {names}{more}")
    wanted = [k for k in keys if groups is None or k.partition("/")[0] in groups]
    if specs is not None:
        missing = [
            k
            for k, spec in specs.items()
            if spec.required
            and k not in members
            and (groups is None or k.partition("/")[0] in groups)
        ]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise CheckpointError(f"{where} lacks the arrays {', '.join(missing[:3])}{more}")
    return [(k, ArraySpec() if specs is None else specs[k]) for k in wanted]
