"""PMR: prototypical modal rebalance (Fan et al., CVPR 2023).

Each modality m gets class prototypes, the mean unimodal feature of each class,
c^m_k = mean of phi_m(x_i) over the samples of class k, and with them a non-parametric
classifier: the softmax over negative Euclidean distances to the prototypes,
p^m_k(x) = softmax_k(-||phi_m(x) - c^m_k||). The prototypical cross-entropy (PCE) is
L^m_PCE = -mean_i log p^m_{y_i}(x_i). The imbalance ratio compares the modalities' summed ground-truth prototype scores over the batch,
rho = s^a / s^v with s^m = sum_i p^m_{y_i}(x_i). The slow-learning modality w is
accelerated by its PCE, the dominant one d is slowed in early training by the prototype
entropy regularisation (PER):

    L = CE(f(x), y) + beta * L^w_PCE - mu * 1[epoch < entropy_epochs] * H(p^d)
    beta = alpha                       (``coefficient="constant"``, the default: both public codes)
    beta = alpha * (rho_d/w - 1)      (``coefficient="ratio"``: gapkit's variant, no source)

with rho_d/w = s^d / s^w > 1; at exact balance no term is added. The ratio form, which grows with
the imbalance and vanishes at balance, is gapkit's own reading; neither the authors' code nor
BalanceBenchmark's ``PMR_trainer.py`` uses it, and alpha = 2 was tuned for the constant form, so
``coefficient="ratio"`` with alpha = 2 adds a much weaker PCE term than the authors' runs.

From the authors' public code (fanyunfeng-bit/Modal-Imbalance-PMR, ``main_Prototype_grad.py``
and ``bash.sh``), as facts: prototypes are recomputed before every epoch (and before the first)
in eval mode without gradients from a random tenth of the training set (``proto_fraction``),
blended with the previous ones as (1 - m) new + m old with ``momentum_coef`` m (their CREMA-D
runs use m = 0); distances are Euclidean (not squared); the ratio uses the prototype scores;
``alpha`` = 2 and the modulation window epochs 0-70 are their CREMA-D concat settings
(``bash.sh``: SGD, lr 1e-3, StepLR(70, 0.1), 130 epochs; :mod:`gapkit.methods.peer_settings`). Their
public code has no entropy term; ``mu`` = 0.01 and ``entropy_epochs`` = 10 are our choices.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.batches import iterate_batches
from .base import Context, EpochMeans, Method, StepOutput


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """-||phi(x) - c_k||: the logits of PMR's non-parametric classifier, (B, K)."""
    return -torch.cdist(features.float(), prototypes.float())


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                previous: torch.Tensor | None = None) -> torch.Tensor:
    """Mean feature of each class (PMR's prototypes); a class without samples keeps its previous prototype (or 0)."""
    d = features.shape[1]
    sums = torch.zeros(num_classes, d, dtype=torch.float64, device=features.device)
    sums.index_add_(0, labels.long(), features.double())
    counts = torch.bincount(labels.long(), minlength=num_classes).to(features.device)
    means = (sums / counts.clamp_min(1).unsqueeze(1)).float()
    empty = counts == 0
    if empty.any():
        means[empty] = previous[empty] if previous is not None else 0.0
    return means


def pmr_coefficient(ratio: float, alpha: float, kind: str = "constant") -> float:
    """beta for the slow modality given rho = s_dominant / s_slow: alpha (``constant``) or alpha (rho - 1) (``ratio``); 0 unless rho > 1."""
    if not ratio > 1:
        return 0.0
    if kind == "ratio":
        return alpha * (ratio - 1.0)
    if kind == "constant":
        return alpha
    raise ValueError(f"unknown PMR coefficient {kind!r}; use 'ratio' or 'constant'")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy of softmax(logits) over the batch."""
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1).mean()


class PMR(Method):
    """Prototypical modal rebalance on L_MM; see the module docstring."""

    name = "pmr"
    defaults = {"alpha": 2.0, "mu": 0.01, "entropy_epochs": 10, "momentum_coef": 0.0, "proto_fraction": 0.1,
                "modulation_starts": 0, "modulation_ends": 70, "coefficient": "constant"}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        pmr_coefficient(2.0, 1.0, self.options["coefficient"])  # validate the option early
        self.prototypes: dict[str, torch.Tensor] | None = None
        self.means = EpochMeans("pmr")

    @torch.no_grad()
    def compute_prototypes(self, model, data) -> dict[str, torch.Tensor]:
        """Class means of phi_a, phi_v over a random ``proto_fraction`` of the training split (eval mode)."""
        split = data.train
        n = len(split)
        take = min(n, max(1, math.ceil(self.options["proto_fraction"] * n)))
        index = torch.randperm(n)[:take] if take < n else torch.arange(n)
        device = next(model.parameters()).device
        was = model.training
        model.eval()
        feats_a, feats_v, labels = [], [], []
        try:
            for audio, visual, y, _ in iterate_batches(split.subset(index), 64, device):
                phi_a, phi_v = model.encode(audio, visual)
                feats_a.append(phi_a.float())
                feats_v.append(phi_v.float())
                labels.append(y)
        finally:
            model.train(was)
        y = torch.cat(labels)
        k = data.num_classes
        old = {key: v.to(device) for key, v in self.prototypes.items()} if self.prototypes else None
        new = {"audio": class_means(torch.cat(feats_a), y, k, old["audio"] if old else None),
               "visual": class_means(torch.cat(feats_v), y, k, old["visual"] if old else None)}
        m = self.options["momentum_coef"]
        if old is not None and m > 0:
            new = {key: (1 - m) * new[key] + m * old[key] for key in new}
        return new

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self.prototypes = self.compute_prototypes(model, data)
        self.means.reset()

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        o = self.options
        phi_a, phi_v = model.encode(audio, visual)
        logits, logits_a, logits_v = model.head(phi_a, phi_v)
        loss = F.cross_entropy(logits, y)
        if o["modulation_starts"] <= ctx.epoch <= o["modulation_ends"]:
            proto = {"audio": prototype_logits(phi_a, self.prototypes["audio"]),
                     "visual": prototype_logits(phi_v, self.prototypes["visual"])}
            s_a = torch.softmax(proto["audio"].detach(), 1).gather(1, y.unsqueeze(1)).sum().item()
            s_v = torch.softmax(proto["visual"].detach(), 1).gather(1, y.unsqueeze(1)).sum().item()
            rho_a = s_a / max(s_v, 1e-12)
            beta_a = beta_v = 0.0
            if rho_a != 1.0:
                slow, dominant = ("visual", "audio") if rho_a > 1 else ("audio", "visual")
                ratio = rho_a if rho_a > 1 else 1.0 / max(rho_a, 1e-12)
                beta = pmr_coefficient(ratio, o["alpha"], o["coefficient"])
                if beta > 0:
                    loss = loss + beta * F.cross_entropy(proto[slow], y)
                if ctx.epoch < o["entropy_epochs"] and o["mu"] > 0:
                    loss = loss - o["mu"] * entropy(proto[dominant])
                beta_a, beta_v = (beta, 0.0) if slow == "audio" else (0.0, beta)
            self.means.add(ratio_audio=rho_a, beta_audio=beta_a, beta_visual=beta_v)
        return StepOutput(loss, logits, logits_a, logits_v)

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return self.means.record()

    def state_dict(self) -> dict:
        return {"prototypes": None if self.prototypes is None
                else {k: v.detach().cpu().clone() for k, v in self.prototypes.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state and state.get("prototypes") is not None:
            self.prototypes = {k: v.clone() for k, v in state["prototypes"].items()}
