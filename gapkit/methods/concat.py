"""The concat baseline of Table 1: the same model trained on L_MM alone (Eq. 5)."""
from __future__ import annotations

import torch.nn.functional as F

from .base import Context, Method, StepOutput


class Concat(Method):
    """L_MM = CE(y, f(x)) for every epoch of the budget; no auxiliary losses, no second stage."""

    name = "concat"

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = model(audio, visual)
        return StepOutput(F.cross_entropy(logits.float(), y), logits, logits_a, logits_v)  # float32 loss
