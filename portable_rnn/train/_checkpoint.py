"""Backend-neutral checkpoints: one ``.npz`` of host arrays plus a JSON header.

The file is a NumPy ``.npz`` (a zip) holding ``__header__``, a JSON string
(format name and version, model config, vocabulary, step...), and every array
under a ``group/name`` key (``params/embed``, ``adam_m/Wy``, ``state/h``...).

**Writing** is atomic: the arrays go to a temporary file ``.NAME.XXXXXXXX.tmp``
in the directory of the target, locked (``flock``) while it is written, flushed
to disk and renamed over the target (``os.replace``, atomic on POSIX and
Windows), so an interrupted write leaves the previous checkpoint as it was. A
symlinked path is written through: the file the link points to is replaced, the
link stays. A temporary file left by a killed writer is removed by
`remove_stale_temporaries` (the training loop calls it when it starts).

**Reading** never unpickles and never allocates a size it has not checked. The
zip directory and each member's ``.npy`` header (magic, version, dtype, shape,
order) are read first, without the data; each member must be an array of an
allowed dtype whose declared size agrees with its header, with the shapes the
caller expects (a model's header fixes them) and, all members read together,
with `MAX_CHECKPOINT_BYTES`. Then exactly the declared bytes are read (never
more: the zip directory could lie about a compressed member), and the zip's
CRC-32 is checked. Only the groups asked for are read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

from .._backend.devices import to_numpy as _to_numpy

try:  # POSIX: a writer holds a lock on its temporary file; Windows cannot delete an open one
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

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
#: Seconds a temporary file must have been left alone before it counts as stale.
STALE_SECONDS = 60.0
_HEADER = "__header__"
_MAX_HEADER_BYTES = 64 * 2**20  # the JSON header (a vocabulary of every Unicode character fits)
_MAX_MEMBERS = 10_000
_MAX_NDIM = 32
_CHUNK = 2**24
_NPY_MAX_HEADER = 10_000  # numpy's own limit on a .npy header (it is parsed with a safe eval)
# mkstemp's names: prefix, 8 characters of this alphabet, suffix
_TEMP_NAME = "[a-z0-9_]{8}"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used or written: missing, truncated, inconsistent, unwritable."""


@dataclass(frozen=True)
class ArraySpec:
    """What one array of a checkpoint must be (what `read_checkpoint`'s ``layout`` gives).

    Attributes
    ----------
    shape : tuple of (int or None), or None
        The shape; ``None`` for a dimension of any length; ``None``: any shape.
    dtypes : tuple of str
        The dtype names allowed.
    required : bool
        Whether a checkpoint must hold it (when its group is read).
    """

    shape: tuple | None = None
    dtypes: tuple[str, ...] = DTYPES
    required: bool = True


def shown(value, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a header's value, safe to print."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str, limit: int = 200) -> str:
    """``text`` with every non-printable character escaped as ``repr`` does (no quotes).

    No terminal control sequence (``ESC [``...) of a checkpoint's header reaches the terminal.
    """
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text)[:limit])
    return escaped + ("..." if len(text) > limit else "")


def _where(path) -> str:
    return f"checkpoint {str(path)!r}"


def _write(fh, arrays: dict) -> None:
    """Write the ``.npz`` payload to the open file ``fh`` (a seam the kill test patches)."""
    np.savez(fh, **arrays)


def _target(path: Path) -> Path:
    """The file ``path`` names: a symlink's target (a checkpoint is written through a link)."""
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if real.is_symlink():
        raise CheckpointError(f"{str(path)!r} is a loop of symbolic links")
    return real


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

    The arrays go to a temporary file in the target's directory, locked while it is
    written, flushed to disk and renamed over the target: an interrupted write (an
    exception, Ctrl-C, SIGTERM, a full disk, SIGKILL) leaves the previous file as it
    was. If ``path`` is a symbolic link, the file it points to is replaced and the link
    stays.

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
    flat = _flat(header, arrays)
    target = _target(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    closed = False
    try:
        if fcntl is not None:  # held until the rename: remove_stale_temporaries leaves it alone
            with contextlib.suppress(OSError):  # no locks on this file system: none is removed
                fcntl.flock(fd, fcntl.LOCK_EX)
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a checkpoint gets the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            _write(fh, flat)
            fh.flush()
            os.fsync(fh.fileno())
        if fcntl is None:  # pragma: no cover - Windows renames only closed files
            os.close(fd)
            closed = True
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if not closed:
            os.close(fd)
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
        target = _target(path)
    except CheckpointError as exc:
        raise CheckpointError(f"{name}: {exc}") from None
    shown_path = f"{name} {str(path)!r}"
    if target.is_dir():
        raise CheckpointError(f"{shown_path} is a directory; give a file name")
    if target.exists() and not target.is_file():
        raise CheckpointError(f"{shown_path} exists and is not a regular file")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise CheckpointError(f"the directory of {shown_path} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write {shown_path}: {exc.strerror or exc} (in {str(directory)!r})"
        ) from None
    return target


def remove_stale_temporaries(path, *, min_age: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporary files that killed writers of checkpoint ``path`` left behind.

    Only regular files named as `save_checkpoint` names them (``.NAME.XXXXXXXX.tmp``
    beside the file ``path`` names) that nobody has written for ``min_age`` seconds
    and that no living writer holds locked (on POSIX a writer locks its file until the
    rename, and the lock goes with the process): the temporary file of another process
    writing the same checkpoint right now is left alone.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    try:
        target = _target(Path(path))
        entries = list(os.scandir(target.parent if str(target.parent) else "."))
    except (OSError, CheckpointError):
        return []
    pattern = re.compile(re.escape(f".{target.name}.") + _TEMP_NAME + re.escape(".tmp"))
    now, removed = time.time(), []
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= min_age:
                if _remove_unless_locked(entry.path):
                    removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _remove_unless_locked(path: str) -> bool:
    if fcntl is None:  # pragma: no cover - Windows: an open file cannot be removed
        os.unlink(path)
        return True
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a living writer holds it (or the file system has no locks)
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading

# What a damaged or crafted file makes zipfile, zlib and numpy's header parser raise.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    SyntaxError,
    MemoryError,
)


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
    path = Path(path)
    where = _where(path)
    if not path.exists():
        raise CheckpointError(f"{where} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{where} is not a regular file")
    wanted_groups = None if groups is None else set(groups)
    try:
        fh = open(path, "rb")  # closed by the with below
    except OSError as exc:
        raise CheckpointError(f"{where} cannot be read: {exc.strerror or exc}") from None
    with fh:
        zf = _guard(where, zipfile.ZipFile, fh)
        with zf:
            members = _guard(where, _members, zf, where)
            header = _guard(where, _read_header, zf, members[_HEADER], where)
            _check_format(header, where)
            specs = layout(header) if layout is not None else None
            wanted = _select(members, specs, wanted_groups, where)
            budget = [MAX_CHECKPOINT_BYTES]
            arrays: dict = {}
            for key, info, spec in wanted:
                group, _, name = key.partition("/")
                arrays.setdefault(group, {})[name] = _guard(
                    where, _read_array, zf, info, key, spec, budget, where
                )
    return header, arrays


def _guard(where: str, fn, *args):
    """``fn(*args)``, with what a damaged file makes the readers raise as a `CheckpointError`."""
    try:
        return fn(*args)
    except CheckpointError:
        raise
    except _READ_ERRORS as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(
            f"{where} is truncated or not a portable_rnn checkpoint "
            f"({type(exc).__name__}: {detail})"
        ) from None


def _members(zf: zipfile.ZipFile, where: str) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise CheckpointError(f"{where} has {len(infos)} members, more than {_MAX_MEMBERS}")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        key = info.filename.removesuffix(".npy")
        if key == info.filename:
            raise CheckpointError(f"{where} holds {shown(info.filename)}, which is not an array")
        if key in members:
            raise CheckpointError(f"{where} holds {shown(key)} twice")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{where}: {shown(key)} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(
                f"{where}: {shown(key)} is compressed with zip method {info.compress_type} "
                "(only stored and deflated members are read)"
            )
        members[key] = info
    if _HEADER not in members:
        raise CheckpointError(f"{where} is not a portable_rnn checkpoint (no header)")
    return members


class _Counted:
    """A read-only stream that counts the bytes read (the ``.npy`` header's length)."""

    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def _npy_header(fp: _Counted, key: str, where: str):
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(fp, max_header_size=_NPY_MAX_HEADER)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(fp, max_header_size=_NPY_MAX_HEADER)
    raise CheckpointError(f"{where}: {shown(key)} is a .npy of version {version}, not 1.0 or 2.0")


def _check_shape(shape, key: str, where: str, spec: ArraySpec | None) -> int:
    """The number of elements of a checked ``shape``."""
    if len(shape) > _MAX_NDIM or not all(type(d) is int and d >= 0 for d in shape):
        raise CheckpointError(f"{where}: {shown(key)} declares the shape {shown(shape)}")
    if spec is not None and spec.shape is not None:
        expected = spec.shape
        if len(shape) != len(expected) or any(
            e is not None and d != e for d, e in zip(shape, expected, strict=False)
        ):
            dims = ["n" if e is None else str(e) for e in expected]
            want = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
            raise CheckpointError(
                f"{where}: {key} has the shape {tuple(shape)}, its header implies {want}"
            )
    return math.prod(shape)


def _open_member(zf, info, key: str, where: str, spec: ArraySpec | None):
    """``(stream, shape, fortran_order, dtype, nbytes)`` of a member whose header checks out."""
    raw = zf.open(info)
    try:
        fp = _Counted(raw)
        shape, fortran, dtype = _npy_header(fp, key, where)
        if key == _HEADER:
            if dtype.kind != "U" or shape != ():
                raise CheckpointError(f"{where} is not a portable_rnn checkpoint (no JSON header)")
            nbytes = dtype.itemsize
        else:
            plain = dtype.fields is None and dtype.subdtype is None
            name = dtype.newbyteorder("=").name if plain and dtype.kind == "f" else str(dtype)
            allowed = spec.dtypes if spec is not None else DTYPES
            if name not in allowed:
                raise CheckpointError(
                    f"{where}: {key} has the dtype {shown(name)}; allowed: {', '.join(allowed)}"
                )
            nbytes = _check_shape(shape, key, where, spec) * dtype.itemsize
        if fp.count + nbytes != info.file_size:
            raise CheckpointError(
                f"{where}: {shown(key)} declares {nbytes} bytes of data, "
                f"the zip directory {info.file_size - fp.count}"
            )
    except BaseException:
        raw.close()
        raise
    return raw, shape, fortran, dtype, nbytes


def _read_exactly(raw, nbytes: int, key: str, where: str) -> bytearray:
    buf = bytearray(nbytes)
    view = memoryview(buf)
    pos = 0
    while pos < nbytes:
        chunk = raw.read(min(_CHUNK, nbytes - pos))
        if not chunk:
            raise CheckpointError(f"{where} is truncated ({key}: {pos} of {nbytes} bytes)")
        view[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    if raw.read(1):  # also makes zipfile check the CRC-32 at the end of the member
        raise CheckpointError(f"{where}: {key} holds more data than it declares")
    return buf


def _read_header(zf, info, where: str) -> dict:
    if info.file_size > _MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{where} has a header of {info.file_size} bytes, more than {_MAX_HEADER_BYTES}"
        )
    raw, _, _, dtype, nbytes = _open_member(zf, info, _HEADER, where, None)
    with raw:
        data = _read_exactly(raw, nbytes, _HEADER, where)
    big = dtype.byteorder == ">" or (dtype.byteorder in "=|" and sys.byteorder == "big")
    codec = "utf-32-be" if big else "utf-32-le"
    text = bytes(data).decode(codec).rstrip("\x00")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(
            f"{where} has a header that is not JSON ({type(exc).__name__})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{where} is not a portable_rnn checkpoint (its header is a {type(header).__name__}, "
            "not a JSON object)"
        )
    return header


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
    """``(key, info, spec)`` of every array to read, checked against ``specs`` and the cap."""
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
    declared = sum(members[k].file_size for k in wanted)
    if declared > MAX_CHECKPOINT_BYTES:
        largest = max(wanted, key=lambda k: members[k].file_size)
        raise CheckpointError(
            f"{where} declares {declared:,} bytes of arrays (the largest, {shown(largest)}, "
            f"{members[largest].file_size:,}), more than MAX_CHECKPOINT_BYTES "
            f"({MAX_CHECKPOINT_BYTES:,})"
        )
    return [(k, members[k], None if specs is None else specs[k]) for k in wanted]


def _read_array(zf, info, key: str, spec, budget: list, where: str) -> np.ndarray:
    raw, shape, fortran, dtype, nbytes = _open_member(zf, info, key, where, spec)
    with raw:
        budget[0] -= nbytes  # the cap, enforced on what is read, not only on what is declared
        if budget[0] < 0:
            raise CheckpointError(f"{where} holds more than MAX_CHECKPOINT_BYTES of arrays")
        data = _read_exactly(raw, nbytes, key, where)
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
    arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr
