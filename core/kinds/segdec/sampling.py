"""Which images an epoch visits: every defective image once plus as many OK images,
the OK ones drawn without replacement favouring those seen least so far."""

from __future__ import annotations

from typing import Any

import numpy as np

from defect_studio.kinds.segdec.config import NEG_SAMPLING


class EpochSampler:
    """Seeded epoch order over defective ("positive") and OK ("negative") items.

    Items are indices into the caller's list. The state (seen counts and the random
    generator) round-trips through ``state_dict`` so a resumed run draws the same.
    """

    def __init__(self, positives: list[int], negatives: list[int], *, seed: int = 0,
                 mode: str = "least_seen") -> None:
        if mode not in NEG_SAMPLING:
            raise ValueError(f"unknown negative sampling {mode!r}")
        self.positives = list(positives)
        self.negatives = list(negatives)
        self.mode = mode
        self.counts = np.zeros(len(self.negatives), dtype=np.int64)
        self.rng = np.random.Generator(np.random.PCG64(seed))

    @property
    def epoch_length(self) -> int:
        return len(self.positives) + min(len(self.positives), len(self.negatives))

    def draw_negatives(self, k: int) -> list[int]:
        """k distinct OK items; "least_seen" takes the lowest seen counts, ties at random."""
        k = min(k, len(self.negatives))
        if self.mode == "random":
            chosen = self.rng.choice(len(self.negatives), size=k, replace=False)
        else:
            # Sort by (count, random key): least seen first, random among equals.
            tie = self.rng.random(len(self.negatives))
            chosen = np.lexsort((tie, self.counts))[:k]
        self.counts[chosen] += 1
        return [self.negatives[i] for i in chosen]

    def epoch(self) -> list[int]:
        """The items of the next epoch in a shuffled order."""
        items = self.positives + self.draw_negatives(len(self.positives))
        order = self.rng.permutation(len(items))
        return [items[i] for i in order]

    def state_dict(self) -> dict[str, Any]:
        """Plain ints/strings/lists: loadable with torch.load(weights_only=True)."""
        return {"counts": [int(c) for c in self.counts], "rng": self.rng.bit_generator.state,
                "mode": self.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        counts = list(state["counts"])
        if len(counts) != len(self.negatives):
            raise ValueError("sampler state does not match the training images")
        self.counts = np.asarray(counts, dtype=np.int64)
        self.rng.bit_generator.state = state["rng"]
