"""The GEMM peak: FLOP utilisation is measured against a plain matmul at the same dtype, same run."""

from __future__ import annotations

from typing import Any

import torch

from culturalign.bench.timing import timed


def gemm_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> dict[str, Any]:
    """Best FLOP/s of an (n x n) @ (n x n) matmul; n = 2048 on CPU, 8192 on GPU unless given.

    2048 is past the size where CPU GEMM efficiency saturates and runs in ~0.05-0.2 s per call on
    a 2-core machine, so the best of a few calls is a stable peak.
    """
    n = size or (8192 if device.type == "cuda" else 2048)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    best, times, _ = timed(lambda: torch.matmul(a, b), device, repeats, warmup=2)
    flops = 2.0 * n ** 3
    return {"size": n, "dtype": str(dtype).replace("torch.", ""), "flops_per_s": flops / best,
            "seconds": [round(t, 5) for t in times]}
