"""The signed alpha's policy (SPEC section 3): what a run's (alpha, alpha_mode) trains.

Two rules live here and nowhere else: confusion at alpha >= 0 is grl, and weighted mode at
alpha = 0 drops the head. The model, the Lightning module, the bench and the analysis ask an
AlphaPolicy; `mae_gap.losses.head_terms` builds the head's loss terms from its answers.
Pure Python (no torch), so the config and the analysis can ask it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AlphaMode = Literal["grl", "weighted", "confusion"]  # TrainConfig.alpha_mode's choices


@dataclass(frozen=True)
class AlphaPolicy:
    """How alpha enters a run's objective. `mode` is as configured (TrainConfig validates it)."""

    alpha: float
    mode: AlphaMode

    @property
    def runs(self) -> AlphaMode:
        """The mode that actually runs: confusion at alpha >= 0 IS grl (the same code path, bit for bit)."""
        return "grl" if self.mode == "confusion" and self.alpha >= 0 else self.mode

    @property
    def head_trains(self) -> bool:
        """Whether the supervised head is in the objective and the optimizer. Weighted mode at
        alpha = 0 is rec + 0 * CE: the head is left out (its CE is still logged)."""
        return not (self.mode == "weighted" and self.alpha == 0)
