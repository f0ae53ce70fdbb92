"""Replay a finished DE run's record (its asks and told losses) into DE offline: no model, seconds.

The record in <run>/last/state.safetensors is the run's whole optimizer state, so a fresh DE with the
run's settings, told the recorded losses, asks the run's candidates again. This prints, per
generation, the best loss told so far, the mean loss and the population's spread per coordinate
(how docs/optimizers.md, "Restarts", found stagnation rather than collapse); with `--restart-after N`
it also says after which generations DE with restarts would restart, and the first generation whose
candidates would differ from the run's (none: the run with restarts is the same run).

    python experiments/de_replay.py checkpoints/de-sau
    python experiments/de_replay.py /tmp/mrbf/sau-s1 --restart-after 15 --restart-sigma 0.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from culturalign.blackbox.de import DE
from culturalign.blackbox.protocol import SearchSetup
from culturalign.blackbox.replay import AskTellRecord, digest


def replay(run_dir: Path, restart_after: int | None, restart_sigma: float) -> dict[str, object]:
    meta = json.loads((run_dir / "meta.json").read_text())
    record = AskTellRecord.from_state(load_file(str(run_dir / "last" / "state.safetensors")), run_dir / "last")
    config = {**meta["optimizer"]["config"], "restart_after": restart_after, "restart_sigma": restart_sigma}
    de = DE(**config)
    de.setup(SearchSetup(meta["search"]["dim"], meta["search"]["budget"], meta["search"]["sigma"], meta["seed"]))
    rows, restarts, differs, best = [], [], None, np.inf
    for g, (want, losses) in enumerate(zip(record.digests, record.losses), start=1):
        z = de.ask()
        if digest(z) != want:
            differs = g  # from here on the run with these settings would ask other candidates
            break
        before = de.progress().get("restarts", 0)
        de.tell(z, losses)
        if de.progress().get("restarts", 0) > before:
            restarts.append(g)
        best = min(best, float(losses.min()))
        members = [p.value for p in de._opt.population.values()]  # none right after a restart: not asked yet
        spread = float(np.stack(members).std(0).mean()) if members else float("nan")
        rows.append({"generation": g, "best": best, "mean": float(losses.mean()), "spread": spread})
    return {"generations": rows, "restarts_after": restarts, "first_differing_generation": differs}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a DE run folder (meta.json, last/state.safetensors)")
    parser.add_argument("--restart-after", type=int, default=None, help="replay into DE with this restart_after")
    parser.add_argument("--restart-sigma", type=float, default=0.5, help="and this restart_sigma")
    args = parser.parse_args(argv)
    out = replay(args.run_dir, args.restart_after, args.restart_sigma)
    for r in out["generations"]:
        spread = "  new" if r["spread"] != r["spread"] else f"{r['spread']:5.2f}"  # NaN: a fresh population
        print(f"gen {r['generation']:3d}  best {r['best']:7.2f}  mean {r['mean']:7.2f}  spread {spread}")
    print(f"restarts after generations: {out['restarts_after']}; first differing generation: {out['first_differing_generation']}")
    return out


if __name__ == "__main__":
    main()
