"""How freed CPU memory goes back to the operating system, for the two hot paths that care.

PyTorch's CPU tensors come from glibc malloc on Linux. Two opposite needs:

- **A survey gradient step** (`release_free_heap`) allocates and frees the same few hundred MB of
  activations once per checkpointed piece (and again when the backward pass recomputes it); glibc
  keeps the freed chunks in its arenas, fragmented, instead of returning them, so resident memory
  grows by the sum of what fragmentation strands rather than by one piece's need. Measured on the
  embedded model in float32 (docs/robustness.md, "Where the memory goes",
  benchmarks/grad_step_memory.py): one step of the robust GD config in 1-row pieces peaked at
  1.43 GiB RSS without and 1.23 GiB with `malloc_trim(0)` before each piece, at the same step time.
- **A black-box search** (`reused_heap`) scores one generation after another with the same shapes,
  so the opposite holds: every activation above glibc's mmap ceiling (32 MB; a bucket's MLP
  activations are ~100 MB) is mapped afresh, unmapped on free, and each of its pages faulted in and
  zero-filled by the kernel again, generation after generation. Keeping freed memory for reuse
  removed 1.9 million page faults and 5.3 s of system CPU from each 8-candidate generation of the
  embedded model in float32 and made it 1.10x as fast (2-core AMD EPYC without bf16,
  benchmarks/survey_heap.py; docs/optimizers.md, "Freed memory kept for reuse"); `make run`'s peak
  RSS stayed about the same, because the next generation needs the same blocks again. The heap
  may still grow for the first few blocks of a size: PyTorch asks for 64-byte-aligned memory and glibc
  pads such a request, so a freed block fits the next identical one only once freed neighbours have
  coalesced (a 64 MB block in a fresh process: 7-9 fresh blocks, then none; tests/test_renderings.py).

Elsewhere (macOS, musl, Windows) there is no `malloc_trim` / `mallopt` and both are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from typing import Any

# glibc's mallopt parameters (malloc.h, mallopt(3)).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
KEEP_ALL = 2**31 - 1  # a trim threshold no heap top reaches: freed memory is never handed back on free
# What `reused_heap` puts back. Setting any of these fixes glibc's otherwise adaptive mmap threshold for
# good, so the values are the ones its adaptation reaches on a model's activations rather than its
# start-up ones (128 KiB, which would map every block above it afresh for the rest of the process):
# the threshold rises to the largest freed mapped block, at most 32 MiB, and the trim threshold to twice that.
AFTER_MMAP_MAX, AFTER_MMAP_THRESHOLD, AFTER_TRIM_THRESHOLD = 65536, 32 * 2**20, 64 * 2**20


@functools.cache
def _libc_call(name: str) -> Any:
    lib = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(lib), name) if lib else None
    except (OSError, AttributeError):
        return None


def _malloc_trim() -> Any:
    return _libc_call("malloc_trim")


def _mallopt() -> Any:
    return _libc_call("mallopt")


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


@contextlib.contextmanager
def reused_heap() -> Iterator[bool]:
    """Inside: large blocks come from the heap (no mmap) and freed memory stays there for the next one.

    Yields False where glibc's `mallopt` is missing or refuses a setting. On exit mmap is back on, freed
    memory is trimmed again and the free pages are returned (`malloc_trim(0)`), so the rest of the
    process (a GD fit, a test suite, a notebook) holds no more than before; the thresholds it leaves
    are those glibc's own adaptation reaches on such work (AFTER_* above).
    """
    opt = _mallopt()
    if opt is None:
        yield False
        return
    changed = bool(opt(M_MMAP_MAX, 0)) and bool(opt(M_TRIM_THRESHOLD, KEEP_ALL))
    try:
        yield changed
    finally:  # also when a setting was refused: whatever did change is undone
        opt(M_MMAP_MAX, AFTER_MMAP_MAX)
        opt(M_MMAP_THRESHOLD, AFTER_MMAP_THRESHOLD)
        opt(M_TRIM_THRESHOLD, AFTER_TRIM_THRESHOLD)
        release_free_heap()
