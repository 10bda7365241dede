"""Controls that separate the ingredients of the two-stage method (not in the paper).

The adaptive method differs from concat in three ways at once: the unimodal losses of
its warm-up (Eq. 7), the optimizer reset between its stages, and the GMM-weighted gap
terms of Eq. 10. These methods keep the first one or two and drop the rest, with the
same epoch budget, so Table 1 can say which ingredient carries the gain.
"""
from __future__ import annotations

from ..losses import warmup_loss
from .base import Context, Method, StepOutput


class WarmupOnly(Method):
    """Eq. 7 (L_MM + L_a + L_v) for the whole budget: the unimodal auxiliary losses alone.

    Two stages with the same loss and the optimizer state kept across the boundary, so that the run
    can branch from the adaptive method's warm-up checkpoint and select its model after warm-up,
    exactly as the method it controls for.
    """

    name = "warmup-only"
    two_stage = True
    reset_optimizer = False

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = model(audio, visual)
        return StepOutput(warmup_loss(logits, logits_a, logits_v, y), logits, logits_a, logits_v)


class WarmupReset(WarmupOnly):
    """Eq. 7 for the whole budget with the optimizer reset where adaptive training would start: the reset alone."""

    name = "warmup-reset"
    reset_optimizer = True
