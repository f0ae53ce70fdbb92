"""`culturalign evaluate` end to end on the tiny model: a DE run + baselines -> report, JSON, PNGs.

The JSON numbers must be the ones `culturalign survey --json` prints for the same prompt, and the
reversed-scale row must be the other half of what `--answering.debias true` averages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from culturalign.cli import expand_shorthands, run
from culturalign.data.cdeval import TEMPLATE
from culturalign.data.cdeval import examples as cdeval_examples
from culturalign.evaluate.cdeval import CdevalArgs, accuracy, load_cdeval, select
from culturalign.evaluate.report import main, write_report
from culturalign.targets import resolve_target

CDEVAL_ROWS = [
    {
        "Dimension": "IDV",
        "Domain": "Work",
        "Question": "How do you pick a project to work on?",
        "Option 1": "I pick what advances my own skills.",
        "Option 2": "I pick what helps my team most.",
    },
    {
        "Dimension": "IDV",
        "Domain": "Family",
        "Question": "2. Who should decide where you live?",
        "Option 1": "I decide for myself.",
        "Option 2": "My family decides together.",
    },
    {
        "Dimension": "IVR",
        "Domain": "Lifestyle",
        "Question": "How do you spend a free evening?",
        "Option 1": "Doing something fun that I enjoy.",
        "Option 2": "Doing chores that need doing.",
    },
    {
        "Dimension": "IVR",
        "Domain": "Wellness",
        "Question": "Do you buy treats for yourself?",
        "Option 1": "Yes, often.",
        "Option 2": "Rarely; I save instead.",
    },
]


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir, tmp_path_factory):
    """One DE run (tiny budget) and one evaluation of it with every section switched on."""
    root = tmp_path_factory.mktemp("eval")
    model = ["--model", str(tiny_model_dir), "--model.dtype", "float32"]
    run(
        [
            "fit",
            "--optimizer",
            "DE",
            *model,
            "--search.budget",
            "8",
            "--optimizer.popsize",
            "8",
            "--prompt.num_virtual_tokens",
            "4",
            "--run.root",
            str(root),
            "--run.name",
            "de-tiny",
        ]
    )
    cd = root / "cdeval.json"
    cd.write_text(json.dumps(CDEVAL_ROWS))
    out, md = root / "out", root / "docs" / "results.md"
    results = run(
        [
            "evaluate",
            str(root / "de-tiny"),
            *model,
            "--target",
            "SAU,USA",
            "--output",
            str(out),
            "--markdown",
            str(md),
            "--survey.paraphrases",
            "[2]",
            "--baselines",
            "[none,instruction,random]",
            "--num_virtual_tokens",
            "4",
            "--cdeval.path",
            str(cd),
            "--generate",
            "true",
            "--questions",
            "[Who are you?]",
            "--max_new_tokens",
            "3",
        ]
    )
    return root, out, md, results


def test_each_prompt_records_the_split_of_each_wording(evaluated):
    """The DE run was trained on the base wording only: that is `train`; vsm13_blocks (reported by
    the run, never trained on) keeps its file's `test`; nothing it was trained on is called held out."""
    root, out, md, results = evaluated
    saved = json.loads((out / "results.json").read_text())
    de, none = saved["prompts"][0], saved["prompts"][1]
    assert de["splits"] == {"base": "train", "paraphrase 2": "train", "vsm13_blocks": "test", "reversed scale": "train"}
    assert none["splits"]["vsm13_blocks"] == "test"
    report = md.read_text()
    assert "Split of each wording per prompt" in report and "| DE (de-tiny) | train | train | test | train |" in report


def test_positional_run_dirs_become_the_runs_list():
    argv = expand_shorthands(["evaluate", "ck/de-sau", "ck/gd-sau", "--target", "SAU"])
    assert argv == ["evaluate", '--runs=["ck/de-sau", "ck/gd-sau"]', "--target.country", "SAU"]
    assert expand_shorthands(["evaluate", "--output", "x"]) == ["evaluate", "--output", "x"]


def test_report_json_and_plots_are_written(evaluated):
    root, out, md, results = evaluated
    for name in ("results.json", "config.yaml", "dimensions.png", "losses.png", "positions.png"):
        assert (out / name).stat().st_size > 0, name
    assert md.stat().st_size > 0 and not (out / "report.md").exists()  # one copy of the report: the --markdown page
    assert (out / "dimensions.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "results.json").read_text())
    labels = [p["label"] for p in saved["prompts"]]
    assert labels == ["DE (de-tiny)", "no prompt", "instruction (Saudi Arabia)", "instruction (United States)", "untrained soft (random)"]
    assert [w["label"] for w in saved["wordings"]] == ["base", "paraphrase 2", "vsm13_blocks", "reversed scale"]
    assert saved["prompts"][3]["info"]["text"] == "You are a person from the United States."  # the persona reads as English
    report = md.read_text()
    # Every table names what its numbers depend on.
    for text in (
        "Table 1(b)",
        "Table 1(a)",
        "C = 50",
        "L2",
        "insights2021",
        str(Path(results["model"]["model_id"])),
        "Who are you?",
        "reversed scale",
        "USA L2",
        "--config",
    ):
        assert text in report, text
    # The docs copy links the PNGs relative to itself.
    assert "](../out/dimensions.png)" in md.read_text()
    run_rec = saved["prompts"][0]
    assert run_rec["kind"] == "run" and run_rec["info"]["optimizer"] == "DE"
    assert set(run_rec["cdeval"]["SAU"]) == {"IDV", "IVR"} and run_rec["cdeval"]["SAU"]["IDV"]["n"] == 2
    hist = run_rec["position"]["argmax"]
    assert len(hist) == 5 and sum(hist) == pytest.approx(1.0, abs=1e-3)


def test_json_numbers_agree_with_survey_command(evaluated, tiny_model_dir, capsys):
    root, out, _, results = evaluated
    model = ["--model", str(tiny_model_dir), "--model.dtype", "float32"]
    by_label = {p["label"]: p for p in results["prompts"]}
    for label, extra in (("DE (de-tiny)", ["--ckpt", str(root / "de-tiny")]), ("no prompt", [])):
        ref = run(["survey", *model, *extra, "--json"])
        mine = by_label[label]["survey"]["base"]
        for d, v in ref["dimensions"].items():
            assert mine["dimensions"][d] == pytest.approx(v, abs=2e-3), (label, d)
        assert mine["loss"]["SAU"]["l2"] == pytest.approx(ref["loss"], rel=1e-5), label
    # A Saudi persona asked through the instruction baseline == survey --answering.instruction.
    ref = run(["survey", *model, "--answering.instruction", "You are a person from Saudi Arabia.", "--json"])
    assert by_label["instruction (Saudi Arabia)"]["survey"]["base"]["loss"]["SAU"]["l2"] == pytest.approx(ref["loss"], rel=1e-5)
    # Debiased answers are the mean of the base and reversed-scale answers.
    deb = run(["survey", *model, "--ckpt", str(root / "de-tiny"), "--answering.debias", "true", "--json"])
    rec = by_label["DE (de-tiny)"]["survey"]
    for j, a in enumerate(deb["answers"].values()):
        assert a == pytest.approx((rec["base"]["answers"][j] + rec["reversed scale"]["answers"][j]) / 2, abs=1e-3)
    capsys.readouterr()


def test_hand_written_reading_survives_regeneration(evaluated, tmp_path):
    _, out, md, _ = evaluated
    # Re-rendering from results.json alone (no model) gives the same report.
    before = md.read_text()
    main([str(out), str(md)])
    assert md.read_text() == before
    results = json.loads((out / "results.json").read_text())
    text = md.read_text()
    assert "<!-- reading -->" in text
    md.write_text(text.replace("_No hand-written reading yet", "DE beats no prompt here. _Old"))
    write_report(results, tmp_path / "again", md)
    assert "DE beats no prompt here." in md.read_text()


def test_cdeval_accuracy_follows_the_target_pole(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(CDEVAL_ROWS))
    rows = load_cdeval(path)
    subset = select(rows, CdevalArgs(dimensions=["IDV"], limit=0))
    questions = [ex.text.split("\n")[0] for ex in subset["IDV"] if ex.order == 0]
    assert questions == ["How do you pick a project to work on?", "Who should decide where you live?"]  # list number stripped
    # Asked exactly as GD training on CDEval asks it: the very examples of --data cdeval_idv (high pole preferred).
    assert subset["IDV"] == cdeval_examples(rows, "IDV", True)
    first = next(r for r in rows if r["Dimension"] == "IDV")
    assert subset["IDV"][0].text == TEMPLATE.format(question=first["Question"], first=first["Option 1"], second=first["Option 2"])
    assert subset["IDV"][1].text == TEMPLATE.format(question=first["Question"], first=first["Option 2"], second=first["Option 1"])
    # A respondent always answering position 1: high pole when it comes first, low pole when swapped.
    raw = {"IDV": {"n": 2, "p_high": [[0.9, 0.8], [0.1, 0.2]], "p_position1": 0.85}}
    low = accuracy(raw, resolve_target("SAU"))["IDV"]  # IDV 48: collectivist pole
    high = accuracy(raw, resolve_target("50,90,50,50,50,50"))["IDV"]
    assert (low["high_first"], low["low_first"], low["mean"]) == (0.0, 1.0, 0.5)
    assert (high["high_first"], high["low_first"], high["mean"]) == (1.0, 0.0, 0.5)
    assert low["pole"] == "collectivist" and high["pole"] == "individualist"


def test_bad_run_dir_is_a_one_line_error(tmp_path, tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as err:
        run(["evaluate", str(tmp_path / "missing"), "--model", str(tiny_model_dir), "--output", str(tmp_path / "o")])
    assert err.value.code == 2
    assert "is not a directory" in capsys.readouterr().err


def test_cdeval_folds_partition_the_questions(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(CDEVAL_ROWS))
    rows = load_cdeval(path)
    folds = [select(rows, CdevalArgs(dimensions=["IVR"], limit=0, fold=k, folds=2))["IVR"] for k in range(2)]
    asked = [ex.text.split("\n")[0] for f in folds for ex in f if ex.order == 0]
    assert sorted(asked) == sorted(r["Question"] for r in CDEVAL_ROWS[2:])
    assert all(len({ex.group for ex in f}) == 1 for f in folds)


def test_evaluate_sees_exactly_a_gd_runs_test_fold_with_a_data_limit(tmp_path):
    """The GD run's selection (limit, then folds) and evaluate's are one function: same questions, same fold."""
    from culturalign.data.choice import limit_groups, select_questions
    from culturalign.data.folds import stratified_folds

    rows = [{"Dimension": "IVR", "Domain": f"d{i % 3}", "Question": f"Question {i}?", "Option 1": "a", "Option 2": "b"} for i in range(30)]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(rows))
    exs = cdeval_examples(load_cdeval(path), "IVR", True)
    kept = limit_groups(exs, 12, 3)  # what --data.limit 12 --run.seed 3 trains on
    plan = stratified_folds({ex.group: ex.stratum for ex in kept}, 4, 3, 0.1)
    for k in range(4):
        gd_test = {ex.group for ex in kept if ex.group in set(plan.split(k)[2])}
        got = select(load_cdeval(path), CdevalArgs(dimensions=["IVR"], limit=0, fold=k, folds=4, seed=3, data_limit=12))
        assert {ex.group for ex in got["IVR"]} == gd_test
        assert got["IVR"] == select_questions(exs, 12, 3, 4, k)


def test_target_list_versus_six_scores():
    from culturalign.commands.common import TargetArgs
    from culturalign.commands.evaluate import resolve_targets

    assert [t.iso3 for t in resolve_targets(TargetArgs("SAU,USA,CHN,IND"))] == ["SAU", "USA", "CHN", "IND"]
    (custom,) = resolve_targets(TargetArgs("72,48,43,64,27,14"))
    assert custom.scores["IVR"] == 14
