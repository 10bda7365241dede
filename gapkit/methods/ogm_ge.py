"""OGM-GE: on-the-fly gradient modulation with generalization enhancement (Peng et al., CVPR 2022).

Per mini-batch, each modality's summed ground-truth softmax score,
s^u = sum_i softmax(l^u_i)_{y_i} (here with the unimodal logits of Eq. 3 of our paper), gives
the discrepancy ratio rho^a = s^a / s^v, rho^v = 1 / rho^a. The dominant modality (rho^u > 1)
has its encoder gradients multiplied by the coefficient of their Eq. 10,

    k^u = 1 - tanh(alpha * (rho^u - ratio_offset))    if rho^u > 1,    k^u = 1 otherwise,

and, for generalization enhancement (GE), Gaussian noise with the standard deviation of each
gradient is added: g <- k g + N(0, std(g)^2). The loss is L_MM alone.

``ratio_offset``: Eq. 10 of the paper, as the authors' code quotes it in a comment next to its
implementation, is 1 - tanh(alpha * rho^u) (``ratio_offset = 0``, the default), which drops to
1 - tanh(alpha) as soon as rho^u exceeds 1. ``ratio_offset = 1`` gives 1 - tanh(alpha (rho^u - 1)),
which is 1 at balance and continuous in rho.

From the authors' public code (GeWu-Lab/OGM-GE_CVPR2022, ``main.py`` and ``README.md``), as
facts: ``alpha`` = 0.8 is their README's recommendation for CREMA-D; modulation acts on the
epochs ``modulation_starts <= epoch <= modulation_ends`` (both ends included, defaults 0 and 50);
only the encoders' 4-D (convolution) weight gradients are modulated and noised, both modalities
get the noise (the weaker one with k = 1), and the noise's standard deviation is
``std(g) + 1e-8`` of the unmodulated gradient.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Context, EpochMeans, Method, StepOutput


def true_class_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum_i softmax(logits_i)_{y_i}: a modality's summed ground-truth confidence over a batch (no gradient)."""
    with torch.no_grad():
        return torch.softmax(logits.float(), dim=1).gather(1, y.long().unsqueeze(1)).sum()


def ogm_coefficients(score_a: float, score_v: float, alpha: float, ratio_offset: float = 0.0) -> tuple[float, float, float]:
    """(k_a, k_v, rho_a): the coefficients of OGM-GE's Eq. 10 from the two summed scores.

    rho_a = s_a / s_v. The dominant modality u (rho_u > 1) gets 1 - tanh(alpha (rho_u - offset)),
    the other 1; at exact balance both are 1.
    """
    rho_a = float(score_a) / max(float(score_v), 1e-12)
    rho_v = 1.0 / max(rho_a, 1e-12)
    k_a = k_v = 1.0
    if rho_a > 1:
        k_a = 1.0 - math.tanh(alpha * max(rho_a - ratio_offset, 0.0))
    elif rho_v > 1:
        k_v = 1.0 - math.tanh(alpha * max(rho_v - ratio_offset, 0.0))
    return k_a, k_v, rho_a


def modulate_encoder_gradients(encoder: torch.nn.Module, coefficient: float, noise: bool) -> None:
    """g <- k g (+ N(0, (std(g) + 1e-8)^2) with ``noise``) for the encoder's 4-D weight gradients (OGM-GE)."""
    for p in encoder.parameters():
        g = p.grad
        if g is None or g.dim() != 4:
            continue
        if noise:
            std = g.std() + 1e-8
            p.grad = g * coefficient + torch.randn_like(g) * std
        elif coefficient != 1.0:
            p.grad = g * coefficient


class OGMGE(Method):
    """OGM-GE (Peng et al., CVPR 2022) on L_MM; see the module docstring for the equations and sources."""

    name = "ogm-ge"
    defaults = {"alpha": 0.8, "modulation_starts": 0, "modulation_ends": 50, "ratio_offset": 0.0, "ge": True}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.means = EpochMeans("ogm")

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = model(audio, visual)
        return StepOutput(F.cross_entropy(logits, y), logits, logits_a, logits_v)

    def active(self, epoch: int) -> bool:
        return self.options["modulation_starts"] <= epoch <= self.options["modulation_ends"]

    def after_backward(self, model, out: StepOutput, y, ctx: Context) -> None:
        o = self.options
        k_a, k_v, rho_a = ogm_coefficients(true_class_score(out.logits_a, y), true_class_score(out.logits_v, y),
                                           o["alpha"], o["ratio_offset"])
        active = self.active(ctx.epoch)
        if active:
            modulate_encoder_gradients(model.audio_encoder, k_a, o["ge"])
            modulate_encoder_gradients(model.visual_encoder, k_v, o["ge"])
        else:
            k_a = k_v = 1.0
        self.means.add(coeff_audio=k_a, coeff_visual=k_v, ratio_audio=rho_a, active=float(active))

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self.means.reset()

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return self.means.record()
