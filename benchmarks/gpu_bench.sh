#!/usr/bin/env bash
# `culturalign bench` for Llama-3-8B-Instruct on one GPU: survey candidates/s and tokens/s for the
# paper-style generation and the default path, FLOP utilisation against a bf16 GEMM peak measured at
# the model's own matmul shapes, GD vs PEFT, peak GPU memory. Writes bench-gpu-<card>.json and
# bench-gpu-<card>.md in $OUT; copy the table into docs/benchmarks.md together with the card's name.
#
# Two paper-style baselines are timed. "paper-style fair" (the headline ratio) batches rows of several
# candidates under the same ROWS budget as the default path and stops each row at its first complete
# number, all the paper's parse reads. "paper-style 32 tokens" is the earlier baseline (one
# candidate's 24 rows per batch, 32 decoding steps unless every row ends), kept for comparison.
#
#   MODEL=/models/Meta-Llama-3-8B-Instruct bash benchmarks/gpu_bench.sh
#   MODEL=meta-llama/Meta-Llama-3-8B-Instruct POPULATION=64 bash benchmarks/gpu_bench.sh   # from the hub
#
# Needs: a CUDA build of torch==2.13.0 (the pin fixes the version, not the build: a .venv made with
# PyTorch's CPU index has the CPU build, so reinstall torch from a CUDA index there), ~17 GB of GPU
# memory for the bf16 weights plus activations, and the model readable without the network
# (HF_HUB_OFFLINE=1 is set unless you set it to 0).
# -h / --help prints the comment block above and exits (scripts are smoke-tested with it).
case "${1:-}" in -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
MODEL=${MODEL:-meta-llama/Meta-Llama-3-8B-Instruct}
POPULATION=${POPULATION:-64}        # 64 candidates x 24 items = 1536 rows: a DE generation on one GPU
ROWS=${ROWS:-768}                   # rows per forward (32 candidates), default and fair paper-style paths alike
REPEATS=${REPEATS:-3}
PAPER=${PAPER:-4}                   # candidates timed on the 32-token paper-style path (the fair one runs all)
OUT=${OUT:-bench-out}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false

"$BIN/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch: install a CUDA build of torch==2.13.0')"
mkdir -p "$OUT"
CARD=$("$BIN/python" -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '_'))")
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu-$CARD.txt" || true

"$BIN/culturalign" bench --model "$MODEL" --dtype bfloat16 --device cuda \
  --population "$POPULATION" --max_batch_rows "$ROWS" --repeats "$REPEATS" --paper_candidates "$PAPER" \
  --gd_batch_size 8 --gd_steps 5 --json > "$OUT/bench-gpu-$CARD.json"

# The same numbers as a Markdown table (candidates/s and tokens/s per path).
"$BIN/python" - "$OUT/bench-gpu-$CARD.json" > "$OUT/bench-gpu-$CARD.md" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m, t = r["machine"], r["throughput"]
print(f"{r['model']['model_id']} | {m['dtype']} | {m.get('gpu')} | T={r['setup']['num_virtual_tokens']} | population {r['setup']['population']}")
print()
print("| path | candidates/s | tokens/s | s/candidate |")
print("|---|---|---|---|")
for k in ("paper_single", "paper_32_tokens", "paper_fair", "no_reuse", "default"):
    p = t[k]
    print(f"| {p['name']} | {p['candidates_per_s']:.3f} | {p['tokens_per_s']:.0f} | {p['seconds_per_candidate']:.3f} |")
f, g = r["flops"], r["training"]
print()
q = r["ratios"]
print(f"default / paper-style fair (first number, same row budget): {q['default_over_paper_fair']:.2f}x; "
      f"default / paper-style 32 tokens (earlier baseline): {q['default_over_paper_32_tokens']:.2f}x; "
      f"default / no reuse: {q['default_over_no_reuse']:.2f}x")
if f["utilisation"] is None:
    print(f"FLOP utilisation: not measured ({f['utilisation_error']})")
else:
    print(f"FLOP utilisation: {f['utilisation']:.1%} of a measured {f['gemm_peak_flops_per_s']/1e12:.0f} TFLOP/s bf16 GEMM peak at the model's shapes")
print(f"GD: ours {g['ours_examples_per_s']:.1f} ex/s, PEFT {g['peft_examples_per_s']:.1f} ex/s (ratio {g['ratio']:.2f})")
print(f"peak GPU memory after the default path: {r['memory']['after_default_path']['bytes']/2**30:.1f} GiB")
PY
cat "$OUT/bench-gpu-$CARD.md"
