"""offbench.cpu: the allocator setting applies once and training processes get it."""
from __future__ import annotations

import sys

import torch

from offbench import cpu


def test_tune_allocator_applies_on_glibc_and_is_idempotent():
    first = cpu.tune_allocator()
    assert cpu.tune_allocator() is first
    if sys.platform.startswith("linux"):
        assert first is True  # glibc's mallopt accepted both settings (0 would mean rejected)


def test_configure_training_process_sets_threads():
    before = torch.get_num_threads()
    try:
        cpu.configure_training_process(1)
        assert torch.get_num_threads() == 1 and cpu._tuned is not None
    finally:
        torch.set_num_threads(before)


def test_torch_threads_pins_and_restores():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu.torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        try:
            with cpu.torch_threads(1):
                raise KeyError("inside")
        except KeyError:
            pass
        assert torch.get_num_threads() == 2  # restored on the way out of an error too
    finally:
        torch.set_num_threads(before)
