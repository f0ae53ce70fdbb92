"""Survey fitness throughput: four ways to administer the 24-item survey to N soft prompts.

- paper_batched: the paper's way done competently. Per candidate, its rows `[V][pad][text]` in
  one batch, KV cache, greedy decoding of up to `max_new_tokens` (stopping once every row has
  ended), first number parsed. No prefix sharing: that is our addition, not the paper's.
- paper_single: the same, one item at a time (batch 1, no padding).
- no_reuse: logits mode, full rows through `prompted_logits(logits_to_keep=1)`; the same length
  buckets and candidate chunks as the default path, so the ratio isolates prefix reuse.
- default: `SurveyFitness` as every optimizer calls it.

All four use the same backbone, dtype and tokenised survey; every forward keeps one position.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from culturalign.bench.machine import peak_memory, reset_peak
from culturalign.bench.timing import timed
from culturalign.model.prefix_cache import decode_more, prefill_rows
from culturalign.model.soft_prompt import prompted_logits
from culturalign.survey.fitness import SurveyFitness, parse_answer


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (len(rows), longest), padded on the left."""
    S = max(len(r) for r in rows)
    ids = torch.full((len(rows), S), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), S), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, S - len(r):] = torch.tensor(r)
        mask[i, S - len(r):] = 1
    return ids, mask


def paper_generate(fitness: SurveyFitness, prompt: torch.Tensor | None, rows: list[list[int]],
                   max_new_tokens: int) -> tuple[list[float], list[str], int]:
    """Greedy answers to `rows` (one batch) for one candidate: (parsed answers, texts, decode steps).

    Input shape: prompt (T, d) or None.
    """
    bb = fitness.backbone
    ids, mask = left_pad(rows, bb.tokenizer.pad_token_id)
    p = None if prompt is None else prompt.unsqueeze(0).expand(len(rows), -1, -1)
    with torch.inference_mode():
        cache, logits, full_mask = prefill_rows(bb, p, ids, mask)
        tokens = decode_more(bb, cache, logits, full_mask, max_new_tokens)
    texts = bb.tokenizer.batch_decode(tokens, skip_special_tokens=True)
    return [parse_answer(t, fitness.K) for t in texts], texts, int(tokens.shape[1])


def no_reuse_answers(fitness: SurveyFitness, prompts: torch.Tensor) -> torch.Tensor:
    """Expected answers (N, R) from full rows, batched like the default path. Input: prompts (N, T, d)."""
    bb = fitness.backbone
    N, K = prompts.shape[0], fitness.K
    answer_ids = torch.tensor(fitness.answer_ids, device=bb.device)
    k = torch.arange(1, K + 1, dtype=torch.float32, device=bb.device)
    answers = torch.zeros(N, fitness.num_rows, device=bb.device)
    with torch.inference_mode():
        for n0, n1 in fitness._candidate_chunks(N):
            nc = n1 - n0
            for rows, _, _ in fitness.chunks:
                r = len(rows)
                ids, mask = left_pad([fitness.rows[int(j)] for j in rows], bb.tokenizer.pad_token_id)
                p = prompts[n0:n1].repeat_interleave(r, 0)  # row i*r + j: candidate n0+i, item rows[j]
                logits = prompted_logits(bb, p, ids.repeat(nc, 1), mask.repeat(nc, 1), logits_to_keep=1)[:, -1]
                probs = torch.softmax(logits.index_select(-1, answer_ids).float(), -1).view(nc, r, K)
                answers[n0:n1, rows.to(bb.device)] = (probs * k).sum(-1)
    return answers


def _path(name: str, candidates: int, best: float, times: list[float], tokens: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "candidates": candidates, "seconds": best, "seconds_all": [round(t, 4) for t in times],
            "candidates_per_s": candidates / best, "seconds_per_candidate": best / candidates,
            "tokens_per_candidate": tokens, "tokens_per_s": tokens * candidates / best, **extra}


def _generation_stats(parsed: list[float], steps: list[int]) -> dict[str, float]:
    return {"invalid_fraction": sum(v != v for v in parsed) / len(parsed), "decode_steps_mean": sum(steps) / len(steps)}


def measure(fitness: SurveyFitness, prompts: torch.Tensor, repeats: int, paper_candidates: int, max_new_tokens: int,
            progress: Callable[[str], None], work: dict[str, dict[str, int]], single_rows: int | None = None) -> dict[str, Any]:
    """Time the four paths. Input: prompts (N, T, d); `work` from `flops.survey_work` per path.

    `single_rows`: time the one-at-a-time path on the first rows only and scale to a candidate (--quick).
    """
    bb, N, K = fitness.backbone, prompts.shape[0], fitness.K
    dev = bb.device
    out: dict[str, Any] = {}

    progress(f"default path: {N} candidates x {repeats} repeats")
    reset_peak(dev)
    fitness(prompts[:1])  # warm-up: first-call allocations and kernel selection stay out of the timing
    best, times, res = timed(lambda: fitness(prompts), dev, repeats, warmup=0)
    out["default"] = _path("default (SurveyFitness, shared prefix, length buckets)", N, best, times,
                           work["default"]["tokens"], peak_memory=peak_memory(dev))
    default_answers = (res.distributions.reshape(N, -1, K) * torch.arange(1, K + 1, device=dev)).sum(-1)

    progress(f"logits without prefix reuse: {N} candidates x {repeats} repeats")
    no_reuse_answers(fitness, prompts[:1])
    best, times, answers = timed(lambda: no_reuse_answers(fitness, prompts), dev, repeats, warmup=0)
    out["no_reuse"] = _path("logits, full rows [V][pad][text], no prefix reuse", N, best, times, work["full"]["tokens"],
                            max_abs_answer_diff_vs_default=float((answers - default_answers).abs().max()))

    rows = fitness.rows
    n_paper = max(1, min(N, paper_candidates))
    progress(f"paper-style generation, {len(rows)} rows batched: {n_paper} candidates x {repeats} repeats")
    stats: dict[str, Any] = {}

    def batched() -> None:
        parsed, steps = [], []
        for n in range(n_paper):
            values, _, s = paper_generate(fitness, prompts[n], rows, max_new_tokens)
            parsed += values
            steps.append(s)
        stats.update(_generation_stats(parsed, steps))

    paper_generate(fitness, prompts[0], rows[:2], 2)  # warm-up
    best, times, _ = timed(batched, dev, repeats, warmup=0)
    out["paper_batched"] = _path(f"paper-style: rows batched, greedy <= {max_new_tokens} new tokens, parse", n_paper,
                                 best, times, work["full"]["tokens"], max_new_tokens=max_new_tokens, **stats)

    timed_rows = rows[:single_rows] if single_rows else rows
    single_repeats = max(1, repeats - 1)
    progress(f"paper-style generation, one row at a time: {len(timed_rows)} of {len(rows)} rows x {single_repeats} repeats")
    single_stats: dict[str, Any] = {}

    def single() -> None:
        parsed, steps = [], []
        for row in timed_rows:
            values, _, s = paper_generate(fitness, prompts[0], [row], max_new_tokens)
            parsed += values
            steps.append(s)
        single_stats.update(_generation_stats(parsed, steps))

    best, times, _ = timed(single, dev, single_repeats, warmup=0)
    scale = len(rows) / len(timed_rows)  # 1 unless --quick
    out["paper_single"] = _path(f"paper-style: one item at a time, greedy <= {max_new_tokens} new tokens", 1,
                                best * scale, [t * scale for t in times], work["full"]["tokens"],
                                max_new_tokens=max_new_tokens, rows_timed=len(timed_rows), **single_stats)
    return out
