"""Every shipped YAML in configs/ parses against the real CLI, and its optimizer resolves to an installed class."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tiny import tiny_fit_argv

from culturalign.cli import build_parser, expand_shorthands
from culturalign.optimizers.base import Optimizer, discover

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {"de_cpu.yaml", "de_llama3_8b_gpu.yaml", "cmaes_cpu.yaml", "pso_cpu.yaml", "gd_survey_dev_cpu.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_optimizer_resolves(path):
    raw = yaml.safe_load(path.read_text())
    argv = ["fit", "--config", str(path)]
    parser = build_parser(argv)  # the optimizer named in the file decides which option groups exist
    cfg = parser.parse_args(argv)
    # Values from the file arrive, not the defaults (a misspelt key would have failed parsing).
    assert cfg.fit.model.name == raw["model"]["name"]
    for group in ("search", "data", "survey"):
        for key, value in raw.get(group, {}).items():
            assert cfg.fit[group][key] == value, f"{group}.{key}"
    init = parser.instantiate_classes(cfg).fit  # dataclass validation (__post_init__) runs here
    optimizer = init.optimizer
    assert isinstance(optimizer, Optimizer)
    assert discover()[optimizer.name] is type(optimizer)
    assert optimizer.name == raw["optimizer"]["class_path"].rsplit(".", 1)[-1]
    for key, value in raw["optimizer"].get("init_args", {}).items():
        assert getattr(optimizer, key) == value, key


def test_make_run_config_is_the_paper_method_on_the_embedded_model():
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "de_cpu.yaml").read_text())
    assert cfg["optimizer"]["class_path"] == "DE" and cfg["model"]["name"] == "embedded"
    assert cfg["target"]["country"] == "SAU"


DEV_PROTOCOL = (
    "--optimizer GD --data vsm13 --target SAU --survey.paraphrases 1 2 3 --survey.validation vsm13@4 "
    "--survey.heldout vsm13@5 vsm13_blocks --optimizer.wording_dropout 0.5 --optimizer.lr 0.02 "
    "--optimizer.init_penalty 0.1 --optimizer.lr_schedule cosine --optimizer.ema 0.9 --optimizer.max_steps 120 "
    "--optimizer.epochs 1000 --data.steps_per_epoch 4"
)


@pytest.mark.parametrize(
    "name, flags",
    [
        ("gd_survey_dev_cpu.yaml", DEV_PROTOCOL + " --optimizer.max_time 1200"),
        ("gd_survey_dev_debias_cpu.yaml", DEV_PROTOCOL + " --answering.debias true --optimizer.select last --optimizer.max_time 2700"),
        (
            "gd_cdeval_cpu.yaml",
            "--optimizer GD --data cdeval_ivr --cv.folds 5 --answering.mode cloze --answering.calibrate true --data.limit 150 "
            "--optimizer.epochs 4 --optimizer.lr 0.03 --optimizer.max_time 110 --data.prefer target",
        ),
    ],
)
def test_dev_config_is_the_documented_command(name: str, flags: str):
    """docs/gradient.md reports runs made with flags and says the config holds the same settings."""
    path = Path(__file__).parents[1] / "configs" / name
    file_argv, flag_argv = ["fit", "--config", str(path)], expand_shorthands(["fit", *flags.split()])  # as `culturalign` does
    from_file = build_parser(file_argv).parse_args(file_argv).fit.as_dict()
    from_flags = build_parser(flag_argv).parse_args(flag_argv).fit.as_dict()
    for cfg in (from_file, from_flags):
        cfg.pop("config", None)
        cfg["run"].pop("name")
    assert from_file == from_flags


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_config_trains_or_validates_on_a_test_wording(path):
    """Test wordings (vsm13_test, vsm13_blocks) are only reported; docs/robustness.md."""
    from culturalign.survey.definition import load_survey

    argv = ["fit", "--config", str(path)]
    survey = build_parser(argv).parse_args(argv).fit.survey
    base = load_survey(survey.name)
    used = [base, *(base.with_paraphrase(k - 1) for k in survey.paraphrases), *(load_survey(n) for n in survey.validation)]
    assert [w.wording_split for w in used if w.wording_split == "test"] == []
    assert "vsm13_test" not in path.read_text()  # read only by the final report card: not even reported by a run


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_no_config_pins_the_init_text(path):
    """The init text defaults to 'You are a person from <target>.', so `--target.country X` moves it too (#20.4)."""
    argv = ["fit", "--config", str(path)]
    cfg = build_parser(argv).parse_args(argv)
    assert cfg.fit.prompt.init_text is None


def test_make_run_config_with_another_target_starts_from_that_target(tiny_model_dir, tmp_path):
    """A new user's `culturalign fit --config configs/de_cpu.yaml --target.country JPN` starts from Japan, not Saudi Arabia."""
    import json

    from culturalign.cli import run

    config = Path(__file__).parents[1] / "configs" / "de_cpu.yaml"
    run(
        tiny_fit_argv(
            tiny_model_dir,
            tmp_path,
            *("--target.country", "JPN", "--optimizer.popsize", "4", "--search.budget", "4"),
            config=config,
        )
    )
    meta = json.loads((tmp_path / "de-jpn" / "meta.json").read_text())  # the run name follows the target too
    assert meta["init"]["text"] == "You are a person from Japan."
    assert meta["target"]["iso3"] == "JPN"


def test_de_robust_config_shares_gd_robust_training_pool():
    """docs/robustness.md compares GD and DE on the same splits: the two configs differ only in the method, its
    time and run, and DE's lack of a validation wording (it picks no checkpoint; fit refuses one)."""
    parsed = {}
    for name in ("gd_survey_robust_cpu.yaml", "de_survey_robust_cpu.yaml"):
        argv = ["fit", "--config", str(Path(__file__).parents[1] / "configs" / name)]
        parsed[name] = build_parser(argv).parse_args(argv).fit.as_dict()
    gd, de = parsed["gd_survey_robust_cpu.yaml"], parsed["de_survey_robust_cpu.yaml"]
    assert gd["survey"].pop("validation") == ["vsm13@4"] and de["survey"].pop("validation") == []
    for group in ("survey", "model", "prompt", "target", "scoring"):
        assert gd[group] == de[group], group
    assert {k: v for k, v in gd["answering"].items() if k != "max_grad_rows"} == {
        k: v for k, v in de["answering"].items() if k != "max_grad_rows"
    }
