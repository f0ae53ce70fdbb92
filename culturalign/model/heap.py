"""Give freed heap memory back to the operating system between pieces of work.

Why: on Linux, PyTorch's CPU tensors come from glibc malloc. A survey gradient step allocates and
frees the same few hundred MB of activations once per checkpointed piece (and again when the
backward pass recomputes it); glibc keeps the freed chunks in its arenas, fragmented, instead of
returning them, so resident memory grows by the sum of what fragmentation strands rather than by
one piece's need. Measured on the embedded model in float32 (docs/robustness.md, "Where the memory
goes", benchmarks/grad_step_memory.py): one step of the robust GD config in 1-row pieces peaked at
1.43 GiB RSS without and 1.23 GiB with `malloc_trim(0)` before each piece, at the same step time.
Elsewhere (macOS, musl, Windows) there is no `malloc_trim` and this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Return the heap's free pages to the OS (glibc `malloc_trim(0)`); False where there is no such call.

    Costs a walk over malloc's free lists (milliseconds); the pages come back zeroed on the next
    allocation, so call it between pieces of work, not inside a hot loop.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
