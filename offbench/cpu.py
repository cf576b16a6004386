"""CPU settings of a training process: threads and the C allocator.

Why the allocator: a CQL update allocates activations of [critics, B x 31, 256] floats (16 MB)
dozens of times per step. glibc serves blocks that large with ``mmap`` and gives them back with
``munmap``, so every step touches fresh pages, and the page faults serialise across threads:
with 2 threads, ReLU and its backward ran no faster than with 1 (torch.profiler,
``scripts/bench_train.py``). Raising glibc's mmap threshold to its maximum (32 MB on 64-bit) and
its trim threshold keeps such blocks in the heap for reuse: CQL went from 10.2 to 11.6 updates/s
on 2 threads here (the same effect PyTorch's CPU tuning guide gets by preloading jemalloc or
tcmalloc). The cost is that freed memory is kept by the process instead of returned to the OS.
Elsewhere than Linux with glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (4 * 1024 * 1024 * sizeof(long))
TRIM_THRESHOLD = 1 << 30

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Keep large freed blocks in glibc's heap (see the module docstring); True if applied.
    Idempotent; a no-op returning False where glibc's ``mallopt`` is not available."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return _tuned
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def configure_training_process(threads: int) -> None:
    """Intra-op threads for torch, and the allocator setting above."""
    torch.set_num_threads(threads)
    tune_allocator()


__all__ = ["configure_training_process", "tune_allocator"]
