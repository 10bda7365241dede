"""The paper's method: warm-up with Eq. 7, then GMM-guided adaptive training with Eq. 10 (Algorithm 1)."""
from __future__ import annotations

from ..gap import modality_gap
from ..losses import adaptive_loss, annealing_coefficient, control_weights, warmup_loss
from .base import Context, Method, StepOutput


class Adaptive(Method):
    """Two-stage adaptive training (Algorithm 1).

    Warm-up epochs minimise L_warmup (Eq. 7). Each adaptive step starts with a GMM fit
    (Eq. 8) to the training set's gaps, done by the trainer; its epochs minimise
    L_Adaptive (Eq. 10) with weights from Eq. 9 and lambda_t = 0.96 ** t, t counted
    from 0 at the start of adaptive training and continuing across steps.
    Options ``alpha``, ``beta``, ``gamma`` and ``use_weights`` are those of Eq. 10 and
    of the ablations of Table 2; ``weight_control`` (``"gap-magnitude"`` or ``"shuffled"``,
    see :func:`~gapkit.losses.control_weights`) swaps the GMM weights for a control that
    keeps their batch mean but not the GMM's separation of samples.
    """

    name = "adaptive"
    two_stage = True
    fits_gmm = True
    defaults = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0, "use_weights": True, "weight_control": None}

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = model(audio, visual)
        if ctx.phase == "warmup":
            loss = warmup_loss(logits, logits_a, logits_v, y)
        else:
            options = dict(self.options)
            kind = options.pop("weight_control")
            weights = None
            if kind is not None:
                g = modality_gap(logits_a, logits_v, y)
                weights = control_weights(g, *ctx.mixture.posteriors(g), kind)
            loss = adaptive_loss(logits, logits_a, logits_v, y, ctx.mixture, ctx.adaptive_epoch, weights=weights,
                                 **options)
        return StepOutput(loss, logits, logits_a, logits_v)

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return {"lambda_t": annealing_coefficient(ctx.adaptive_epoch)} if ctx.phase == "adaptive" else {}
