"""The robustness report card (`culturalign evaluate --card.enabled true`) on the tiny model.

Two DE runs that differ only in their seed are one setting (n=2, with an interval); every ratio is a
loss over the no-prompt loss on the same wordings, recomputed here through SurveyFitness directly.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.cli import run
from culturalign.errors import CulturalignError
from culturalign.evaluate.candidates import Candidate
from culturalign.evaluate.card import CardArgs, Part, Reader, build_splits, from_record, refuse_trained
from culturalign.evaluate.card_stats import group_settings, interval, rank_of_target, ranked_countries, setting_label, t_quantile_975
from culturalign.evaluate.generalisation import Administer, Wording
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.layouts import apply, layout_from_seed
from culturalign.survey.scoring import Scoring
from culturalign.targets import Target, resolve_target


def _fit(model: list[str], root, name: str, seed: int) -> None:
    run(
        ["fit", "--optimizer", "DE", *model, "--search.budget", "4", "--optimizer.popsize", "4", "--prompt.num_virtual_tokens", "4"]
        + ["--survey.heldout", "[]", "--run.root", str(root), "--run.name", name, "--run.seed", str(seed)]
    )


@pytest.fixture(scope="module")
def carded(tiny_model_dir, tmp_path_factory):
    """Two seeds of one DE setting + no prompt, through `evaluate` with the card on (small splits)."""
    root = tmp_path_factory.mktemp("card")
    model = ["--model", str(tiny_model_dir), "--model.dtype", "float32"]
    for seed in (0, 1):
        _fit(model, root, f"de-s{seed}", seed)
    out = root / "out"
    card = ["--card.enabled", "true", "--card.development", "[vsm13@4]", "--card.development_layouts", "1", "--card.test_layouts", "2"]
    results = run(
        ["evaluate", str(root / "de-s0"), str(root / "de-s1"), *model, "--output", str(out), "--baselines", "[none]"]
        + ["--survey.paraphrases", "[]", "--survey.heldout", "[]", *card]
    )
    return root, out, results


def test_card_structure_settings_and_report(carded):
    root, out, results = carded
    card = json.loads((out / "results.json").read_text())["card"]
    assert [p["name"] for p in card["splits"]["development"]] == ["vsm13@4", "layouts 10000-10000"]
    assert [p["name"] for p in card["splits"]["test"]] == ["vsm13_blocks", "layouts 20000-20001"]
    by = {p["label"]: p for p in card["prompts"]}
    assert list(by) == ["DE (de-s0)", "DE (de-s1)", "no prompt"]
    assert by["DE (de-s0)"]["train"] == ["vsm13"]  # what meta.json records the run was trained on
    for split in ("train", "development", "test"):
        assert by["no prompt"]["targets"]["SAU"][split]["ratio"] == {"both": 1.0, "forward": 1.0, "reverse": 1.0}
    # Seeds of one config are one setting; the interval is the t-interval of the two ratios.
    de, none = card["settings"]
    assert (de["label"], de["n"], de["prompts"]) == ("de", 2, ["DE (de-s0)", "DE (de-s1)"])
    values = [by[p]["targets"]["SAU"]["test"]["ratio"]["forward"] for p in de["prompts"]]
    assert de["targets"]["SAU"]["test"]["forward"] == pytest.approx(interval(values))
    assert none["n"] == 1 and none["targets"]["SAU"]["test"]["both"]["low"] is None
    # 24 items x 3 test wordings x 2 orders.
    pos = by["DE (de-s0)"]["position"]
    assert pos["n"] == 144 and sum(pos["argmax"]) == pytest.approx(1.0, abs=1e-3)
    assert card["format"]["layouts"] == 2 and set(card["format"]["noise"]["both"]["std"]) == set(card["format"]["signal"]["std"])
    assert card["countries"]["SAU"] == card["prompts"][0]["targets"]["SAU"]["rank"]["test"]["both"]["of"]
    report = (out / "report.md").read_text()
    expected = ("## Robustness report card", "layouts 20000-20001", "de | 2 |", "Format noise beside signal", "](card.png)")
    expected += ("| *neutral respondent (every index at C)* | - |",)
    for text in expected:
        assert text in report, text
    assert (out / "card.png").read_bytes()[:4] == b"\x89PNG"


def test_card_ratio_is_loss_over_no_prompt_loss_recomputed(carded, tiny_backbone):
    root, _, results = carded
    card = results["card"]
    mine = next(p for p in card["prompts"] if p["label"] == "DE (de-s0)")["targets"]["SAU"]
    prompt, _ = load_prompt(root / "de-s0", tiny_backbone)
    sau = resolve_target("SAU").scores

    def ratio(surveys, debias: bool) -> float:
        fit = SurveyFitness(tiny_backbone, surveys, sau, Scoring(), Answering(debias=debias))
        return float(fit(prompt).losses[0] / fit(None).losses[0])

    # vsm13_blocks, both orders averaged: the --answering.debias reading.
    assert mine["test"]["parts"]["vsm13_blocks"]["both"] == pytest.approx(ratio([load_survey("vsm13_blocks")], True), rel=1e-5)
    # The train split (the base wording) read in the forward order alone.
    assert mine["train"]["ratio"]["forward"] == pytest.approx(ratio([load_survey("vsm13")], False), rel=1e-5)
    # One test layout alone, read in the reverse order: the card's per-wording indices give its loss.
    layout = apply(load_survey("vsm13"), layout_from_seed(20001))
    fit = SurveyFitness(tiny_backbone, [replace(layout, reverse_order=True)], sau)
    idx = fit(prompt).indices[0]
    card_idx = next(p for p in card["prompts"] if p["label"] == "DE (de-s0)")["readings"]["layout 20001"]["reverse"]
    assert [card_idx[d] for d in fit.survey.dimensions] == pytest.approx([float(v) for v in idx], abs=2e-3)
    # The neutral respondent (every index at C = 50): its L2 to SAU over the no-prompt loss, by hand.
    flat = math.dist([50.0] * 6, [sau[d] for d in ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")])
    assert card["neutral"]["SAU"]["loss"] == pytest.approx(flat)
    base = SurveyFitness(tiny_backbone, [load_survey("vsm13")], sau, Scoring(), Answering(debias=False))
    assert mine["train"]["neutral"]["forward"] == pytest.approx(flat / float(base(None).losses[0]), rel=1e-5)
    assert card["neutral"]["SAU"]["rank"]["of"] == 99


def test_rank_on_hand_made_countries():
    def country(code: str, *scores: float) -> Target:
        return Target(code, code, "test", dict(zip(("PDI", "IDV", "MAS", "UAI", "LTO", "IVR"), scores)))

    countries = [country("AAA", 50, 50, 50, 50, 50, 50), country("BBB", 60, 50, 50, 50, 50, 50), country("CCC", 90, 50, 50, 50, 50, 50)]
    C = dict.fromkeys(("PDI", "IDV", "MAS", "UAI", "LTO", "IVR"), 50.0)
    model = {**C, "PDI": 59.0}  # nearest BBB (1), then AAA (9), then CCC (31)
    assert rank_of_target(model, C, countries[0], countries)["at_constants"] == 2
    assert rank_of_target(model, C, countries[1], countries)["at_constants"] == 1
    assert rank_of_target(model, C, countries[2], countries)["at_constants"] == 3
    # C-free: model minus C = (9, 0, ...); countries minus their mean PDI 66.7 = (-16.7, -6.7, 23.3).
    r = rank_of_target(model, C, countries[2], countries)
    assert (r["centred"], r["of"], r["nearest_centred"][0]) == (1, 3, "CCC")
    # Another constant moves the indices and the at-C rank, never the C-free one.
    shifted = {d: v + 30 for d, v in model.items()}
    C2 = {d: v + 30 for d, v in C.items()}
    assert rank_of_target(shifted, C2, countries[2], countries)["centred"] == 1
    # A custom target joins the table's countries it is ranked among.
    custom = resolve_target("72,48,43,64,27,14")
    assert ranked_countries(custom, "insights2021")[-1] is custom
    assert sum(t.iso3 == "SAU" for t in ranked_countries(resolve_target("SAU"), "insights2021")) == 1


def test_interval_on_known_numbers():
    s = interval([1.0, 2.0, 3.0])
    half = 4.3027 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert (s["n"], s["mean"], s["sd"]) == (3, 2.0, pytest.approx(1.0))
    assert (s["low"], s["high"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    one = interval([0.4])
    assert (one["n"], one["mean"], one["low"], one["high"]) == (1, 0.4, None, None)
    assert interval([0.5, float("nan")])["dropped"] == 1
    assert t_quantile_975(1) == pytest.approx(12.7062) and t_quantile_975(31) == pytest.approx(2.0395, abs=1e-4)
    assert t_quantile_975(120) == pytest.approx(1.9799, abs=1e-4)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 29, 30, 31, 45, 100, 1000):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-4), df


def test_development_card_never_asks_the_test_split(carded, tiny_model_dir, monkeypatch):
    """`--card.read_test false`: the card to choose on. No test wording or layout is built or asked
    (a test name that does not exist is not even loaded); rank, positions and noise read development."""
    from culturalign.evaluate import card as card_module

    root, _, _ = carded
    asked: list[str] = []
    call = card_module.Reader.__call__
    monkeypatch.setattr(
        card_module.Reader, "__call__", lambda self, cand, label, survey: asked.append(label) or call(self, cand, label, survey)
    )
    out = root / "dev-card"
    model = ["--model", str(tiny_model_dir), "--model.dtype", "float32"]
    card = ["--card.enabled", "true", "--card.read_test", "false", "--card.development", "[vsm13@4]", "--card.development_layouts", "2"]
    results = run(
        ["evaluate", str(root / "de-s0"), *model, "--output", str(out), "--baselines", "[none]", "--survey.paraphrases", "[]"]
        + ["--survey.heldout", "[]", *card, "--card.test", "[no_such_wording]", "--card.test_layouts", "3"]
    )
    c = results["card"]
    assert list(c["splits"]) == ["development"] and c["read_on"] == "development"
    assert set(asked) == {"vsm13", "vsm13@4", "layout 10000", "layout 10001"}  # train (base), development: nothing else
    mine = c["prompts"][0]["targets"]["SAU"]
    assert set(mine) == {"rank", "train", "development"} and set(mine["rank"]) == {"train", "development"}
    assert c["prompts"][0]["position"]["n"] == 24 * 3 * 2  # vsm13@4 + 2 development layouts, both orders
    assert c["format"]["layouts"] == 2 and c["settings"][0]["targets"]["SAU"]["rank"]["n"] == 1
    report = (out / "report.md").read_text()
    assert "development only (test not asked)" in report and "rank (dev, C-free)" in report and "test dev" not in report
    assert "Answer positions on the development split" in report and "no_such_wording" not in report
    assert (out / "card.png").read_bytes()[:4] == b"\x89PNG"


def test_training_wordings_are_rebuilt_and_never_reported(tmp_path):
    label, survey, layout = from_record("builtin:vsm13#paraphrase2+layout5")
    assert (label, layout.seed) == ("vsm13@2+layout5", 5)
    assert survey.items == load_survey("vsm13@2").items and survey.option_format == layout.option_format
    assert from_record("builtin:vsm13")[0] == "vsm13"
    splits = build_splits(CardArgs(development=["vsm13@4"], development_layouts=1, test_layouts=1), "vsm13")
    trained = Part("train", (("vsm13@4", load_survey("vsm13@4")),))
    with pytest.raises(CulturalignError, match="vsm13@4.*--card.development"):
        refuse_trained("GD (x)", trained, splits)
    on_layout = Part("train", (("vsm13+layout20000", survey),), (layout_from_seed(20000),))
    with pytest.raises(CulturalignError, match="layout 20000"):
        refuse_trained("GD (x)", on_layout, splits)
    refuse_trained("GD (x)", Part("train", (("vsm13", load_survey("vsm13")),)), splits)  # base wording: fine


def test_settings_group_by_config_minus_seeds(tmp_path):
    for name, seed, lr in (("gd-s0", 0, 0.1), ("gd-s1", 1, 0.1), ("gd-fast-s0", 0, 0.5)):
        (tmp_path / name).mkdir()
        cfg = {"fit": {"optimizer": {"lr": lr}, "run": {"name": name, "seed": seed}, "answering": {"seed": seed, "mode": "logits"}}}
        (tmp_path / name / "config.yaml").write_text(json.dumps(cfg))
    prompts = [(f"GD ({n})", "run", str(tmp_path / n)) for n in ("gd-s0", "gd-s1", "gd-fast-s0")] + [("no prompt", "baseline", None)]
    groups = group_settings(prompts, {})
    assert [(g["label"], g["prompts"]) for g in groups] == [
        ("gd", ["GD (gd-s0)", "GD (gd-s1)"]),
        ("gd-fast", ["GD (gd-fast-s0)"]),
        ("no prompt", ["no prompt"]),
    ]
    explicit = group_settings(prompts, {"all GD": [str(tmp_path / n) for n in ("gd-s0", "gd-fast-s0")]})
    assert explicit[0] == {"label": "all GD", "prompts": ["GD (gd-s0)", "GD (gd-fast-s0)"]}
    with pytest.raises(CulturalignError, match="not among the run directories"):
        group_settings(prompts, {"x": [str(tmp_path / "elsewhere")]})
    assert setting_label(["de-sau-seed3", "de-sau-seed4"]) == "de-sau"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--card.test_layouts", "-1"], "--card.test_layouts=-1"),
        (["--card.development_seed", "20000"], "--card.development_seed=20000"),
        (["--card.test", "[no_such_wording]"], "no_such_wording"),
        (["--card.read_test", "false", "--card.development", "[]", "--card.development_layouts", "0"], "--card.read_test false"),
        (["--card.development", "[]", "--card.development_layouts", "0"], "the card needs a development split"),
    ],
)
def test_bad_card_options_exit_2_with_one_line(option, message, tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["evaluate", "--model", str(tiny_model_dir), "--card.enabled", "true", *option, "--output", "/nonexistent/never"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_card_options_parse():
    from culturalign.cli import build_parser

    argv = ["evaluate", "--card.enabled", "true", "--card.test", "[vsm13_blocks,vsm13_test]", "--card.test_layouts", "16"]
    cfg = build_parser(argv).parse_args(argv)
    assert cfg.evaluate.card.test == ["vsm13_blocks", "vsm13_test"] and cfg.evaluate.card.test_layouts == 16


def test_question_alone_card_asks_each_wording_once_and_matches_asking_both_orders(tiny_backbone):
    """In the question-alone cloze reading the answer order renders nothing: the card asks once and turns
    the distribution round, which must equal what asking the reverse order gives."""
    asked: list[str] = []

    class Counting(Administer):
        def __call__(self, cand, wording):
            asked.append(wording.label)
            return super().__call__(cand, wording)

    ask = Counting(tiny_backbone, Scoring(), Answering(mode="cloze", show_options=False))
    reader = Reader(ask)
    survey = apply(load_survey("vsm13"), layout_from_seed(3))
    got = reader(Candidate("no prompt", "baseline"), "layout 3", survey)
    assert asked == ["card: layout 3 [forward]"]
    direct = Administer.__call__(ask, Candidate("no prompt", "baseline"), Wording("reverse", replace(survey, reverse_order=True)))
    assert [got["reverse"][d] for d in direct["indices"]] == pytest.approx(list(direct["indices"].values()), abs=1e-4)
    assert torch.allclose(got["distributions"][1], direct["distributions"], atol=1e-5)
