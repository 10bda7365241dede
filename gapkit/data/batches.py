"""Mini-batches from cached tensors: uint8 frames and float16 spectrograms become float inputs."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from .base import AVSplit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def frame_augmentation(size: int) -> v2.Compose:
    """The field's training augmentation of frames: RandomResizedCrop to ``size`` and a horizontal flip."""
    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


def iterate_batches(split: AVSplit, batch_size: int, device: torch.device | str = "cpu", *, shuffle: bool = False,
                    generator: torch.Generator | None = None, augment: bool = False, clips: torch.Tensor | None = None):
    """Yield ``(audio, visual, y, index)``: audio (B,1,F,T) float32, visual (B,T,3,H,W) float32
    normalised with ImageNet's mean and std, labels and the samples' indices into the split.

    ``clips`` (indices into the split) restricts the batches to those samples (default: all).
    With ``shuffle`` the order is a permutation drawn from ``generator``, and a final batch of
    a single sample is dropped (BatchNorm cannot train on it). ``augment`` applies
    :func:`frame_augmentation` per clip, the same crop and flip to all of a clip's frames.
    """
    pool = torch.arange(len(split)) if clips is None else torch.as_tensor(clips, dtype=torch.long)
    n = len(pool)
    order = pool[torch.randperm(n, generator=generator)] if shuffle else pool
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1)
    augmentation = frame_augmentation(split.visual.shape[-1]) if augment else None
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        if shuffle and len(index) < 2:
            break
        visual = split.visual[index]
        if augmentation is not None:
            visual = torch.stack([augmentation(clip) for clip in visual])
        visual = (visual.to(device, non_blocking=True).float() / 255 - mean) / std
        audio = split.audio[index].to(device, non_blocking=True).float()
        yield audio, visual, split.labels[index].to(device, non_blocking=True), index
