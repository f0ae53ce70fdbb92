"""Peak memory and time of one survey gradient step, forward and backward apart, per `max_grad_rows`.

The step of `configs/gd_survey_robust_cpu.yaml` outside Lightning: the training pool (the base
wording and paraphrases, in the package's layout and in sampled training layouts, both answer
orders, each order its own reading), the readings GD draws at the given steps (seed 0, `--sample`
readings), one loss, one backward. Each `max_grad_rows` value runs in a fresh process, because peak
RSS (VmHWM) never goes down; the peak is reset (Linux `/proc/self/clear_refs`) before the forward
and again before the backward, so each phase reports its own. RssFile is the model's weights when
they are memory-mapped from a safetensors file of the same dtype (clean page cache, but counted in
RSS); RssAnon is everything malloc holds, and `kept` is RssAnon after the step once Python's garbage
and malloc's free pages are released: what the step leaves behind for the next one. Two switches
undo this wave's memory fixes, to measure them: `--no-heap-release` (no `malloc_trim` before each
piece) and `--pad-multiple 1` (a draw's rows at their exact lengths). docs/robustness.md, "Where the
memory goes", quotes it:

    python benchmarks/grad_step_memory.py --max-grad-rows 3 6 --dtype float32 --steps 0 1
    python benchmarks/grad_step_memory.py --max-grad-rows 3 --dtype bfloat16 --steps 0 1 2 3 4 5 6 7 --pad-multiple 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _status() -> dict[str, float]:
    """VmHWM, VmRSS, RssAnon, RssFile of this process, GiB (Linux)."""
    keys = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in keys:
            out[k] = round(int(v.split()[0]) / 2**20, 3)
    return out


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS


def one(args: argparse.Namespace, rows: int) -> list[dict[str, object]]:
    import gc

    import culturalign.survey.fitness as fitness_module
    from culturalign.commands.common import SurveyArgs
    from culturalign.model.backbone import load_backbone
    from culturalign.model.heap import release_free_heap
    from culturalign.model.soft_prompt import init_prompt
    from culturalign.survey.fitness import Answering, SurveyFitness
    from culturalign.survey.readings import draw_readings
    from culturalign.targets.table import resolve_target

    if args.no_heap_release:
        fitness_module.release_free_heap = lambda: False
    if args.pad_multiple is not None:
        fitness_module.SAMPLED_PAD_MULTIPLE = args.pad_multiple
    bb = load_backbone(args.model, dtype=args.dtype)
    pool_args = SurveyArgs(paraphrases=args.paraphrases, layouts=args.layouts, reading="per_order")
    pool = pool_args.training_surveys(pool_args.wordings())
    target = resolve_target(args.target, "insights2021")
    fit = SurveyFitness(bb, pool, target.scores, answering=Answering(debias=True, max_grad_rows=rows), combine=pool_args.combination())
    prompt = init_prompt(bb, 10, "random", seed=0).float().requires_grad_(True)
    results = []
    for step in args.steps:
        sub = fit.subset(draw_readings(fit.num_readings, 0, step, args.sample))
        _reset_peak()
        t = time.perf_counter()
        loss = sub(prompt, grad=True).losses[0].float()
        fwd = {"seconds": round(time.perf_counter() - t, 2), **_status()}
        _reset_peak()
        t = time.perf_counter()
        loss.backward()
        bwd = {"seconds": round(time.perf_counter() - t, 2), **_status()}
        prompt.grad = None
        n_rows = sub.num_rows
        del loss, sub
        gc.collect()
        release_free_heap()
        kept = _status()["RssAnon"]
        results.append(
            {"max_grad_rows": rows, "dtype": args.dtype, "step": step, "rows": n_rows, "forward": fwd, "backward": bwd, "kept": kept}
        )
    return results


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-grad-rows", type=int, nargs="+", default=[3, 6], help="piece sizes, one fresh process each (0: one piece)")
    parser.add_argument("--model", default="embedded", help="backbone (HF id, local folder or .gguf; default the embedded model)")
    parser.add_argument("--dtype", default="float32", help="model dtype (auto, float32, bfloat16)")
    parser.add_argument("--paraphrases", type=int, nargs="*", default=[1, 2, 3], help="paraphrases in the pool (the config's)")
    parser.add_argument("--layouts", type=int, default=6, help="training layouts in the pool (the config's)")
    parser.add_argument("--sample", type=int, default=2, help="readings per step (the config's)")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1], help="which steps' draws to run")
    parser.add_argument("--target", default="SAU", help="country")
    parser.add_argument("--no-heap-release", action="store_true", help="no malloc_trim before each piece (the code before the fix)")
    parser.add_argument("--pad-multiple", type=int, default=None, help="pad a draw's rows to this multiple (default: the package's)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.one is not None:
        for r in one(args, args.one):
            print(json.dumps(r), flush=True)
        return []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    results: list[dict[str, object]] = []
    for rows in args.max_grad_rows:
        child = subprocess.run([sys.executable, __file__, *forwarded, "--one", str(rows)], capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"max_grad_rows {rows}: the child process failed: {child.stderr.strip().splitlines()[-1:]}")
        results += [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    print("| max_grad_rows | dtype | step | rows | forward s | forward peak GiB | backward s | backward peak GiB (RssFile) | kept GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        f, b = r["forward"], r["backward"]
        cells = [
            r["max_grad_rows"],
            r["dtype"],
            r["step"],
            r["rows"],
            f["seconds"],
            f["VmHWM"],
            b["seconds"],
            f"{b['VmHWM']} ({b['RssFile']})",
            r["kept"],
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return results


if __name__ == "__main__":
    main()
