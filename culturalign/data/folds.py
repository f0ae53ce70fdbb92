"""Seeded, stratified K-fold splits over *groups* (a question and all its counterbalanced orders).

Splitting by group keeps both option orders of a CDEval question (or all scale orders of a
synthetic paraphrase) on the same side of a split, so the test fold never holds a mirror image of
a training row. Stratification is by a label per group (CDEval domain, VSM13 item): groups are
shuffled within each stratum and dealt round-robin, so every fold gets an equal share of every
stratum (sizes differ by at most one).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from culturalign.errors import CulturalignError


def interleave(strata: dict[int, str], seed: int) -> list[int]:
    """Groups in a seeded order that alternates strata: any prefix of it is stratified.

    Input: group id -> stratum label. Output: every group id once.
    """
    by: dict[str, list[int]] = defaultdict(list)
    for g in sorted(strata):
        by[strata[g]].append(g)
    rng = random.Random(seed)
    lists = []
    for name in sorted(by):
        ids = by[name][:]
        rng.shuffle(ids)
        lists.append(ids)
    # Deal stratum by stratum in proportion to size: position of the i-th of n in [0, 1).
    keyed = [((i + 0.5) / len(ids), s, g) for s, ids in enumerate(lists) for i, g in enumerate(ids)]
    return [g for _, _, g in sorted(keyed)]


@dataclass(frozen=True)
class FoldPlan:
    """Fold id per group, recorded in the run folder so a resumed run splits identically."""

    k: int
    seed: int
    fold_of: dict[int, int]
    strata: dict[int, str]
    val_fraction: float

    def split(self, fold: int) -> tuple[list[int], list[int], list[int]]:
        """(train, val, test) group ids for one fold.

        k >= 2: test = fold `fold`; val = a stratified `val_fraction` of the rest; train = the remainder.
        k == 1: one split; val = a stratified `val_fraction` of all groups and test is the same set.
        """
        if not 0 <= fold < self.k:
            raise CulturalignError(f"fold {fold} is outside 0..{self.k - 1}")
        test = sorted(g for g, f in self.fold_of.items() if f == fold) if self.k > 1 else []
        rest = {g: s for g, s in self.strata.items() if g not in set(test)}
        order = interleave(rest, self.seed + 7919 * (fold + 1))
        n_val = max(1, round(self.val_fraction * len(order))) if self.val_fraction > 0 else 0
        val = sorted(order[:n_val])
        train = sorted(order[n_val:])
        if not train:
            raise CulturalignError(f"fold {fold} leaves no training examples; lower --data.val_fraction or --cv.folds")
        return train, val, (test if self.k > 1 else val)

    def to_json(self) -> dict:
        return {
            "k": self.k,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "fold_of": {str(g): f for g, f in sorted(self.fold_of.items())},
            "strata": {str(g): s for g, s in sorted(self.strata.items())},
        }


def stratified_folds(strata: dict[int, str], k: int, seed: int, val_fraction: float = 0.1) -> FoldPlan:
    """Assign every group to one of k folds, stratified by its label. Input: group id -> stratum."""
    if k < 1:
        raise CulturalignError(f"--cv.folds {k} must be >= 1 (1 = a single train/val split)")
    if not 0 <= val_fraction < 1:
        raise CulturalignError(f"--data.val_fraction {val_fraction} must be in [0, 1); try 0.1")
    if k > len(strata):
        raise CulturalignError(f"--cv.folds {k} is more than the {len(strata)} questions available; lower it")
    if k == 1 and val_fraction == 0:
        raise CulturalignError("--cv.folds 1 needs a held-out split: pass --data.val_fraction 0.1")
    # Deal each stratum's shuffled groups round-robin, the counter running on across strata:
    # every stratum is spread evenly over the folds and fold sizes differ by at most one.
    rng = random.Random(seed)
    fold_of, i = {}, 0
    for name in sorted(set(strata.values())):
        ids = sorted(g for g, s in strata.items() if s == name)
        rng.shuffle(ids)
        for g in ids:
            fold_of[g] = i % k
            i += 1
    return FoldPlan(k, seed, fold_of, dict(strata), val_fraction)
