"""Cloze and calibrated answering, and unreadable generate answers, in the one survey fitness."""

from __future__ import annotations

import copy
import random
from dataclasses import replace

import pytest
import torch
import yaml

from culturalign.cli import run
from culturalign.errors import CulturalignError
from culturalign.model.chat import answer_token_ids, chat_ids
from culturalign.model.soft_prompt import init_prompt, prompted_logits
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import CONTENT_FREE, Answering, SurveyFitness

SAU = {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14}


def _content_free(item):
    return replace(item, text=CONTENT_FREE, intro=CONTENT_FREE if item.intro else "")


def naive_scores(backbone, survey, item, prompt, reverse, ans: Answering) -> torch.Tensor:
    """Log-probabilities over the K answers of one item, one full forward per continuation."""
    tok = backbone.tokenizer
    head = chat_ids(tok, survey.render(item, reverse, ans.style), ans.instruction)
    if ans.mode == "logits":
        ids = torch.tensor([head])
        logits = prompted_logits(backbone, prompt, ids, torch.ones_like(ids))[0, -1]
        return logits[torch.tensor(answer_token_ids(tok, survey.num_answers))].float().log_softmax(-1)
    out = []
    for label in survey.labels(item, reverse):
        lab = tok(label, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([head + lab])
        lp = prompted_logits(backbone, prompt, ids, torch.ones_like(ids), logits_to_keep=0)[0].float().log_softmax(-1)
        s = lp[-len(lab) - 1 : -1].gather(-1, torch.tensor(lab)[:, None]).sum()
        out.append(s / len(lab) if ans.length_norm == "mean" else s)
    return torch.stack(out).log_softmax(-1)


def naive_answers(backbone, survey, prompt, ans: Answering, reverse=False) -> torch.Tensor:
    """Expected answers of every item in the survey's numbering: the reference for the batched fitness."""
    K = survey.num_answers
    out = []
    for item in survey.items:
        s = naive_scores(backbone, survey, item, prompt, reverse, ans)
        if ans.calibrate:
            s = s - naive_scores(backbone, survey, _content_free(item), prompt, reverse, ans)
        e = float((torch.softmax(s, -1) * torch.arange(1, K + 1)).sum())
        out.append(K + 1 - e if reverse else e)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    "ans",
    [
        Answering(mode="cloze", max_batch_rows=7),
        Answering(mode="cloze", show_options=False, length_norm="sum", max_batch_rows=5),
        Answering(mode="cloze", debias=True, calibrate=True, max_batch_rows=11),
        Answering(mode="logits", calibrate=True, max_batch_rows=9),
    ],
    ids=["cloze-listed-mean", "cloze-bare-sum", "cloze-debias-calibrate", "logits-calibrate"],
)
def test_batched_answers_equal_naive(tiny_backbone, ans):
    survey = load_survey("vsm13")
    prompts = torch.stack([init_prompt(tiny_backbone, 3, "random", seed=s) for s in range(3)])
    # Small row budgets: several candidate chunks and buckets, the paths that could misalign.
    fit = SurveyFitness(tiny_backbone, survey, SAU, answering=ans)
    res = fit(prompts)
    with torch.inference_mode():
        logp = fit._row_log_probs(prompts, 3)[0]  # (N, rows, K): the scores before calibration
    items = [0, 1, 10, 14, 17, 19, 20, 23]  # every scale; the naive loop over all 24 is slow
    short = replace(survey, items=tuple(survey.items[j] for j in items))
    orders = (False, True) if ans.debias else (False,)
    for n in range(3):
        # Per-row log-probabilities, also where the tiny model saturates the answer distribution
        # (length_norm=sum sums several large log-probs: one-hot answers would prove little).
        for g, reverse in enumerate(orders):
            for j in items:
                row = g * 24 + j
                it = survey.items[j]
                ref = naive_scores(tiny_backbone, survey, it, prompts[n], reverse, ans)
                assert torch.allclose(logp[n, row], ref, atol=1e-4, rtol=1e-5), (row, logp[n, row], ref)
                if ans.calibrate:
                    ref = naive_scores(tiny_backbone, survey, _content_free(it), prompts[n], reverse, ans)
                    assert torch.allclose(logp[n, fit.calib_index[row]], ref, atol=1e-4, rtol=1e-5)
        ref = naive_answers(tiny_backbone, short, prompts[n], ans)
        if ans.debias:
            ref = (ref + naive_answers(tiny_backbone, short, prompts[n], ans, reverse=True)) / 2
        got = res.answers[n, 0, items]
        assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()
    assert (logp[0] - logp[1]).abs().max() > 1e-3  # the prompts matter, or equality proves nothing
    assert not res.failed.any()


def test_cloze_distributions_and_rows(tiny_backbone):
    survey = load_survey("vsm13")
    fit = SurveyFitness(tiny_backbone, survey, SAU, answering=Answering(mode="cloze", calibrate=True))
    # 24 items + one content-free row per scale (7 scales); rows carry no answer numbers.
    assert fit.num_rows == 24 + len(survey.scales) and fit.num_items_rows == 24
    assert all("1." not in tiny_backbone.tokenizer.decode(r) for r in fit.rows)
    res = fit(None)
    assert res.distributions.shape == (1, 1, 24, 5)
    assert torch.allclose(res.distributions.sum(-1), torch.ones(1, 1, 24), atol=1e-5)


def test_gradient_flows_in_cloze_mode(tiny_backbone):
    survey = load_survey("vsm13")
    prompt = init_prompt(tiny_backbone, 4).requires_grad_(True)
    fit = SurveyFitness(tiny_backbone, survey, SAU, answering=Answering(mode="cloze", calibrate=True, max_batch_rows=10))
    res = fit(prompt, grad=True)
    res.losses.sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(res.losses.detach(), fit(prompt.detach()).losses, atol=1e-5)


@pytest.fixture(scope="module")
def prior_only_backbone(tiny_backbone):
    """The tiny model with every attention and MLP output zeroed: each next-token distribution
    depends only on the current token, so it has a strong answer prior and no content signal."""
    bb = copy.copy(tiny_backbone)
    bb.model = copy.deepcopy(tiny_backbone.model)
    with torch.no_grad():
        for layer in bb.model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return bb


@pytest.mark.parametrize("mode,show", [("logits", True), ("cloze", True), ("cloze", False)])
def test_calibration_removes_a_pure_prior(prior_only_backbone, mode, show):
    survey = load_survey("vsm13")
    prompts = torch.stack([init_prompt(prior_only_backbone, 3, "random", seed=s) for s in range(2)])
    raw = SurveyFitness(prior_only_backbone, survey, SAU, answering=Answering(mode=mode, show_options=show))(prompts)
    assert (raw.answers - 3).abs().max() > 0.05  # the prior is there before calibration
    cal = SurveyFitness(prior_only_backbone, survey, SAU, answering=Answering(mode=mode, show_options=show, calibrate=True))(prompts)
    assert torch.allclose(cal.answers, torch.full_like(cal.answers, 3.0), atol=1e-4)
    assert torch.allclose(cal.indices, torch.full_like(cal.indices, 50.0), atol=1e-2)


def _scripted(monkeypatch, fit, texts_per_candidate):
    """Generate mode with the decoded answers replaced by a script: (texts, bad) per candidate."""

    def fake(self, prompts, N):
        assert N == len(texts_per_candidate)
        return [list(t) for t in texts_per_candidate], torch.zeros(N, dtype=torch.bool)

    monkeypatch.setattr(SurveyFitness, "_generate_texts", fake)


@pytest.mark.parametrize("debias", [False, True])
def test_silencing_prompt_cannot_win_a_generation(tiny_backbone, monkeypatch, debias):
    survey = load_survey("vsm13")
    fit = SurveyFitness(tiny_backbone, [survey, survey.with_paraphrase(0)], SAU, answering=Answering(mode="generate", debias=debias))
    R, rng = fit.num_rows, random.Random(0)
    answering = [[str(rng.randint(1, 5)) for _ in range(R)] for _ in range(30)]
    answering += [["3"] * R, ["1"] * R, ["5"] * R]
    half = rng.sample(range(R), R // 2)
    partly = [("" if j in half else answering[0][j]) for j in range(R)]  # silent where it would not help
    population = [[""] * R, ["I would rather not say."] * R, partly] + answering
    _scripted(monkeypatch, fit, population)
    res = fit(torch.zeros(len(population), 2, tiny_backbone.hidden_size))
    assert res.invalid[:2].tolist() == [R, R] and int(res.invalid[2]) == len(half)
    best_answering = float(res.losses[3:].min())
    # The silent candidates are worse than every candidate that answers, and the partly silent
    # one is no better than the same answers given in full.
    assert float(res.losses[:2].min()) >= float(res.losses[3:].max()) - 1e-9
    assert float(res.losses[2]) >= float(res.losses[3]) - 1e-9
    assert int(res.losses.argmin()) >= 3 and best_answering < float(res.losses[2])
    assert not res.failed.any()


def test_unreadable_answer_is_not_the_midpoint(tiny_backbone, monkeypatch):
    survey = load_survey("vsm13")
    fit = SurveyFitness(tiny_backbone, survey, SAU, answering=Answering(mode="generate"))
    _scripted(monkeypatch, fit, [["3"] * 24, ["3"] * 23 + ["no idea"]])
    res = fit(torch.zeros(2, 1, tiny_backbone.hidden_size))
    assert float(res.answers[1, 0, 23]) in (1.0, 5.0) and float(res.losses[1]) > float(res.losses[0])


def test_calibrate_refused_in_generate_and_unknown_values():
    with pytest.raises(CulturalignError, match="calibrate"):
        Answering(mode="generate", calibrate=True)
    with pytest.raises(CulturalignError, match="cloze"):
        Answering(mode="multiple_choice")
    with pytest.raises(CulturalignError, match="length_norm"):
        Answering(mode="cloze", length_norm="bytes")


def test_wordings_with_different_answer_counts_refused(tiny_backbone):
    s5 = load_survey("vsm13")
    s4 = replace(s5, scales={k: v[:4] for k, v in s5.scales.items()}, origin="four.yaml")
    with pytest.raises(CulturalignError, match="4 answers per scale"):
        SurveyFitness(tiny_backbone, [s5, s4], SAU)


def _wording_file(tmp_path, edit):
    from importlib import resources

    data = yaml.safe_load(resources.files("culturalign.survey").joinpath("frameworks/vsm13.yaml").read_text())
    edit(data)
    path = tmp_path / "wording.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _exit_2_one_line(argv, capsys, *words):
    with pytest.raises(SystemExit) as exc:
        run(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    # Model loading may draw a progress bar on stderr; the error itself is one line.
    lines = [x for x in err.splitlines() if "error" in x]
    assert len(lines) == 1 and lines[0].startswith("culturalign: error:"), err
    assert all(w in lines[0] for w in words), err


def test_cli_bad_answering_input_exits_2_with_one_line(tiny_model_dir, tmp_path, capsys):
    base = ["survey", "--model", str(tiny_model_dir), "--model.dtype", "float32"]
    empty = _wording_file(tmp_path, lambda d: d["scales"]["importance"].__setitem__(0, ""))
    _exit_2_one_line(base + ["--survey", empty, "--answering.mode", "cloze"], capsys, "label ''", "importance")
    four = _wording_file(tmp_path, lambda d: d.update(framework="vsm13", scales={k: v[:4] for k, v in d["scales"].items()}))
    _exit_2_one_line(base + ["--survey", four, "--answering.mode", "cloze"], capsys, "4 labels", "give 5")
    _exit_2_one_line(base + ["--answering.mode", "multiple_choice"], capsys, "multiple_choice")
    _exit_2_one_line(base + ["--answering.mode", "generate", "--answering.calibrate", "true"], capsys, "calibrate")


def test_survey_reports_content_signal(tiny_model_dir, capsys):
    import json

    res = run(
        [
            "survey",
            "--model",
            str(tiny_model_dir),
            "--model.dtype",
            "float32",
            "--json",
            "--answering.mode",
            "cloze",
            "--answering.calibrate",
            "true",
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    c = printed["content"]
    assert c == res["content"] and c["compare"] == "vsm13_blocks" and c["within_scale_items"] == list(range(1, 15))
    assert 0.2 <= c["position_mass"] <= 1 and 1 <= c["most_common_position"] <= 5
    for key in ("corr_other_wording", "corr_reverse_order"):
        assert set(c[key]) == {"all", "within_scale"}
        assert all(v is None or -1 <= v <= 1 for v in c[key].values())
    assert printed["answering"]["mode"] == "cloze" and printed["answering"]["calibrate"] is True
    run(["survey", "--model", str(tiny_model_dir), "--model.dtype", "float32", "--compare", "none"])
    assert "content signal" not in capsys.readouterr().out


def test_content_report_reads_position_and_content():
    from culturalign.survey.content import content_report

    survey = load_survey("vsm13")
    I = 24
    # Always the first listed option: all mass on position 1, expected answers constant.
    first = torch.zeros(4, I, 5)
    first[..., 0] = 1
    r = content_report(first, survey, debias=False)
    assert r["position_mass"] == 1 and r["most_common_position"] == 1
    assert r["corr_reverse_order"]["within_scale"] is None  # constant answers: no correlation
    # A reader of content: item j's answer depends on the item, whatever the order or layout.
    want = torch.tensor([1 + (j * 7 % 5) for j in range(I)])
    dists = torch.zeros(4, I, 5)
    for g in range(4):
        pos = want - 1 if g % 2 == 0 else 5 - want  # reverse groups list the labels the other way
        dists[g, torch.arange(I), pos] = 1
    r = content_report(dists, survey, debias=True)
    assert r["corr_other_wording"] == {"all": 1.0, "within_scale": 1.0}
    assert r["corr_reverse_order"] == {"all": 1.0, "within_scale": 1.0}
    assert r["position_mass"] <= 0.5


def _content_table():
    """experiments/content_table.py as a module (experiments/ is not a package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("content_table", Path(__file__).parents[1] / "experiments" / "content_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_content_table_script_smoke(tiny_model_dir, tmp_path, capsys):
    import json
    import subprocess
    import sys

    mod = _content_table()
    assert "readings" in subprocess.run([sys.executable, mod.__file__, "--help"], capture_output=True, text=True, check=True).stdout
    out = tmp_path / "rows.json"
    rows = mod.main(
        ["--model", str(tiny_model_dir), "--dtype", "float32", "--readings", "logits", "cloze-bare+calibrate", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert "| logits |" in printed and "| cloze-bare+calibrate |" in printed and "items 1-14" in printed
    assert [r["reading"] for r in json.loads(out.read_text())] == [r["reading"] for r in rows]
    assert {r["compare"] for r in rows} == {"vsm13_blocks"}


def test_content_table_against_development_layouts(tiny_model_dir, capsys):
    """--compare-layouts: one row per (reading, layout) and a mean per reading; the layouts are the seeds asked."""
    mod = _content_table()
    argv = ["--model", str(tiny_model_dir), "--dtype", "float32", "--readings", "cloze", "cloze-sum"]
    rows = mod.main([*argv, "--compare-layouts", "2", "--layouts-seed", "10000"])
    assert [(r["reading"], r["compare"]) for r in rows] == [
        (name, f"base+layout{seed}") for name in ("cloze", "cloze-sum") for seed in (10000, 10001)
    ]
    printed = capsys.readouterr()
    assert "| cloze vs base+layout10001 |" in printed.out and "| cloze-sum | 2 |" in printed.out
    assert "development split" in printed.err
    with pytest.raises(CulturalignError, match="cross"):  # 9999..10000 spans train and development
        mod.main([*argv, "--compare-layouts", "2", "--layouts-seed", "9999"])


def test_bench_times_each_reading(tiny_model_dir, capsys):
    out = run(["bench", "--model", str(tiny_model_dir), "--dtype", "float32", "--quick", "--population", "1"])
    printed = capsys.readouterr().out
    assert set(out["readings"]) == {"logits+calibrate", "cloze", "cloze, question alone", "cloze+calibrate"}
    for r in out["readings"].values():
        assert r["candidates_per_s"] > 0 and r["cost_vs_logits"] > 0
    assert out["readings"]["cloze+calibrate"]["rows_per_candidate"] == 24 + 7
    assert "| cloze+calibrate |" in printed and "cost vs logits" in printed


def test_reading_cost_script_smoke(tiny_model_dir, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[1] / "experiments" / "reading_cost.py"
    spec = importlib.util.spec_from_file_location("reading_cost", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--model", str(tiny_model_dir), "--dtype", "float32", "--population", "1", "--repeats", "1"])
    assert "cloze+calibrate" in out["readings"] and "| cloze |" in capsys.readouterr().out


def test_continuations_in_one_block_masked_forward_equal_each_fed_alone(tiny_backbone):
    """K continuations of unequal length (one of a single token, right padding, left-padded rows)
    scored in one forward under the block mask equal each continuation run alone after its row."""
    from culturalign.model.prefix_cache import continuations_logprobs, prefill_rows

    g = torch.Generator().manual_seed(0)
    vocab = tiny_backbone.model.config.vocab_size
    ids = torch.randint(3, vocab, (3, 7), generator=g)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, :2] = 0  # left padding, as the survey's rows have
    lengths = [(1, 1, 1), (3, 2, 1), (2, 2, 2)]  # per continuation, the real length of each row's
    conts = []
    for lens in lengths:
        c = torch.randint(3, vocab, (3, max(lens)), generator=g)
        m = torch.tensor([[1] * n + [0] * (max(lens) - n) for n in lens])
        conts.append((c, m))
    prompt = init_prompt(tiny_backbone, 3, "random", seed=1).unsqueeze(0).expand(3, -1, -1)
    with torch.inference_mode():
        cache, last, full = prefill_rows(tiny_backbone, prompt, ids, mask)
        length = cache.get_seq_length()
        got = continuations_logprobs(tiny_backbone, cache, full, last, conts)
        assert cache.get_seq_length() == length  # cropped back: the cache serves the next call as it was
        for (c, m), lp in zip(conts, got):
            for r in range(3):
                n = int(m[r].sum())
                row = torch.cat([ids[r][mask[r].bool()], c[r, :n]])[None]
                logits = prompted_logits(tiny_backbone, prompt[:1], row, torch.ones_like(row), logits_to_keep=n + 1)
                ref = logits[0, :n].float().log_softmax(-1).gather(-1, c[r, :n, None]).squeeze(-1)
                assert torch.allclose(lp[r, :n], ref, atol=1e-4), (r, lp[r, :n], ref)
                assert (lp[r, n:] == 0).all()


def test_read_only_cache_gives_the_same_last_logits_and_keeps_only_the_prefix(tiny_backbone):
    """The logits mode's suffix forward on a read-only copy of the prefix cache: the same next-token
    logits as on an ordinary copy, while the copy still holds the prefix alone afterwards (the suffix's
    keys, the survey's largest allocation, are never kept) and the prefill cache is untouched."""
    from culturalign.model.prefix_cache import expand_cache, prefill, suffix_last_logits

    g = torch.Generator().manual_seed(0)
    vocab = tiny_backbone.model.config.vocab_size
    prefix, ids = torch.randint(3, vocab, (5,), generator=g), torch.randint(3, vocab, (4, 6), generator=g)
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[2, :3] = 0  # left padding, as the survey's rows have
    prompt = init_prompt(tiny_backbone, 3, "random", seed=1).unsqueeze(0)
    with torch.inference_mode():
        cache, length = prefill(tiny_backbone, prompt, prefix, 1)
        ordinary, kept = expand_cache(tiny_backbone, cache, 4), expand_cache(tiny_backbone, cache, 4, read_only=True)
        want, _ = suffix_last_logits(tiny_backbone, ordinary, length, 1, ids, mask)
        got, _ = suffix_last_logits(tiny_backbone, kept, length, 1, ids, mask)
    assert torch.allclose(got, want, atol=1e-5)
    assert ordinary.get_seq_length() == length + 6 and kept.get_seq_length() == length == cache.get_seq_length()
