"""Every registered black-box optimizer, built-in or plugin, through the same checks on the tiny model.

A few generations through the CLI, a state round trip (the record of asks and tells, as tensors,
replayed into a fresh instance), and exact resume: stopped at generation k (by budget, or SIGKILLed
in a subprocess) and resumed, a run ends with the same best loss, prompt tensor and history as an
uninterrupted one, bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from safetensors.torch import load_file
from tiny import tiny_fit_argv

from culturalign.blackbox.loop import HISTORY_COLUMNS, read_history
from culturalign.blackbox.protocol import BlackBoxOptimizer, SearchSetup
from culturalign.blackbox.replay import AskTellRecord
from culturalign.cli import run
from culturalign.errors import CulturalignError
from culturalign.optimizers.base import discover

BLACKBOX = sorted(name for name, cls in discover().items() if issubclass(cls, BlackBoxOptimizer))
POP, GENS, K = 4, 3, 1  # population, generations of a full run, generation a run is stopped at
DOCS = Path(__file__).parents[1] / "docs" / "optimizers.md"


def fit_args(model_dir: Path, root: Path, name: str, optimizer: str, generations: int, resume: str) -> list[str]:
    budget = str(POP * generations)
    search = ("--search.dim", "8", "--search.budget", budget, "--run.seed", "3", "--run.name", name, "--run.resume", resume)
    return tiny_fit_argv(model_dir, root, "--optimizer", optimizer, "--optimizer.popsize", str(POP), *search)


def outcome(run_dir: Path) -> tuple[float, torch.Tensor, list[list[str]]]:
    """Best loss, best prompt tensor, history without the wall-clock column."""
    meta = json.loads((run_dir / "meta.json").read_text())
    prompt = load_file(str(run_dir / "adapter_model.safetensors"))["prompt_embeddings"]
    rows = [[r[c] for c in HISTORY_COLUMNS if c != "seconds"] for r in read_history(run_dir)]
    return meta["best_loss"], prompt, rows


def assert_same_run(a: Path, b: Path) -> None:
    loss_a, prompt_a, hist_a = outcome(a)
    loss_b, prompt_b, hist_b = outcome(b)
    assert len(hist_a) == GENS  # one row per generation
    assert hist_a == hist_b
    assert loss_a == loss_b
    assert torch.equal(prompt_a, prompt_b)


def test_shipped_optimizers_are_registered():
    missing = {"DE", "CMAES", "PSO", "RS"} - set(BLACKBOX)
    assert not missing, f"{missing} not installed: run `pip install -e plugins/cmaes -e plugins/pso` (make install)"
    assert "GD" in discover() and "GD" not in BLACKBOX  # registered the same way, but not ask/tell


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory):
    """One full reference run per optimizer, made on first use."""
    root = tmp_path_factory.mktemp("reference")
    done: dict[str, Path] = {}

    def get(optimizer: str) -> Path:
        if optimizer not in done:
            run(fit_args(tiny_model_dir, root, optimizer, optimizer, GENS, "false"))
            done[optimizer] = root / optimizer
        return done[optimizer]

    return get


@pytest.mark.parametrize("optimizer", BLACKBOX)
def test_runs_a_few_generations(optimizer, uninterrupted, tiny_backbone):
    run_dir = uninterrupted(optimizer)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["optimizer"]["name"] == optimizer and meta["optimizer"]["config"]["popsize"] == POP
    hist = read_history(run_dir)  # the run's one metrics log: one row per generation
    assert [int(h["evaluations"]) for h in hist] == [POP * g for g in range(1, GENS + 1)]
    best = [h["best_loss"] for h in hist]
    assert best == sorted(best, reverse=True) and best[-1] <= min(h["min_loss"] for h in hist)
    # The saved prompt really scores the reported best loss under the same fitness.
    from culturalign.checkpoint.format import load_prompt
    from culturalign.survey.definition import load_survey
    from culturalign.survey.fitness import Answering, SurveyFitness
    from culturalign.survey.scoring import Scoring

    prompt, _ = load_prompt(run_dir)
    fitness = SurveyFitness(tiny_backbone, load_survey("vsm13"), meta["target"]["scores"], Scoring(), Answering())
    assert float(fitness(prompt).losses[0]) == pytest.approx(meta["best_loss"], abs=1e-9)


def _fresh(optimizer: str, dim: int, seed: int = 7, budget: int = 60) -> BlackBoxOptimizer:
    opt = discover()[optimizer](popsize=5)
    opt.setup(SearchSetup(dim=dim, budget=budget, sigma=0.5, seed=seed))
    return opt


def _generation(opt: BlackBoxOptimizer, record: AskTellRecord | None = None) -> np.ndarray:
    z = opt.ask()
    losses = ((z - 0.3) ** 2).sum(1)
    opt.tell(z, losses)
    if record is not None:
        record.add(z, losses)
    return z


@pytest.mark.parametrize("dim", [12, 2000])  # 2000: CMA-ES switches to a diagonal covariance
@pytest.mark.parametrize("optimizer", BLACKBOX)
def test_state_round_trip(optimizer, dim, tmp_path):
    """Population size is what was asked; the record survives safetensors and, replayed into a fresh
    instance (other budget, other global generator state), continues identically; numpy's global
    generator is neither used nor disturbed (so resume cannot depend on it)."""
    from culturalign.checkpoint.format import load_last, save_last

    a, record = _fresh(optimizer, dim), AskTellRecord()
    np.random.seed(1)
    for _ in range(3):
        assert _generation(a, record).shape == (5, dim)
    assert np.random.rand() == np.random.RandomState(1).rand()  # the global generator was not touched
    save_last(tmp_path, torch.zeros(2, 3), {"step": 3}, record.state())
    state = load_last(tmp_path)[2]
    assert set(state) == {"asks_sha256", "losses"} and state["losses"].dtype == torch.float64
    b = _fresh(optimizer, dim, budget=600)  # a resumed run may be given a larger budget
    np.random.seed(12345)  # a process that resumes has another global generator state
    AskTellRecord.from_state(state, tmp_path).replay(b, tmp_path)
    for _ in range(3):
        assert np.array_equal(_generation(a), _generation(b))
    assert a.recommend().shape == (dim,) and np.array_equal(a.recommend(), b.recommend())


@pytest.mark.parametrize("initialization", ["LHS", "QR"])
def test_de_stratified_initialization_is_stratified_and_resumes_exactly(initialization, tmp_path):
    """`--optimizer.initialization LHS|QR` (nevergrad's samplers for DE's first population) is seeded by the
    run like the rest: a replayed record continues identically. LHS puts each coordinate's first-population
    draws in distinct quantile bins of N(0, sigma^2), one per member."""
    from math import erf, sqrt

    from culturalign.blackbox.de import DE

    def fresh() -> DE:
        opt = DE(popsize=5, initialization=initialization)
        opt.setup(SearchSetup(dim=12, budget=60, sigma=0.5, seed=7))
        return opt

    a, record = fresh(), AskTellRecord()
    first = _generation(a, record)
    if initialization == "LHS":
        cdf = np.vectorize(lambda x: 0.5 * (1 + erf(x / 0.5 / sqrt(2))))  # of N(0, 0.5^2)
        bins = np.floor(cdf(first) * 5).astype(int)  # the quantile bin of each draw, per coordinate
        assert all(sorted(bins[:, j]) == [0, 1, 2, 3, 4] for j in range(12)), bins
    _generation(a, record)
    b = fresh()
    np.random.seed(12345)
    record.replay(b, tmp_path)
    for _ in range(3):
        assert np.array_equal(_generation(a), _generation(b))


@pytest.mark.parametrize("optimizer", BLACKBOX)
def test_replay_into_another_setup_is_refused(optimizer, tmp_path):
    """Resuming with another seed (or settings, popsize, library version) refuses at the first differing ask."""
    a, record = _fresh(optimizer, 12), AskTellRecord()
    for _ in range(2):
        _generation(a, record)
    with pytest.raises(CulturalignError) as err:
        record.replay(_fresh(optimizer, 12, seed=8), tmp_path)
    message = str(err.value)
    assert (
        message.startswith(f"cannot resume {tmp_path}: {optimizer} asks other candidates than the run recorded at generation 1 of 2")
        and "--run.resume false" in message
        and "\n" not in message
    )


def test_random_search_ignores_losses_and_samples_with_the_loops_sigma():
    """RS is the baseline: candidates z ~ N(0, sigma^2) around the init prompt, whatever the losses say."""
    a, b = _fresh("RS", 400), _fresh("RS", 400)
    za, zb = a.ask(), b.ask()
    a.tell(za, np.arange(5.0))
    b.tell(zb, -np.arange(5.0) * 1e6)
    za, zb = a.ask(), b.ask()
    assert np.array_equal(za, zb)
    assert abs(za.mean()) < 0.05 and za.std() == pytest.approx(0.5, rel=0.05)
    # popsize only batches: the same seed draws the same candidates in the same order.
    wide = discover()["RS"](popsize=10)
    wide.setup(SearchSetup(dim=400, budget=60, sigma=0.5, seed=7))
    narrow = _fresh("RS", 400)
    assert np.array_equal(wide.ask(), np.concatenate([narrow.ask(), narrow.ask()]))


def test_replay_cost_benchmark_runs(capsys):
    """benchmarks/replay_cost.py (its figures are in docs/checkpoints.md) on a tiny budget, every optimizer."""
    import runpy

    bench = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "replay_cost.py"))
    bench["main"](["--evaluations", "32", "--popsize", "8", "--dims", "8", "--optimizers", ",".join(BLACKBOX)])
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows == ["optimizer", *BLACKBOX]  # the header, then one row each


@pytest.mark.parametrize("optimizer", BLACKBOX)
def test_resume_after_generation_k_is_exact(optimizer, uninterrupted, tiny_model_dir, tmp_path):
    run(fit_args(tiny_model_dir, tmp_path, "split", optimizer, K, "false"))
    assert len(read_history(tmp_path / "split")) == K
    run(fit_args(tiny_model_dir, tmp_path, "split", optimizer, GENS, "true"))
    assert_same_run(uninterrupted(optimizer), tmp_path / "split")


def _last_step(run_dir: Path) -> int:
    """Generation of the resume point; a kill mid-swap leaves it in last.old (what resume falls back to)."""
    for name in ("last", "last.old"):
        try:
            return int(json.loads((run_dir / name / "meta.json").read_text())["step"])
        except (OSError, ValueError, KeyError):  # not written yet, or mid-swap
            continue
    return 0


# A SIGKILL lands in the shared loop's write path, which is the same for every optimizer; each
# optimizer's own state round trip is what test_resume_after_generation_k_is_exact checks for all of
# them. So the kill itself runs on the default (DE) and one plugin (CMA-ES, a foreign library's
# state), not on all four (each is a separate interpreter, ~13 s on 2 cores).
KILLED = [name for name in BLACKBOX if name in ("DE", "CMAES")]


@pytest.mark.parametrize("optimizer", KILLED)
def test_sigkill_then_resume_is_exact(optimizer, uninterrupted, tiny_model_dir, tmp_path):
    args = fit_args(tiny_model_dir, tmp_path, "killed", optimizer, GENS, "false")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "culturalign.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while _last_step(tmp_path / "killed") < K and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    step = _last_step(tmp_path / "killed")
    assert K <= step < GENS, f"killed with the resume point at generation {step}"
    run(fit_args(tiny_model_dir, tmp_path, "killed", optimizer, GENS, "true"))
    assert_same_run(uninterrupted(optimizer), tmp_path / "killed")


# -- plugins on the path -------------------------------------------------------------------------


def _docs_example() -> tuple[str, dict]:
    """The example plugin of docs/optimizers.md: its module source and its pyproject."""
    blocks = re.findall(r"```(python|toml)\n(.*?)```", DOCS.read_text(), re.S)
    module = next(code for lang, code in blocks if lang == "python" and "class LocalSearch" in code)
    pyproject = next(code for lang, code in blocks if lang == "toml" and "culturalign.optimizers" in code)
    return module, tomllib.loads(pyproject)


def _put_plugin_on_path(where: Path, dist: str, version: str, entry_points: dict[str, str], monkeypatch) -> None:
    """What `pip install` leaves behind, minus the copying: a module folder with a dist-info on sys.path."""
    info = where / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("[culturalign.optimizers]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(where))


def test_throwaway_plugin_runs_by_name_and_resumes_exactly(tiny_model_dir, tmp_path, monkeypatch):
    module, pyproject = _docs_example()
    site = tmp_path / "site"
    site.mkdir()
    (site / "culturalign_localsearch.py").write_text(module)
    eps = pyproject["project"]["entry-points"]["culturalign.optimizers"]
    _put_plugin_on_path(site, pyproject["project"]["name"], pyproject["project"]["version"], eps, monkeypatch)
    assert "LocalSearch" in discover()
    decay = ["--optimizer.decay", "0.8"]
    result = run(fit_args(tiny_model_dir, tmp_path, "local", "LocalSearch", GENS, "false") + decay)
    meta = json.loads((tmp_path / "local" / "meta.json").read_text())
    assert meta["optimizer"] == {"name": "LocalSearch", "config": {"popsize": POP, "decay": 0.8}}
    assert result["evaluations"] == GENS * POP and result["best_loss"] == meta["best_loss"]
    # The plugin has no state code: resume replays its recorded asks and tells, bit for bit.
    run(fit_args(tiny_model_dir, tmp_path, "split", "LocalSearch", K, "false") + decay)
    run(fit_args(tiny_model_dir, tmp_path, "split", "LocalSearch", GENS, "true") + decay)
    assert_same_run(tmp_path / "local", tmp_path / "split")


def test_two_plugins_with_one_name_fail_naming_both(tiny_model_dir, tmp_path, monkeypatch, capsys):
    module, _ = _docs_example()
    for dist, version in (("culturalign-dup-a", "0.1"), ("culturalign-dup-b", "0.2")):
        site = tmp_path / dist
        (site).mkdir()
        (site / "culturalign_localsearch.py").write_text(module)
        _put_plugin_on_path(site, dist, version, {"Twin": "culturalign_localsearch:LocalSearch"}, monkeypatch)
    with pytest.raises(CulturalignError, match="Twin") as err:
        discover()
    assert "culturalign-dup-a 0.1" in str(err.value) and "culturalign-dup-b 0.2" in str(err.value)
    with pytest.raises(SystemExit) as exc:
        run(["fit", "--optimizer", "DE", "--model", str(tiny_model_dir)])
    message = capsys.readouterr().err
    assert exc.value.code == 2 and "culturalign-dup-a" in message and "culturalign-dup-b" in message


def _de(restart_after: int | None, seed: int = 7) -> BlackBoxOptimizer:
    opt = discover()["DE"](popsize=6, crossover=0.9, restart_after=restart_after, restart_sigma=0.25)
    opt.setup(SearchSetup(dim=12, budget=600, sigma=2.0, seed=seed))
    return opt


def test_de_restarts_around_its_best_point_after_a_stall(tmp_path):
    """After `restart_after` generations that do not beat the best told loss, DE draws a fresh population
    around the best point with spread restart_sigma * sigma; the run's best point is what it recommends;
    a replayed record restarts at the same generation with the same draws (resume stays exact)."""
    a, record = _de(restart_after=3), AskTellRecord()
    z = a.ask()
    losses = np.arange(6.0)  # generation 1: candidate 0 is the best ever told
    a.tell(z, losses)
    record.add(z, losses)
    best = z[0].copy()
    for g in range(3):  # three generations, none better: the third triggers the restart
        assert a.progress() == {"restarts": 0}
        z = a.ask()
        a.tell(z, np.full(6, 10.0 + g))
        record.add(z, np.full(6, 10.0 + g))
    assert a.progress() == {"restarts": 1}
    assert np.array_equal(a.recommend(), best)
    fresh = a.ask()  # the restarted population: centred on the best point, spread 0.25 * 2.0
    assert np.abs(fresh.mean(0) - best).mean() < 0.5 and 0.2 < (fresh - best).std() < 1.0
    assert np.abs(fresh - best).mean() < np.abs(z - best).mean()  # tighter than the stalled population
    b = _de(restart_after=3)
    record.replay(b, tmp_path)
    assert b.progress() == {"restarts": 1} and np.array_equal(b.ask(), fresh)
    # Without restarts the same record asks the stalled population's next generation instead.
    c = _de(restart_after=None)
    record.replay(c, tmp_path)
    assert c.progress() == {} and not np.array_equal(c.ask(), fresh)


@pytest.mark.parametrize("flag, value", [("restart_after", "0"), ("restart_sigma", "0")])
def test_de_restart_settings_are_checked(flag, value, tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(tiny_fit_argv(tiny_model_dir, tmp_path, "--optimizer", "DE", f"--optimizer.{flag}", value))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and any(f"optimizer.{flag}={value}" in line for line in err)


def test_de_with_restarts_runs_and_reports_them(tiny_model_dir, tmp_path, capsys):
    """From the CLI: a stall of one generation restarts DE; meta.json and the closing line count the restarts."""
    run(fit_args(tiny_model_dir, tmp_path, "r", "DE", 8, "false") + ["--optimizer.restart_after", "1"])
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    closing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["restarts"] == closing["restarts"] >= 1 and meta["optimizer"]["config"]["restart_after"] == 1


def test_de_replay_script_replays_a_run_offline(uninterrupted):
    """experiments/de_replay.py (the offline replay behind docs/optimizers.md, "Restarts") on a tiny DE run:
    every recorded generation replays with the run's settings, and none restarts without restart_after."""
    import runpy

    script = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "de_replay.py"))
    out = script["main"]([str(uninterrupted("DE"))])
    best = [r["best"] for r in out["generations"]]
    assert len(best) == GENS and best == sorted(best, reverse=True)
    assert out["first_differing_generation"] is None and out["restarts_after"] == []


def test_de_replay_script_replays_a_run_with_restarts(tiny_model_dir, tmp_path):
    """A run that restarted replays with its own restart_after: the same restarts, no differing generation, and
    the generation right after a restart (a fresh population, not asked yet) has no spread rather than an error."""
    import runpy

    run(fit_args(tiny_model_dir, tmp_path, "r", "DE", 8, "false") + ["--optimizer.restart_after", "1"])
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    script = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "de_replay.py"))
    out = script["main"]([str(tmp_path / "r"), "--restart-after", "1"])
    assert len(out["restarts_after"]) == meta["restarts"] >= 1 and out["first_differing_generation"] is None
    fresh = [r for r in out["generations"] if r["generation"] in out["restarts_after"]]
    assert fresh and all(r["spread"] != r["spread"] for r in fresh)  # NaN: the new population is empty until asked


def test_progress_bar_shows_search_time_left_under_max_time(tiny_model_dir, tmp_path, capsys):
    """When --search.max_time binds, the bar's ETA (from the evaluation budget) is wrong; a `left=m:ss` field is not."""
    run(
        tiny_fit_argv(
            tiny_model_dir,
            tmp_path,
            "--optimizer",
            "RS",
            "--optimizer.popsize",
            "4",
            "--search.budget",
            "8",
            "--search.max_time",
            "3600",
            "--run.name",
            "t",
        )
    )
    assert re.search(r"left=(59|60):\d\d", capsys.readouterr().err)
    run(tiny_fit_argv(tiny_model_dir, tmp_path, "--optimizer", "RS", "--optimizer.popsize", "4", "--search.budget", "8", "--run.name", "u"))
    assert "left=" not in capsys.readouterr().err  # no time limit, no field
