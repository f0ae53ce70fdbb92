"""Load: DE with a population of 64 runs in bounded memory (nevergrad's archive is pruned).

The run is a child process so that its own peak RSS is measured, not the test runner's. The peak
and the per-generation RSS are printed (run with -s to see them) and quoted in docs/reliability.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import psutil
from reliability_helpers import REPO, fit_args, meta_step

from culturalign.blackbox.de import DE
from culturalign.blackbox.protocol import SearchSetup
from culturalign.blackbox.replay import AskTellRecord
from culturalign.checkpoint.format import load_last

POPSIZE, GENERATIONS = 64, 5

WRAPPER = (
    "import resource, sys; from culturalign.cli import run; run(sys.argv[1:]); "
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def test_de_population_64_has_bounded_memory(tiny_model_dir, mini_survey, tmp_path):
    argv = fit_args(
        tiny_model_dir,
        mini_survey,
        tmp_path,
        "--search.space",
        "full",
        "--prompt.num_virtual_tokens",
        "8",
        budget=POPSIZE * GENERATIONS,
        popsize=POPSIZE,
    )
    run_dir = tmp_path / "rel"
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    rss_at: dict[int, int] = {}  # generation -> RSS right after it was saved
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        step = meta_step(run_dir)
        if step > 0 and step not in rss_at:
            try:
                rss_at[step] = ps.memory_info().rss
            except psutil.NoSuchProcess:
                break
        time.sleep(0.01)
    out = proc.communicate()[0].decode(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    peak_mib = int(re.search(r"PEAK_RSS_KB (\d+)", out).group(1)) / 1024
    growth = {g: round((r - rss_at[min(rss_at)]) / 2**20, 1) for g, r in sorted(rss_at.items())}
    print(
        f"\nDE popsize {POPSIZE}, {GENERATIONS} generations, {8 * 32} dims: peak RSS {peak_mib:.0f} MiB; "
        f"RSS growth after generation 1 (MiB): {growth}"
    )

    _, meta, state = load_last(run_dir)
    assert meta["evaluations"] == POPSIZE * GENERATIONS
    # The optimizer as resume rebuilds it (a replay of the record into a fresh DE with the run's setup).
    search = meta["search"]
    optimizer = DE(popsize=POPSIZE)
    optimizer.setup(SearchSetup(dim=search["dim"], budget=search["budget"], sigma=search["sigma"], seed=meta["seed"]))
    AskTellRecord.from_state(state, run_dir).replay(optimizer, run_dir)
    # Pruning(min_len=popsize, max_len=4 * popsize): without it the archive holds all 320 points.
    assert len(optimizer._opt.archive) <= 4 * POPSIZE, len(optimizer._opt.archive)
    assert len(rss_at) >= GENERATIONS - 2, rss_at  # sampled most generations
    later = [growth[g] for g in growth if g >= 3]
    assert max(later) - min(later) < 64, f"RSS keeps growing across generations: {growth}"
    # Measured 564 MiB (2-core dev machine, torch 2.13 CPU; mostly the imported libraries): 900 MiB leaves
    # room for noise, and a run that doubles the process's memory fails (2048 never could).
    assert peak_mib < 900, f"peak RSS {peak_mib:.0f} MiB (measured 564 MiB when this bound was set)"
