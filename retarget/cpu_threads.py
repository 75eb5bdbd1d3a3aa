"""Torch's CPU thread count chosen for the solver's workload, set for the duration of a solve and restored after.

The solver runs ~100 small tensor operations per Levenberg–Marquardt iteration. Split across threads, each one
wakes torch's thread pool, which costs more than the work itself — and far more when another process keeps a
core busy (measured: 2.9 ms/frame with torch's default threads against 0.085 ms with one, see docs/benchmarks.md).
So CPU solves whose tensors are small run on one thread; large batches keep torch's setting.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

# Elements of the largest per-iteration tensor (frames x 3 terms x dof) up to which one thread is used. One thread
# was faster at every size measured on the 2-core development box (up to 2400 frames x 45 rows x 12 joints ≈ 1.3 M).
SMALL_WORK = 8_000_000

_lock = threading.Lock()
_users = 0
_saved = 0


@contextlib.contextmanager
def solver_threads(work: int, device: torch.device | str) -> Iterator[int]:
    """Run the block with one torch thread when ``work`` (tensor elements) is small and the device is the CPU.

    Yields the thread count in effect. Concurrent callers share the setting: the first sets it, the last restores
    torch's previous value, so no caller leaves another's setting behind.
    """
    global _users, _saved
    if torch.device(device).type != "cpu" or work > SMALL_WORK:
        yield torch.get_num_threads()
        return
    with _lock:
        if _users == 0:
            _saved = torch.get_num_threads()
            if _saved != 1:
                torch.set_num_threads(1)
        _users += 1
    try:
        yield 1
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved != 1:
                torch.set_num_threads(_saved)
