"""Balanced multimodal learning against greedy learning (Wu, Jastrzebski, Cho and Geras, ICML 2022).

The paper's network has one branch per modality, each with its own classifier, and cross-modal
connections between them: MMTM layers (multimodal transfer modules: squeeze both feature maps,
excite each from the joint code). The prediction is the mean of the two branches' outputs,
f(x) = (h_a(phi_a) + h_v(phi_v)) / 2. The conditional utilization rate of a modality, how much the
model relies on it given the other, is estimated during training by the *conditional learning
speed*; for modality m,

    M_main^m  += sum ||g||^2 / sum ||w||^2  over the parameters of branch m (its classifier included)
    M_bypass^m += the same over the cross-modal (MMTM) parameters feeding branch m
    BDR^m = log10(M_bypass^m / M_main^m),    d = BDR^audio - BDR^visual.

When |d| > ``epsilon`` the model has been learning greedily from one modality, and a
*re-balancing* window of ``window`` steps follows: the cross-modal input to
the modality that leans on the bypass most (audio if d > 0, else visual) is cut, its MMTM
excitation replaced by the running average of that excitation, so the modality must learn from
its own branch. The loss is L_MM (cross-entropy of f) throughout.

In our model :meth:`Greedy.setup` adds three MMTM layers (``model.greedy_mmtm``), after the
second, third and fourth ResNet stages of both encoders, and one linear classifier per branch
(``model.greedy_heads``); the concat head of the AVClassifier is not used. The method runs its own
forward pass through the encoders' stages (:func:`greedy_forward`), also at evaluation; the
unimodal logits it reports are the branch classifiers' outputs.

From the authors' public code (nyukat/greedy_multimodal_learning, ``MMTM_MVCNN`` in
``src/model.py``, ``MMTM_mitigate`` in ``src/balanced_mmtm.py``, ``Bias_Mitigation_Strong`` in
``src/callbacks.py``, ``configs/training_guided.gin``), as facts: MMTM after layers 2, 3 and 4 only;
each branch's own ``fc`` and the prediction ``(x_0 + x_1) / 2``; the excitation is a sigmoid that
multiplies the feature map, the squeeze layer has 2 (C_a + C_v) / ratio units with ratio 4; the
speeds are cumulative sums over all measured steps, a branch's main parameters include its
classifier, the shared squeeze layer counts for both modalities' bypass; d is measured after every
backward pass outside the re-balancing windows, the decision takes effect from the next step;
``epsilon`` = 0.01, ``window`` = 5 (``curation_windowsize``) and ``starting_epoch`` = 2 from the
guided configuration. Their training loop numbers epochs from 1 and unlocks re-balancing at the
start of epoch ``starting_epoch``, i.e. after one full epoch; gapkit numbers epochs from 0, so
re-balancing is allowed from its epoch ``starting_epoch - 1`` (before it, d is measured but never
acted on). The running average of an excitation is the mean over all training steps of its batch
mean (the public code updates the second modality's average from the first modality's excitation,
which we do not copy). Their optimizer (SGD, lr 0.1, no momentum or weight decay, batch 8, the loss
on a plateau reducing the lr; :mod:`gapkit.methods.peer_settings`) was set for their ModelNet40
views, not for audio-visual data. BalanceBenchmark's CREMA-D configuration uses ``alpha`` (epsilon)
= 0.001 and a window of 5.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Context, EpochMeans, Method, StepOutput


class MMTM(nn.Module):
    """A multimodal transfer module between an audio map (B, Ca, H, W) and a visual map (B, T, Cv, H', W')."""

    def __init__(self, channels_audio: int, channels_visual: int, ratio: int = 4) -> None:
        super().__init__()
        total = channels_audio + channels_visual
        hidden = int(2 * total / ratio)
        self.squeeze = nn.Linear(total, hidden)
        self.excite_audio = nn.Linear(hidden, channels_audio)
        self.excite_visual = nn.Linear(hidden, channels_visual)
        self.register_buffer("running_audio", torch.zeros(channels_audio))
        self.register_buffer("running_visual", torch.zeros(channels_visual))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, a: torch.Tensor, v: torch.Tensor, curation: bool = False, caring: int = 0):
        z = torch.cat([a.mean(dim=(2, 3)), v.mean(dim=(1, 3, 4))], dim=1)
        h = F.relu(self.squeeze(z))
        e_a = torch.sigmoid(self.excite_audio(h))
        e_v = torch.sigmoid(self.excite_visual(h))
        if self.training:
            with torch.no_grad():
                n = self.steps.item()
                self.running_audio.copy_((e_a.mean(0) + self.running_audio * n) / (n + 1))
                self.running_visual.copy_((e_v.mean(0) + self.running_visual * n) / (n + 1))
                self.steps += 1
        if curation and caring == 0:
            e_a = self.running_audio.expand_as(e_a)
        elif curation and caring == 1:
            e_v = self.running_visual.expand_as(e_v)
        return a * e_a[:, :, None, None], v * e_v[:, None, :, None, None]


#: the encoder stages followed by an MMTM layer (0-based: ResNet's layer2, layer3 and layer4), as in the authors' model
MMTM_STAGES = (1, 2, 3)


def greedy_forward(model, audio: torch.Tensor, visual: torch.Tensor, curation: bool = False, caring: int = 0):
    """(f(x), h_a(phi_a), h_v(phi_v)): the two branches with ``model.greedy_mmtm`` after stages 2-4, heads averaged."""
    enc_a, enc_v = model.audio_encoder, model.visual_encoder.frame_encoder
    b, t = visual.shape[:2]
    a = enc_a.stem(audio)
    v = enc_v.stem(visual.flatten(0, 1))
    mmtms = iter(model.greedy_mmtm)
    for i, (stage_a, stage_v) in enumerate(zip(enc_a.stages, enc_v.stages)):
        a, v = stage_a(a), stage_v(v)
        if i in MMTM_STAGES:
            a, v5 = next(mmtms)(a, v.view(b, t, *v.shape[1:]), curation, caring)
            v = v5.flatten(0, 1)
    phi_a = torch.flatten(enc_a.pool(a), 1)
    phi_v = torch.flatten(enc_v.pool(v), 1).view(b, t, -1).mean(dim=1)
    out_a, out_v = model.greedy_heads[0](phi_a), model.greedy_heads[1](phi_v)
    return 0.5 * (out_a + out_v), out_a, out_v


def speed_ratio(params) -> float:
    """sum ||g||^2 / sum ||w||^2 over parameters (those without a gradient count as 0 gradient)."""
    g2 = w2 = 0.0
    gs, ws = [], []
    for p in params:
        ws.append(p.detach().float().pow(2).sum())
        if p.grad is not None:
            gs.append(p.grad.detach().float().pow(2).sum())
    if ws:
        w2 = torch.stack(ws).sum().item()
    if gs:
        g2 = torch.stack(gs).sum().item()
    return g2 / max(w2, 1e-30)


class Greedy(Method):
    """Greedy-learning re-balancing with MMTM layers; see the module docstring."""

    name = "greedy"
    defaults = {"epsilon": 0.01, "window": 5, "starting_epoch": 2, "ratio": 4}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.speeds = {"main_audio": 0.0, "main_visual": 0.0, "bypass_audio": 0.0, "bypass_visual": 0.0}
        self.curation, self.caring, self.curation_step = False, 0, 0
        self.d = 0.0
        self.means = EpochMeans("greedy")

    def setup(self, model) -> None:
        if hasattr(model, "greedy_mmtm"):
            return
        device = next(model.parameters()).device
        chans_a = [stage[-1].bn2.num_features for stage in model.audio_encoder.stages]
        chans_v = [stage[-1].bn2.num_features for stage in model.visual_encoder.frame_encoder.stages]
        model.greedy_mmtm = nn.ModuleList(MMTM(chans_a[i], chans_v[i], self.options["ratio"])
                                          for i in MMTM_STAGES).to(device)
        model.greedy_heads = nn.ModuleList(nn.Linear(model.feature_dim, model.num_classes)
                                           for _ in range(2)).to(device)

    def conditional_speed(self, model) -> float:
        """Add this step's speeds to the cumulative sums and return d = BDR^audio - BDR^visual."""
        shared = [p for m in model.greedy_mmtm for p in m.squeeze.parameters()]
        s = self.speeds
        s["main_audio"] += speed_ratio([*model.audio_encoder.parameters(), *model.greedy_heads[0].parameters()])
        s["main_visual"] += speed_ratio([*model.visual_encoder.parameters(), *model.greedy_heads[1].parameters()])
        s["bypass_audio"] += speed_ratio(shared + [p for m in model.greedy_mmtm for p in m.excite_audio.parameters()])
        s["bypass_visual"] += speed_ratio(shared + [p for m in model.greedy_mmtm for p in m.excite_visual.parameters()])
        tiny = 1e-30
        bdr_a = math.log10(max(s["bypass_audio"], tiny) / max(s["main_audio"], tiny))
        bdr_v = math.log10(max(s["bypass_visual"], tiny) / max(s["main_visual"], tiny))
        return bdr_a - bdr_v

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = greedy_forward(model, audio, visual, self.curation, self.caring)
        self.means.add(curation=float(self.curation), caring_audio=float(self.curation and self.caring == 0),
                       caring_visual=float(self.curation and self.caring == 1))
        return StepOutput(F.cross_entropy(logits, y), logits, logits_a, logits_v)

    def after_backward(self, model, out: StepOutput, y, ctx: Context) -> None:
        o = self.options
        if ctx.epoch + 1 < o["starting_epoch"]:  # the authors count epochs from 1
            self.d = self.conditional_speed(model)
            self.curation, self.caring = False, 0
        elif not self.curation:
            self.d = self.conditional_speed(model)
            if abs(self.d) > o["epsilon"]:
                self.curation, self.curation_step = True, 0
                self.caring = 0 if self.d > 0 else 1
            else:
                self.curation, self.caring = False, 0
        else:
            self.curation_step += 1
            if self.curation_step >= o["window"]:
                self.curation = False

    def predict(self, model, audio, visual):
        return greedy_forward(model, audio, visual)

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self.means.reset()

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return {**self.means.record(), "greedy_d": self.d}

    def state_dict(self) -> dict:
        return {"speeds": dict(self.speeds), "curation": self.curation, "caring": self.caring,
                "curation_step": self.curation_step, "d": self.d}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.speeds = dict(state["speeds"])
            self.curation, self.caring = state["curation"], state["caring"]
            self.curation_step, self.d = state["curation_step"], state["d"]
