"""The modality gap of Section 3.2 (Eq. 4 and 6), per sample and over a whole dataset."""
from __future__ import annotations

from dataclasses import dataclass

import torch


def modality_gap(logits_a: torch.Tensor, logits_v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 6: g_i = s^a_{y_i} - s^v_{y_i}, with s = softmax(l) of the unimodal logits (Eq. 4).

    Positive when audio is the more confident modality on the true class. Returns (B,),
    differentiable with respect to both logits.
    """
    return _true_class_score(logits_a, y) - _true_class_score(logits_v, y)


def one_sided_gap(logits_a: torch.Tensor, logits_v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 6's gap with the stronger modality's score detached, per sample (the "one-sided" reading of Eq. 10's
    gap terms; not in the paper).

    The same values as :func:`modality_gap`, but the gradient reaches only the weaker modality's logits, the one
    with the lower true-class score (audio where g_i < 0, visual where g_i >= 0): the stronger's score is a constant,
    so |g|^2 pulls the weaker modality's confidence up and never the stronger's down.
    """
    s_a, s_v = _true_class_score(logits_a, y), _true_class_score(logits_v, y)
    audio_weaker = (s_a < s_v).detach()
    return torch.where(audio_weaker, s_a, s_a.detach()) - torch.where(audio_weaker, s_v.detach(), s_v)


def _true_class_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """s_{y_i} of Eq. 4: the softmax score of the ground-truth class, (B,), in float32 whatever the logits' dtype."""
    return torch.softmax(logits.float(), dim=1).gather(1, y.long().unsqueeze(1)).squeeze(1)


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
            parts.append((logits.float(), logits_a.float(), logits_v.float(), y))
    finally:
        model.train(was_training)
    # gathered on the device, copied to the host once (no wait for the device after every batch)
    return Outputs(*(torch.cat(column).cpu() for column in zip(*parts)))


def collect_gaps(model: torch.nn.Module, batches) -> torch.Tensor:
    """The set G = {g_1, ..., g_N} of Algorithm 1: Eq. 6 over a dataset, eval mode, no gradients."""
    return collect_outputs(model, batches).gaps()
