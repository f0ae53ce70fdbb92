"""Training over renderings (wording x layout x answer order) through the one SurveyFitness: per-reading
losses and their combination, training layouts from the train split only, seeded draws of readings
(GD batches, black-box common random numbers), and row micro-batches with gradients."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from tiny import tiny_fit_argv

from culturalign.cli import run
from culturalign.errors import CulturalignError
from culturalign.model.soft_prompt import init_prompt
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.layouts import apply, sample_layouts
from culturalign.survey.readings import Combine, draw_readings
from culturalign.survey.scoring import Scoring

SAU = {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14}


@pytest.fixture(scope="module")
def prompts(tiny_backbone):
    return torch.stack([init_prompt(tiny_backbone, 4, "random", seed=s) for s in range(3)])


def fitness(backbone, surveys, debias=True, combine=None, **answering):
    return SurveyFitness(backbone, surveys, SAU, Scoring(), Answering(debias=debias, **answering), combine)


def test_per_order_loss_is_the_loss_of_that_order_asked_alone(tiny_backbone, prompts):
    base = load_survey("vsm13")
    both = fitness(tiny_backbone, base, combine=Combine("per_order"))(prompts)
    forward = fitness(tiny_backbone, base, debias=False)(prompts)
    reverse = fitness(tiny_backbone, replace(base, reverse_order=True), debias=False)(prompts)
    assert torch.allclose(both.group_losses[:, 0], forward.losses, atol=1e-9)
    assert torch.allclose(both.group_losses[:, 1], reverse.losses, atol=1e-9)
    assert torch.allclose(both.losses, (forward.losses + reverse.losses) / 2, atol=1e-9)
    # The pooled reading (the default) is another number: the orders' answers are averaged first.
    pooled = fitness(tiny_backbone, base)(prompts)
    assert torch.equal(pooled.losses, pooled.wording_losses[:, 0])
    assert (pooled.losses - both.losses).abs().max() > 1e-6


def test_default_reading_is_unchanged_and_one_order_reads_the_same_either_way(tiny_backbone, prompts):
    surveys = [load_survey("vsm13"), load_survey("vsm13").with_paraphrase(0)]
    pooled = fitness(tiny_backbone, surveys)(prompts)
    assert torch.equal(pooled.losses, pooled.wording_losses.mean(-1))  # what debias always computed
    one_order = [fitness(tiny_backbone, surveys, debias=False, combine=Combine(r))(prompts) for r in ("pooled", "per_order")]
    assert torch.equal(one_order[0].losses, one_order[1].losses)


def test_max_and_mean_std_combinations(tiny_backbone, prompts):
    surveys = [load_survey("vsm13"), load_survey("vsm13").with_paraphrase(1)]
    res = {how: fitness(tiny_backbone, surveys, combine=Combine("per_order", how, 0.5))(prompts) for how in ("mean", "max", "mean_std")}
    g = res["mean"].group_losses
    assert g.shape == (3, 4) and torch.allclose(res["mean"].losses, g.mean(-1))
    assert (res["max"].losses >= res["mean"].losses).all() and torch.allclose(res["max"].losses, g.max(-1).values)
    assert torch.allclose(res["mean_std"].losses, g.mean(-1) + 0.5 * g.std(-1, unbiased=False))


def test_gradient_of_the_combined_loss_reaches_the_prompt(tiny_backbone, prompts):
    f = fitness(tiny_backbone, load_survey("vsm13"), combine=Combine("per_order", "max"))
    p = prompts[0].clone().requires_grad_(True)
    f(p, grad=True).losses[0].backward()
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_a_subset_scores_its_readings_as_the_whole_pool_does(tiny_backbone, prompts):
    surveys = [load_survey("vsm13")] + [apply(load_survey("vsm13"), L) for L in sample_layouts(2, 0)]
    whole = fitness(tiny_backbone, surveys, combine=Combine("per_order"))
    assert whole.num_readings == 6 and whole.subset(range(6)) is whole
    res, part = whole(prompts), whole.subset([4, 1])
    assert part is whole.subset([1, 4]) and part.num_readings == 2  # cached, order-free
    assert part.reading_names() == [whole.reading_names()[1], whole.reading_names()[4]]
    assert torch.allclose(part(prompts).group_losses, res.group_losses[:, [1, 4]], atol=1e-4)
    # A draw's rows are padded to a multiple of 16 tokens (few distinct shapes: oneDNN keeps a kernel
    # per shape) and still score as the whole pool's exact-length rows do (the line above).
    widths = {ids.shape[1] for _, ids, _ in part.chunks}
    assert all(w % 16 == 0 for w in widths) and any(ids.shape[1] % 16 for _, ids, _ in whole.chunks)
    pooled = fitness(tiny_backbone, surveys)
    assert pooled.num_readings == 3 and pooled.subset([2]).num_rows == 2 * 24  # a pooled reading keeps both orders
    with pytest.raises(CulturalignError, match="not a non-empty selection"):
        whole.subset([6])


def test_draws_are_seeded_sized_and_never_empty():
    draws = [draw_readings(10, seed=3, step=s, sample=4) for s in range(20)]
    assert all(len(d) == 4 and d == sorted(set(d)) for d in draws)
    assert draws == [draw_readings(10, seed=3, step=s, sample=4) for s in range(20)]  # same seed, same draws
    assert len({tuple(d) for d in draws}) > 10  # a fresh draw each step
    assert draws != [draw_readings(10, seed=4, step=s, sample=4) for s in range(20)]
    assert draw_readings(3, 0, 5, sample=8) == [0, 1, 2] and draw_readings(3, 0, 5) == [0, 1, 2]
    dropped = [draw_readings(4, seed=1, step=s, dropout=0.9) for s in range(50)]
    assert all(dropped) and len({tuple(d) for d in dropped}) > 1


def test_reading_and_combination_names_are_checked():
    with pytest.raises(CulturalignError, match="survey.combine='median'"):
        Combine("pooled", "median")
    with pytest.raises(CulturalignError, match="survey.reading='each'"):
        Combine("each")


def _fit(tiny_model_dir, root, *extra):
    return run(tiny_fit_argv(tiny_model_dir, root, *extra))


@pytest.mark.parametrize("seed, split", [(10_000, "development"), (20_000, "test")])
def test_training_on_a_development_or_test_layout_is_refused(tiny_model_dir, tmp_path, capsys, seed, split):
    with pytest.raises(SystemExit) as exc:
        _fit(tiny_model_dir, tmp_path, "--survey.layouts", "2", "--survey.layouts_seed", str(seed))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert f"--survey.layouts_seed {seed} is a {split} layout" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "de-sau").exists()  # refused before a run folder or a model load


def test_survey_command_points_to_its_own_layout_options(tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["survey", "--model", str(tiny_model_dir), "--survey.layouts", "2"])
    assert exc.value.code == 2 and "--layouts N --layouts_seed S" in capsys.readouterr().err


# -- black-box: common random numbers ---------------------------------------------------------------
POP = 4
SAMPLED = ["--survey.layouts", "2", "--survey.reading", "per_order", "--answering.debias", "true", "--survey.sample", "2"]


def _blackbox(tiny_model_dir, root, name, generations, resume="false", *extra):
    return _fit(
        tiny_model_dir,
        root,
        "--optimizer",
        "DE",
        "--optimizer.popsize",
        str(POP),
        "--search.dim",
        "8",
        "--search.budget",
        str(POP * generations),
        "--run.seed",
        "3",
        "--run.name",
        name,
        "--run.resume",
        resume,
        *SAMPLED,
        *extra,
    )


def test_every_candidate_of_a_generation_is_scored_on_one_draw_redrawn_each_generation(tiny_model_dir, tmp_path, monkeypatch):
    calls: list[tuple[tuple[str, ...], int]] = []
    scored = SurveyFitness.__call__

    def spy(self, prompts, grad=False):
        calls.append((tuple(self.reading_names()), 1 if prompts is None or prompts.dim() == 2 else prompts.shape[0]))
        return scored(self, prompts, grad)

    monkeypatch.setattr(SurveyFitness, "__call__", spy)
    # 2 candidates per forward (48 rows each): a generation of 4 candidates + the incumbent is 3 calls.
    out = _blackbox(tiny_model_dir, tmp_path, "crn", 3, "false", "--answering.max_batch_rows", "96")
    pool = calls[0][0]  # the no-prompt baseline is read on the whole pool: 3 wordings-in-layouts x 2 orders
    assert len(pool) == 6 and out["sample"] == 2 and out["search"]["sample"] == 2
    sampled = [c for c in calls if len(c[0]) == 2]
    assert [n for _, n in sampled] == [2, 2, 1] * 3  # POP candidates and the incumbent, nothing else
    draws = [sampled[3 * g][0] for g in range(3)]
    for g in range(3):
        assert {names for names, _ in sampled[3 * g : 3 * g + 3]} == {draws[g]}  # one draw per generation
        assert list(draws[g]) == [pool[r] for r in draw_readings(6, seed=3, step=g + 1, sample=2)]
    assert len(set(draws)) > 1  # redrawn between generations
    assert out["best"]["loss"] == pytest.approx(float(out["best_loss"]))  # the final report is on the whole pool


def _outcome(run_dir):
    import json

    from safetensors.torch import load_file

    from culturalign.blackbox.loop import HISTORY_COLUMNS, read_history

    meta = json.loads((run_dir / "meta.json").read_text())
    rows = [[r[c] for c in HISTORY_COLUMNS if c != "seconds"] for r in read_history(run_dir)]
    return meta["best_loss"], load_file(str(run_dir / "adapter_model.safetensors"))["prompt_embeddings"], rows


def test_resume_of_a_sampled_blackbox_run_is_bit_identical(tiny_model_dir, tmp_path):
    _blackbox(tiny_model_dir, tmp_path, "whole", 3)
    _blackbox(tiny_model_dir, tmp_path, "split", 1)
    _blackbox(tiny_model_dir, tmp_path, "split", 3, "true")
    (loss_a, prompt_a, hist_a), (loss_b, prompt_b, hist_b) = _outcome(tmp_path / "whole"), _outcome(tmp_path / "split")
    assert len(hist_a) == 3 and hist_a == hist_b and loss_a == loss_b and torch.equal(prompt_a, prompt_b)


# -- GD: a fresh draw of (wording, layout, order) per step --------------------------------------------
def test_gd_on_layouts_runs_end_to_end_from_the_cli(tiny_model_dir, tmp_path):
    out = _fit(
        tiny_model_dir,
        tmp_path,
        "--optimizer",
        "GD",
        "--optimizer.precision",
        "32-true",
        "--optimizer.lr",
        "0.3",
        "--optimizer.epochs",
        "1",
        "--data",
        "vsm13",
        "--data.steps_per_epoch",
        "3",
        *SAMPLED,
        "--survey.combine",
        "max",
        "--answering.max_grad_rows",
        "16",
        "--run.name",
        "gd-layouts",
    )
    assert out["survey"] == ["builtin:vsm13", "builtin:vsm13#base+layout0", "builtin:vsm13#base+layout1"]
    assert out["readings"] == {"reading": "per_order", "combine": "max"} and out["sample"] == 2
    s = out["folds"][0]["survey"]
    assert out["folds"][0]["global_step"] == 3 and s["after"]["loss"] > 0 and s["no_prompt"]["loss"] > 0


def test_gd_refuses_two_ways_of_thinning_a_step(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _fit(tiny_model_dir, tmp_path, "--optimizer", "GD", "--survey.sample", "2", "--optimizer.wording_dropout", "0.3")
    assert exc.value.code == 2 and "use one of them" in capsys.readouterr().err


# -- micro-batches with gradients -------------------------------------------------------------------
@pytest.mark.parametrize("mode, calibrate", [("logits", True), ("cloze", False)])
def test_micro_batched_gradient_equals_the_one_graph_gradient(tiny_backbone, prompts, mode, calibrate):
    surveys = load_survey("vsm13")
    grads, losses = [], []
    for limit in (0, 13):  # 13 rows per piece: pieces end inside buckets and cross the answer orders
        f = fitness(tiny_backbone, surveys, combine=Combine("per_order", "mean_std"), mode=mode, calibrate=calibrate, max_grad_rows=limit)
        p = prompts[1].clone().requires_grad_(True)
        loss = f(p, grad=True).losses[0]
        loss.backward()
        grads.append(p.grad)
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_freed_heap_goes_back_before_every_piece_and_its_recomputation(tiny_backbone, prompts, monkeypatch):
    """Each checkpointed piece first returns the previous piece's freed activations to the OS (in the
    forward pass and again when the backward pass recomputes it), so a step's peak memory does not
    grow with the number of pieces (docs/robustness.md, "Where the memory goes")."""
    import culturalign.survey.fitness as fitness_module

    calls: list[int] = []
    monkeypatch.setattr(fitness_module, "release_free_heap", lambda: calls.append(1) or True)
    f = fitness(tiny_backbone, load_survey("vsm13"), max_grad_rows=13)
    pieces = sum(-(-len(rows) // 13) for rows, _, _ in f.chunks)
    p = prompts[1].clone().requires_grad_(True)
    loss = f(p, grad=True).losses[0]
    assert len(calls) == pieces > 1
    loss.backward()
    assert len(calls) == 2 * pieces


def test_release_free_heap_is_a_no_op_without_malloc_trim(monkeypatch):
    import sys

    from culturalign.model import heap

    if sys.platform.startswith("linux"):
        assert heap.release_free_heap() is True  # glibc: the call exists and ran
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    assert heap.release_free_heap() is False


def _faults_of_a_64_mb_block() -> int:
    """Minor page faults of allocating, touching and freeing one 64 MB float32 tensor (above glibc's 32 MB mmap ceiling)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(16 * 1024 * 1024)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_reused_heap_keeps_freed_blocks_for_the_next_generation_and_puts_the_defaults_back():
    """Outside, a large block is mapped and faulted in afresh every time; inside `reused_heap` the heap stops
    growing after a few blocks and the next ones reuse its pages; after it, such blocks are mapped afresh again.

    Why "after a few": PyTorch asks for 64-byte-aligned memory and glibc pads an aligned request, so a freed
    block is a few bytes too small for the next identical request until freed neighbours coalesce; until
    then the heap grows (strace: one `brk` of +64 MB per block). In 10 fresh processes the heap grew on 7-9
    of the first 10 blocks and on none of the next 22; in a long test process often on none. (One CI run
    asserted reuse on the second block and failed: 16384 of 16385 pages faulted in.) So this asserts that
    blocks 17-24 all reuse the heap's pages. (Whether a smaller block is reused afterwards depends on the
    heap state; not asserted.)"""
    from culturalign.model import heap

    if heap._mallopt() is None:
        pytest.skip("no glibc mallopt on this platform: reused_heap is a no-op")
    _faults_of_a_64_mb_block()
    outside = _faults_of_a_64_mb_block()
    assert outside > 0  # glibc maps a block this large afresh: the kernel faults its pages in again
    with heap.reused_heap() as changed:
        assert changed is True
        inside = [_faults_of_a_64_mb_block() for _ in range(24)]
    assert all(n * 4 < outside for n in inside[16:]), inside
    _faults_of_a_64_mb_block()
    assert _faults_of_a_64_mb_block() * 4 > outside  # back to mapping afresh


def test_a_black_box_run_keeps_freed_memory_and_restores_the_allocator(tiny_model_dir, tmp_path, monkeypatch):
    """A fit through the CLI runs inside `reused_heap`: mmap off and no trimming while it scores, defaults after."""
    from culturalign.model import heap

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(heap, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or 1)
    run(tiny_fit_argv(tiny_model_dir, tmp_path, "--optimizer", "RS", "--optimizer.popsize", "2", "--search.budget", "2", "--run.name", "h"))
    assert calls == [
        (heap.M_MMAP_MAX, 0),
        (heap.M_TRIM_THRESHOLD, heap.KEEP_ALL),
        (heap.M_MMAP_MAX, heap.AFTER_MMAP_MAX),
        (heap.M_MMAP_THRESHOLD, heap.AFTER_MMAP_THRESHOLD),
        (heap.M_TRIM_THRESHOLD, heap.AFTER_TRIM_THRESHOLD),
    ]


def test_reused_heap_undoes_what_it_set_when_glibc_refuses_a_setting(monkeypatch):
    from culturalign.model import heap

    calls: list[tuple[int, int]] = []
    refuse = (heap.M_TRIM_THRESHOLD, heap.KEEP_ALL)
    monkeypatch.setattr(heap, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or int((param, value) != refuse))
    with heap.reused_heap() as changed:
        assert changed is False
    assert calls[:2] == [(heap.M_MMAP_MAX, 0), refuse] and calls[2] == (heap.M_MMAP_MAX, heap.AFTER_MMAP_MAX)


def test_rows_padded_to_a_multiple_keep_their_tokens_at_the_right_end():
    from culturalign.model.batching import pad_rows

    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=0, left=True, multiple=4)
    assert ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]] and mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    ids, mask = pad_rows([[5, 6, 7, 9, 9]], pad_id=0, left=False, multiple=4)
    assert ids.shape == (1, 8) and mask.sum() == 5
    assert pad_rows([[1, 2]], pad_id=0)[0].shape == (1, 2)  # default: the longest row, no rounding


@pytest.mark.parametrize(
    "combine", [Combine("per_order"), Combine("pooled"), Combine("per_order", "max")], ids=["per_order", "pooled", "max"]
)
def test_a_draws_loss_is_read_from_the_whole_pools_scoring(tiny_backbone, prompts, combine):
    """loss_on(result, draw) is what subset(draw) would score, without the model: the sampled black-box
    loop divides each generation's best by the no-prompt loss on the same draw this way."""
    from types import SimpleNamespace

    from culturalign.blackbox.loop import generation_fitness, no_prompt_loss

    surveys = [load_survey("vsm13")] + [apply(load_survey("vsm13"), L) for L in sample_layouts(2, 0)]
    whole = fitness(tiny_backbone, surveys, combine=combine)
    res = whole(prompts)
    for draw in ([0], [2, 1], list(range(whole.num_readings))):
        assert torch.allclose(whole.loss_on(res, draw), whole.subset(draw)(prompts).losses, atol=1e-4)
    baseline = whole(None)
    ctx = SimpleNamespace(fitness=whole, seed=5, sample=2)  # what the loop reads of its FitContext
    for generation in (1, 2, 7):
        on_draw = no_prompt_loss(ctx, baseline, generation)
        assert on_draw == pytest.approx(float(generation_fitness(ctx, generation)(None).losses[0]), abs=1e-4)
    assert no_prompt_loss(SimpleNamespace(fitness=whole, seed=5, sample=0), baseline, 3) == float(baseline.losses[0])
