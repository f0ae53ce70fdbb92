"""Best-of-N wall time. The minimum is the least disturbed run on a shared machine; all runs are kept."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, list[float], Any]:
    """(best seconds, all seconds, last result) of `repeats` calls after `warmup` untimed ones."""
    result = None
    for _ in range(warmup):
        result = fn()
    sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times), times, result
