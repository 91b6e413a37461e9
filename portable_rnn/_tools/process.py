"""Settings of the command-line processes (``portable-rnn train``, ``sample``, ``bench``).

Process-wide, so the library never applies them on import: only the commands call them,
in their own process.
"""

from __future__ import annotations

__all__ = ["keep_freed_memory"]


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse; for the command-line processes.

    A NumPy time loop allocates the same large temporaries at every step. By
    default glibc returns such blocks to the OS when they are freed (``mmap``
    for blocks over 128 KiB, heap trimming above 128 KiB of free top), so every
    step pays page faults on fresh memory again: about 12% of a training step of
    the default language model on this project's machines. This raises the
    ``mmap`` threshold to its maximum (32 MiB) and turns trimming off, as the
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` variables do.

    Process-wide, so the library never calls it on import: only ``portable-rnn
    train``, ``sample`` and ``bench`` do. Returns whether the allocator took the
    settings (``False`` off glibc: macOS, Windows, musl).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok_mmap = mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    ok_trim = mallopt(m_trim_threshold, 2**31 - 1)
    return bool(ok_mmap and ok_trim)
