"""Gradient-Blending (Wang, Tran and Feiszli, CVPR 2020): losses weighted by the overfitting-to-generalization ratio.

The loss blends the fused head and one head per modality,

    L = w_f CE(f(x), y) + w_a CE(l^a, y) + w_v CE(l^v, y),      sum_k w_k = 1,

with the unimodal heads taken as the unimodal logits of Eq. 3 of our paper (the two halves of
the concat head, so no parameters are added; the paper attaches a separate linear classifier
to each modality). Each head's weight comes from the paper's overfitting-to-generalization
analysis:
between two checkpoints n and n + N of training, with L^T the training loss and L^V the loss
on held-out data,

    Delta G_k = L^V_k(n) - L^V_k(n + N)                           (generalization gained)
    Delta O_k = O_k(n + N) - O_k(n),   O = L^V - L^T               (overfitting gained)
    w_k ∝ Delta G_k / Delta O_k^2          (their optimal blending weights, normalised to sum 1)

Online G-Blending re-estimates the weights every ``super_epoch`` epochs.
Held-out data: the validation split (carved from the training data, never the test split).

How the two checkpoints are measured is ours: the paper (and BalanceBenchmark's
``GBlending_trainer.py``) trains temporary copies of the model on each modality alone for N
epochs from the current state, which multiplies the epoch budget by about four. Here the
trajectory is that of the jointly trained heads themselves over the last window of
``super_epoch`` epochs: L^T is each head's running training loss of the window's first and last
epoch (train mode, as in BalanceBenchmark), L^V each head's loss on the validation split at the
end of those epochs (one eval pass over the validation split each). The first window, before any
trajectory exists, uses equal weights. A head whose held-out loss did not fall (Delta G <= 0)
gets weight 0 (BalanceBenchmark takes |Delta G| instead); if no head gained, the weights are kept.
``super_epoch`` = 10 is BalanceBenchmark's value for CREMA-D (``configs/trainer_config.yaml``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.batches import iterate_batches
from .base import Context, Method, StepOutput

HEADS = ("fused", "audio", "visual")


def ogr_weights(start: dict, end: dict, eps: float = 1e-8) -> dict | None:
    """w_k ∝ max(Delta G_k, 0) / Delta O_k^2 from {head: (L^T, L^V)} at two checkpoints; None if no head generalised."""
    raw = {}
    for k in HEADS:
        (t0, v0), (t1, v1) = start[k], end[k]
        gain = v0 - v1
        overfit = (v1 - t1) - (v0 - t0)
        raw[k] = max(gain, 0.0) / max(overfit ** 2, eps)
    total = sum(raw.values())
    if not total > 0:
        return None
    return {k: v / total for k, v in raw.items()}


@torch.no_grad()
def heldout_losses(model, split, device, batch_size: int = 64) -> dict:
    """Each head's mean cross-entropy over a split (eval mode)."""
    was = model.training
    model.eval()
    sums, n = dict.fromkeys(HEADS, 0.0), 0
    try:
        for audio, visual, y, _ in iterate_batches(split, batch_size, device):
            for k, lg in zip(HEADS, model(audio, visual)):
                sums[k] += F.cross_entropy(lg.float(), y, reduction="sum").item()
            n += len(y)
    finally:
        model.train(was)
    return {k: v / max(n, 1) for k, v in sums.items()}


class GBlending(Method):
    """Online Gradient-Blending with the Eq. 3 unimodal heads; see the module docstring."""

    name = "g-blending"
    defaults = {"super_epoch": 10}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.options["super_epoch"] < 2:
            raise ValueError("g-blending needs super_epoch >= 2 (two checkpoints per window)")
        self.weights = {k: 1.0 / len(HEADS) for k in HEADS}
        self.window_start: dict | None = None   # {head: (L^T, L^V)} at the current window's first epoch
        self.estimates = 0
        self._train_sums = dict.fromkeys(HEADS, 0.0)
        self._train_n = 0

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = model(audio, visual)
        losses = {k: F.cross_entropy(lg, y) for k, lg in zip(HEADS, (logits, logits_a, logits_v))}
        n = len(y)
        for k, v in losses.items():  # summed on the device in float64: no host sync per step, the same sums
            self._train_sums[k] = self._train_sums[k] + v.detach().double() * n
        self._train_n += n
        loss = sum(self.weights[k] * losses[k] for k in HEADS)
        return StepOutput(loss, logits, logits_a, logits_v)

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self._train_sums = dict.fromkeys(HEADS, 0.0)
        self._train_n = 0

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        n = self.options["super_epoch"]
        position = ctx.epoch % n
        record = {f"gb_weight_{k}": self.weights[k] for k in HEADS}
        if position in (0, n - 1):
            device = next(model.parameters()).device
            val = heldout_losses(model, data.val, device)
            train = {k: float(self._train_sums[k]) / max(self._train_n, 1) for k in HEADS}
            point = {k: (train[k], val[k]) for k in HEADS}
            if position == 0:
                self.window_start = point
            elif self.window_start is not None:
                new = ogr_weights(self.window_start, point)
                self.estimates += 1
                record["gb_reestimated"] = float(new is not None)
                if new is not None:
                    self.weights = new
        return record

    def state_dict(self) -> dict:
        return {"weights": dict(self.weights), "window_start": self.window_start, "estimates": self.estimates}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.weights = dict(state["weights"])
            self.window_start = state["window_start"]
            self.estimates = state["estimates"]
