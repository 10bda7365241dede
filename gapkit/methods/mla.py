"""MLA: multimodal learning by alternating unimodal adaptation (Zhang, Yoon, Bansal and Yao, CVPR 2024).

Each mini-batch trains the modalities one after the other through one *shared* head
h: R^d -> R^M: for m = audio, then visual, L_m = CE(h(phi_m(x^m)), y) is
back-propagated and the optimizer steps before the next modality's forward pass. To keep one
modality's update of the shared head from erasing what the previous ones taught it, the head's
weight gradient is modified with an orthogonal projector P onto the complement of the inputs seen
so far (their gradient modification, an OWM-style recursive projector): with r the batch
mean of the current modality's features,

    k = P r,   P <- P - k k^T / (a + r^T k),   P <- P / ||P||_F,   a = 0.1 ** (1 + b / B)

(b the mini-batch index in the epoch, B the batches per epoch), then the gradient G of the head's
weight becomes G + G P (``projection="add"``, the authors' public code) or G P
(``projection="replace"``, the pure projection). G P r ~ 0: the projected part of the update
does not change the head's output on the mean inputs seen before. At test time the
modalities' outputs are fused with weights from their uncertainty: with e_m the entropy of
softmax(h(phi_m)) for each sample, lambda_m = exp(max_m' e_m' - e_m) / sum(...), and
f(x) = sum_m lambda_m h(phi_m); :meth:`MLA.predict` returns it.

The shared head is a Linear(d, M) added to the model (``model.mla_head``) by :meth:`MLA.setup`;
the concat head of the AVClassifier is not used. From the authors' public code (``main.py`` and
``utils.GSPlugin`` of their MLA repository, mirrored in BalanceBenchmark's ``MLA_trainer.py``),
as facts: the order audio then visual, one optimizer step per modality, the schedule of a, P
starting at the identity and the modification skipped on the very first sub-step, only the
head's weight (not its bias) modified, the Frobenius normalisation and the additive form
G + G P. Their entropy is computed over the batch dimension (one weight per batch); the paper
and BalanceBenchmark compute it per sample, as here. The recorded training loss is the mean of
the two modalities' losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Context, Method, StepOutput


def update_projector(P: torch.Tensor, r: torch.Tensor, a: float) -> torch.Tensor:
    """One recursive step k = P r, P - k k^T / (a + r^T k), normalised to unit Frobenius norm (r: (d,) or (1, d))."""
    r = r.reshape(1, -1).to(P)
    k = P @ r.T
    P = P - (k @ k.T) / (a + (r @ k))
    return P / torch.linalg.matrix_norm(P)


def modify_gradient(grad: torch.Tensor, P: torch.Tensor, mode: str = "add") -> torch.Tensor:
    """G + G P^T (``add``) or G P^T (``replace``) for a head weight gradient G (M, d)."""
    projected = grad @ P.T
    if mode == "add":
        return grad + projected
    if mode == "replace":
        return projected
    raise ValueError(f"unknown MLA projection {mode!r}; use 'add' or 'replace'")


def entropy_weights(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """lambda_m = exp(max e - e_m) / sum: per-sample weights from the entropies of softmax(outputs)."""
    ent = []
    for out in outputs:
        logp = torch.log_softmax(out.float(), dim=1)
        ent.append(-(logp.exp() * logp).sum(1, keepdim=True))
    e = torch.cat(ent, dim=1)
    w = torch.exp(e.max(dim=1, keepdim=True).values - e)
    w = w / w.sum(dim=1, keepdim=True)
    return [w[:, i:i + 1] for i in range(len(outputs))]


def fuse(out_a: torch.Tensor, out_v: torch.Tensor, mode: str = "entropy") -> torch.Tensor:
    if mode == "entropy":
        w_a, w_v = entropy_weights([out_a, out_v])
        return w_a * out_a + w_v * out_v
    if mode == "average":
        return 0.5 * (out_a + out_v)
    raise ValueError(f"unknown MLA fusion {mode!r}; use 'entropy' or 'average'")


class MLA(Method):
    """Alternating unimodal training through a shared head; see the module docstring."""

    name = "mla"
    defaults = {"projection": "add", "fusion": "entropy"}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        modify_gradient(torch.zeros(1, 1), torch.eye(1), self.options["projection"])
        fuse(torch.zeros(1, 2), torch.zeros(1, 2), self.options["fusion"])
        self.P: torch.Tensor | None = None
        self.sub_steps = 0
        self._batch = 0
        self._last_visual: torch.Tensor | None = None

    def setup(self, model) -> None:
        if not hasattr(model, "mla_head"):
            device = next(model.parameters()).device
            model.mla_head = nn.Linear(model.feature_dim, model.num_classes).to(device)
        if self.P is None:
            self.P = torch.eye(model.feature_dim, device=next(model.parameters()).device)

    def _modify(self, model, features: torch.Tensor, ctx: Context) -> None:
        weight = model.mla_head.weight
        if self.P.device != weight.device:
            self.P = self.P.to(weight.device)
        if self.sub_steps != 0 and weight.grad is not None:
            batches = max(ctx.batches_per_epoch, 1)
            a = 0.1 ** (self._batch / batches + 1)
            self.P = update_projector(self.P, features.detach().float().mean(0), a)
            weight.grad = modify_gradient(weight.grad, self.P, self.options["projection"])
        self.sub_steps += 1

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        if ctx.optimizer is None:
            raise RuntimeError("mla takes one optimizer step per modality and needs ctx.optimizer")
        head = model.mla_head
        phi_a = model.audio_encoder(audio)
        out_a = head(phi_a)
        loss_a = F.cross_entropy(out_a, y)
        if not torch.isfinite(loss_a):
            return StepOutput(loss_a, out_a, out_a, out_a)  # the trainer stops on it
        ctx.optimizer.zero_grad(set_to_none=True)
        loss_a.backward()
        self._modify(model, phi_a, ctx)
        ctx.optimizer.step()
        ctx.optimizer.zero_grad(set_to_none=True)
        phi_v = model.visual_encoder(visual)
        out_v = head(phi_v)
        loss_v = F.cross_entropy(out_v, y)
        self._last_visual = phi_v
        out_a = out_a.detach()
        logits = fuse(out_a, out_v.detach(), self.options["fusion"])
        # the value recorded is the mean of both modalities' losses; the gradient is L_v's alone
        loss = loss_v + (0.5 * (loss_a.detach() + loss_v.detach()) - loss_v.detach())
        return StepOutput(loss, logits, out_a, out_v.detach())

    def after_backward(self, model, out: StepOutput, y, ctx: Context) -> None:
        self._modify(model, self._last_visual, ctx)
        self._last_visual = None
        self._batch += 1

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self._batch = 0

    def predict(self, model, audio, visual):
        phi_a, phi_v = model.encode(audio, visual)
        out_a, out_v = model.mla_head(phi_a), model.mla_head(phi_v)
        return fuse(out_a, out_v, self.options["fusion"]), out_a, out_v

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return {"mla_projector_trace": float(torch.trace(self.P).item()), "mla_sub_steps": self.sub_steps}

    def state_dict(self) -> dict:
        return {"P": self.P.detach().cpu().clone(), "sub_steps": self.sub_steps}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.P = state["P"].clone()
            self.sub_steps = state["sub_steps"]
