"""`culturalign bench`: survey-fitness and GD throughput, FLOP utilisation and peak memory, in one run.

    culturalign bench                      # embedded model, auto dtype, population 16
    culturalign bench --json > bench.json  # everything, machine description included
    culturalign bench --model meta-llama/Meta-Llama-3-8B-Instruct --device cuda --population 64

What each number means is in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any, Literal

import torch

from culturalign.bench import flops as flops_mod
from culturalign.bench import gemm as gemm_mod
from culturalign.bench.machine import describe, load_average, peak_memory
from culturalign.bench.readings import format_readings, measure_readings
from culturalign.bench.survey_paths import measure
from culturalign.bench.training import measure_training
from culturalign.commands.common import ModelArgs, backbone_record
from culturalign.errors import CulturalignError
from culturalign.model.heap import reused_heap as reused_heap_context
from culturalign.model.soft_prompt import init_prompt
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.scoring import Scoring
from culturalign.targets import resolve_target

GIB = 1024**3
# Goals from the performance issue; reported as measured, never enforced.
GOALS = {"default_over_paper_fair": 5.0, "flop_utilisation": 0.5, "gd_ratio_vs_peft": 1.0, "peak_rss_gib": 2.0}


def bench(
    model: ModelArgs = ModelArgs(),
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None,
    device: str | None = None,
    population: int = 16,
    num_virtual_tokens: int = 10,
    repeats: int = 3,
    max_new_tokens: int = 32,
    paper_candidates: int = 2,
    max_batch_rows: int | None = None,
    gd_batch_size: int = 8,
    gd_steps: int = 3,
    gemm_size: int | None = None,
    quick: bool = False,
    reused_heap: bool = True,
    json_output: bool = False,
) -> dict[str, Any]:
    """Measure survey-fitness throughput (paper-style vs ours), FLOP utilisation, GD vs PEFT, peak memory.

    Args:
        model: Frozen backbone (default: the embedded SmolLM2-135M-Instruct).
        dtype: Shorthand for --model.dtype.
        device: Shorthand for --model.device.
        population: Candidates (soft prompts) per default-path and no-reuse measurement.
        num_virtual_tokens: T, virtual tokens per soft prompt.
        repeats: Timed repetitions per measurement; the best is reported (all are in --json).
        max_new_tokens: Paper-style generation: new tokens decoded at most per answer (the fair path stops earlier, at the first number).
        paper_candidates: Candidates timed on the earlier 32-token paper-style path (the fair one runs the whole population).
        max_batch_rows: Row budget per forward of the default and fair paper-style paths (default: answering.max_batch_rows).
        gd_batch_size: Examples per GD step.
        gd_steps: Timed GD steps for ours and for PEFT each.
        gemm_size: n of the square n^3 reference GEMM (default 2048 on CPU, 8192 on GPU); the peak is measured at the model's shapes.
        quick: Tiny settings for tests (population 2, 1 repeat, 4 new tokens, one-at-a-time path on 4 items); numbers are not meaningful.
        reused_heap: Time the survey paths (not GD) with freed memory kept for reuse, as `culturalign fit` scores
            black-box candidates (culturalign.model.heap.reused_heap). False: glibc's own malloc behaviour, under
            which the decoding baselines spend much of their time faulting pages in (docs/benchmarks.md).
        json_output: Print one JSON object instead of the table (also `--json`).
    """
    if quick:
        population, repeats, paper_candidates, max_new_tokens = min(population, 2), 1, 1, min(max_new_tokens, 4)
        gd_steps, gd_batch_size, gemm_size = 1, min(gd_batch_size, 4), gemm_size or 256
    _check(model, dtype, device, population, repeats, num_virtual_tokens, max_new_tokens, gd_batch_size)
    started = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"bench [{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    progress(f"loading {model.name}")
    backbone = model.load()
    dev, machine = backbone.device, describe(backbone.device, backbone.dtype)
    survey, target = load_survey("vsm13"), resolve_target("SAU")
    answering = Answering() if max_batch_rows is None else Answering(max_batch_rows=max_batch_rows)
    fitness = SurveyFitness(backbone, survey, target.scores, Scoring(), answering)
    prompts = torch.stack([init_prompt(backbone, num_virtual_tokens, "random", seed=s) for s in range(population)])
    suffix_lens = [len(s) for s in fitness.suffixes]
    work = {
        "default": flops_mod.survey_work(num_virtual_tokens, len(fitness.prefix_ids), suffix_lens, True),
        "full": flops_mod.survey_work(num_virtual_tokens, len(fitness.prefix_ids), suffix_lens, False),
    }
    shapes = gemm_mod.gemm_shapes(backbone.model, flops_mod.default_forward_tokens(fitness, num_virtual_tokens, population))
    gemm_repeats = max(3, repeats)  # the peak is a denominator: never from a single run
    progress(f"GEMM peak at {machine['dtype']}, {len(shapes)} shapes of the model (before the timed paths)")
    passes = [gemm_mod.measure_shapes(dev, backbone.dtype, shapes, gemm_repeats)]
    with reused_heap_context() if reused_heap else contextlib.nullcontext(False) as kept:
        paths = measure(fitness, prompts, repeats, paper_candidates, max_new_tokens, progress, work, single_rows=4 if quick else None)
        readings = measure_readings(fitness, prompts, repeats, paths["default"]["candidates_per_s"], progress)
    allocator = "reused_heap" if kept else "reused_heap (a no-op here: no glibc mallopt)" if reused_heap else "glibc defaults"
    training = measure_training(backbone, survey, target.scores, fitness.constants, num_virtual_tokens, gd_batch_size, gd_steps, progress)
    progress("GEMM peak again (after the timed paths), and the square reference")
    passes.append(gemm_mod.measure_shapes(dev, backbone.dtype, shapes, gemm_repeats))
    peak = gemm_mod.peak(passes, backbone.dtype, gemm_mod.square_gemm(dev, backbone.dtype, gemm_size, gemm_repeats))
    utilisation, ratios = _utilisation(flops_mod.model_shape(backbone), work, paths, peak), _ratios(paths)
    memory = {"after_default_path": paths["default"].pop("peak_memory"), "end_of_bench": peak_memory(dev)}
    machine["loadavg_end"] = load_average()
    out = {
        "command": "culturalign bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else None,
        "machine": machine,
        "model": backbone_record(backbone),
        "setup": _setup(fitness, work, paths, population, num_virtual_tokens, repeats, max_new_tokens, quick) | {"allocator": allocator},
        "throughput": paths,
        "readings": readings,
        "ratios": ratios,
        "flops": utilisation,
        "training": training,
        "memory": memory,
        "goals": _goals(ratios, utilisation, training, memory),
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    progress("done")
    print(json.dumps(out, indent=2) if json_output else format_report(out))
    return out


def _check(model: ModelArgs, dtype: str | None, device: str | None, *counts: int) -> None:
    """Counts must be positive; --dtype / --device are shorthands for --model.dtype / --model.device."""
    if min(counts) < 1:
        raise CulturalignError("bench: population, repeats, num_virtual_tokens, max_new_tokens and gd_batch_size must be >= 1")
    if dtype:
        model.dtype = dtype
    if device:
        model.device = device


def _setup(
    fitness: SurveyFitness,
    work: dict[str, dict[str, int]],
    paths: dict[str, Any],
    population: int,
    num_virtual_tokens: int,
    repeats: int,
    max_new_tokens: int,
    quick: bool,
) -> dict[str, Any]:
    """What was measured: population, T, rows and tokens per candidate, row budget, length buckets."""
    return {
        "population": population,
        "num_virtual_tokens": num_virtual_tokens,
        "repeats": repeats,
        "rows_per_candidate": fitness.num_rows,
        "prefix_tokens": len(fitness.prefix_ids),
        "max_batch_rows": fitness.answering.max_batch_rows,
        "length_buckets": [len(c[0]) for c in fitness.chunks],
        "tokens_per_candidate_default": work["default"]["tokens"],
        "tokens_per_candidate_full_rows": work["full"]["tokens"],
        "max_new_tokens": max_new_tokens,
        "paper_32_tokens_candidates": paths["paper_32_tokens"]["candidates"],
        "quick": quick,
    }


def _utilisation(
    shape: flops_mod.ModelShape, work: dict[str, dict[str, int]], paths: dict[str, Any], peak: dict[str, Any]
) -> dict[str, Any]:
    """Default-path FLOP/s against the GEMM peak; utilisation is None (with the reason) above 100%."""
    fl = flops_mod.survey_flops(shape, work["default"])
    achieved = fl["total"] * paths["default"]["candidates_per_s"]
    value, error = gemm_mod.utilisation(achieved, peak["flops_per_s"])
    return {
        "default_flops_per_candidate": fl,
        "default_flops_per_s": achieved,
        "gemm_peak_flops_per_s": peak["flops_per_s"],
        "utilisation": value,
        "utilisation_error": error,
        "non_embedding_params": shape.non_embedding_params,
        "gemm": peak,
    }


def _ratios(paths: dict[str, Any]) -> dict[str, float]:
    """Default candidates/s over each other path's, same run. `default_over_paper_fair` is the headline;
    `default_over_paper_32_tokens` is the earlier baseline (always 32 decoding steps), kept beside it."""
    d = paths["default"]["candidates_per_s"]
    return {f"default_over_{k}": d / paths[k]["candidates_per_s"] for k in ("paper_fair", "paper_32_tokens", "paper_single", "no_reuse")}


def _goals(
    ratios: dict[str, float], utilisation: dict[str, Any], training: dict[str, Any], memory: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each goal of the performance issue beside its measured value; a failed measurement meets nothing."""
    peak_gib = memory["after_default_path"]["bytes"] / GIB
    u = utilisation["utilisation"]
    return {
        "default_over_paper_fair": {
            "value": ratios["default_over_paper_fair"],
            "goal": f">= {GOALS['default_over_paper_fair']}",
            "met": ratios["default_over_paper_fair"] >= GOALS["default_over_paper_fair"],
        },
        "flop_utilisation": {
            "value": u,
            "goal": f">= {GOALS['flop_utilisation']}",
            "met": u is not None and u >= GOALS["flop_utilisation"],
        },
        "gd_ratio_vs_peft": {
            "value": training["ratio"],
            "goal": f">= {GOALS['gd_ratio_vs_peft']}",
            "met": training["ratio"] >= GOALS["gd_ratio_vs_peft"],
        },
        "peak_memory_gib": {
            "value": peak_gib,
            "goal": f"< {GOALS['peak_rss_gib']} ({memory['after_default_path']['kind']})",
            "met": peak_gib < GOALS["peak_rss_gib"],
        },
    }


def format_report(r: dict[str, Any]) -> str:
    m, t = r["machine"], r["throughput"]
    lines = [
        f"model: {r['model']['model_id']} | {m['dtype']} on {m['device']} ({m.get('gpu') or m['cpu_model']}, "
        f"{m['cpu_cores_logical']} cores, {m['torch_threads']} torch threads) | T={r['setup']['num_virtual_tokens']} | "
        f"survey paths timed with {r['setup']['allocator']}",
        "",
        "| survey path | candidates/s | s/candidate | tokens/candidate | default is |",
        "|---|---|---|---|---|",
    ]
    d = t["default"]["candidates_per_s"]
    for key in ("paper_single", "paper_32_tokens", "paper_fair", "no_reuse", "default"):
        p = t[key]
        faster = f"{d / p['candidates_per_s']:.2f}x faster" if key != "default" else "1"
        lines.append(
            f"| {p['name']} | {p['candidates_per_s']:.3f} | {p['seconds_per_candidate']:.3f} | {p['tokens_per_candidate']} | {faster} |"
        )
    lines += [
        "",
        f"default / paper-style fair (stop at the first number, same row budget): "
        f"{r['ratios']['default_over_paper_fair']:.2f}x; default / paper-style 32 tokens (earlier baseline): "
        f"{r['ratios']['default_over_paper_32_tokens']:.2f}x",
    ]
    f, g = r["flops"], r["training"]
    peak = f"a measured {f['gemm_peak_flops_per_s'] / 1e9:.0f} GFLOP/s GEMM peak at the model's shapes"
    lines += [
        f"FLOP utilisation of the default path: {f['utilisation']:.1%} ({f['default_flops_per_s'] / 1e9:.0f} GFLOP/s of {peak})"
        if f["utilisation"] is not None
        else f"FLOP utilisation of the default path: not measured ({f['utilisation_error']})",
        f"GD step: ours {g['ours_examples_per_s']:.2f} examples/s, PEFT prompt tuning {g['peft_examples_per_s']:.2f} "
        f"examples/s (ratio {g['ratio']:.2f}, batch {g['batch_size']})",
        f"peak memory after the default path: {r['memory']['after_default_path']['bytes'] / GIB:.2f} GiB "
        f"({r['memory']['after_default_path']['kind']})",
    ]
    lines += format_readings(r.get("readings"), d) + ["", "| goal | measured | target | met |", "|---|---|---|---|"]
    for k, v in r["goals"].items():
        value = "n/a" if v["value"] is None else f"{v['value']:.3g}"
        lines.append(f"| {k} | {value} | {v['goal']} | {'yes' if v['met'] else 'no'} |")
    return "\n".join(lines)
