"""Token rows into batches: the one common-prefix and the one padding helper every path uses."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def common_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all rows share, leaving at least one token per row.

    The shared prefix (the chat template's head) is run once and its KV cache reused; every row
    keeps one token of its own so its last position is computed in the batched suffix forward.
    """
    P = min(len(r) for r in rows) - 1
    first = rows[0]
    for j in range(max(P, 0)):
        if any(r[j] != first[j] for r in rows):
            return j
    return max(P, 0)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, left: bool = True, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (len(rows), longest row rounded up to a multiple of `multiple`). Left padding keeps
    every row's last token in the last column (its next-token logits); right padding keeps continuations
    aligned at their start. Padding is masked out, so `multiple` changes the shape, not the answer."""
    S = -(-max(len(r) for r in rows) // multiple) * multiple
    ids = torch.full((len(rows), S), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), S), dtype=torch.long)
    for i, r in enumerate(rows):
        cols = slice(S - len(r), S) if left else slice(0, len(r))
        ids[i, cols] = torch.tensor(list(r), dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask
