"""Process memory settings: glibc malloc settings that keep large tensor buffers in the process instead of mapping
them anew each step, and a cap on oneDNN's primitive cache for bf16 runs (:func:`limit_onednn_primitive_cache`).

Why: glibc serves every block above ``M_MMAP_THRESHOLD`` (dynamic, at most 32 MiB) with ``mmap`` and hands it
back with ``munmap`` when freed. A training step of the line-graph network allocates and frees hundreds of
``[triplets, D]`` buffers of tens of MB, so without these settings every step page-faults gigabytes of fresh
zero pages (kernel time that shows up as ``sys`` time in ``time``).

:func:`tune_allocator` raises the mmap threshold and the trim threshold with ``mallopt`` at run time, so freed
buffers are reused from the heap. It is opt-in: set ``CRYSFUSE_MALLOC=tuned`` and the ``crysfuse`` command
calls it at start-up (Python users call it themselves, first thing). The cost: the process keeps its heap
mapped, and with batches of ever-different sizes the heap fragments, so resident memory can grow well past
the live tensors. It does nothing on other C libraries
(musl, macOS, Windows) or when ``LD_PRELOAD`` names another allocator (jemalloc, tcmalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

ENV_SWITCH = "CRYSFUSE_MALLOC"
"""``tuned`` makes the ``crysfuse`` command apply :data:`SETTINGS` at start-up; unset or anything else keeps
the C library's own settings."""

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3

SETTINGS = {
    "M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, 1 << 30),
    "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, (1 << 31) - 1),
    "M_TOP_PAD": (_M_TOP_PAD, 256 << 20),
}
"""Name → (mallopt parameter, value in bytes): blocks up to 1 GiB come from the heap, up to 2 GiB of freed
heap stay mapped, and the heap grows in 256 MiB steps (fewer ``brk`` calls)."""

_applied: dict[str, int] | None = None


def tune_allocator() -> dict[str, int]:
    """Apply :data:`SETTINGS` with glibc's ``mallopt`` once per process.

    Returns:
        The settings that took effect (empty when switched off, not glibc, or another allocator is preloaded).
    """
    global _applied
    if _applied is not None:
        return dict(_applied)
    _applied = {}
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or os.environ.get("LD_PRELOAD"):
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for name, (parameter, value) in SETTINGS.items():
        if mallopt(parameter, value) == 1:
            _applied[name] = value
        else:
            logger.debug("mallopt(%s, %d) was refused", name, value)
    return dict(_applied)


def release_free_memory() -> bool:
    """Hand the C library's free heap memory back to the system (glibc ``malloc_trim(0)``).

    Why: each batch of a crystal data set has its own size, so freed tensor buffers rarely fit the next
    request exactly and glibc's heaps fragment; freed pages then stay resident.
    The training loop calls this at the end of every epoch (:class:`crysfuse.training.callbacks.ReleaseMemory`).

    Returns:
        Whether anything was called (``False`` off glibc).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def tune_allocator_if_asked() -> dict[str, int]:
    """:func:`tune_allocator` when ``CRYSFUSE_MALLOC=tuned``; otherwise nothing (what the CLI calls)."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() != "tuned":
        return {}
    return tune_allocator()


ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_CAPACITY = 64
"""oneDNN primitives the ``crysfuse`` command lets a process cache (oneDNN's own default: 1024)."""


def limit_onednn_primitive_cache(capacity: int = ONEDNN_CACHE_CAPACITY) -> str:
    """Cap oneDNN's primitive cache unless ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` is already set; returns the
    capacity in effect.

    Why: on CPU, bf16 matmuls run through oneDNN, which builds and caches one primitive (with its own buffers)
    per operand shape. Every batch of crystals has other edge and triplet counts, so under ``bf16-mixed``
    the cache fills with primitives that are never used again and resident memory grows for thousands of
    steps (docs/benchmarks.md, "Memory of a long bf16 run"). oneDNN reads the variable when it creates its
    first primitive, so this must run before any bf16 matmul: the CLI calls it at start-up.
    """
    return os.environ.setdefault(ONEDNN_CACHE_ENV, str(int(capacity)))


def allocator_settings() -> dict[str, int]:
    """The settings :func:`tune_allocator` applied in this process (empty if it was not called or did nothing)."""
    return dict(_applied or {})
