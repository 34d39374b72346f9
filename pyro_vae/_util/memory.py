"""Keeping the resident memory of long chunked computations near what each chunk needs."""

from __future__ import annotations

import os

#: The memory bound of one call of every chunked tool (``max_memory_mb``), in MiB: one default for all.
MAX_MEMORY_MB = 64.0


class HeapGuard:
    """Return freed heap memory to the system when the process has grown past an allowance.

    With several threads, glibc's allocator can keep the memory of freed chunks in per-thread
    arenas instead of reusing it, so the resident size of a long evaluation creeps upwards (by
    gigabytes over 1,000 Fashion-MNIST images) although each chunk stays within its budget.
    ``malloc_trim`` hands it back. Trimming after every chunk would cost ~70% more time through
    fresh page faults, so it runs only when the growth exceeds ``allowance_mb``. Elsewhere than
    Linux with glibc this does nothing.
    """

    def __init__(self, allowance_mb: float):
        self.allowance = allowance_mb * 2**20
        self.trim = _malloc_trim()
        self.start = _resident_bytes() if self.trim else 0

    def check(self) -> None:
        if self.trim and _resident_bytes() - self.start > self.allowance:
            self.trim(0)


def release_freed_memory() -> None:
    """Hand freed heap memory back to the system now (after a pass over data on disk, say)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def available_bytes() -> int | None:
    """Memory the system can still give this process (Linux's ``MemAvailable``), or ``None`` where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
