"""The modality gap of Section 3.2 (Eq. 4 and 6), per sample and over a whole dataset."""
from __future__ import annotations

from dataclasses import dataclass

import torch


def modality_gap(logits_a: torch.Tensor, logits_v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 6: g_i = s^a_{y_i} - s^v_{y_i}, with s = softmax(l) of the unimodal logits (Eq. 4).

    Positive when audio is the more confident modality on the true class. Returns (B,),
    differentiable with respect to both logits.
    """
    index = y.long().unsqueeze(1)
    s_a = torch.softmax(logits_a, dim=1).gather(1, index).squeeze(1)
    s_v = torch.softmax(logits_v, dim=1).gather(1, index).squeeze(1)
    return s_a - s_v


@dataclass
class Outputs:
    """The model's outputs over a whole split, in split order (CPU tensors)."""

    logits: torch.Tensor
    logits_a: torch.Tensor
    logits_v: torch.Tensor
    labels: torch.Tensor

    def gaps(self) -> torch.Tensor:
        """Eq. 6 for every sample."""
        return modality_gap(self.logits_a, self.logits_v, self.labels)

    def accuracy(self) -> dict[str, float]:
        """Fused, audio-only and visual-only accuracy (argmax of f, l^a, l^v), as fractions."""
        y = self.labels
        return {
            "acc": (self.logits.argmax(1) == y).float().mean().item(),
            "acc_audio": (self.logits_a.argmax(1) == y).float().mean().item(),
            "acc_visual": (self.logits_v.argmax(1) == y).float().mean().item(),
        }


@torch.no_grad()
def collect_outputs(model: torch.nn.Module, batches, predict=None) -> Outputs:
    """Run ``model`` in eval mode without gradients over ``batches`` of (audio, visual, y, index).

    ``predict(model, audio, visual)`` replaces ``model(audio, visual)`` when a method
    evaluates differently. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    parts: list[tuple[torch.Tensor, ...]] = []
    try:
        for audio, visual, y, _ in batches:
            logits, logits_a, logits_v = predict(model, audio, visual) if predict else model(audio, visual)
            parts.append((logits.float().cpu(), logits_a.float().cpu(), logits_v.float().cpu(), y.cpu()))
    finally:
        model.train(was_training)
    return Outputs(*(torch.cat(column) for column in zip(*parts)))


def collect_gaps(model: torch.nn.Module, batches) -> torch.Tensor:
    """The set G = {g_1, ..., g_N} of Algorithm 1: Eq. 6 over a dataset, eval mode, no gradients."""
    return collect_outputs(model, batches).gaps()
