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

Why one thread for rollouts (:func:`torch_threads`): a behaviour policy's forward pass on a
batch of 8 observations is microseconds of work. With torch's default of one intra-op thread
per core, each call hands that work to a second thread; when another process holds the other
core, that hand-off waits for a time slice: 47 ms per call instead of 0.33 ms, measured here
while two SAC runs shared the machine (a 100k-step dataset build took 9 minutes instead of
6 s). Pinning also makes the data independent of the machine's core count: torch's matmul
gives different last bits at some batch sizes with 1 and 2 threads (5, 6, 7, 9 and 10 here,
not 8, the width of every checkpoint rollout), so with default threads the data would depend
on the machine's core count; pinned, it does not.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from contextlib import contextmanager

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


@contextmanager
def torch_threads(threads: int = 1):
    """Run a block with ``threads`` intra-op torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["configure_training_process", "torch_threads", "tune_allocator"]
