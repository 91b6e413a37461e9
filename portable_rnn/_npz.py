"""Defensive ``.npz`` files: one atomic writer and one reader, for layers and checkpoints.

`write_atomic` writes a temporary file beside the target, locked, flushed to disk and
renamed over it (a symbolic link is written through): an interrupted write leaves the
previous file. `NpzFile` never unpickles and never allocates a size it has not checked:
the zip directory and each member's ``.npy`` header (magic, version, dtype, shape, order)
are checked first, against the caller's `ArraySpec` and byte limit; a JSON header is parsed
only once it is known to be a small str or uint8 array; exactly the declared bytes are read
and the zip's CRC-32 is checked. Every refusal is one line naming the file and the member.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

try:  # POSIX: a writer holds a lock on its temporary file; Windows cannot delete an open one
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "MAX_MEMBERS",
    "READ_ERRORS",
    "STALE_SECONDS",
    "ArraySpec",
    "NpzError",
    "NpzFile",
    "remove_stale_temporaries",
    "shown",
    "target",
    "write_atomic",
]

#: The most members a file may have.
MAX_MEMBERS = 10_000
#: Seconds a temporary file must have been left alone before it counts as stale.
STALE_SECONDS = 60.0
#: What a damaged or crafted file makes zipfile, zlib and numpy's header parser raise.
READ_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
    NotImplementedError, RuntimeError, OverflowError, SyntaxError, MemoryError,
)  # fmt: skip
_MAX_NDIM = 32
_CHUNK = 2**24
_NPY_MAX_HEADER = 10_000  # numpy's own limit on a .npy header (it is parsed with a safe eval)
_TEMP_NAME = "[a-z0-9_]{8}"  # mkstemp's: prefix, 8 characters of this alphabet, suffix


def shown(value, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a file's value, safe to print."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class NpzError(ValueError):
    """A file `NpzFile` refuses (a ``ValueError``); callers may raise a subclass of theirs."""


@dataclass(frozen=True)
class ArraySpec:
    """What one array of a file must be.

    Attributes
    ----------
    shape : tuple of (int or None), or None
        The shape; ``None`` for a dimension of any length; ``None``: any shape.
    dtypes : tuple of str
        The dtype names allowed.
    required : bool
        Whether the file must hold it (when it is asked for).
    finite : bool
        Whether every value must be finite (checked once read).
    """

    shape: tuple | None = None
    dtypes: tuple[str, ...] = ("float32", "float64")
    required: bool = True
    finite: bool = False


# --------------------------------------------------------------------------- writing


def target(path, error: type[Exception] = ValueError) -> Path:
    """The file ``path`` names: a symlink's target (files are written through a link).

    Raises ``error`` for a loop of symbolic links.
    """
    path = Path(path)
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if real.is_symlink():
        raise error(f"{str(path)!r} is a loop of symbolic links")
    return real


def _savez(fh, arrays: dict) -> None:
    np.savez(fh, **arrays)


def write_atomic(path, arrays: dict, *, write=_savez, error: type[Exception] = ValueError):
    """Write ``arrays`` (name -> numpy array) to the ``.npz`` ``path`` atomically.

    The arrays go to a temporary file in the directory of `target` ``(path)``, locked
    while ``write(fh, arrays)`` writes them, flushed to disk and renamed over the target:
    an interrupted write (an exception, Ctrl-C, SIGTERM, a full disk, SIGKILL) leaves the
    previous file as it was and, but for SIGKILL, no temporary file. ``error`` is raised
    for a loop of symbolic links; an ``OSError`` when the file cannot be written.
    """
    real = target(path, error)
    directory = real.parent if str(real.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{real.name}.", suffix=".tmp")
    closed = False
    try:
        if fcntl is not None:  # held until the rename: remove_stale_temporaries leaves it alone
            with contextlib.suppress(OSError):  # no locks on this file system: none is removed
                fcntl.flock(fd, fcntl.LOCK_EX)
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; the file gets the usual mode
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb", closefd=False) as fh:
            write(fh, arrays)
            fh.flush()
            os.fsync(fh.fileno())
        if fcntl is None:  # pragma: no cover - Windows renames only closed files
            os.close(fd)
            closed = True
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if not closed:
            os.close(fd)
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def remove_stale_temporaries(path, *, min_age: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left behind.

    Only regular files named as `write_atomic` names them (``.NAME.XXXXXXXX.tmp`` beside
    the file ``path`` names), left alone for ``min_age`` seconds and locked by no living
    writer (the temporary file of a process writing right now is kept). Returns the files
    removed (a list of `pathlib.Path`).
    """
    try:
        real = target(path)
        entries = list(os.scandir(real.parent if str(real.parent) else "."))
    except (OSError, ValueError):
        return []
    pattern = re.compile(re.escape(f".{real.name}.") + _TEMP_NAME + re.escape(".tmp"))
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


class NpzFile:
    """An ``.npz`` file open for defensive reading; a context manager.

    Opening reads only the zip directory: every member a ``key.npy``, once, unencrypted,
    stored or deflated, at most ``max_members``. Refusals raise ``error`` (a subclass of
    `NpzError`) naming ``where`` (``"checkpoint 'a.npz'"``) and saying what the file should
    be (``what``); no file at ``path`` raises ``missing`` (``error`` by default). The arrays
    read may declare at most ``limit`` bytes, called ``limit_name`` in errors.
    """

    def __init__(
        self,
        path,
        *,
        what: str,
        where: str,
        error: type[NpzError] = NpzError,
        missing: type[Exception] | None = None,
        limit: int,
        limit_name: str,
        max_members: int = MAX_MEMBERS,
    ) -> None:
        self.where, self.what, self.error = where, what, error
        self.missing = missing or error
        self.limit_name, self.left = limit_name, limit
        path = Path(path)
        if not path.exists():
            raise self.missing(f"{where} does not exist")
        if not path.is_file():
            raise error(f"{where} is not a regular file")
        try:
            self._fh = open(path, "rb")  # closed by close()
        except OSError as exc:
            raise error(f"{where} cannot be read: {exc.strerror or exc}") from None
        try:
            self._zf = self.guard(zipfile.ZipFile, self._fh)
            self.members = self.guard(self._members, max_members)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the file."""
        with self._fh:
            if hasattr(self, "_zf"):
                self._zf.close()

    def __enter__(self) -> NpzFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fail(self, detail: str) -> NpzError:
        """The error to raise: ``where`` then ``detail`` (which starts with ``:`` or a space)."""
        return self.error(f"{self.where}{detail}")

    def guard(self, fn, *args):
        """``fn(*args)``, with what a damaged file makes the readers raise as ``error``."""
        try:
            return fn(*args)
        except NpzError:
            raise
        except FileNotFoundError:  # the file went away while it was read
            raise self.missing(f"{self.where} does not exist") from None
        except READ_ERRORS as exc:
            detail = " ".join(str(exc).split())[:200]
            raise self.fail(
                f" is truncated or not a {self.what} ({type(exc).__name__}: {detail})"
            ) from None

    def _members(self, max_members: int) -> dict[str, zipfile.ZipInfo]:
        infos = self._zf.infolist()
        if len(infos) > max_members:
            raise self.fail(f" has {len(infos)} members, more than {max_members}")
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            key = info.filename.removesuffix(".npy")
            if key == info.filename:
                raise self.fail(f" holds {shown(info.filename)}, which is not an array")
            if key in members:
                raise self.fail(f" holds {shown(key)} twice")
            if info.flag_bits & 0x1:
                raise self.fail(f": {shown(key)} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.fail(
                    f": {shown(key)} is compressed with zip method {info.compress_type} "
                    "(only stored and deflated members are read)"
                )
            members[key] = info
        return members

    # -- members ----------------------------------------------------------------------

    def _open(self, key: str, spec: ArraySpec | str):
        """``(stream, shape, fortran_order, dtype, nbytes)`` of a member whose header checks
        out; ``spec`` a str: a JSON header of that kind (`read_json`)."""
        info = self.members[key]
        raw = self._zf.open(info)
        try:
            version = npy_format.read_magic(raw)
            if version not in ((1, 0), (2, 0)):
                raise self.fail(f": {shown(key)} is a .npy of version {version}, not 1.0 or 2.0")
            read = npy_format.read_array_header_1_0 if version == (1, 0) else (
                npy_format.read_array_header_2_0
            )  # fmt: skip
            shape, fortran, dtype = read(raw, max_header_size=_NPY_MAX_HEADER)
            if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
                raise self.fail(f": {key} holds Python objects or records ({dtype}); refused")
            if isinstance(spec, str):
                nbytes = self._check_json(key, shape, dtype, spec)
            else:
                name = dtype.newbyteorder("=").name if dtype.kind == "f" else str(dtype)
                if name not in spec.dtypes:
                    raise self.fail(
                        f": {key} has dtype {shown(name)}; allowed: {', '.join(spec.dtypes)}"
                    )
                nbytes = self._check_shape(shape, key, spec) * dtype.itemsize
            if raw.tell() + nbytes != info.file_size:
                raise self.fail(
                    f": {shown(key)} declares {nbytes} bytes of data, "
                    f"the zip directory {info.file_size - raw.tell()}"
                )
        except BaseException:
            raw.close()
            raise
        return raw, shape, fortran, dtype, nbytes

    def _check_json(self, key: str, shape, dtype, kind: str) -> int:
        if kind == "str" and dtype.kind == "U" and shape == ():
            return dtype.itemsize
        if kind == "uint8" and dtype == np.uint8 and len(shape) == 1:
            return shape[0]
        want = "a str scalar" if kind == "str" else "a uint8 array"
        raise self.fail(
            f" has no JSON header ({key} must be {want}, got {dtype} of shape {shown(shape)})"
        )

    def _check_shape(self, shape, key: str, spec: ArraySpec) -> int:
        """The number of elements of a checked ``shape``."""
        if len(shape) > _MAX_NDIM or not all(type(d) is int and d >= 0 for d in shape):
            raise self.fail(f": {shown(key)} declares the shape {shown(shape)}")
        expected = spec.shape
        if expected is not None and (
            len(shape) != len(expected)
            or any(e is not None and d != e for d, e in zip(shape, expected, strict=False))
        ):
            dims = ["n" if e is None else str(e) for e in expected]
            want = f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
            raise self.fail(f": {key} has shape {tuple(shape)}, its header implies {want}")
        return math.prod(shape)

    def _read_exactly(self, raw, nbytes: int, key: str) -> bytearray:
        buf = bytearray(nbytes)
        view = memoryview(buf)
        pos = 0
        while pos < nbytes:
            chunk = raw.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                raise self.fail(f" is truncated ({key}: {pos} of {nbytes} bytes)")
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
        if raw.read(1):  # also makes zipfile check the CRC-32 at the end of the member
            raise self.fail(f": {key} holds more data than it declares")
        return buf

    def read_json(self, key: str, *, kind: str, max_bytes: int) -> dict:
        """The JSON object in member ``key``.

        ``kind`` is ``"str"`` (a str scalar) or ``"uint8"`` (a uint8 vector of UTF-8). Its
        size is checked (at most ``max_bytes``), then its ``.npy`` header, before anything
        is read or parsed.
        """
        if key not in self.members:
            raise self.fail(f" is not a {self.what} (no header)")
        size = self.members[key].file_size
        if size > max_bytes:
            raise self.fail(f" has a header of {size} bytes, more than {max_bytes}")
        return self.guard(self._read_json, key, kind)

    def _read_json(self, key: str, kind: str) -> dict:
        raw, _, _, dtype, nbytes = self._open(key, kind)
        with raw:
            data = bytes(self._read_exactly(raw, nbytes, key))
        try:
            if dtype.kind == "U":
                big = dtype.byteorder == ">" or (dtype.byteorder in "=|" and sys.byteorder == "big")
                text = data.decode("utf-32-be" if big else "utf-32-le").rstrip("\x00")
            else:
                text = data.decode("utf-8")
            header = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self.fail(f": {key} is not JSON ({type(exc).__name__})") from None
        if not isinstance(header, dict):
            raise self.fail(f": {key} is a JSON {type(header).__name__}, not a JSON object")
        return header

    def check_declared(self, keys) -> None:
        """Refuse, before any is read, arrays whose zip entries declare more than the limit."""
        keys = list(keys)
        declared = sum(self.members[k].file_size for k in keys)
        if declared > self.left:
            largest = max(keys, key=lambda k: self.members[k].file_size)
            raise self.fail(
                f" declares {declared:,} bytes of arrays (the largest, {shown(largest)}, "
                f"{self.members[largest].file_size:,}), more than {self.limit_name} "
                f"({self.left:,})"
            )

    def read_array(self, key: str, spec: ArraySpec) -> np.ndarray:
        """The array ``key``, of native byte order, once its ``.npy`` header fits ``spec``
        and the limit (what is read counts against it)."""
        return self.guard(self._read_array, key, spec)

    def _read_array(self, key: str, spec: ArraySpec) -> np.ndarray:
        raw, shape, fortran, dtype, nbytes = self._open(key, spec)
        with raw:
            self.left -= nbytes  # the limit, enforced on what is read, not only on what is declared
            if self.left < 0:
                raise self.fail(f" holds more than {self.limit_name} of arrays")
            data = self._read_exactly(raw, nbytes, key)
        flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape))
        arr = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
        if not dtype.isnative:
            arr = arr.astype(dtype.newbyteorder("="))
        if spec.finite and not np.isfinite(arr).all():
            raise self.fail(f": {key} holds NaN or infinite values")
        return arr
