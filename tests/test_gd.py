"""GD on the soft prompt: frozen LM, CDEval / synthetic / survey objectives through the CLI, resume, sweep."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.cli import run
from culturalign.data import cdeval
from culturalign.data.choice import collate
from culturalign.data.folds import stratified_folds
from culturalign.gradient.datamodules import ChoiceDataModule
from culturalign.gradient.module import ChoiceObjective, SoftPromptModule, SurveyObjective, cosine_factor
from culturalign.model.chat import answer_token_ids
from culturalign.model.soft_prompt import init_prompt

FIXTURE = Path(__file__).parent / "fixtures" / "cdeval_small.json"


def gd(tiny_model_dir, root, *extra):
    """`culturalign fit --optimizer GD` on the tiny model, fp32, quick settings."""
    return run(
        [
            "fit",
            "--optimizer",
            "GD",
            "--model",
            str(tiny_model_dir),
            "--model.dtype",
            "float32",
            "--optimizer.precision",
            "32-true",
            "--prompt.num_virtual_tokens",
            "4",
            "--run.root",
            str(root),
            *extra,
        ]
    )


def test_training_changes_only_the_prompt(tiny_backbone):
    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    exs = cdeval.examples(rows, "IVR", high=True)
    plan = stratified_folds({e.group: e.stratum for e in exs}, 2, seed=0)
    dm = ChoiceDataModule(exs, tiny_backbone.tokenizer, plan, 0, batch_size=4)
    objective = ChoiceObjective(tiny_backbone, dm.prefix_ids, answer_token_ids(tiny_backbone.tokenizer, 2))
    v0 = init_prompt(tiny_backbone, 4, "random")
    module = SoftPromptModule(tiny_backbone, v0, objective, lr=0.1)
    assert [n for n, _ in module.named_parameters()] == ["prompt"]
    assert list(module.state_dict()) == ["prompt"]  # the LM is not a submodule: checkpoints stay tiny
    before = {k: v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    trainer = L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        precision="32-true",
    )
    trainer.fit(module, datamodule=dm)
    after = tiny_backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for p in tiny_backbone.model.parameters())
    assert not tiny_backbone.model.training
    assert (module.prompt.detach() - v0).abs().max() > 1e-3


def test_full_batch_steps_lower_the_training_loss(tiny_backbone):
    """Every training row in one batch, so the steps are deterministic: the loss on those rows must fall
    (a sign error, a detached prompt or an optimizer that never steps fails this)."""
    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    exs = cdeval.examples(rows, "IVR", high=True)
    plan = stratified_folds({e.group: e.stratum for e in exs}, 2, seed=0)
    dm = ChoiceDataModule(exs, tiny_backbone.tokenizer, plan, 0, batch_size=len(exs))
    train = collate([dm.rows[i] for i in dm.index["train"]], dm.pad_id)
    objective = ChoiceObjective(tiny_backbone, dm.prefix_ids, answer_token_ids(tiny_backbone.tokenizer, 2))
    v0 = init_prompt(tiny_backbone, 4, "random")
    module = SoftPromptModule(tiny_backbone, v0, objective, lr=0.3)
    trainer = L.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        precision="32-true",
    )
    with torch.no_grad():
        before = objective.loss(v0, train, "train", 0)[0].item()
    trainer.fit(module, datamodule=dm)
    with torch.no_grad():
        after = objective.loss(module.prompt.detach(), train, "train", 0)[0].item()
    # Measured 1.0300 -> 1.0247: the tiny model's answers move little with the prompt, but deterministically.
    assert after < before - 0.002, (before, after)


def test_test_accuracy_of_a_known_case(tiny_backbone):
    """Labels set to the prompt's own choice in order 0 and to the other option in order 1: the logged
    accuracies must be exactly 1, 0 and the share of order-0 rows, and the loss the cross-entropy."""
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    exs = cdeval.examples(rows, "IVR", high=True)
    dm = ChoiceDataModule(exs, tiny_backbone.tokenizer, stratified_folds({e.group: e.stratum for e in exs}, 2, seed=0), 0, batch_size=4)
    objective = ChoiceObjective(tiny_backbone, dm.prefix_ids, answer_token_ids(tiny_backbone.tokenizer, 2))
    v0 = init_prompt(tiny_backbone, 4, "random")
    batch = collate(dm.rows, dm.pad_id)
    with torch.no_grad():
        logits = objective.logits(v0, batch)
    first = batch["order"] == 0
    batch["labels"] = torch.where(first, logits.argmax(-1), 1 - logits.argmax(-1))
    assert 0 < int(first.sum()) < len(first)  # both orders present, or the split proves nothing
    module = SoftPromptModule(tiny_backbone, v0, objective)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, precision="32-true")
    got = trainer.test(module, dataloaders=DataLoader([batch], batch_size=None), verbose=False)[0]
    assert got["test_acc_order0"] == 1.0 and got["test_acc_order1"] == 0.0
    assert got["test_acc"] == pytest.approx(float(first.float().mean()))
    assert got["test_loss"] == pytest.approx(F.cross_entropy(logits, batch["labels"]).item(), rel=1e-5)


def test_ema_prompt_is_the_moving_average_of_the_steps_and_is_what_gets_validated(tiny_backbone):
    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    exs = cdeval.examples(rows, "IVR", high=True)
    dm = ChoiceDataModule(exs, tiny_backbone.tokenizer, stratified_folds({e.group: e.stratum for e in exs}, 2, seed=0), 0, batch_size=2)
    objective = ChoiceObjective(tiny_backbone, dm.prefix_ids, answer_token_ids(tiny_backbone.tokenizer, 2))
    v0 = init_prompt(tiny_backbone, 4, "random")
    module = SoftPromptModule(tiny_backbone, v0, objective, lr=0.1, ema=0.5)
    assert sorted(module.state_dict()) == ["prompt", "prompt_ema"]  # resume carries the average

    class Record(L.Callback):
        seen: list[torch.Tensor] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # the prompt after each optimizer step
            self.seen.append(pl_module.prompt.detach().clone())

    trainer = L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        precision="32-true",
        callbacks=[Record()],
    )
    trainer.fit(module, datamodule=dm)
    expected = v0.float().clone()
    for p in Record.seen:
        expected = 0.5 * expected + 0.5 * p
    assert len(Record.seen) == 3 and torch.allclose(module.eval_prompt, expected, atol=1e-6)
    assert not torch.allclose(module.eval_prompt, module.prompt)
    module.set_eval_prompt(v0)  # the best prompt loaded for testing replaces both
    assert torch.equal(module.eval_prompt, module.prompt)


def test_prefix_cached_choice_logits_match_plain_forward(tiny_backbone):
    """The batch path (template head once, KV repeated) equals one full forward per row."""
    from culturalign.data.choice import collate
    from culturalign.model.chat import chat_ids
    from culturalign.model.soft_prompt import prompted_logits

    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    exs = cdeval.examples(rows, "IDV", high=True)[:5]
    plan = stratified_folds({e.group: e.stratum for e in exs}, 1, seed=0, val_fraction=0.4)
    dm = ChoiceDataModule(exs, tiny_backbone.tokenizer, plan, 0)
    ids2 = answer_token_ids(tiny_backbone.tokenizer, 2)
    objective = ChoiceObjective(tiny_backbone, dm.prefix_ids, ids2)
    prompt = init_prompt(tiny_backbone, 4, "random", seed=1)
    batch = collate(dm.rows, dm.pad_id)
    with torch.no_grad():
        got = objective.logits(prompt, batch)
        for i, ex in enumerate(exs):
            ids = torch.tensor([chat_ids(tiny_backbone.tokenizer, ex.text)])
            ref = prompted_logits(tiny_backbone, prompt, ids, torch.ones_like(ids))[0, -1, ids2]
            assert torch.allclose(got[i], ref.float(), atol=1e-4)


def test_survey_objective_wording_dropout_is_seeded_and_never_empty():
    obj = SurveyObjective(SimpleNamespace(num_readings=4), dropout=0.9, seed=1)
    kept = [obj.kept(step) for step in range(50)]
    assert all(k for k in kept) and kept == [obj.kept(step) for step in range(50)]
    assert len({tuple(k) for k in kept}) > 1
    assert SurveyObjective(SimpleNamespace(num_readings=3), dropout=0.0).kept(7) == [0, 1, 2]
    assert [len(SurveyObjective(SimpleNamespace(num_readings=6), sample=2).kept(s)) for s in range(5)] == [2] * 5


def test_regularisers(tiny_backbone):
    v0 = init_prompt(tiny_backbone, 3, "random")
    m = SoftPromptModule(tiny_backbone, v0, SurveyObjective(None), init_penalty=1.0, norm_penalty=0.5)
    assert torch.isclose(m.regulariser(), 0.5 * v0.square().sum(-1).mean())
    with torch.no_grad():
        m.prompt.add_(1.0)
    assert torch.isclose(m.regulariser(), 0.5 * (v0 + 1).square().sum(-1).mean() + tiny_backbone.hidden_size)


def test_cli_cdeval_cv_writes_folds_and_resumes(tiny_model_dir, tmp_path, capsys):
    args = [
        "--data",
        "cdeval_ivr",
        "--data.path",
        str(FIXTURE),
        "--cv.folds",
        "3",
        "--optimizer.epochs",
        "1",
        "--optimizer.batch_size",
        "8",
        "--run.name",
        "cv",
    ]
    out = gd(tiny_model_dir, tmp_path, *args)
    run_dir = tmp_path / "cv"
    assert len(out["folds"]) == 3 and out["data"]["questions"] == 17 and out["data"]["duplicates_dropped"] == 1
    # mean ± std are those of the folds' own values (population std), not just present.
    for key, part, name in (
        ("test_loss", "test", "loss"),
        ("test_acc", "test", "acc"),
        ("test_acc_order0", "test", "acc_order0"),
        ("test_acc_order1", "test", "acc_order1"),
        ("baseline_acc_order0", "baseline", "acc_order0"),
    ):
        vals = [f[part][name] for f in out["folds"]]
        assert out["mean"][key] == pytest.approx(sum(vals) / 3)
        assert out["std"][key] == pytest.approx((sum((v - sum(vals) / 3) ** 2 for v in vals) / 3) ** 0.5)
    for k, fold in enumerate(out["folds"]):
        assert (run_dir / f"fold{k}" / "adapter_model.safetensors").is_file()
        # Every question is asked in both orders, so the accuracy is the mean of the two orders' accuracies.
        t = fold["test"]
        assert t["acc"] == pytest.approx((t["acc_order0"] + t["acc_order1"]) / 2) and t["loss"] > 0
        assert fold["survey"]["after"]["loss"] > 0
    folds = json.loads((run_dir / "folds.json").read_text())
    assert sorted(set(folds["fold_of"].values())) == [0, 1, 2]
    assert "mean ± std" in (run_dir / "report.md").read_text()
    prompt, meta = load_prompt(run_dir)  # the run's adapter is the best fold's prompt
    best, _ = load_prompt(run_dir / f"fold{meta['best_fold']}")
    assert torch.equal(prompt, best) and prompt.shape == (4, 32)
    survey = run(["survey", "--model", str(tiny_model_dir), "--model.dtype", "float32", "--ckpt", str(run_dir), "--json"])
    assert set(survey["dimensions"]) == {"PDI", "IDV", "MAS", "UAI", "LTO", "IVR"}

    # Resume mid-CV: fold 2 was "in progress" (no result.json); it continues from its last.ckpt for a
    # second epoch while folds 0 and 1 are skipped untouched.
    fold0 = (run_dir / "fold0" / "result.json").read_text()
    (run_dir / "fold2" / "result.json").unlink()
    steps_one_epoch = out["folds"][2]["global_step"]
    capsys.readouterr()
    again = gd(tiny_model_dir, tmp_path, *args[:-4], "--optimizer.epochs", "2", "--run.name", "cv")
    log = capsys.readouterr().out
    assert "fold 0: already finished" in log and "fold 1: already finished" in log
    assert "fold 2: resuming from" in log
    assert (run_dir / "fold0" / "result.json").read_text() == fold0
    assert again["folds"][2]["global_step"] == 2 * steps_one_epoch
    assert again["folds"][2]["epochs_run"] == 2


def test_cli_cdeval_statement_format_names_its_columns(tiny_model_dir, tmp_path):
    out = gd(
        tiny_model_dir,
        tmp_path,
        "--data",
        "cdeval_ivr",
        "--data.format",
        "statement",
        "--data.path",
        str(FIXTURE),
        "--cv.folds",
        "2",
        "--optimizer.epochs",
        "1",
        "--run.name",
        "st",
    )
    assert out["data"]["format"] == "statement" and out["data"]["rows"] == 2 * out["data"]["questions"]
    text = (tmp_path / "st" / "report.md").read_text()
    assert "acc preferred option" in text and "acc other option" in text
    for fold in out["folds"]:
        t = fold["test"]  # each question once per option: the accuracy is the mean of the two columns
        assert t["acc"] == pytest.approx((t["acc_order0"] + t["acc_order1"]) / 2) and t["loss"] > 0


def test_cli_refuses_changed_folds_on_resume(tiny_model_dir, tmp_path):
    base = ["--data", "cdeval_idv", "--data.path", str(FIXTURE), "--optimizer.epochs", "1", "--run.name", "r"]
    gd(tiny_model_dir, tmp_path, *base, "--cv.folds", "2")
    (tmp_path / "r" / "fold1" / "result.json").unlink()
    with pytest.raises(SystemExit) as err:
        gd(tiny_model_dir, tmp_path, *base, "--cv.folds", "3")
    assert err.value.code == 2


def test_cli_synthetic_vsm13_reports_survey_before_after(tiny_model_dir, tmp_path):
    out = gd(
        tiny_model_dir,
        tmp_path,
        "--data",
        "synthetic_vsm13",
        "--cv.folds",
        "2",
        "--data.limit",
        "24",
        "--optimizer.epochs",
        "1",
        "--optimizer.batch_size",
        "12",
        "--run.name",
        "syn",
    )
    assert out["data"]["labels"]["7"] == 4 and out["data"]["questions"] == 24
    for fold in out["folds"]:
        assert fold["survey"]["before"]["loss"] > 0 and fold["survey"]["history"]
        assert "vsm13_blocks" in fold["survey"]["after"]["heldout"]
        assert 0 <= fold["test"]["acc"] <= 1


def test_cli_survey_objective_multi_wording_with_heldout(tiny_model_dir, tmp_path):
    out = gd(
        tiny_model_dir,
        tmp_path,
        "--data",
        "vsm13",
        "--survey.paraphrases",
        "1",
        "2",
        "--survey.heldout",
        "vsm13_blocks",
        "vsm13@5",
        "--optimizer.lr",
        "0.3",
        "--optimizer.epochs",
        "1",
        "--data.steps_per_epoch",
        "3",
        "--optimizer.wording_dropout",
        "0.3",
        "--run.name",
        "sv",
    )
    assert len(out["survey"]) == 3 and out["data"]["heldout"] == ["vsm13@5", "vsm13_blocks"]
    s = out["folds"][0]["survey"]
    assert s["after"]["loss"] < s["before"]["loss"]  # the survey loss itself went down
    assert set(s["after"]["heldout"]) == {"vsm13_blocks", "vsm13@5"} and s["no_prompt"]["loss"] > 0
    assert s["history"] and all(h["seconds"] > 0 for h in s["history"])  # for loss-against-time plots
    assert out["folds"][0]["global_step"] == 3
    text = (tmp_path / "sv" / "report.md").read_text()
    assert "test vsm13_blocks" in text and "development vsm13@5" in text and "GD best" in text  # the files declare splits


def test_cli_survey_objective_picks_checkpoint_by_validation_wording(tiny_model_dir, tmp_path):
    out = gd(
        tiny_model_dir,
        tmp_path,
        "--data",
        "vsm13",
        "--survey.validation",
        "vsm13@4",
        "--survey.heldout",
        "vsm13@5",
        "--optimizer.lr",
        "0.3",
        "--optimizer.epochs",
        "3",
        "--data.steps_per_epoch",
        "1",
        "--run.name",
        "va",
    )
    fold = out["folds"][0]
    history = fold["survey"]["history"]
    val = [h["heldout"]["validation vsm13@4"] for h in history]
    assert len(val) == 3
    # The best checkpoint is the epoch with the lowest validation-wording loss, not training loss.
    assert fold["best"]["epoch"] == history[val.index(min(val))]["epoch"]
    assert fold["best"]["val_loss"] == pytest.approx(min(val), rel=1e-4)
    head = (tmp_path / "va" / "report.md").read_text().splitlines()[0]
    assert "| validation vsm13@4 |" in head and "development vsm13@5" in head
    for bad in (
        ["--data", "vsm13", "--survey.validation", "vsm13@5", "--survey.heldout", "vsm13@5"],  # both roles
        ["--data", "cdeval_ivr", "--data.path", str(FIXTURE), "--survey.validation", "vsm13@4"],
    ):  # no survey loss
        with pytest.raises(SystemExit) as err:
            gd(tiny_model_dir, tmp_path, *bad, "--run.name", "bad")
        assert err.value.code == 2


def test_select_last_returns_the_prompt_training_ended_with(tiny_model_dir, tmp_path, tiny_backbone):
    # Validation after step 2 only; step 3 ends training mid-epoch: "last" must still return step 3's prompt.
    out = gd(
        tiny_model_dir,
        tmp_path,
        "--data",
        "vsm13",
        "--survey.validation",
        "vsm13@4",
        "--optimizer.lr",
        "0.3",
        "--optimizer.select",
        "last",
        "--optimizer.epochs",
        "10",
        "--data.steps_per_epoch",
        "2",
        "--optimizer.max_steps",
        "3",
        "--run.name",
        "last",
    )
    fold = out["folds"][0]
    assert fold["global_step"] == 3 and fold["best"]["step"] == 3
    final = torch.load(tmp_path / "last" / "fold0" / "last.ckpt", weights_only=True)["state_dict"]["prompt"]
    saved, meta = load_prompt(tmp_path / "last" / "fold0", tiny_backbone, force=True)
    assert meta["select"] == "last" and torch.equal(saved, final.to(saved.dtype))
    with pytest.raises(SystemExit) as err:
        gd(tiny_model_dir, tmp_path, "--data", "vsm13", "--optimizer.select", "first", "--run.name", "bad")
    assert err.value.code == 2


@pytest.mark.parametrize("select", ["best", "last"])
def test_a_fold_without_any_validation_or_step_still_saves_its_prompt(tmp_path, select):
    # e.g. max_time hit before the first step: the init prompt is what the fold returns.
    from types import SimpleNamespace

    from culturalign.checkpoint.format import read_meta
    from culturalign.gradient.checkpoint import PromptCheckpoint

    cb = PromptCheckpoint(tmp_path / "fold0", tmp_path, {}, 0, select=select)
    trainer = SimpleNamespace(global_step=0, current_epoch=0, is_global_zero=True)
    cb.save_final(trainer, SimpleNamespace(eval_prompt=torch.ones(2, 4)))
    assert read_meta(tmp_path / "fold0")["step"] == 0 and cb.best_epoch == 0


def test_cosine_schedule_decays_to_the_floor_and_is_saved_for_resume(tiny_model_dir, tmp_path):
    assert cosine_factor(0, 10, 0.1) == 1.0 and cosine_factor(10, 10, 0.1) == pytest.approx(0.1)
    assert cosine_factor(5, 10, 0.1) == pytest.approx(0.55) and cosine_factor(99, 10, 0.1) == pytest.approx(0.1)
    gd(
        tiny_model_dir,
        tmp_path,
        "--data",
        "vsm13",
        "--optimizer.lr",
        "0.2",
        "--optimizer.lr_schedule",
        "cosine",
        "--optimizer.epochs",
        "10",
        "--data.steps_per_epoch",
        "2",
        "--optimizer.max_steps",
        "2",
        "--run.name",
        "cos",
    )
    state = torch.load(tmp_path / "cos" / "fold0" / "last.ckpt", weights_only=True)
    assert state["lr_schedulers"][0]["last_epoch"] == 2
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.2 * cosine_factor(2, 2, 0.1))
    with pytest.raises(SystemExit) as err:  # cosine needs a known number of steps
        gd(tiny_model_dir, tmp_path, "--data", "vsm13", "--optimizer.lr_schedule", "cosine", "--run.name", "bad")
    assert err.value.code == 2


def test_cli_token_sweep_writes_plot_and_table(tiny_model_dir, tmp_path):
    out = gd(
        tiny_model_dir,
        tmp_path,
        "--data",
        "vsm13",
        "--sweep.num_virtual_tokens",
        "2,3",
        "--optimizer.epochs",
        "1",
        "--data.steps_per_epoch",
        "2",
        "--run.name",
        "sw",
    )
    run_dir = tmp_path / "sw"
    assert [r["T"] for r in out["sweep"]] == [2, 3]
    assert (run_dir / "sweep.png").stat().st_size > 0 and "| 3 |" in (run_dir / "sweep.md").read_text()
    prompt, meta = load_prompt(run_dir)
    assert prompt.shape[0] == out["best_T"] == meta["num_virtual_tokens"]


def test_cli_unknown_data_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        gd(tiny_model_dir, tmp_path, "--data", "cdeval_xyz")
    assert err.value.code == 2
    assert "cdeval_xyz" in capsys.readouterr().err
