"""Train / development / test splits (docs/robustness.md): the files declare them, `culturalign fit`
refuses to train or validate on a test wording or layout, and `culturalign evaluate` calls a wording
a prompt was trained on `train`, never held out or test."""

from __future__ import annotations

import difflib

import pytest

from culturalign.cli import run
from culturalign.errors import CulturalignError
from culturalign.evaluate.generalisation import WordingArgs, build_wordings
from culturalign.evaluate.splits import trained_records, wording_splits
from culturalign.survey.definition import load_survey
from culturalign.survey.layouts import apply, check_layout_roles, layout_from_seed

VSM13 = load_survey("vsm13")
TEST = load_survey("vsm13_test")
BLOCKS = load_survey("vsm13_blocks")


def cli_error(argv: list[str], capsys) -> str:
    """Run the CLI expecting a user error: exit 2 and one line on stderr; returns that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("culturalign: error: "), err
    return err[0].removeprefix("culturalign: error: ")


def test_each_wording_declares_its_split():
    assert VSM13.wording_split == "train"
    assert [VSM13.with_paraphrase(k).wording_split for k in range(5)] == ["train"] * 4 + ["development"]
    assert load_survey("vsm13@5").wording_split == "development"
    assert BLOCKS.wording_split == "test"
    assert [load_survey(n).wording_split for n in ("vsm13_test", "vsm13_test@1", "vsm13_test@2")] == ["test"] * 3
    # A layout keeps its wording's split.
    assert apply(VSM13.with_paraphrase(4), layout_from_seed(3)).wording_split == "development"


def test_a_wording_file_does_not_inherit_its_frameworks_splits(tmp_path):
    items = "\n".join(f"  - {{id: {it.id}, scale: {it.scale}, text: 'My own item {it.id}?'}}" for it in VSM13.items)
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\nframework: vsm13\nitems:\n{items}\n")
    assert load_survey(path).wording_split is None and load_survey(path).splits == {}


@pytest.mark.parametrize(
    "extra, named",
    [
        ("split: final", "`split: final`"),
        ("splits: {paraphrase9: train}", "paraphrase9"),
        ("splits: {base: holdout}", "holdout"),
    ],
)
def test_a_bad_split_declaration_is_refused(tmp_path, extra, named):
    items = "\n".join(f"  - {{id: {i}, scale: importance, text: 'Item {i}?'}}" for i in range(1, 25))
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nframework: vsm13\n{extra}\nitems:\n{items}\n")
    with pytest.raises(CulturalignError, match="split") as err:
        load_survey(path)
    assert named in str(err.value) and len(str(err.value).splitlines()) == 1


def test_test_file_has_the_24_vsm13_items_in_new_sentences():
    assert [it.id for it in TEST.items] == [it.id for it in VSM13.items] == list(range(1, 25))
    assert [it.scale for it in TEST.items] == [it.scale for it in VSM13.items]
    assert (TEST.scales, TEST.formulas, TEST.template) == (VSM13.scales, VSM13.formulas, VSM13.template)
    assert all(len(it.paraphrases) == 2 for it in TEST.items)
    ours = [s for it in TEST.items for s in (it.text, *it.paraphrases)]
    assert len(set(ours)) == len(ours) == 72
    for t, v, b in zip(TEST.items, VSM13.items, BLOCKS.items):
        for sentence in (t.text, *t.paraphrases):
            for other in (v.text, *v.paraphrases, b.text):
                # New sentences, not copies or near-copies of a wording that was looked at while tuning.
                assert difflib.SequenceMatcher(None, sentence.lower(), other.lower()).ratio() < 0.85, (t.id, sentence, other)


def _fit(tiny_model_dir, root, *extra: str) -> list[str]:
    return ["fit", "--optimizer", "GD", "--model", str(tiny_model_dir), "--run.root", str(root), "--run.name", "split", *extra]


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--survey.name", "vsm13_test", "--survey.heldout", "[]"], "vsm13_test "),
        (["--survey.name", "vsm13_blocks", "--survey.heldout", "[]"], "vsm13_blocks "),
        (["--survey.name", "vsm13_test", "--survey.paraphrases", "1", "--survey.heldout", "[]"], "vsm13_test"),
        (["--survey.validation", "vsm13_test@1"], "vsm13_test@1 "),
        (["--survey.validation", "vsm13_blocks", "--survey.heldout", "[]"], "vsm13_blocks "),
    ],
)
def test_fit_refuses_a_test_wording_for_training_or_validation(tiny_model_dir, tmp_path, capsys, extra, named):
    message = cli_error(_fit(tiny_model_dir, tmp_path, *extra), capsys)
    assert message.startswith(named) and "test split" in message and "--survey.heldout" in message
    assert not (tmp_path / "split").exists()  # refused before anything was written


def test_fit_refuses_a_renamed_copy_of_a_test_wording(tiny_model_dir, tmp_path, capsys):
    """Dropping `split: test` from a copy does not make its sentences trainable."""
    copy = tmp_path / "mine.yaml"
    copy.write_text(_test_yaml_text().replace("name: vsm13_test", "name: mine").replace("split: test", ""))
    message = cli_error(_fit(tiny_model_dir, tmp_path, "--survey.name", str(copy), "--survey.heldout", "[]"), capsys)
    assert "sentences of vsm13_test" in message and "test split" in message
    assert not (tmp_path / "split").exists()


def test_fit_may_report_a_test_wording(tiny_model_dir, tmp_path):
    argv = _fit(tiny_model_dir, tmp_path, "--survey.heldout", "vsm13_test", "--data", "vsm13", "--optimizer.max_steps", "1")
    out = run(argv + ["--optimizer.epochs", "1", "--data.steps_per_epoch", "1", "--prompt.num_virtual_tokens", "2"])
    assert set(out["folds"][0]["survey"]["after"]["heldout"]) == {"vsm13_test"}


def test_layouts_test_range_is_never_trained_or_validated_on():
    train, dev, test = layout_from_seed(5), layout_from_seed(10_005), layout_from_seed(20_005)
    check_layout_roles([train], [dev], [test])  # the intended roles
    for training, validation in (([test], []), ([train], [test])):
        with pytest.raises(CulturalignError, match="test range") as err:
            check_layout_roles(training, validation)
        assert "20005" in str(err.value) and len(str(err.value).splitlines()) == 1
    with pytest.raises(CulturalignError, match="reported as validation"):
        check_layout_roles([train], [train])
    with pytest.raises(CulturalignError, match="reported as held out"):
        check_layout_roles([train], [], [train])


def _wordings():
    return build_wordings(WordingArgs(paraphrases=[4, 5], heldout=["vsm13_blocks", "vsm13_test"]))


def test_evaluate_calls_a_trained_wording_train_never_test():
    # A run trained on the base wording and paraphrase 5 (allowed: development data can be trained on).
    info = {"trained_survey": ["builtin:vsm13", "builtin:vsm13#paraphrase5"], "data": None}
    assert wording_splits(info, _wordings()) == {
        "base": "train",
        "paraphrase 4": "train",
        "paraphrase 5": "train",
        "vsm13_blocks": "test",
        "vsm13_test": "test",
        "reversed scale": "train",
    }
    # A checkpoint trained on a test wording (from before the refusal, or elsewhere) is never tested on it.
    old = {"trained_survey": ["builtin:vsm13_test"], "data": {"name": "vsm13", "wordings": ["builtin:vsm13_test"]}}
    assert wording_splits(old, _wordings())["vsm13_test"] == "train"
    # A baseline was trained on nothing: each wording's declared split.
    assert wording_splits({}, _wordings())["paraphrase 5"] == "development"


def test_evaluate_matches_trained_wordings_by_sentence(tmp_path):
    """A copy of a test wording under another file name is still `train` for a prompt trained on the original."""
    copy = tmp_path / "copy.yaml"
    copy.write_text(_test_yaml_text().replace("name: vsm13_test", "name: copy"))
    wordings = build_wordings(WordingArgs(paraphrases=[], heldout=[str(copy)], reverse=False))
    assert wording_splits({"trained_survey": ["builtin:vsm13_test"]}, wordings)[str(copy)] == "train"
    assert wording_splits({}, wordings)[str(copy)] == "test"  # the copy keeps `split: test`


def _test_yaml_text() -> str:
    from importlib import resources

    return resources.files("culturalign.survey").joinpath("frameworks/vsm13_test.yaml").read_text()


def test_synthetic_data_trains_on_every_paraphrase_cdeval_on_no_wording():
    synthetic = {"trained_survey": ["builtin:vsm13"], "data": {"name": "synthetic_vsm13", "survey": "builtin:vsm13"}}
    assert trained_records(synthetic) == [f"builtin:vsm13#paraphrase{k}" for k in range(1, 6)]
    assert wording_splits(synthetic, _wordings())["paraphrase 5"] == "train"
    assert trained_records({"trained_survey": ["builtin:vsm13"], "data": {"name": "cdeval_ivr"}}) == []
