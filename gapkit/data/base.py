"""The in-memory form every corpus is loaded into, and its preprocessing parameters.

A corpus (CREMA-D, AVE, a manifest or the embedded synthetic one) is decoded
once into an on-disk cache; training only ever sees :class:`AVData`: three
splits of fixed-size tensors (frames as uint8, spectrograms as float16).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Preprocessing:
    """Every parameter that changes the cached tensors (the cache key hashes all of them).

    Audio: the waveform is resampled to ``sample_rate``, tiled (repeated) or cut
    to ``clip_seconds``, and turned into a log-magnitude STFT
    ``log(|STFT| + 1e-7)`` with ``n_fft`` and ``hop_length`` (Hann window):
    ``n_fft // 2 + 1`` frequency bins by ``1 + samples // hop_length`` frames.
    Visual: frames are sampled at ``fps`` frames per second; ``frames`` of them
    (evenly spaced over the clip, the last repeated when a clip is shorter) are
    scaled so that their short side is ``frame_size``, their aspect ratio kept
    (the corpus's median: :mod:`.frames`), and kept as uint8 RGB; the batches
    crop ``frame_size`` squares from them (:mod:`.augment`).
    """

    sample_rate: int = 22050
    clip_seconds: float = 3.0
    n_fft: int = 512
    hop_length: int = 353
    frames: int = 3
    frame_size: int = 224
    fps: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field's type and range, checked before anything is decoded; the message names the setting."""
        for name in ("sample_rate", "n_fft", "hop_length", "frames", "frame_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} = {value!r}: expected an integer")
        for name in ("clip_seconds", "fps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} = {value!r}: expected a finite number")
        ranges = [("sample_rate", self.sample_rate >= 1000, "an integer >= 1000 (Hz)"),
                  ("clip_seconds", self.clip_seconds > 0, "a number of seconds > 0"),
                  ("n_fft", self.n_fft >= 2, "an integer >= 2"),
                  ("hop_length", self.hop_length >= 1, "an integer >= 1"),
                  ("frames", self.frames >= 1, "an integer >= 1"),
                  ("frame_size", self.frame_size >= 1, "an integer >= 1 (pixels)"),
                  ("fps", self.fps > 0, "a number of frames per second > 0")]
        for name, ok, allowed in ranges:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r}: expected {allowed}")
        samples = round(self.clip_seconds * self.sample_rate)
        if self.n_fft > samples:
            raise ValueError(f"n_fft = {self.n_fft}: expected at most the {samples} samples of a clip "
                             f"(clip_seconds * sample_rate)")

    def key(self) -> str:
        """A short stable hash of every field, used to name cache entries."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class AVSplit:
    """One split: ``audio`` (N, 1, F, T) float16, ``visual`` (N, T, 3, H, W) uint8, ``labels`` (N,) int64."""

    audio: torch.Tensor
    visual: torch.Tensor
    labels: torch.Tensor
    clips: list[str]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not (len(self.audio) == len(self.visual) == len(self.clips) == n):
            raise ValueError(
                f"split tensors disagree in length: audio {len(self.audio)}, visual {len(self.visual)}, "
                f"labels {n}, clips {len(self.clips)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict:
        # the copies :func:`gapkit.data.batches.device_tensors` keeps on a device never travel with the split
        return {k: v for k, v in self.__dict__.items() if k != "_device_copies"}

    def subset(self, index: torch.Tensor | list[int]) -> "AVSplit":
        index = torch.as_tensor(index, dtype=torch.long)
        return AVSplit(self.audio[index], self.visual[index], self.labels[index], [self.clips[i] for i in index.tolist()])


@dataclass
class AVData:
    """A loaded corpus: train / val / test splits, class names and provenance."""

    train: AVSplit
    val: AVSplit
    test: AVSplit
    classes: list[str]
    info: dict = field(default_factory=dict)
    #: how :func:`gapkit.data.load_dataset` made it (its arguments, plain data), so that another process can load the
    #: same data itself from the cache (:func:`gapkit.data.reload_dataset`); ``None`` for data built in memory
    source: dict | None = None

    def identity(self) -> dict:
        """What the data is, wherever it lies: ``info["identity"]`` for a loaded corpus
        (:func:`gapkit.data.data_identity`: cache key, content digest, split); for data built in memory,
        a digest of its tensors and clip lists, split by split."""
        if "identity" not in self.info:
            digest = hashlib.sha256()
            for split in (self.train, self.val, self.test):
                for tensor in (split.audio, split.visual, split.labels):
                    digest.update(tensor.contiguous().numpy().tobytes())
                digest.update(json.dumps(split.clips).encode())
            self.info["identity"] = {"dataset": self.info.get("dataset", "in memory"),
                                     "content_digest": digest.hexdigest()[:16]}
        return self.info["identity"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, AVSplit]:
        return {"train": self.train, "val": self.val, "test": self.test}


def data_key(identity: dict) -> str:
    """A short hash of a data identity (:meth:`AVData.identity`): runs, checkpoints and branches compare it."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
