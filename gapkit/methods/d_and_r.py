"""Diagnosing and re-learning (Wei, Li and Hu, ECCV 2024).

Every ``reinit_epoch`` epochs, up to ``reinit_num`` times, each modality's learning state is
*diagnosed* from the separability of its unimodal representations: the features phi_m of the
training split and of held-out data are clustered with k-means (k = number of classes) and
scored by cluster purity against the labels. A modality whose training purity far exceeds its
held-out purity has learnt its training data well but generalises less well; the gap sets how
strongly its encoder is *re-learnt*, by a soft re-initialisation:

    gap_m = |purity_train(phi_m) - purity_heldout(phi_m)|,     w_m = tanh(lambda * gap_m)
    theta_m <- w_m * theta_m^0 + (1 - w_m) * theta_m

with theta_m^0 the encoder's parameters at initialisation. Training uses L_MM alone.

From the authors' public code (GeWu-Lab/Diagnosing_Relearning_ECCV2024, ``code/ours.py`` and
``code/script/ours.sh``), as facts: lambda (``move_lambda``) = 3, ``reinit_epoch`` = 20,
``reinit_num`` = 3 for CREMA-D; the diagnosis runs after epoch e when e > 0 and e is a multiple of
``reinit_epoch``; features are taken in eval mode over the whole training split and the held-out
(validation) split, min-max scaled to [-1, 1] per dimension, and clustered with
``KMeans(n_clusters=num_classes, random_state=0)`` (``n_init=10``, scikit-learn's default when
that code was written); purity assigns each cluster its majority label; theta^0 is the initial
state of the model saved before training, and every encoder parameter (convolutions and
BatchNorm affine parameters; not the BatchNorm running statistics, which are buffers) is
interpolated. Held-out data here is the validation split, carved from the training data.

So that the state selected for an epoch is the one evaluated, the re-initialisation decided
after epoch e is applied at the start of epoch e + 1 (same place in the sequence of updates);
its weights are recorded in that epoch's history.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batches import iterate_batches
from .base import Context, Method, StepOutput


def purity_score(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of samples whose label is the majority label of their cluster."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    hits = 0
    for c in np.unique(clusters):
        hits += int(np.bincount(labels[clusters == c]).max())
    return hits / len(labels)


def feature_purity(features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0) -> float:
    """Purity of k-means clusters (k = num_classes) of min-max scaled features."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import MinMaxScaler

    x = MinMaxScaler(feature_range=(-1, 1)).fit_transform(np.asarray(features, dtype=np.float64))
    k = min(num_classes, len(x))
    clusters = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(x)
    return float(purity_score(labels, clusters))


def relearn_weight(purity_train: float, purity_heldout: float, move_lambda: float) -> float:
    """w = tanh(lambda * |purity_train - purity_heldout|)."""
    return float(np.tanh(move_lambda * abs(purity_train - purity_heldout)))


@torch.no_grad()
def soft_reinit(module: torch.nn.Module, initial: dict[str, torch.Tensor], weight: float) -> None:
    """theta <- w * theta^0 + (1 - w) * theta for every parameter of ``module``."""
    for name, p in module.named_parameters():
        p.copy_(weight * initial[name].to(p) + (1 - weight) * p)


@torch.no_grad()
def unimodal_features(model, split, device, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    was = model.training
    model.eval()
    fa, fv, ys = [], [], []
    try:
        for audio, visual, y, _ in iterate_batches(split, batch_size, device):
            phi_a, phi_v = model.encode(audio, visual)
            fa.append(phi_a.float().cpu())
            fv.append(phi_v.float().cpu())
            ys.append(y.cpu())
    finally:
        model.train(was)
    return torch.cat(fa).numpy(), torch.cat(fv).numpy(), torch.cat(ys).numpy()


class DiagnoseRelearn(Method):
    """Diagnosing & re-learning on L_MM; see the module docstring."""

    name = "d-and-r"
    defaults = {"move_lambda": 3.0, "reinit_epoch": 20, "reinit_num": 3}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.initial: dict[str, dict[str, torch.Tensor]] | None = None
        self.reinits = 0
        self._record: dict = {}

    def setup(self, model) -> None:
        if self.initial is None:
            self.initial = {m: {k: v.detach().cpu().clone() for k, v in getattr(model, f"{m}_encoder").named_parameters()}
                            for m in ("audio", "visual")}

    def training_step(self, model, audio, visual, y, ctx: Context) -> StepOutput:
        logits, logits_a, logits_v = model(audio, visual)
        return StepOutput(F.cross_entropy(logits, y), logits, logits_a, logits_v)

    def diagnose(self, model, data) -> dict[str, float]:
        """Re-learning weights w_audio, w_visual from the purity gaps of the current encoders."""
        device = next(model.parameters()).device
        train = unimodal_features(model, data.train, device)
        held = unimodal_features(model, data.val, device)
        out = {}
        for i, m in enumerate(("audio", "visual")):
            p_train = feature_purity(train[i], train[2], data.num_classes)
            p_held = feature_purity(held[i], held[2], data.num_classes)
            out[f"purity_train_{m}"], out[f"purity_val_{m}"] = p_train, p_held
            out[f"weight_{m}"] = relearn_weight(p_train, p_held, self.options["move_lambda"])
        return out

    def on_epoch_start(self, model, data, ctx: Context) -> None:
        self._record = {}
        prev = ctx.epoch - 1
        n = self.options["reinit_epoch"]
        if prev > 0 and prev % n == 0 and self.reinits < self.options["reinit_num"]:
            d = self.diagnose(model, data)
            for m in ("audio", "visual"):
                soft_reinit(getattr(model, f"{m}_encoder"), self.initial[m], d[f"weight_{m}"])
            self.reinits += 1
            self._record = {f"dr_{k}": v for k, v in d.items()}

    def on_epoch_end(self, model, data, ctx: Context) -> dict:
        return {**self._record, "dr_reinits": self.reinits}

    def state_dict(self) -> dict:
        return {"initial": self.initial, "reinits": self.reinits}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.initial = state["initial"]
            self.reinits = state["reinits"]
