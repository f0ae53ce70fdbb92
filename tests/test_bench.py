"""`culturalign bench --quick --json` on the tiny model: every key present, values checked against hand counts
(no timing thresholds); the fair baseline's stop rule and the GEMM peak's failure report on their own."""

from __future__ import annotations

import json
import math
import resource
from pathlib import Path

import psutil
import pytest
import torch

from culturalign.bench.first_number import DigitTables, decode_to_first_number, step_state
from culturalign.bench.flops import ModelShape, model_shape, survey_flops, survey_work
from culturalign.bench.gemm import linear_shapes, peak, utilisation
from culturalign.cli import expand_shorthands, run

PATHS = ("paper_fair", "paper_32_tokens", "paper_single", "no_reuse", "default")
# The tiny Llama (tests/tiny.py): hidden 32, MLP 64, 2 layers, 4 heads of 8, 2 KV heads (16), tied embeddings.
# Per layer: q 32x32 + k 32x16 + v 32x16 + o 32x32 + gate/up/down 3 x 32x64 + two RMSNorms 2 x 32 = 9,280;
# two layers and the final norm: 18,592 non-embedding parameters.
TINY_SHAPE = ModelShape(non_embedding_params=18_592, layers=2, heads=4, head_dim=8)


def test_bench_quick_json_reports_everything(tiny_model_dir, capsys):
    rss_before = psutil.Process().memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = run(["bench", "--model", str(tiny_model_dir), "--dtype", "float32", "--quick", "--json"])
    printed = json.loads(capsys.readouterr().out)  # --json prints exactly one JSON object
    assert printed["ratios"] == pytest.approx(out["ratios"])

    m = out["machine"]
    assert m["cpu_model"] and m["cpu_cores_logical"] >= 1 and m["torch_threads"] >= 1
    assert m["dtype"] == "float32" and m["device"] == "cpu" and len(m["loadavg_end"]) == 3

    s = out["setup"]
    assert s["rows_per_candidate"] == 24 and s["quick"] is True and sum(s["length_buckets"]) == 24
    # Prefix reuse: the default path runs fewer tokens than full rows.
    assert 0 < s["tokens_per_candidate_default"] < s["tokens_per_candidate_full_rows"]

    t = out["throughput"]
    for key in PATHS:
        p = t[key]
        assert p["candidates"] >= 1 and p["seconds"] > 0
        assert math.isclose(p["candidates_per_s"], p["candidates"] / p["seconds"], rel_tol=1e-3)
        assert p["tokens_per_candidate"] > 0
    assert t["paper_single"]["rows_timed"] == 4
    # The fair baseline runs every candidate, all 24 rows of a candidate chunk in one batch (192-row budget).
    assert t["paper_fair"]["candidates"] == s["population"] == 2 and t["paper_fair"]["rows_per_batch"] == 48
    for key in ("paper_fair", "paper_32_tokens", "paper_single"):
        assert 0.0 <= t[key]["invalid_fraction"] <= 1.0
        assert 1 <= t[key]["decode_steps_mean"] <= s["max_new_tokens"]
    # Same first candidate, both decoders: fp32, so the stop rule must not change a single parse.
    assert t["paper_fair"]["parse_agreement_with_32_tokens"] == 1.0
    # fp32: the default path and full rows give the same answers.
    assert t["no_reuse"]["max_abs_answer_diff_vs_default"] < 1e-4

    d = t["default"]["candidates_per_s"]
    assert set(out["ratios"]) == {f"default_over_{k}" for k in PATHS if k != "default"}
    for key in PATHS[:-1]:
        assert out["ratios"][f"default_over_{key}"] == pytest.approx(d / t[key]["candidates_per_s"])

    f = out["flops"]
    fl = f["default_flops_per_candidate"]
    # FLOPs from the hand count above, not from the code's own parameter count.
    assert f["non_embedding_params"] == TINY_SHAPE.non_embedding_params
    assert fl["dense"] == 2 * 18_592 * s["tokens_per_candidate_default"]
    assert fl["total"] == pytest.approx(fl["dense"] + fl["attention"]) and fl["attention"] > 0
    assert f["default_flops_per_s"] == pytest.approx(fl["total"] * d)
    g = f["gemm"]
    assert g["flops_per_s"] == f["gemm_peak_flops_per_s"] == max(r["flops_per_s"] for r in g["shapes"])
    assert len(g["pass_peaks"]) == 2 and max(g["pass_peaks"]) == g["flops_per_s"]  # before and after the timed paths
    assert {(r["k"], r["n"]) for r in g["shapes"]} == {(32, 32), (32, 16), (32, 64), (64, 32)}
    assert g["square_reference"]["size"] == 256
    if f["utilisation"] is None:  # a busy test machine may measure the peak low: reported, not a figure
        assert f["utilisation_error"].startswith("failed measurement") and out["goals"]["flop_utilisation"]["met"] is False
    else:
        assert 0 < f["utilisation"] <= 1 and f["utilisation"] == pytest.approx(f["default_flops_per_s"] / g["flops_per_s"])

    tr = out["training"]
    assert tr["ours_examples_per_s"] > 0 and tr["peft_examples_per_s"] > 0
    assert tr["ratio"] == pytest.approx(tr["ours_examples_per_s"] / tr["peft_examples_per_s"])

    # Peak RSS of this process, in bytes: at least its peak before the bench (the same kernel counter, which
    # never decreases; psutil's current RSS is another counter and was seen 24 KiB above it), and the tiny
    # bench adds little to it; a bench that doubled the process's memory (or reported KiB as bytes) breaks this.
    mem = out["memory"]["after_default_path"]
    assert mem["kind"] == "peak_rss" and peak_before <= mem["bytes"] <= max(peak_before, rss_before) + 256 * 2**20
    assert set(out["goals"]) == {"default_over_paper_fair", "flop_utilisation", "gd_ratio_vs_peft", "peak_memory_gib"}
    assert all(isinstance(v["met"], bool) for v in out["goals"].values())


def test_bench_table_output(tiny_model_dir, capsys):
    run(["bench", "--model", str(tiny_model_dir), "--dtype", "float32", "--quick", "--population", "1"])
    text = capsys.readouterr().out
    assert "| survey path |" in text and "FLOP utilisation" in text and "PEFT" in text
    assert "paper-style fair" in text and "32 tokens (earlier baseline)" in text


def test_bench_times_the_survey_paths_inside_reused_heap_unless_told_not_to(tiny_model_dir, capsys, monkeypatch):
    """By default the survey paths run with freed memory kept (as a black-box fit scores), GD's step outside;
    `--reused_heap false` leaves glibc's behaviour alone."""
    from culturalign.commands import bench as bench_mod
    from culturalign.model import heap

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(heap, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or 1)
    seen: dict[str, int] = {}

    def spy(name, real):
        def wrapper(*args, **kwargs):
            seen[name] = len(calls)  # mallopt calls made before this part started
            return real(*args, **kwargs)

        return wrapper

    for name in ("measure", "measure_readings", "measure_training"):
        monkeypatch.setattr(bench_mod, name, spy(name, getattr(bench_mod, name)))
    out = run(["bench", "--model", str(tiny_model_dir), "--dtype", "float32", "--quick", "--population", "1"])  # the default
    assert seen == {"measure": 2, "measure_readings": 2, "measure_training": 5}  # 2 set on entry, 3 put back on exit
    assert out["setup"]["allocator"] == "reused_heap"
    assert "survey paths timed with reused_heap" in capsys.readouterr().out
    calls.clear()
    off = ["--quick", "--population", "1", "--json", "--reused_heap", "false"]
    assert run(["bench", "--model", str(tiny_model_dir), "--dtype", "float32", *off])["setup"]["allocator"] == "glibc defaults"
    assert calls == []


def test_quick_is_a_bare_flag():
    assert expand_shorthands(["bench", "--quick", "--json"]) == ["bench", "--quick=true", "--json_output=true"]
    assert expand_shorthands(["bench", "--reused_heap", "--quick"]) == ["bench", "--reused_heap=true", "--quick=true"]
    assert expand_shorthands(["bench", "--quick", "false"]) == ["bench", "--quick", "false"]


def test_bench_rejects_bad_sizes(tiny_model_dir):
    with pytest.raises(SystemExit) as err:
        run(["bench", "--model", str(tiny_model_dir), "--population", "0"])
    assert err.value.code == 2


def test_tiny_model_flops_match_a_hand_count(tiny_backbone):
    assert model_shape(tiny_backbone) == TINY_SHAPE
    assert linear_shapes(tiny_backbone.model) == [(32, 16), (32, 32), (32, 64), (64, 32)]
    # T = 2, prefix 3, suffixes of 2 and 1 tokens. Shared prefix: 5 + 2 + 1 = 8 tokens; (query, key) pairs:
    # 1+2+3+4+5 in the head, 6+7 and 6 in the suffixes = 34. Full rows: 7 + 6 = 13 tokens, 28 + 21 = 49 pairs.
    assert survey_work(2, 3, [2, 1], shared_prefix=True) == {"tokens": 8, "attended_pairs": 34}
    assert survey_work(2, 3, [2, 1], shared_prefix=False) == {"tokens": 13, "attended_pairs": 49}
    # Attention: QK^T and AV, 2 x 2 x heads (4) x head_dim (8) x layers (2) = 256 FLOPs per pair.
    fl = survey_flops(model_shape(tiny_backbone), {"tokens": 8, "attended_pairs": 34})
    assert fl == {"dense": 2 * 18_592 * 8, "attention": 256 * 34, "total": 2 * 18_592 * 8 + 256 * 34}


def test_gemm_peak_keeps_the_best_pass_and_refuses_utilisation_above_100_percent():
    before = [{"m": 8, "k": 4, "n": 4, "flops_per_s": 1e9}, {"m": 8, "k": 4, "n": 2, "flops_per_s": 3e9}]
    after = [{"m": 8, "k": 4, "n": 4, "flops_per_s": 5e9}, {"m": 8, "k": 4, "n": 2, "flops_per_s": 2e9}]
    p = peak([before, after], torch.bfloat16)
    assert p["flops_per_s"] == 5e9 and p["at"] == {"m": 8, "k": 4, "n": 4} and p["pass_peaks"] == [3e9, 5e9]
    assert sorted(r["flops_per_s"] for r in p["shapes"]) == [3e9, 5e9]
    assert utilisation(2.5e9, 5e9) == (0.5, None)
    value, why = utilisation(6.4e9, 5e9)
    assert value is None and why.startswith("failed measurement") and "128%" in why


def test_first_number_stop_rule_on_token_sequences():
    # Token "texts": 0 "I", 1 " think", 2 " 3", 3 ".", 4 "1", 5 "0", 6 " ", 7 "4.", 8 "" (special), 9 "x5"
    tables = DigitTables.from_texts(["I", " think", " 3", ".", "1", "0", " ", "4.", "", "x5"])

    def stop_step(seq: list[int], eos: int | None = None) -> int | None:
        """1-based step after which the row is done, or None if it never is."""
        in_num, done = torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)
        for i, tok in enumerate(seq, 1):
            t = torch.tensor([tok])
            in_num, done = step_state(tables, t, in_num, done, t == eos if eos is not None else done)
            if done:
                return i
        return None

    assert stop_step([0, 1, 2, 3, 0]) == 4  # "I think 3." : the number ends at "."
    assert stop_step([4, 5, 6]) == 3  # "10 " : "1" alone is not final (may become 10)
    assert stop_step([4, 8, 5, 6]) == 4  # a special token between digits does not end the number
    assert stop_step([7]) == 1  # "4." in one token
    assert stop_step([9, 0]) == 2  # "x5" then "I"
    assert stop_step([0, 1, 0]) is None  # no number yet: keep decoding
    assert stop_step([0, 1], eos=1) == 2  # EOS ends a row


def test_stopping_at_the_first_number_keeps_the_parse(tiny_backbone):
    """Same cache, same batch: the stopped decode is a prefix of the 32-token decode, and parses the same."""
    from culturalign.model.batching import pad_rows
    from culturalign.model.prefix_cache import decode_more, prefill_rows
    from culturalign.model.soft_prompt import init_prompt
    from culturalign.survey.definition import load_survey
    from culturalign.survey.fitness import SurveyFitness, parse_answer

    bb = tiny_backbone
    fit = SurveyFitness(bb, load_survey("vsm13"), {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14})
    tables = DigitTables.for_backbone(bb)
    ids, mask = pad_rows(fit.rows, bb.tokenizer.pad_token_id)
    p = init_prompt(bb, 4, "random", seed=0).unsqueeze(0).expand(len(fit.rows), -1, -1)
    with torch.inference_mode():
        c1, l1, m1 = prefill_rows(bb, p, ids, mask)
        full = decode_more(bb, c1, l1, m1, 32)
        c2, l2, m2 = prefill_rows(bb, p, ids, mask)
        short, row_steps, steps = decode_to_first_number(bb, c2, l2, m2, 32, tables)
    full_texts = bb.tokenizer.batch_decode(full, skip_special_tokens=True)
    for i, s in enumerate(row_steps.tolist()):
        assert torch.equal(short[i, :s], full[i, :s])
        text = bb.tokenizer.decode(short[i, :s], skip_special_tokens=True)
        a, b = parse_answer(text), parse_answer(full_texts[i])
        assert a == b or (a != a and b != b), (text, full_texts[i])
    assert steps == max(row_steps.tolist()) <= 32


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak-RSS reset is Linux-only")
def test_grad_step_memory_benchmark_reports_each_phase_per_piece_size(tiny_model_dir, capsys):
    """benchmarks/grad_step_memory.py (docs/robustness.md's memory table) on the tiny model: one fresh
    process per piece size, forward and backward peaks apart, the same rows for every piece size."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "grad_step_memory.py"
    spec = importlib.util.spec_from_file_location("grad_step_memory", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--model", str(tiny_model_dir), "--max-grad-rows", "0", "5", "--paraphrases", "--layouts", "1", "--steps", "0", "3"]
    results = module.main(argv + ["--pad-multiple", "1", "--no-heap-release"])  # the switches that undo the fixes run
    assert len(results) == 4
    results = module.main(argv)
    assert [(r["max_grad_rows"], r["step"]) for r in results] == [(0, 0), (0, 3), (5, 0), (5, 3)]
    assert results[0]["rows"] == results[2]["rows"] == 48  # 2 readings of 24 items
    for r in results:
        assert r["forward"]["VmHWM"] > 0 and r["backward"]["VmHWM"] >= r["backward"]["VmRSS"] > 0 and r["kept"] > 0
    assert "| 5 | float32 | 3 |" in capsys.readouterr().out


def test_finished_rows_leave_the_decoding_batch(tiny_backbone, monkeypatch):
    """Rows that stop early are dropped from the batch, cache included, and the rest decode on.

    The tiny random model writes the same token everywhere, so the next token is scripted: the real
    forward runs on the real (compacted) cache, then its logits are replaced so that row r emits
    r * 12 + step; made-up digit tables stop row r after r % 5 + 1 tokens.
    """
    import culturalign.bench.first_number as first_number
    from culturalign.model.batching import pad_rows
    from culturalign.model.prefix_cache import prefill_rows

    bb, n_rows, width = tiny_backbone, 10, 12
    vocab = bb.model.get_output_embeddings().weight.shape[0]
    stop_after = [r % 5 + 1 for r in range(n_rows)]
    closes = torch.zeros(vocab, dtype=torch.bool)
    closes[[r * width + s - 1 for r, s in enumerate(stop_after)]] = True
    tables = DigitTables(has_digit=closes.clone(), closes=closes, starts_other=torch.zeros(vocab, dtype=torch.bool))
    real_step = first_number.decode_step

    def one_hot(tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(tokens, vocab).float()

    def scripted_step(backbone, cache, tokens, mask):
        logits, mask = real_step(backbone, cache, tokens, mask)  # the real forward on the compacted cache
        assert logits.shape[0] == tokens.shape[0] == mask.shape[0]
        return one_hot(tokens + 1), mask

    monkeypatch.setattr(first_number, "decode_step", scripted_step)
    texts = [f"question {r}: how much?" for r in range(n_rows)]
    ids, mask = pad_rows([bb.tokenizer.encode(t) for t in texts], bb.tokenizer.pad_token_id)
    fed: list[int] = []  # rows in each decoding forward
    with torch.inference_mode():
        cache, _, full_mask = prefill_rows(bb, None, ids, mask)
        hook = bb.model.register_forward_pre_hook(lambda _m, _a, kw: fed.append(kw["input_ids"].shape[0]), with_kwargs=True)
        try:
            start = one_hot(torch.arange(n_rows) * width)
            tokens, row_steps, steps = first_number.decode_to_first_number(bb, cache, start, full_mask, width, tables)
        finally:
            hook.remove()
    assert row_steps.tolist() == stop_after and steps == max(stop_after)
    for r, s in enumerate(stop_after):
        assert tokens[r, :s].tolist() == [r * width + k for k in range(s)]  # each survivor kept its own row
    # A row is fed once per step after its first and never after it stops; without compaction every
    # row would be fed on every step: 10 x 4 = 40 rows, not 20.
    assert fed == [sum(s > k for s in stop_after) for k in range(1, max(stop_after))] == [8, 6, 4, 2]


def test_survey_heap_benchmark_times_both_allocator_modes(tiny_model_dir, capsys):
    """benchmarks/survey_heap.py (docs/optimizers.md, "Freed memory kept for reuse") on the tiny model: both
    modes timed the same number of generations of both paths, the table and the ratios printed."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "survey_heap.py"
    spec = importlib.util.spec_from_file_location("survey_heap", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--model", str(tiny_model_dir), "--dtype", "float32", "--population", "2", "--generations", "2", "--rounds", "1"]
    out = module.main([*argv, "--paths", "default", "paper_fair", "--max_new_tokens", "4"])
    for path in ("default", "paper_fair"):
        got = out["paths"][path]
        assert got["glibc defaults"]["generations"] == got["reused_heap"]["generations"] == 2
        assert got["speedup"] == pytest.approx(got["glibc defaults"]["seconds"] / got["reused_heap"]["seconds"])
    fair, default = out["paths"]["paper_fair"], out["paths"]["default"]
    assert out["default_over_paper_fair"]["reused_heap"] == pytest.approx(
        fair["reused_heap"]["seconds"] / default["reused_heap"]["seconds"]
    )
    printed = capsys.readouterr().out
    assert "| paper_fair | reused_heap | 2 |" in printed and "default over paper-style fair:" in printed
