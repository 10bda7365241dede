"""MLA: multimodal learning by alternating unimodal adaptation (Zhang, Yoon, Bansal and Yao, CVPR 2024).

Each mini-batch trains the modalities one after the other through one *shared* head
h(phi) = W phi + b, h: R^d -> R^M: for m = audio, then visual, L_m = CE(h(phi_m(x^m)), y) is
back-propagated and the optimizer steps before the next modality's forward pass. So that the update
for modality m does not erase what the head learnt from the modality trained just before it, the
head's weight gradient G (M x d) is projected onto the orthogonal complement of that previous
modality's inputs (the paper's gradient modification, an orthogonal-weight-modification (OWM)
recursion): with r the batch mean of the previous sub-step's features,

    k = P r,   P <- P - k k^T / (a + r^T k),   P <- P / ||P||_F,   G <- G P,   a = 0.1 ** (1 + b / B)

(b the mini-batch index in the epoch, B the batches per epoch; P starts at the identity and
accumulates every input mean seen so far). P r = a / (a + r^T P_old r) P_old r ~ 0, so the weight step
-lr G P changes the head's response to the previous mean input, W r, only by a term of order
a / (a + r^T P r): the property the projection exists for (tests/test_methods.py checks it). Only the
weight is projected, never the bias, as in both public codes. At test time the modalities'
outputs are fused with weights from their uncertainty: with e_m the entropy of softmax(h(phi_m))
for each sample, lambda_m = exp(max_m' e_m' - e_m) / sum(...), and f(x) = sum_m lambda_m h(phi_m);
:meth:`MLA.predict` returns it.

What each public code does (read as facts, not copied):

* The authors' repository (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation,
  ``main.py`` with ``--gs_flag`` and ``utils.GSPlugin``) calls the projector on the head
  ``fusion_module.fc_out`` but matches its parameter by the name ``"module.weight"``, which a
  ``Linear``'s own parameters (``weight``, ``bias``) never carry: the released code modifies no
  gradient at all (``projection="none"``). Its optimizer: SGD, lr 1e-3, momentum 0.9, weight decay
  1e-4, StepLR(70, 0.1), 100 epochs (:mod:`gapkit.methods.peer_settings`).
* BalanceBenchmark (GeWu-Lab/BalanceBenchmark, ``MLA_trainer.py``) matches ``"weight"`` and *adds*
  the projected gradient: G <- G + G P (``projection="add"``). With P of unit Frobenius norm, G P is
  about 1/sqrt(d) of G, so the added term barely changes the step (cosine with G 0.995 at d = 64).
* Both codes update P with the *current* modality's batch mean just before that modality's own step
  (``projector_input="current"``), skipping only the very first sub-step of training, and both write
  the denominator as ``torch.mm(k, r)`` with k (d, 1) and r (1, d): the d x d outer product k r^T, so
  k k^T is divided element by element by a + k_i r_j (``projector_update="outer"``). That matrix no
  longer annihilates r: in the test's setting the step's effect on the previous mean input shrinks
  only as much as the whole step does (0.36 vs 0.35 of the unprojected step), against 1e-4 with the
  OWM recursion. Neither public variant keeps the previous inputs' responses.

The defaults follow the paper: ``projection="replace"``, ``projector_update="owm"``,
``projector_input="previous"``. Common to all variants, from the public codes: the order audio then
visual, one optimizer step per modality, the schedule of a, P starting at the identity, the
Frobenius normalisation, only the head's weight modified. Their entropy is computed over the batch
dimension (one weight per batch); the paper and BalanceBenchmark compute it per sample, as here.
The shared head is a Linear(d, M) added to the model (``model.mla_head``) by :meth:`MLA.setup`; the
concat head of the AVClassifier is not used. The recorded training loss is the mean of the two
modalities' losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Context, Method, StepOutput

PROJECTIONS = ("replace", "add", "none")
PROJECTOR_UPDATES = ("owm", "outer")
PROJECTOR_INPUTS = ("previous", "current")


def update_projector(P: torch.Tensor, r: torch.Tensor, a: float, form: str = "owm") -> torch.Tensor:
    """One recursive step with the mean input r ((d,) or (1, d)), normalised to unit Frobenius norm.

    ``owm``: k = P r, P - k k^T / (a + r^T k) (a scalar denominator: the OWM recursion of the paper).
    ``outer``: P - (k k^T) / (a + k r^T), the division element by element, as both public codes compute it.
    """
    r = r.reshape(1, -1).to(P)
    k = P @ r.T
    if form == "owm":
        P = P - (k @ k.T) / (a + (r @ k))
    elif form == "outer":
        P = P - (k @ k.T) / (a + (k @ r))
    else:
        raise ValueError(f"unknown MLA projector update {form!r}; use one of {PROJECTOR_UPDATES}")
    return P / torch.linalg.matrix_norm(P)


def modify_gradient(grad: torch.Tensor, P: torch.Tensor, mode: str = "replace") -> torch.Tensor:
    """G P^T (``replace``, the paper), G + G P^T (``add``, BalanceBenchmark) or G (``none``) for a weight gradient G (M, d)."""
    if mode == "none":
        return grad
    projected = grad @ P.T
    if mode == "replace":
        return projected
    if mode == "add":
        return grad + projected
    raise ValueError(f"unknown MLA projection {mode!r}; use one of {PROJECTIONS}")


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
    defaults = {"projection": "replace", "projector_update": "owm", "projector_input": "previous",
                "fusion": "entropy"}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        o = self.options
        modify_gradient(torch.zeros(1, 1), torch.eye(1), o["projection"])
        update_projector(torch.eye(1), torch.ones(1), 1.0, o["projector_update"])
        if o["projector_input"] not in PROJECTOR_INPUTS:
            raise ValueError(f"unknown MLA projector input {o['projector_input']!r}; use one of {PROJECTOR_INPUTS}")
        fuse(torch.zeros(1, 2), torch.zeros(1, 2), o["fusion"])
        self.P: torch.Tensor | None = None
        self.sub_steps = 0
        #: the batch mean of the features of the last sub-step (the "previous modality" of the next one)
        self.previous_mean: torch.Tensor | None = None
        self._batch = 0
        self._last_visual: torch.Tensor | None = None

    def setup(self, model) -> None:
        if not hasattr(model, "mla_head"):
            device = next(model.parameters()).device
            model.mla_head = nn.Linear(model.feature_dim, model.num_classes).to(device)
        if self.P is None:
            self.P = torch.eye(model.feature_dim, device=next(model.parameters()).device)

    def modify(self, model, features: torch.Tensor, ctx: Context) -> None:
        """Between a modality's backward pass and its optimizer step: update P and project the head's weight gradient."""
        o = self.options
        weight = model.mla_head.weight
        if self.P.device != weight.device:
            self.P = self.P.to(weight.device)
        current = features.detach().float().mean(0)
        r = self.previous_mean if o["projector_input"] == "previous" else (current if self.sub_steps else None)
        if r is not None and weight.grad is not None:
            a = 0.1 ** (self._batch / max(ctx.batches_per_epoch, 1) + 1)
            self.P = update_projector(self.P, r.to(weight.device), a, o["projector_update"])
            weight.grad = modify_gradient(weight.grad, self.P, o["projection"])
        self.previous_mean = current
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
        self.modify(model, phi_a, ctx)
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
        self.modify(model, self._last_visual, ctx)
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
        return {"P": self.P.detach().cpu().clone(), "sub_steps": self.sub_steps,
                "previous_mean": None if self.previous_mean is None else self.previous_mean.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.P = state["P"].clone()
            self.sub_steps = state["sub_steps"]
            previous = state.get("previous_mean")
            self.previous_mean = None if previous is None else previous.clone()
