"""What a benchmark ran on (recorded beside every number), and peak memory."""

from __future__ import annotations

import os
import platform
import resource
from typing import Any

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """CPU model, cores, torch threads, dtype and library versions; GPU name on CUDA."""
    import transformers

    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # psutil is a dependency; this only guards odd installs
        physical = None
    out: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "loadavg_start": load_average(),
    }
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def load_average() -> list[float] | None:
    """1/5/15-minute load: a busy shared machine explains slow, noisy numbers."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak so far: max allocated on CUDA; the process's peak RSS (monotonic, since start) on CPU."""
    if device.type == "cuda":
        return {"kind": "cuda_max_memory_allocated", "bytes": int(torch.cuda.max_memory_allocated(device))}
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if platform.system() == "Darwin" else 1024
    return {"kind": "peak_rss", "bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale}
