"""The GEMM peak the FLOP utilisation is measured against: the model's own matmul shapes, same dtype, same run.

Why not one square GEMM: a 2048^3 matmul measured once at the start of a run on a shared machine
was once caught during another job's burst, so the "peak" came out low and the utilisation read
128%. The peak here is the best rate of `F.linear` at every (rows, in, out) shape the default
survey path runs (the model's own Linear weights' shapes x the token counts of its forwards),
measured before and after the timed paths; the best of all of them is kept. A square GEMM is still
measured, as a reference only.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F

from culturalign.bench.timing import timed


def linear_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """Distinct (in_features, out_features) of the model's Linear layers, the LM head left out
    (the survey applies it to one position per row, so it is not where the FLOPs are)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head})


def gemm_shapes(model: torch.nn.Module, row_counts: Iterable[int]) -> list[tuple[int, int, int]]:
    """(M, K, N) for every forward size M (tokens in one forward) and every Linear (K -> N)."""
    return [(m, k, n) for m in sorted(set(row_counts)) for k, n in linear_shapes(model)]


def _linear_rate(device: torch.device, dtype: torch.dtype, m: int, k: int, n: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(m, k, generator=gen).to(device=device, dtype=dtype)
    w = torch.randn(n, k, generator=gen).to(device=device, dtype=dtype)
    best, _, _ = timed(lambda: F.linear(x, w), device, repeats, warmup=1)
    return {"m": m, "k": k, "n": n, "flops_per_s": 2.0 * m * k * n / best, "seconds": round(best, 6)}


def measure_shapes(
    device: torch.device, dtype: torch.dtype, shapes: Sequence[tuple[int, int, int]], repeats: int = 5
) -> list[dict[str, Any]]:
    """Best-of-`repeats` rate of `F.linear` (x (M, K), W (N, K)) at each shape: one pass."""
    return [_linear_rate(device, dtype, m, k, n, repeats) for m, k, n in shapes]


def square_gemm(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> dict[str, Any]:
    """Best FLOP/s of an (n x n) @ (n x n) matmul; n = 2048 on CPU, 8192 on GPU unless given (reference only)."""
    n = size or (8192 if device.type == "cuda" else 2048)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    best, times, _ = timed(lambda: torch.matmul(a, b), device, repeats, warmup=2)
    return {"size": n, "flops_per_s": 2.0 * n**3 / best, "seconds": [round(t, 5) for t in times]}


def peak(passes: Sequence[Sequence[dict[str, Any]]], dtype: torch.dtype, square: dict[str, Any] | None = None) -> dict[str, Any]:
    """Best rate per shape over all passes (before / after the timed paths), and the best of those.

    Output: {"flops_per_s": the peak, "at": its shape, "shapes": best per shape, "passes": ...}.
    """
    best: dict[tuple[int, int, int], dict[str, Any]] = {}
    for one in passes:
        for r in one:
            key = (r["m"], r["k"], r["n"])
            if key not in best or r["flops_per_s"] > best[key]["flops_per_s"]:
                best[key] = r
    top = max(best.values(), key=lambda r: r["flops_per_s"])
    return {
        "flops_per_s": top["flops_per_s"],
        "at": {k: top[k] for k in ("m", "k", "n")},
        "dtype": str(dtype).replace("torch.", ""),
        "how": f"best F.linear rate over the model's shapes, {len(passes)} passes (before and after the timed paths)",
        "shapes": list(best.values()),
        "pass_peaks": [max(r["flops_per_s"] for r in one) for one in passes],
        "square_reference": square,
    }


def utilisation(achieved: float, peak_flops: float) -> tuple[float | None, str | None]:
    """(achieved / peak, None), or (None, why) when it is above 1: then the peak was measured low
    (e.g. the machine was busy during every GEMM pass) and no utilisation figure can be given."""
    u = achieved / peak_flops
    if u > 1.0:
        return None, (
            f"failed measurement: the default path ran at {achieved / 1e9:.0f} GFLOP/s, above the "
            f"{peak_flops / 1e9:.0f} GFLOP/s GEMM peak measured in the same run ({u:.0%}); the peak was "
            "measured low, re-run on a quiet machine"
        )
    return u, None
