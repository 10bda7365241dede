"""OPM: on-the-fly prediction modulation, the feed-forward half of OPM & OGM (Wei, Hu, Du and Wen, TPAMI 2024).

OPM watches the discriminative discrepancy of the modalities per mini-batch,
rho^a = s^a / s^v with s^u = sum_i softmax(l^u_i)_{y_i} from the unimodal logits (Eq. 3 of our
paper; the head's weights enter without gradient), and weakens the dominant modality in the
feed-forward stage: its feature is dropped, per sample, with probability
q^u = q_base * (1 + lambda * tanh(rho^u - 1)) (clipped to [0, 1]), which grows with the
discrepancy; the weaker modality is never dropped (q = 0). A drop is executed in a mini-batch with
probability ``p_exe``; the kept features are scaled by 1 / (1 - theta) with
theta = sum_m d_m q^m / sum_m d_m (d_m the feature sizes), as in dropout, and L_MM is computed on the
fused logits of the dropped features (samples with every modality dropped are left out). The
gradients are not modulated: that is the other strategy, OGM (:mod:`gapkit.methods.ogm`).

From the authors' public code (GeWu-Lab/BML_TPAMI2024, ``code/models/Classifier.py``,
``code/main.py`` and ``code/scripts/train_opm.sh``), as facts: the script runs ``--use_adam_drop``
without ``--use_modulation`` (the two strategies are run separately; no script combines them);
q_base = 0.5, lambda = 0.5, p_exe = 0.7; no drop during their warm-up, epochs 0-5
(``warm_up = 1 if epoch <= 5``), so ``modulation_starts`` = 6, and the drop acts on every epoch after
it; the discrepancy is computed from the features before dropping; the dropout rescaling
1 / (1 - theta); AdamW (lr 5e-5, weight decay 0.01) with StepLR(40, 0.1) for 100 epochs at batch 32
(:mod:`gapkit.methods.peer_settings`). Their code draws the masks with NumPy's and torch's global
generators; here both come from torch's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Context, EpochMeans, Method, StepOutput
from .ogm_ge import true_class_score


def opm_drop_probabilities(score_a: float, score_v: float, q_base: float, lam: float) -> tuple[float, float]:
    """(q_a, q_v): q_base (1 + lambda tanh(rho - 1)) for the dominant modality (rho > 1), 0 for the other."""
    rho_a = float(score_a) / max(float(score_v), 1e-12)
    rho_v = 1.0 / max(rho_a, 1e-12)
    q = []
    for rho in (rho_a, rho_v):
        ratio = math.tanh(max(rho - 1.0, 0.0))
        q.append(min(max(q_base * (1 + lam * ratio), 0.0), 1.0) if ratio > 0 else 0.0)
    return q[0], q[1]


def drop_features(phi_a: torch.Tensor, phi_v: torch.Tensor, q_a: float, q_v: float):
    """Per-sample Bernoulli(1 - q) masks on each modality's features, rescaled by 1 / (1 - theta).

    Returns (phi_a', phi_v', keep) with keep the samples that still have at least one modality.
    """
    b = phi_a.shape[0]
    keep_a = torch.bernoulli(torch.full((b, 1), 1.0 - q_a, device=phi_a.device))
    keep_v = torch.bernoulli(torch.full((b, 1), 1.0 - q_v, device=phi_v.device))
    d_a, d_v = phi_a.shape[1], phi_v.shape[1]
    theta = (d_a * q_a + d_v * q_v) / (d_a + d_v)
    scale = 1.0 / (1.0 - theta) if theta < 1 else 0.0
    keep = (keep_a + keep_v).squeeze(1) > 0
    return phi_a * keep_a * scale, phi_v * keep_v * scale, keep


class OPM(Method):
    """OPM: the dominant modality's features dropped in the forward pass; see the module docstring."""

    name = "opm"
    defaults = {"q_base": 0.5, "lam": 0.5, "p_exe": 0.7, "modulation_starts": 6}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.means = EpochMeans("opm")

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        o = self.options
        phi_a, phi_v = model.encode(audio, visual)
        with torch.no_grad():
            logits_a, logits_v = model.unimodal_logits(phi_a.detach(), phi_v.detach())
        q_a = q_v = 0.0
        dropped = False
        if ctx.epoch >= o["modulation_starts"]:
            q_a, q_v = opm_drop_probabilities(true_class_score(logits_a, y), true_class_score(logits_v, y),
                                              o["q_base"], o["lam"])
            dropped = (q_a > 0 or q_v > 0) and torch.rand(()).item() < o["p_exe"]
        if dropped:
            phi_a, phi_v, keep = drop_features(phi_a, phi_v, q_a, q_v)
            logits = model.head(phi_a, phi_v)[0]
            ce = F.cross_entropy(logits, y, reduction="none")
            loss = (ce * keep).sum() / keep.sum().clamp_min(1)
        else:
            logits = model.head(phi_a, phi_v)[0]
            loss = F.cross_entropy(logits, y)
        self.means.add(q_audio=q_a, q_visual=q_v, dropped=float(dropped))
        return StepOutput(loss, logits, logits_a, logits_v)

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self.means.reset()

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return self.means.record()
