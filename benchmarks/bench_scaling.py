"""How the default survey fitness's cost grows with population size, T and model size.

    flock /tmp/culturalign-cpu.lock .venv/bin/python benchmarks/bench_scaling.py \
        --out docs/img/bench_scaling.png --json docs/img/bench_scaling.json

Population and T on the embedded model (SmolLM2-135M-Instruct). Model size: the embedded model and
random-weight Llamas with the shapes of SmolLM2-360M and a half-depth 135M (cost does not depend
on the weights' values, only on shapes; the survey is tokenised with the embedded tokenizer).
Each point is the best of --repeats timed calls of `SurveyFitness(prompts)` after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from culturalign.model.backbone import Backbone, load_backbone
from culturalign.model.soft_prompt import init_prompt
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import SurveyFitness


def seconds(fit: SurveyFitness, prompts: torch.Tensor, repeats: int) -> float:
    fit(prompts[:1])
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fit(prompts)
        best = min(best, time.perf_counter() - t)
    return best


def shaped(base: Backbone, hidden: int, layers: int, heads: int, kv: int, inter: int) -> Backbone:
    from transformers import AutoModelForCausalLM

    cfg = base.model.config.__class__(
        **{
            **base.model.config.to_dict(),
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "intermediate_size": inter,
            "head_dim": hidden // heads,
        }
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).to(base.dtype).eval().requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    return Backbone(model, base.tokenizer, f"random, {params / 1e6:.0f}M params", "random", base.dtype, base.device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/img/bench_scaling.png")
    ap.add_argument("--json", default="docs/img/bench_scaling.json")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--replot", action="store_true", help="redraw --out from --json without measuring")
    args = ap.parse_args()
    if args.replot:
        with open(args.json) as f:
            plot(json.load(f), args.out)
        return
    base = load_backbone("embedded")
    survey = load_survey("vsm13")
    target = {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14}
    fit = SurveyFitness(base, survey, target)
    res: dict = {"dtype": str(base.dtype), "threads": torch.get_num_threads(), "population": [], "T": [], "model": []}
    for n in (1, 2, 4, 8, 16):
        p = torch.stack([init_prompt(base, 10, "random", seed=s) for s in range(n)])
        res["population"].append((n, seconds(fit, p, args.repeats)))
        print("population", res["population"][-1], flush=True)
    for T in (1, 10, 30, 60, 100):
        p = torch.stack([init_prompt(base, T, "random", seed=s) for s in range(4)])
        res["T"].append((T, seconds(fit, p, args.repeats) / 4))
        print("T", res["T"][-1], flush=True)
    models = [
        ("SmolLM2-135M (embedded)", base),
        ("135M shape, 15 layers (random)", shaped(base, 576, 15, 9, 3, 1536)),
        ("SmolLM2-360M shape (random)", shaped(base, 960, 32, 15, 5, 2560)),
    ]
    for name, bb in models:
        non_emb = sum(p.numel() for p in bb.model.parameters()) - bb.model.get_input_embeddings().weight.numel()
        p = torch.stack([init_prompt(bb, 10, "random", seed=s) for s in range(4)])
        res["model"].append((name, non_emb, seconds(SurveyFitness(bb, survey, target), p, args.repeats) / 4))
        print("model", res["model"][-1], flush=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    plot(res, args.out)


def plot(res: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    n, s = zip(*res["population"])
    ax[0].plot(n, s, "o-")
    ax[0].set(xlabel="population (candidates per call)", ylabel="seconds per call", title="population (T=10)")
    T, s = zip(*res["T"])
    ax[1].plot(T, s, "o-")
    ax[1].set(xlabel="T (virtual tokens)", ylabel="seconds per candidate", title="soft prompt length (4 candidates)")
    names, ne, s = zip(*sorted(res["model"], key=lambda m: m[1]))
    ax[2].plot([x / 1e6 for x in ne], s, "o-")
    for x, y, name in zip(ne, s, names):
        ax[2].annotate(name.split(" (")[0], (x / 1e6, y), fontsize=7)
    ax[2].set(xlabel="non-embedding parameters (M)", ylabel="seconds per candidate", title="model size (T=10)")
    fig.suptitle(f"default survey fitness, {res['dtype'].replace('torch.', '')}, {res['threads']} CPU threads")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
