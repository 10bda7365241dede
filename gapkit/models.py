"""The audio-visual classifier of Section 3.1: two ResNet-18 encoders and a concat head (Eq. 1-3).

The encoders are assembled from torchvision's ResNet building blocks
(``BasicBlock``, ``conv1x1``) and trained from scratch. ``width`` is the
number of channels of the first stage (64 in ResNet-18); the four stages have
``width``, ``2 width``, ``4 width`` and ``8 width`` channels, so the feature
vector is ``8 * width`` long (512 at full width).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1


class ResNet18Encoder(nn.Module):
    """ResNet-18 (stages of [2, 2, 2, 2] basic blocks) without its classifier: image -> feature vector."""

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        self.out_features = 8 * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages, channels = [], width
        for stage, out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if stage == 0 else 2
            downsample = None
            if stride != 1 or channels != out:
                downsample = nn.Sequential(conv1x1(channels, out, stride), nn.BatchNorm2d(out))
            stages.append(nn.Sequential(BasicBlock(channels, out, stride, downsample), BasicBlock(out, out)))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


class VisualEncoder(nn.Module):
    """Encodes each of T frames with one ResNet-18 and averages the features over time."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.frame_encoder = ResNet18Encoder(3, width)
        self.out_features = self.frame_encoder.out_features

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        features = self.frame_encoder(frames.flatten(0, 1))
        return features.view(b, t, -1).mean(dim=1)


class AVClassifier(nn.Module):
    """phi_a (1-channel spectrogram) and phi_v (frames), concat fusion with one Linear(2d, M).

    ``forward(audio (B,1,F,T), visual (B,T,3,H,W))`` returns ``(logits, logits_a, logits_v)``:
    the fused logits f(x) of Eq. 1 and the unimodal logits l^a, l^v of Eq. 3,
    with ``logits == logits_a + logits_v`` (Eq. 2).
    """

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.audio_encoder = ResNet18Encoder(1, width)
        self.visual_encoder = VisualEncoder(width)
        self.feature_dim = self.audio_encoder.out_features
        self.fusion = nn.Linear(2 * self.feature_dim, num_classes)

    def encode(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unimodal features phi_a(x^a), phi_v(x^v), each (B, d)."""
        return self.audio_encoder(audio), self.visual_encoder(visual)

    def unimodal_logits(self, phi_a: torch.Tensor, phi_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 3: l^a = W^a phi_a + b/2 and l^v = W^v phi_v + b/2, with W = [W^a, W^v] split at d (audio first)."""
        d = self.feature_dim
        w, b = self.fusion.weight, self.fusion.bias
        return phi_a @ w[:, :d].T + b / 2, phi_v @ w[:, d:].T + b / 2

    def head(self, phi_a: torch.Tensor, phi_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 1-2: f(x) = W [phi_a; phi_v] + b = l^a + l^v, returned with l^a and l^v."""
        logits_a, logits_v = self.unimodal_logits(phi_a, phi_v)
        return logits_a + logits_v, logits_a, logits_v

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.head(*self.encode(audio, visual))
