"""`culturalign evaluate`: trained prompts against baselines, across wordings, on CDEval, in one report.

    culturalign evaluate checkpoints/de-sau checkpoints/gd-sau --output results
    culturalign evaluate checkpoints/de-sau --target SAU,USA,CHN,IND --generate true
    culturalign evaluate --output docs/results --markdown docs/results.md     # baselines only
    culturalign evaluate checkpoints/gd-s0 checkpoints/gd-s1 --card.enabled true   # + robustness report card

Writes `<output>/report.md`, `results.json`, `config.yaml` and PNG plots (dimensions, loss per
wording, answer positions; card.png with `--card.enabled true`, see docs/evaluation.md).
`--markdown FILE` writes the same report there too (image links made relative to it), keeping any
hand-written section between `<!-- reading -->` markers.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from typing import Any

import torch
import yaml

from culturalign.commands.common import ModelArgs, TargetArgs, backbone_record, target_record
from culturalign.commands.invocation import Invocation
from culturalign.errors import CulturalignError
from culturalign.evaluate.candidates import BASELINES, Candidate, load_runs
from culturalign.evaluate.candidates import baselines as make_baselines
from culturalign.evaluate.card import CardArgs, build_splits, robustness_card, train_parts
from culturalign.evaluate.cdeval import CdevalArgs, CdevalEval, accuracy, load_cdeval, select
from culturalign.evaluate.generalisation import Administer, Wording, WordingArgs, build_wordings, losses
from culturalign.evaluate.position import histogram
from culturalign.evaluate.splits import wording_splits
from culturalign.model.backbone import Backbone
from culturalign.model.soft_prompt import DEFAULT_NUM_VIRTUAL_TOKENS
from culturalign.survey.fitness import Answering
from culturalign.survey.scoring import Scoring
from culturalign.targets import Target, resolve_target

DEFAULT_QUESTIONS = [
    "Who are you?",
    "What do you like to do in your free time?",
    "Do you prefer working alone or as part of a team? Why?",
    "Should children always obey their parents?",
    "Is it more important to save money for the future or to enjoy life now?",
]


def resolve_targets(target: TargetArgs) -> list[Target]:
    """`SAU`, `Saudi Arabia`, six numbers, or several countries `SAU,USA,CHN,IND`."""
    text = target.country.strip()
    numeric = text[:1].isdigit() or text[:1] in "+-." or "=" in text
    if "," in text and not numeric:
        return [resolve_target(part.strip(), target.source) for part in text.split(",") if part.strip()]
    return [target.resolve()]


def target_key(t: Target) -> str:
    return t.iso3 or t.name


def machine_record() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def evaluate(
    runs: list[str] = [],  # noqa: B006 - jsonargparse reads the default
    model: ModelArgs = ModelArgs(),
    target: TargetArgs = TargetArgs(),
    scoring: Scoring = Scoring(),
    answering: Answering = Answering(),
    survey: WordingArgs = WordingArgs(),
    cdeval: CdevalArgs = CdevalArgs(),
    card: CardArgs = CardArgs(),
    baselines: list[str] = list(BASELINES),  # noqa: B006
    num_virtual_tokens: int = DEFAULT_NUM_VIRTUAL_TOKENS,
    seed: int = 0,
    generate: bool = False,
    questions: list[str] = DEFAULT_QUESTIONS,  # noqa: B006
    max_new_tokens: int = 48,
    output: str = "results",
    markdown: str | None = None,
    json_output: bool = False,
    force: bool = False,
    invocation: Invocation = Invocation(),
) -> dict[str, Any]:
    """Compare run directories with built-in baselines: VSM13, generalisation, positions, CDEval.

    Args:
        runs: Run directories from `culturalign fit` (any optimizer); positional: `evaluate DIR DIR`.
        model: Frozen backbone (the one the runs were trained on).
        target: Country or countries compared with: `SAU`, `SAU,USA,CHN,IND`, or six scores.
        scoring: Loss kind (the headline column; L1 and L2 are both reported) and constants.
        answering: How the model answers (the same for every prompt).
        survey: Base wording, paraphrases, held-out wordings and the reversed scale.
        cdeval: CDEval accuracy in both option orders (needs a local CDEval.json).
        card: Robustness report card (`--card.enabled true`): ratio to no prompt on train, development and
            test wordings and layouts, each answer order alone, over seeds; rank among countries; format noise.
        baselines: Built-in prompts: none, instruction (one per target), random, vocab, text (untrained soft prompts).
        num_virtual_tokens: T of the untrained soft-prompt baselines.
        seed: Seed of the untrained soft prompts.
        generate: Also write open-ended answers to `questions` for every prompt.
        questions: Questions for `--generate`.
        max_new_tokens: Tokens per open-ended answer.
        output: Folder for report.md, results.json, config.yaml and the PNG plots.
        markdown: Also write the report to this Markdown file (e.g. docs/results.md).
        json_output: Print the results JSON instead of the report (also `--json`).
        force: Accept checkpoints trained on another backbone id.
        invocation: Set by the CLI: the resolved options, written beside the report as config.yaml.
    """
    from culturalign.evaluate.report import write_report

    if not runs and not baselines:
        raise CulturalignError("nothing to evaluate: pass run directories and/or --baselines [none,instruction,...]")
    t0 = time.time()
    targets = resolve_targets(target)
    # The card's wordings and layouts are checked before the model is loaded.
    card_splits = build_splits(card, survey.base) if card.enabled else None
    backbone = model.load()
    candidates = load_runs(runs, backbone, force) + make_baselines(backbone, baselines, targets, num_virtual_tokens, seed)
    card_trains = None if card_splits is None else train_parts(candidates, card, survey.base, card_splits)
    wordings = build_wordings(survey, answering.debias)
    ask = Administer(backbone, scoring, answering)
    cd_path = cdeval.resolved_path()
    cd_subset = None if cd_path is None else select(load_cdeval(cd_path), cdeval)
    cd_eval = None if cd_subset is None else CdevalEval(backbone, cd_subset, answering, cdeval.batch_rows)
    timing: dict[str, float] = {}
    prompts = [
        _evaluate_one(
            cand, ask, wordings, targets, scoring, cd_eval, generate, questions, max_new_tokens, seed, answering, backbone, timing
        )
        for cand in candidates
    ]
    card_record = None
    if card_splits is not None and card_trains is not None:
        t = time.time()
        card_ask = Administer(backbone, scoring, replace(answering, debias=False))
        card_record = robustness_card(candidates, card_ask, card, card_splits, card_trains, targets, scoring, target.source)
        timing["card"] = time.time() - t
    timing["total"] = time.time() - t0
    results = {
        "command": _command_line(),
        "config": _config(invocation),
        "machine": machine_record(),
        "model": backbone_record(backbone),
        **_settings(ask, wordings, scoring, answering),
        "targets": [{"key": target_key(tg), **target_record(tg)} for tg in targets],
        "cdeval": None
        if cd_subset is None
        else {
            "path": str(cd_path),
            "dimensions": list(cd_subset),
            "n": {d: len({e.group for e in r}) for d, r in cd_subset.items()},
            "fold": cdeval.fold,
            "folds": cdeval.folds,
            "seed": cdeval.seed,
            "data_limit": cdeval.data_limit,
            "answering": cd_eval.describe(),
        },
        "questions": questions if generate else [],
        "generate_max_new_tokens": max_new_tokens,
        "prompts": prompts,
        "card": card_record,
        "seconds": {k: round(v, 1) for k, v in timing.items()},
    }
    _emit(results, write_report(results, output, markdown), json_output)
    return results


def _settings(ask: Administer, wordings: list[Wording], scoring: Scoring, answering: Answering) -> dict[str, Any]:
    """How every prompt was asked and scored: constants, answering, survey and its wordings."""
    fit0 = ask.fitness(wordings[0], answering.instruction)
    return {
        "scoring": {"loss_kind": scoring.loss, "constants": fit0.constants, "weights": scoring.weights},
        "answering": {k: getattr(answering, k) for k in ("mode", "debias", "instruction", "max_new_tokens")},
        "survey": {"base": fit0.survey.origin, "framework": fit0.survey.framework, "dimensions": list(fit0.survey.dimensions)},
        "wordings": [{"label": w.label, "kind": w.kind, "origin": w.survey.origin, "wording": w.survey.wording} for w in wordings],
    }


def _emit(results: dict[str, Any], paths: dict[str, Any], json_output: bool) -> None:
    """The results JSON (--json), or the report and where it was written."""
    if json_output:
        import json

        print(json.dumps(results, indent=2))
    else:
        print(paths["report_text"])
        print(f"\nwrote {', '.join(str(p) for k, p in paths.items() if k != 'report_text')}", file=sys.stderr)


def _evaluate_one(
    cand: Candidate,
    ask: Administer,
    wordings: list[Wording],
    targets: list[Target],
    scoring: Scoring,
    cd_eval: CdevalEval | None,
    generate: bool,
    questions: list[str],
    max_new_tokens: int,
    seed: int,
    answering: Answering,
    backbone: Backbone,
    timing: dict[str, float],
) -> dict[str, Any]:
    """One prompt's record: every wording's indices, answers and losses; answer positions; CDEval; open answers."""
    from culturalign.commands.generate import generate_text

    rec: dict[str, Any] = {
        "label": cand.label,
        "kind": cand.kind,
        "run_dir": cand.run_dir,
        "instruction": cand.instruction,
        "info": cand.info,
        # train (this prompt was trained on it) / development / test / held out, per wording label
        "splits": wording_splits(cand.info, wordings),
        "survey": {},
    }
    dists = []
    t = time.time()
    for w in wordings:
        res = ask(cand, w)
        dists.append(res["distributions"])
        rec["survey"][w.label] = {
            "dimensions": {d: round(v, 3) for d, v in res["indices"].items()},
            "answers": [round(float(a), 4) for a in res["answers"]],
            "invalid_answers": res["invalid"],
            "failed": res["failed"],
            "loss": {target_key(tg): losses(res["indices"], tg, scoring) for tg in targets},
        }
    timing["survey"] = timing.get("survey", 0.0) + time.time() - t
    rec["position"] = histogram(dists)
    if cd_eval is not None:
        t = time.time()
        raw = cd_eval(cand)
        rec["cdeval"] = {target_key(tg): accuracy(raw, tg) for tg in targets}
        timing["cdeval"] = timing.get("cdeval", 0.0) + time.time() - t
    if generate:
        t = time.time()
        rec["generate"] = {
            q: generate_text(backbone, cand.prompt, q, max_new_tokens, 0.0, seed, cand.instruction or answering.instruction)
            for q in questions
        }
        timing["generate"] = timing.get("generate", 0.0) + time.time() - t
    print(
        f"evaluated {cand.label}: {scoring.loss.upper()} {rec['survey']['base']['loss'][target_key(targets[0])][scoring.loss]:.2f}",
        file=sys.stderr,
    )
    return rec


def _command_line() -> str:
    """The command as typed when run from the console script; else rebuilt from the config."""
    if sys.argv and os.path.basename(sys.argv[0]) == "culturalign":
        return "culturalign " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return ""


def _config(invocation: Invocation) -> dict[str, Any]:
    """The resolved options of this invocation (what `--config` reads back)."""
    if not invocation.config_yaml:
        return {}
    cfg = yaml.safe_load(invocation.config_yaml) or {}
    inner = cfg.get("evaluate", {}) if isinstance(cfg, dict) else {}
    return {k: v for k, v in inner.items() if k != "config"}
