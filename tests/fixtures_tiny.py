"""A tiny in-memory dataset that a width-2 model learns in a few epochs (both modalities carry the class)."""
from __future__ import annotations

import torch

from gapkit.data.base import AVSplit
from gapkit.profiles import Profile


def tiny_split(n: int, seed: int, classes: int = 3) -> AVSplit:
    """``n`` clips: 16x16 spectrograms shifted by the label, one 16x16 frame whose red channel is 100 x label."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    audio = torch.randn(n, 1, 16, 16, generator=g) * 0.5 + labels.view(n, 1, 1, 1).float()
    visual = torch.randint(0, 256, (n, 1, 3, 16, 16), generator=g, dtype=torch.uint8)
    visual[:, :, 0] = (labels.view(n, 1, 1, 1) * 100).to(torch.uint8)
    return AVSplit(audio.half(), visual, labels, [f"c{seed}_{i}" for i in range(n)])


def tiny_profile() -> Profile:
    """Two epochs of warm-up and two adaptive steps of one epoch, width 2, seeds 0 and 1: seconds per run."""
    return Profile("tiny").replace(width=2, warmup_epochs=2, adaptive_steps=2, adaptive_epochs=1, batch_size=16,
                                   lr=0.05, seeds=(0, 1), device="cpu")
