"""Backend-neutral checkpoints: one ``.npz`` of host arrays plus a JSON header, written atomically.

The file is a NumPy ``.npz`` (a zip) holding ``__header__``, a JSON string
(format name and version, model config, vocabulary, step...), and every array
under a ``group/name`` key (``params/embed``, ``adam_m/Wy``, ``state/h``...). It
is written to a temporary file in the same directory, flushed to disk and then
renamed over the target (``os.replace``, atomic on POSIX and Windows), so an
interrupted write leaves the previous checkpoint as it was. Loading never
unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .._backend.devices import to_numpy as _to_numpy

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

#: The format name written into every header.
FORMAT = "portable_rnn.charlm"
#: The version of the layout; a file of another version is refused.
FORMAT_VERSION = 1
_HEADER = "__header__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, of another format or version."""


def _write(fh, arrays: dict) -> None:
    """Write the ``.npz`` payload to the open file ``fh`` (a seam the kill test patches)."""
    np.savez(fh, **arrays)


def save_checkpoint(path, header: dict, arrays: dict) -> Path:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file (``.npz``); replaced only once the new one is complete.
    header : dict
        JSON-serialisable; ``format`` and ``version`` are added.
    arrays : dict of str to dict of str to array
        Groups of named arrays (``{"params": {...}, "adam_m": {...}}``) of any
        backend: copied to host memory (an explicit copy).

    Returns
    -------
    path : pathlib.Path
    """
    path = Path(path)
    flat = {_HEADER: np.array(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **header}))}
    for group, named in arrays.items():
        for name, arr in named.items():
            flat[f"{group}/{name}"] = _to_numpy(arr)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a checkpoint gets the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            _write(fh, flat)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)
    return path


def load_checkpoint(path) -> tuple[dict, dict]:
    """Read a checkpoint written by `save_checkpoint`.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    header : dict
        The JSON header.
    arrays : dict of str to dict of str to numpy.ndarray
        The groups of host arrays.

    Raises
    ------
    CheckpointError
        The file is missing, truncated or not a checkpoint, or of another
        format version (one line, naming the file).
    """
    return _load(path, with_arrays=True)


def load_header(path) -> dict:
    """The checked header of a checkpoint, without reading its arrays (see `load_checkpoint`)."""
    return _load(path, with_arrays=False)[0]


def _load(path, with_arrays: bool) -> tuple[dict, dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            if _HEADER not in npz.files:
                raise CheckpointError(f"{str(path)!r} is not a portable_rnn checkpoint (no header)")
            header = json.loads(npz[_HEADER].item())
            arrays: dict = {}
            for key in npz.files if with_arrays else ():
                if key != _HEADER:
                    group, _, name = key.partition("/")
                    arrays.setdefault(group, {})[name] = npz[key]
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or not a portable_rnn checkpoint "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise CheckpointError(f"{str(path)!r} is not a portable_rnn checkpoint (format {found!r})")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {header.get('version')!r}; "
            f"this portable_rnn reads version {FORMAT_VERSION}"
        )
    return header, arrays
