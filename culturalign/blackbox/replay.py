"""Black-box optimizer state as a record of asks and tells, and resume as their replay.

An optimizer's state is never saved: the loop records, per generation, the SHA-256 of the
candidates it was asked to score (float64 bytes) and the losses it told back. Resume builds a
freshly seeded optimizer with the same setup and replays the record: ask, check the candidates
against the recorded digest, tell the recorded losses. Every shipped optimizer is deterministic
given its seed (nevergrad seeds its own generator and drives cma with it), so the replayed one
is bit-identical to the one that was killed; one that is not (other settings, seed, library
version) is refused at the first generation that differs instead of silently continuing
another run. Nothing is unpickled, and the state is a few numbers per evaluation whatever the
search dimension (candidates are not stored: they are a function of the seed and the losses).

    state tensors: asks_sha256 uint8 [G, 32], losses float64 [G, popsize]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from culturalign.blackbox.protocol import BlackBoxOptimizer
from culturalign.errors import CulturalignError

DIGESTS, LOSSES = "asks_sha256", "losses"
OLD_PICKLE = "optimizer"  # culturalign <= 0.1 stored a pickled optimizer under this key


def digest(candidates: np.ndarray) -> bytes:
    """SHA-256 of a generation's candidates as little-endian float64: equal digests, equal bits."""
    return hashlib.sha256(np.ascontiguousarray(candidates, dtype="<f8").tobytes()).digest()


@dataclass
class AskTellRecord:
    """Every generation's asked candidates (by digest) and told losses, in order."""

    digests: list[bytes] = field(default_factory=list)
    losses: list[np.ndarray] = field(default_factory=list)

    def add(self, candidates: np.ndarray, losses: np.ndarray) -> None:
        self.digests.append(digest(candidates))
        self.losses.append(np.asarray(losses, dtype=np.float64).copy())

    def __len__(self) -> int:
        return len(self.digests)

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors for last/state.safetensors (empty record: shapes [0, 32] and [0, 0])."""
        digests = torch.tensor([list(d) for d in self.digests], dtype=torch.uint8).view(len(self), 32)
        losses = torch.from_numpy(np.stack(self.losses)) if self.losses else torch.zeros(0, 0, dtype=torch.float64)
        return {DIGESTS: digests, LOSSES: losses}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], where: Path) -> "AskTellRecord":
        """The record in a resume point's tensors; `where` (its folder) only names it in errors."""
        if OLD_PICKLE in state:
            raise CulturalignError(
                f"{where} holds a pickled optimizer state from an older culturalign, which is no longer read "
                "(a pickle can run code); pass --run.resume false to start the run over"
            )
        digests, losses = state.get(DIGESTS), state.get(LOSSES)
        if (
            digests is None
            or losses is None
            or digests.dtype != torch.uint8
            or losses.dtype != torch.float64
            or digests.dim() != 2
            or digests.shape[1] != 32
            or losses.dim() != 2
            or len(digests) != len(losses)
        ):
            raise CulturalignError(
                f"{where}/state.safetensors has no valid {DIGESTS}/{LOSSES} record; "
                "delete that last/ folder or pass --run.resume false to start over"
            )
        return cls([bytes(row.tolist()) for row in digests], [row.numpy().copy() for row in losses])

    def replay(self, optimizer: BlackBoxOptimizer, where: Path) -> None:
        """Bring a freshly set-up optimizer to the recorded point; refuse at the first differing ask."""
        for g, (want, losses) in enumerate(zip(self.digests, self.losses), start=1):
            candidates = optimizer.ask()
            if digest(candidates) != want:
                raise CulturalignError(
                    f"cannot resume {where}: {optimizer.name} asks other candidates than the run recorded at "
                    f"generation {g} of {len(self)} (its settings, popsize, seed, search space or library versions "
                    "differ from the run's); rerun with the run's config.yaml, or pass --run.resume false to start over"
                )
            optimizer.tell(candidates, losses)
