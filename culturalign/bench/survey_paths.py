"""Survey fitness throughput: five ways to administer the 24-item survey to N soft prompts.

- paper_fair: the paper's way done competently, the baseline the headline ratio is taken against.
  Full rows `[V][pad][text]` (no prefix sharing: that is our addition, not the paper's), rows of
  several candidates in one left-padded batch under the same row budget as the default path
  (`answering.max_batch_rows`), KV cache, greedy decoding that stops each row at its first complete
  number (`first_number`), which is all the paper's parse reads, and drops finished rows from the
  batch so the forwards shrink as rows stop.
- paper_32_tokens: the earlier baseline, kept for comparison: one candidate's 24 rows per batch,
  greedy decoding of up to `max_new_tokens` (32), stopping only once every row has produced EOS.
- paper_single: one item at a time (batch 1, no padding), stopping at the first number.
- no_reuse: logits mode, full rows through `prompted_logits(logits_to_keep=1)`; the same length
  buckets and candidate chunks as the default path, so the ratio isolates prefix reuse.
- default: `SurveyFitness` as every optimizer calls it.

All use the same backbone, dtype and tokenised survey; every prefill keeps one position of logits.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from culturalign.bench.first_number import DigitTables, decode_to_first_number
from culturalign.bench.machine import peak_memory, reset_peak
from culturalign.bench.timing import timed
from culturalign.model.batching import pad_rows
from culturalign.model.prefix_cache import decode_more, prefill_rows
from culturalign.model.soft_prompt import prompted_logits
from culturalign.survey.fitness import SurveyFitness, parse_answer

Progress = Callable[[str], None]


def paper_generate(
    fitness: SurveyFitness, prompt: torch.Tensor | None, rows: list[list[int]], max_new_tokens: int
) -> tuple[list[float], list[str], int]:
    """Greedy answers to `rows` (one batch) for one candidate, up to `max_new_tokens` (stops only when
    every row has produced EOS): (parsed answers, texts, decode steps). Input shape: prompt (T, d) or None.
    """
    bb = fitness.backbone
    ids, mask = pad_rows(rows, bb.tokenizer.pad_token_id)
    p = None if prompt is None else prompt.unsqueeze(0).expand(len(rows), -1, -1)
    with torch.inference_mode():
        cache, logits, full_mask = prefill_rows(bb, p, ids, mask)
        tokens = decode_more(bb, cache, logits, full_mask, max_new_tokens)
    texts = bb.tokenizer.batch_decode(tokens, skip_special_tokens=True)
    return [parse_answer(t, fitness.K) for t in texts], texts, int(tokens.shape[1])


def paper_first_number(
    fitness: SurveyFitness, prompts: torch.Tensor, rows: list[list[int]], max_new_tokens: int, tables: DigitTables
) -> tuple[list[float], list[int], int]:
    """Every row of every candidate in one left-padded batch, each row decoded until its first number.

    Input shape: prompts (n, T, d). Output: parsed answers (n * len(rows), candidate-major), each
    row's decode steps, and the forward steps the batch ran.
    """
    bb, n = fitness.backbone, prompts.shape[0]
    ids, mask = pad_rows(rows, bb.tokenizer.pad_token_id)
    p = prompts.repeat_interleave(len(rows), 0)  # row i * len(rows) + j: candidate i, item j
    with torch.inference_mode():
        cache, logits, full_mask = prefill_rows(bb, p, ids.repeat(n, 1), mask.repeat(n, 1))
        tokens, row_steps, steps = decode_to_first_number(bb, cache, logits, full_mask, max_new_tokens, tables)
    texts = bb.tokenizer.batch_decode([t[:s] for t, s in zip(tokens.tolist(), row_steps.tolist())], skip_special_tokens=True)
    return [parse_answer(t, fitness.K) for t in texts], row_steps.tolist(), steps


def paper_fair_answers(fitness: SurveyFitness, prompts: torch.Tensor, max_new_tokens: int, tables: DigitTables) -> dict[str, list]:
    """The fair paper-style baseline over N candidates, chunked like the default path (same row budget)."""
    out: dict[str, list] = {"parsed": [], "row_steps": [], "batch_steps": []}
    R, budget = fitness.num_rows, fitness.answering.max_batch_rows
    for n0, n1 in fitness._candidate_chunks(prompts.shape[0]):
        # One candidate with more rows than the budget (several wordings): its rows in slices, as the default path does.
        step = R if n1 - n0 > 1 or R <= budget else budget
        for r0 in range(0, R, step):
            parsed, row_steps, steps = paper_first_number(fitness, prompts[n0:n1], fitness.rows[r0 : r0 + step], max_new_tokens, tables)
            out["parsed"] += parsed
            out["row_steps"] += row_steps
            out["batch_steps"].append(steps)
    return out


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
                ids, mask = pad_rows([fitness.rows[int(j)] for j in rows], bb.tokenizer.pad_token_id)
                p = prompts[n0:n1].repeat_interleave(r, 0)  # row i*r + j: candidate n0+i, item rows[j]
                logits = prompted_logits(bb, p, ids.repeat(nc, 1), mask.repeat(nc, 1), logits_to_keep=1)[:, -1]
                probs = torch.softmax(logits.index_select(-1, answer_ids).float(), -1).view(nc, r, K)
                answers[n0:n1, rows.to(bb.device)] = (probs * k).sum(-1)
    return answers


def _path(name: str, candidates: int, best: float, times: list[float], tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "candidates": candidates,
        "seconds": best,
        "seconds_all": [round(t, 4) for t in times],
        "candidates_per_s": candidates / best,
        "seconds_per_candidate": best / candidates,
        "tokens_per_candidate": tokens,
        "tokens_per_s": tokens * candidates / best,
        **extra,
    }


def _generation_stats(parsed: list[float], steps: list[int]) -> dict[str, float]:
    """invalid_fraction: answers the parse could not read; decode_steps_mean: tokens decoded per row."""
    return {"invalid_fraction": sum(v != v for v in parsed) / len(parsed), "decode_steps_mean": sum(steps) / len(steps)}


def _agreement(a: list[float], b: list[float]) -> float:
    """Fraction of rows whose parsed answers agree (both unreadable counts as agreeing)."""
    return sum((x == y) or (x != x and y != y) for x, y in zip(a, b)) / len(a)


def _measure_default(fitness: SurveyFitness, prompts: torch.Tensor, repeats: int, work: dict, progress: Progress):
    """The default path; also returns its expected answers (N, R) for the no-reuse check."""
    N, K, dev = prompts.shape[0], fitness.K, fitness.backbone.device
    progress(f"default path: {N} candidates x {repeats} repeats")
    reset_peak(dev)
    fitness(prompts[:1])  # warm-up: first-call allocations and kernel selection stay out of the timing
    best, times, res = timed(lambda: fitness(prompts), dev, repeats, warmup=0)
    path = _path(
        "default (SurveyFitness, shared prefix, length buckets)", N, best, times, work["default"]["tokens"], peak_memory=peak_memory(dev)
    )
    return path, (res.distributions.reshape(N, -1, K) * torch.arange(1, K + 1, device=dev)).sum(-1)


def _measure_no_reuse(fitness, prompts, repeats, work, progress, default_answers) -> dict[str, Any]:
    N, dev = prompts.shape[0], fitness.backbone.device
    progress(f"logits without prefix reuse: {N} candidates x {repeats} repeats")
    no_reuse_answers(fitness, prompts[:1])
    best, times, answers = timed(lambda: no_reuse_answers(fitness, prompts), dev, repeats, warmup=0)
    return _path(
        "logits, full rows [V][pad][text], no prefix reuse",
        N,
        best,
        times,
        work["full"]["tokens"],
        max_abs_answer_diff_vs_default=float((answers - default_answers).abs().max()),
    )


def _measure_paper_fair(fitness, prompts, repeats, max_new_tokens, tables, work, progress) -> tuple[dict, list]:
    N, dev = prompts.shape[0], fitness.backbone.device
    n0, n1 = next(iter(fitness._candidate_chunks(N)))
    per = n1 - n0  # candidates per batch: the default path's chunking under answering.max_batch_rows
    progress(f"paper-style fair: {N} candidates, {per * fitness.num_rows} rows per batch, stop at the first number x {repeats}")
    paper_first_number(fitness, prompts[:1], fitness.rows[:2], 2, tables)  # warm-up
    best, times, res = timed(lambda: paper_fair_answers(fitness, prompts, max_new_tokens, tables), dev, repeats, warmup=0)
    decoded = sum(res["row_steps"]) // N
    path = _path(
        f"paper-style fair: rows of {per} candidates batched, greedy to the first number (<= {max_new_tokens}), parse",
        N,
        best,
        times,
        work["full"]["tokens"],
        max_new_tokens=max_new_tokens,
        rows_per_batch=per * fitness.num_rows,
        decoded_tokens_per_candidate=decoded,
        batch_decode_steps_mean=sum(res["batch_steps"]) / len(res["batch_steps"]),
        **_generation_stats(res["parsed"], res["row_steps"]),
    )
    return path, res["parsed"]


def _measure_paper_32(fitness, prompts, repeats, n_paper, max_new_tokens, work, progress) -> tuple[dict, list]:
    rows, dev = fitness.rows, fitness.backbone.device
    progress(f"paper-style, {max_new_tokens} tokens: {len(rows)} rows of one candidate per batch, {n_paper} candidates x {repeats}")
    stats: dict[str, Any] = {}

    def batched() -> list[float]:
        parsed, steps = [], []
        for n in range(n_paper):
            values, _, s = paper_generate(fitness, prompts[n], rows, max_new_tokens)
            parsed += values
            steps.append(s)
        stats.update(_generation_stats(parsed, steps))
        return parsed

    paper_generate(fitness, prompts[0], rows[:2], 2)  # warm-up
    best, times, parsed = timed(batched, dev, repeats, warmup=0)
    return _path(
        f"paper-style {max_new_tokens} tokens: one candidate's rows batched, greedy <= {max_new_tokens} new "
        "tokens until every row ends, parse",
        n_paper,
        best,
        times,
        work["full"]["tokens"],
        max_new_tokens=max_new_tokens,
        rows_per_batch=len(rows),
        **stats,
    ), parsed


def _measure_paper_single(fitness, prompts, repeats, max_new_tokens, tables, work, progress, single_rows) -> dict[str, Any]:
    rows, dev = fitness.rows, fitness.backbone.device
    timed_rows = rows[:single_rows] if single_rows else rows
    single_repeats = max(1, repeats - 1)
    progress(f"paper-style, one row at a time: {len(timed_rows)} of {len(rows)} rows x {single_repeats} repeats")
    stats: dict[str, Any] = {}

    def single() -> None:
        parsed, steps = [], []
        for row in timed_rows:
            values, s, _ = paper_first_number(fitness, prompts[:1], [row], max_new_tokens, tables)
            parsed += values
            steps += s
        stats.update(_generation_stats(parsed, steps))

    best, times, _ = timed(single, dev, single_repeats, warmup=0)
    scale = len(rows) / len(timed_rows)  # 1 unless --quick
    return _path(
        f"paper-style: one item at a time, greedy to the first number (<= {max_new_tokens})",
        1,
        best * scale,
        [t * scale for t in times],
        work["full"]["tokens"],
        max_new_tokens=max_new_tokens,
        rows_timed=len(timed_rows),
        **stats,
    )


def measure(
    fitness: SurveyFitness,
    prompts: torch.Tensor,
    repeats: int,
    paper_candidates: int,
    max_new_tokens: int,
    progress: Progress,
    work: dict[str, dict[str, int]],
    single_rows: int | None = None,
) -> dict[str, Any]:
    """Time the five paths. Input: prompts (N, T, d); `work` from `flops.survey_work` per path.

    `paper_candidates`: candidates timed on the 32-token path (the fair path runs all N).
    `single_rows`: time the one-at-a-time path on the first rows only and scale to a candidate (--quick).
    """
    bb, N = fitness.backbone, prompts.shape[0]
    tables = DigitTables.for_backbone(bb)
    out: dict[str, Any] = {}
    out["default"], default_answers = _measure_default(fitness, prompts, repeats, work, progress)
    out["no_reuse"] = _measure_no_reuse(fitness, prompts, repeats, work, progress, default_answers)
    out["paper_fair"], fair = _measure_paper_fair(fitness, prompts, repeats, max_new_tokens, tables, work, progress)
    n_paper = max(1, min(N, paper_candidates))
    out["paper_32_tokens"], long = _measure_paper_32(fitness, prompts, repeats, n_paper, max_new_tokens, work, progress)
    # Same candidates, two decoders: the stop rule must not change what the parse reads (bf16 batching
    # noise aside, since the two batch different rows together).
    out["paper_fair"]["parse_agreement_with_32_tokens"] = _agreement(fair[: len(long)], long)
    out["paper_single"] = _measure_paper_single(fitness, prompts, repeats, max_new_tokens, tables, work, progress, single_rows)
    return out
