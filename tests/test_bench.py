"""`culturalign bench --quick --json` on the tiny model: every key present, values sane (no timing thresholds)."""

from __future__ import annotations

import json
import math

import pytest

from culturalign.cli import expand_shorthands, run

PATHS = ("paper_batched", "paper_single", "no_reuse", "default")


def test_bench_quick_json_reports_everything(tiny_model_dir, capsys):
    out = run(["bench", "--model", str(tiny_model_dir), "--dtype", "float32", "--quick", "--json"])
    printed = json.loads(capsys.readouterr().out)  # --json prints exactly one JSON object
    assert printed["ratios"] == pytest.approx(out["ratios"])

    m = out["machine"]
    assert m["cpu_model"] and m["cpu_cores_logical"] >= 1 and m["torch_threads"] >= 1
    assert m["dtype"] == "float32" and m["device"] == "cpu"

    s = out["setup"]
    assert s["rows_per_candidate"] == 24 and s["quick"] is True and sum(s["length_buckets"]) == 24
    # Prefix reuse: the default path runs fewer tokens than full rows.
    assert 0 < s["tokens_per_candidate_default"] < s["tokens_per_candidate_full_rows"]

    for key in PATHS:
        p = out["throughput"][key]
        assert p["candidates"] >= 1 and p["seconds"] > 0
        assert math.isclose(p["candidates_per_s"], p["candidates"] / p["seconds"], rel_tol=1e-3)
        assert p["tokens_per_candidate"] > 0
    assert out["throughput"]["paper_single"]["rows_timed"] == 4
    for key in ("paper_batched", "paper_single"):
        assert 0.0 <= out["throughput"][key]["invalid_fraction"] <= 1.0
        assert 1 <= out["throughput"][key]["decode_steps_mean"] <= s["max_new_tokens"]
    # fp32: the default path and full rows give the same answers.
    assert out["throughput"]["no_reuse"]["max_abs_answer_diff_vs_default"] < 1e-4

    d = out["throughput"]["default"]["candidates_per_s"]
    for key, other in (("default_over_paper_batched", "paper_batched"), ("default_over_no_reuse", "no_reuse")):
        assert out["ratios"][key] == pytest.approx(d / out["throughput"][other]["candidates_per_s"])

    f = out["flops"]
    assert f["gemm_peak_flops_per_s"] > 0 and f["default_flops_per_s"] > 0
    fl = f["default_flops_per_candidate"]
    assert fl["total"] == pytest.approx(fl["dense"] + fl["attention"]) and fl["attention"] > 0
    assert f["utilisation"] == pytest.approx(f["default_flops_per_s"] / f["gemm_peak_flops_per_s"])
    # 2 x non-embedding params x tokens: the tiny Llama's non-embedding parameters are its layers and final norm.
    assert fl["dense"] == pytest.approx(2 * f["non_embedding_params"] * s["tokens_per_candidate_default"])

    g = out["training"]
    assert g["ours_examples_per_s"] > 0 and g["peft_examples_per_s"] > 0
    assert g["ratio"] == pytest.approx(g["ours_examples_per_s"] / g["peft_examples_per_s"])

    mem = out["memory"]["after_default_path"]
    assert mem["kind"] == "peak_rss" and 50 * 2**20 < mem["bytes"] < 64 * 2**30
    assert set(out["goals"]) == {"default_over_paper_batched", "flop_utilisation", "gd_ratio_vs_peft", "peak_memory_gib"}
    assert all(isinstance(v["met"], bool) for v in out["goals"].values())


def test_bench_table_output(tiny_model_dir, capsys):
    run(["bench", "--model", str(tiny_model_dir), "--dtype", "float32", "--quick", "--population", "1"])
    text = capsys.readouterr().out
    assert "| survey path |" in text and "FLOP utilisation" in text and "PEFT" in text


def test_quick_is_a_bare_flag():
    assert expand_shorthands(["bench", "--quick", "--json"]) == ["bench", "--quick=true", "--json_output=true"]
    assert expand_shorthands(["bench", "--quick", "false"]) == ["bench", "--quick", "false"]


def test_bench_rejects_bad_sizes(tiny_model_dir):
    with pytest.raises(SystemExit) as err:
        run(["bench", "--model", str(tiny_model_dir), "--population", "0"])
    assert err.value.code == 2
