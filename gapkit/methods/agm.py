"""AGM: adaptive gradient modulation (Li et al., ICCV 2023).

Mono-modal responses by zero-padding (their Shapley-value decomposition, written for two
modalities): with f the fused logits,

    m^a = (f(a, v) - f(0, v) + f(a, 0)) / 2,    m^v = (f(a, v) - f(a, 0) + f(0, v)) / 2,

so m^a + m^v = f(a, v) and the loss CE(m^a + m^v, y) equals L_MM in value. The gradient that
reaches the network through m^u is multiplied by an adaptive coefficient c^u:
with s^u = mean_i -log softmax(m^u_i)_{y_i} the batch's mono-modal cross-entropy and
s̄^u its running mean over all training iterations so far,

    r^a = exp(s^v - s^a),   r̄^a = exp(s̄^v - s̄^a),   c^a = exp(alpha * min(r̄^a - r^a, 10))

(and symmetrically for v): a modality doing better than its usual share relative to the other
is slowed down, a lagging one sped up.

From the authors' public code (lihong2303/AGM_ICCV2023, ``model/CREMAD_net.py`` and
``run/CREMAD_main.py``), as facts: padding zeroes the other modality's *input*; the two padded
passes run in eval mode (BatchNorm with running statistics) and gradients flow through them
as well; probabilities below 1e-8 are clamped in s^u; the running means start at 0 and are
updated after the coefficient is computed, also outside the modulation window; the gradient is
clipped to norm 1 when any gradient of the fusion layer's weight leaves [-1, 1]; the defaults
alpha = 1, modulation epochs 0-20 are their argument defaults. ``padding="feature"`` zeroes the
other modality's *feature* instead, which needs no extra encoder passes: then m^a, m^v are
exactly the unimodal logits of Eq. 3 of our paper and AGM scales the gradient through each of
them. Evaluation uses the model's own outputs (fused and Eq. 3 logits), no padded passes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Context, EpochMeans, Method, StepOutput


def scale_gradient(x: torch.Tensor, c: float) -> torch.Tensor:
    """Identity in the forward pass (exactly), gradient multiplied by ``c`` in the backward pass."""
    if c == 1.0:
        return x
    return x.detach() + c * (x - x.detach())


def mono_modal_score(m: torch.Tensor, y: torch.Tensor) -> float:
    """s = mean_i -log softmax(m_i)_{y_i}, probabilities clamped at 1e-8 (AGM's score, no gradient)."""
    with torch.no_grad():
        p = torch.softmax(m.float(), dim=1).gather(1, y.long().unsqueeze(1)).clamp_min(1e-8)
        return (-p.log()).mean().item()


def agm_coefficients(score_a: float, score_v: float, mean_a: float, mean_v: float, alpha: float) -> tuple[float, float]:
    """(c^a, c^v): AGM's modulation coefficients from the batch scores and their running means."""
    ratio_a, ratio_v = math.exp(score_v - score_a), math.exp(score_a - score_v)
    optimal_a, optimal_v = math.exp(mean_v - mean_a), math.exp(mean_a - mean_v)
    return math.exp(alpha * min(optimal_a - ratio_a, 10.0)), math.exp(alpha * min(optimal_v - ratio_v, 10.0))


class AGM(Method):
    """Adaptive gradient modulation on L_MM; see the module docstring."""

    name = "agm"
    defaults = {"alpha": 1.0, "modulation_starts": 0, "modulation_ends": 20, "padding": "input", "clip_grad": True}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.options["padding"] not in ("input", "feature"):
            raise ValueError(f"unknown AGM padding {self.options['padding']!r}; use 'input' or 'feature'")
        self.running = {"audio": 0.0, "visual": 0.0, "iterations": 0}
        self.means = EpochMeans("agm")

    def responses(self, model, audio, visual) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f(a, v), m^a, m^v, l^a, l^v): fused logits, mono-modal responses and Eq. 3 logits."""
        phi_a, phi_v = model.encode(audio, visual)
        total, logits_a, logits_v = model.head(phi_a, phi_v)
        if self.options["padding"] == "feature":
            return total, logits_a, logits_v, logits_a, logits_v
        was = model.training
        model.eval()
        try:
            audio_only = model(audio, torch.zeros_like(visual))[0]   # f(a, 0)
            visual_only = model(torch.zeros_like(audio), visual)[0]  # f(0, v)
        finally:
            model.train(was)
        m_a = 0.5 * (total - visual_only + audio_only)
        m_v = 0.5 * (total - audio_only + visual_only)
        return total, m_a, m_v, logits_a, logits_v

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        o = self.options
        total, m_a, m_v, logits_a, logits_v = self.responses(model, audio, visual)
        s_a, s_v = mono_modal_score(m_a, y), mono_modal_score(m_v, y)
        r = self.running
        c_a, c_v = agm_coefficients(s_a, s_v, r["audio"], r["visual"], o["alpha"])
        it = r["iterations"] + 1
        r["audio"] = r["audio"] * (it - 1) / it + s_a / it
        r["visual"] = r["visual"] * (it - 1) / it + s_v / it
        r["iterations"] = it
        active = o["modulation_starts"] <= ctx.epoch <= o["modulation_ends"]
        if not active:
            c_a = c_v = 1.0
        logits = scale_gradient(m_a, c_a) + scale_gradient(m_v, c_v)
        self.means.add(coeff_audio=c_a, coeff_visual=c_v, score_audio=s_a, score_visual=s_v)
        return StepOutput(F.cross_entropy(logits, y), total.detach(), logits_a, logits_v)

    def after_backward(self, model, out: StepOutput, y, ctx: Context) -> None:
        if not self.options["clip_grad"]:
            return
        g = model.fusion.weight.grad
        if g is not None and (g.max() > 1 or g.min() < -1):
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self.means.reset()

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return {**self.means.record(), "agm_running_score_audio": self.running["audio"],
                "agm_running_score_visual": self.running["visual"]}

    def state_dict(self) -> dict:
        return {"running": dict(self.running)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.running = dict(state["running"])
