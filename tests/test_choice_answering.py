"""Two-option questions answered as the survey answers: cloze, show_options and calibration through the
one scoring path (`data.choice.option_logits`) that GD training and `evaluate` share."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from culturalign.cli import run
from culturalign.data import cdeval
from culturalign.data.choice import ChoiceExample, collate, option_logits, tokenise_rows
from culturalign.errors import CulturalignError
from culturalign.model.chat import answer_token_ids, chat_ids
from culturalign.model.soft_prompt import init_prompt, prompted_logits
from culturalign.survey.fitness import Answering

FIXTURE = Path(__file__).parent / "fixtures" / "cdeval_small.json"


def _examples(n: int = 6) -> list[ChoiceExample]:
    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    return cdeval.examples(rows, "IVR", high=True)[:n]


def _score(backbone, exs, answering, prompt=None):
    prefix, rows = tokenise_rows(backbone.tokenizer, exs, None, answering)
    ids = None if answering.mode == "cloze" else torch.tensor(answer_token_ids(backbone.tokenizer, 2))
    return option_logits(backbone, prompt, prefix, collate(rows, backbone.tokenizer.pad_token_id), ids, answering)


def _naive_cloze(backbone, ex, answering, prompt):
    """One option at a time: one plain forward over [V][chat row][option text], no cache, no batching."""
    tok = backbone.tokenizer
    out = []
    for text in ex.options:
        row = chat_ids(tok, ex.asked(answering.style))
        opt = tok(text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([row + opt])
        logp = prompted_logits(backbone, prompt, ids, torch.ones_like(ids), logits_to_keep=0)[0].float().log_softmax(-1)
        T = 0 if prompt is None else prompt.shape[0]
        lp = sum(float(logp[T + len(row) - 1 + j, t]) for j, t in enumerate(opt))
        out.append(lp / len(opt) if answering.length_norm == "mean" else lp)
    return torch.tensor(out)


@pytest.mark.parametrize("with_prompt", [False, True])
@pytest.mark.parametrize("show_options,length_norm", [(True, "mean"), (False, "sum")])
def test_cloze_scores_equal_a_naive_one_option_at_a_time_likelihood(tiny_backbone, with_prompt, show_options, length_norm):
    answering = Answering(mode="cloze", show_options=show_options, length_norm=length_norm)
    exs = _examples()
    prompt = init_prompt(tiny_backbone, 4, "random", seed=3) if with_prompt else None
    with torch.no_grad():
        got = _score(tiny_backbone, exs, answering, prompt)
        assert got.shape == (len(exs), 2)
        for i, ex in enumerate(exs):
            assert torch.allclose(got[i], _naive_cloze(tiny_backbone, ex, answering, prompt), atol=1e-4)


def test_cloze_renders_options_without_numbers_or_not_at_all():
    ex = _examples(2)[1]  # order 1: low pole listed first
    assert ex.options == (ex.text.split("\n1. ")[1].split("\n")[0], ex.text.split("\n2. ")[1].split("\n")[0])
    assert f"- {ex.options[0]}\n- {ex.options[1]}\n" in ex.listed and "1." not in ex.listed
    assert ex.bare == ex.text.split("\n")[0] and ex.options[0] not in ex.bare
    assert all("N/A" in t and ex.options[0] not in t for t in ex.free)


@pytest.fixture
def biased(tiny_backbone, monkeypatch):
    """Make the tiny model's forward add `logits_shift(logits)` to every output: a model with a built-in prior."""

    def install(shift):
        original = tiny_backbone.model.forward

        @functools.wraps(original)
        def forward(*args, **kwargs):
            out = original(*args, **kwargs)
            out.logits = shift(out.logits)
            return out

        monkeypatch.setattr(tiny_backbone.model, "forward", forward)

    return install


def test_calibration_removes_a_constant_position_bias(tiny_backbone, biased):
    """Adding a constant to the logit of answer "1" moves the raw scores, not the calibrated ones."""
    exs, prompt = _examples(), init_prompt(tiny_backbone, 4, "random", seed=1)
    one = answer_token_ids(tiny_backbone.tokenizer, 2)[0]
    with torch.no_grad():
        raw, cal = (_score(tiny_backbone, exs, Answering(calibrate=c), prompt) for c in (False, True))
        biased(lambda logits: logits.index_add(-1, torch.tensor([one]), torch.full_like(logits[..., :1], 5.0)))
        raw_b, cal_b = (_score(tiny_backbone, exs, Answering(calibrate=c), prompt) for c in (False, True))
    assert torch.allclose(raw_b[:, 0] - raw[:, 0], torch.full((len(exs),), 5.0), atol=1e-4)
    assert torch.allclose(cal_b.log_softmax(-1), cal.log_softmax(-1), atol=1e-4)


@pytest.mark.parametrize("mode", ["logits", "cloze"])
def test_a_pure_prior_gives_equal_calibrated_scores(tiny_backbone, biased, mode):
    """A model that answers the same whatever it is asked (fixed logits favouring option 1 / some tokens)
    has no content signal: calibrated, both options of every question score alike."""
    gen = torch.Generator().manual_seed(0)
    fixed = torch.randn(tiny_backbone.model.config.vocab_size, generator=gen) * 3
    biased(lambda logits: fixed.to(logits.dtype).expand_as(logits).clone())
    exs = _examples()
    with torch.no_grad():
        raw = _score(tiny_backbone, exs, Answering(mode=mode), None)
        cal = _score(tiny_backbone, exs, Answering(mode=mode, calibrate=True), None)
    assert (raw[:, 0] - raw[:, 1]).abs().max() > 1e-2  # the prior alone prefers one option
    assert torch.allclose(cal[:, 0], cal[:, 1], atol=1e-5)


@pytest.mark.parametrize("calibrate", [False, True])
def test_gradients_flow_in_cloze_mode(tiny_backbone, calibrate):
    exs = _examples(4)
    prompt = init_prompt(tiny_backbone, 4, "random", seed=2).requires_grad_(True)
    scores = _score(tiny_backbone, exs, Answering(mode="cloze", calibrate=calibrate), prompt)
    F.cross_entropy(scores, torch.tensor([e.label for e in exs])).backward()
    assert prompt.grad is not None and torch.isfinite(prompt.grad).all() and prompt.grad.abs().sum() > 0


def test_an_option_with_no_tokens_is_a_one_line_error(tiny_backbone):
    ex = ChoiceExample("Q?\n1. a\n2. \nAnswer 1 or 2.", 0, 0, 0, "d", ("a", ""), "Q?\n- a\n- \nReply.", "Q?")
    with pytest.raises(CulturalignError, match="option '' of question 0 is no tokens") as err:
        tokenise_rows(tiny_backbone.tokenizer, [ex], None, Answering(mode="cloze"))
    assert "\n" not in str(err.value)


def test_examples_without_cloze_renderings_are_refused(tiny_backbone):
    with pytest.raises(CulturalignError, match="no listed rendering"):
        tokenise_rows(tiny_backbone.tokenizer, [ChoiceExample("Q?", 0, 0, 0, "d")], None, Answering(mode="cloze"))


def _gd(tiny_model_dir, root, *extra):
    return run(
        ["fit", "--optimizer", "GD", "--model", str(tiny_model_dir), "--model.dtype", "float32", "--optimizer.precision", "32-true"]
        + ["--prompt.num_virtual_tokens", "4", "--run.root", str(root), "--data", "cdeval_ivr", "--data.path", str(FIXTURE), *extra]
    )


@pytest.mark.parametrize("mode", ["bogus", "generate"])
def test_cli_refuses_a_mode_without_option_scores(tiny_model_dir, tmp_path, capsys, mode):
    with pytest.raises(SystemExit) as err:
        _gd(tiny_model_dir, tmp_path, "--answering.mode", mode, "--run.name", "bad")
    assert err.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "answering.mode" in line and mode in line


def test_cli_gd_cdeval_in_calibrated_cloze_mode_reports_both_orders(tiny_model_dir, tmp_path):
    out = _gd(
        tiny_model_dir,
        tmp_path,
        *("--answering.mode", "cloze", "--answering.calibrate", "true", "--cv.folds", "2", "--optimizer.epochs", "1"),
        *("--optimizer.batch_size", "8", "--run.name", "cloze"),
    )
    assert len(out["folds"]) == 2
    for fold in out["folds"]:
        t = fold["test"]
        assert (
            0 <= t["acc_order0"] <= 1 and 0 <= t["acc_order1"] <= 1 and t["acc"] == pytest.approx((t["acc_order0"] + t["acc_order1"]) / 2)
        )
    assert "order 1-2" in (tmp_path / "cloze" / "report.md").read_text()


def test_cli_evaluate_cdeval_in_cloze_mode(tiny_model_dir, tmp_path):
    cd = tmp_path / "cdeval.json"
    cd.write_text(json.dumps([{**r, "Dimension": d} for r in json.loads(FIXTURE.read_text())[:4] for d in ("IDV", "IVR")]))
    common = ["evaluate", "--model", str(tiny_model_dir), "--model.dtype", "float32", "--target", "SAU", "--baselines", "[none]"]
    common += ["--num_virtual_tokens", "4", "--cdeval.path", str(cd), "--json_output", "true"]
    res = {}
    for mode in ("logits", "cloze"):
        res[mode] = run([*common, "--output", str(tmp_path / mode), "--answering.mode", mode])
    rec = {m: r["prompts"][0]["cdeval"]["SAU"] for m, r in res.items()}
    for dim in ("IDV", "IVR"):
        assert {"high_first", "low_first", "mean"} <= set(rec["cloze"][dim])
        assert rec["cloze"][dim]["p_high"] != pytest.approx(rec["logits"][dim]["p_high"])
    assert res["cloze"]["cdeval"]["answering"] == {"mode": "cloze", "calibrate": False, "show_options": True, "length_norm": "mean"}
    assert "each option's text as the reply (mean log-prob, options listed)" in (tmp_path / "cloze" / "report.md").read_text()


def test_cli_evaluate_cdeval_batch_rows_changes_memory_not_answers(tiny_model_dir, tmp_path, capsys):
    """--cdeval.batch_rows only splits the forward passes: 1 row at a time gives the default's probabilities."""
    cd = tmp_path / "cdeval.json"
    cd.write_text(json.dumps([{**r, "Dimension": "IVR"} for r in json.loads(FIXTURE.read_text())[:5]]))
    common = ["evaluate", "--model", str(tiny_model_dir), "--model.dtype", "float32", "--target", "SAU", "--baselines", "[none]"]
    common += ["--num_virtual_tokens", "4", "--cdeval.path", str(cd), "--cdeval.dimensions", "[IVR]", "--json_output", "true"]
    common += ["--answering.mode", "cloze", "--answering.calibrate", "true"]
    outs = [run([*common, "--output", str(tmp_path / str(rows)), "--cdeval.batch_rows", str(rows)]) for rows in (1, 32)]
    p_high = [out["prompts"][0]["cdeval"]["SAU"]["IVR"]["p_high"] for out in outs]
    assert p_high[0] == pytest.approx(p_high[1], abs=1e-4)
    with pytest.raises(SystemExit) as err:
        run([*common, "--output", str(tmp_path / "zero"), "--cdeval.batch_rows", "0"])
    assert err.value.code == 2 and "--cdeval.batch_rows must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "zero").exists()  # refused before anything was written


def test_synthetic_and_statement_examples_carry_their_cloze_renderings():
    from culturalign.data import synthetic
    from culturalign.survey.definition import load_survey

    survey = load_survey("vsm13")
    sau = {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14}
    exs, _ = synthetic.examples(survey, sau, {d: 50.0 for d in survey.dimensions})
    fwd, rev = exs[0], exs[1]
    item = survey.items[0]
    assert fwd.options == survey.labels(item) and rev.options == survey.labels(item, True)
    assert fwd.listed == survey.render(survey.with_paraphrase(0).items[0], False, "listed")
    assert all("N/A" in t and item.paraphrases[0] not in t for t in fwd.free) and fwd.options[0] in fwd.free[1]
    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    st = cdeval.statements(rows, "IVR", high=True)[0]
    assert st.options == ("Yes", "No") and "- Yes\n- No\n" in st.listed and "1 for yes" in st.text
