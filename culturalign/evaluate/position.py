"""Answer-position histogram: how often each answer position 1..K is chosen, as asked.

The paper's trained prompts often answered "1" to everything. Counted by position as the labels
were listed (not by meaning), a prompt stuck on one position shows one tall bar in every wording,
the reversed-scale one included; an answerer driven by content moves when the labels flip.
"""

from __future__ import annotations

from typing import Sequence

import torch

# Share of argmax answers at one position above which a prompt is flagged as position-stuck.
STUCK_SHARE = 0.8


def histogram(distributions: Sequence[torch.Tensor]) -> dict[str, list[float] | float | int | bool]:
    """Input: distributions, each (G, I, K) probabilities as asked. Output (K-long lists):
    `argmax` share of items whose most likely answer is each position, `mass` mean probability
    per position, `n` items counted, `top` the most chosen position (1-based), `stuck` flag."""
    d = torch.cat([x.reshape(-1, x.shape[-1]).float() for x in distributions], dim=0)
    K = d.shape[-1]
    arg = torch.bincount(d.argmax(-1), minlength=K).float() / d.shape[0]
    top = int(arg.argmax()) + 1
    return {
        "argmax": [round(float(x), 4) for x in arg],
        "mass": [round(float(x), 4) for x in d.mean(0)],
        "n": int(d.shape[0]),
        "top": top,
        "stuck": bool(arg.max() >= STUCK_SHARE),
    }
