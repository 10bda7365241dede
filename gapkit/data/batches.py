"""Mini-batches from cached tensors: uint8 frames and float16 spectrograms become float inputs on the device.

Where a split lives while it is batched (:func:`placement`):

- ``"resident"``: the split's tensors are on the training device, copied there once
  (:func:`device_tensors`, kept with the split for later epochs); every batch is
  gathered, cropped, flipped and normalised there. On the CPU the tensors simply stay
  where they are. A split is resident on a GPU when it takes at most
  ``RESIDENT_SHARE`` of the device's free memory (the rest is the model's, its
  activations' and the other splits').
- ``"streamed"``: a split too large for the device stays in host memory; a
  background thread gathers the next ``PREFETCH`` batches into pinned (page-locked)
  buffers, copied to the device without blocking, and the same batch code runs there.

The batches, their order and the random draws do not depend on the placement: the
order is a permutation drawn on the CPU from the caller's generator, and the crops
are drawn on the CPU from torch's global generator (:mod:`.augment`), once per epoch.
"""
from __future__ import annotations

import queue
import threading

import torch
from torchvision.transforms import v2

from .augment import centre_crop, crop_parameters, flip_clips_, frame_size, resized_crops
from .base import AVSplit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: a split is kept on a GPU when it needs at most this share of the device's free memory
RESIDENT_SHARE = 0.5
#: batches the streaming loader gathers ahead of the one being trained on
PREFETCH = 2
PLACEMENTS = ("auto", "resident", "streamed")


def frame_augmentation(size: int) -> v2.Compose:
    """The field's training augmentation of one clip's frames: RandomResizedCrop to ``size`` and a horizontal flip.

    The per-clip reference of the batched version :func:`iterate_batches` applies
    (:mod:`.augment`): the same distribution of crop boxes and flips.
    """
    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])


def _normalise_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _split_bytes(split: AVSplit) -> int:
    return sum(t.numel() * t.element_size() for t in (split.audio, split.visual, split.labels))


def _on(tensor: torch.Tensor, device: torch.device) -> bool:
    return _normalise_device(tensor.device) == device


def fits_on_device(nbytes: int, device, share: float = RESIDENT_SHARE) -> bool:
    """Whether ``nbytes`` take at most ``share`` of ``device``'s free memory (always true on the CPU)."""
    device = _normalise_device(device)
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


def placement(split: AVSplit, device) -> str:
    """``"resident"`` or ``"streamed"``: where :func:`iterate_batches` keeps ``split`` for ``device`` (module doc)."""
    device = _normalise_device(device)
    if _on(split.visual, device) or str(device) in split.__dict__.get("_device_copies", {}):
        return "resident"
    return "resident" if fits_on_device(_split_bytes(split), device) else "streamed"


def _copies(split: AVSplit) -> dict:
    return split.__dict__.setdefault("_device_copies", {})


def device_tensors(split: AVSplit, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(audio, visual, labels)`` of ``split`` on ``device``: the split's own tensors where they already are
    there, else a copy made on the first call and kept with the split (freed with it, or by
    :func:`release_device_tensors`)."""
    device = _normalise_device(device)
    if _on(split.visual, device) and _on(split.audio, device) and _on(split.labels, device):
        return split.audio, split.visual, split.labels
    copies = _copies(split)
    if str(device) not in copies:
        copies[str(device)] = tuple(t.to(device) for t in (split.audio, split.visual, split.labels))
    return copies[str(device)]


def release_device_tensors(split: AVSplit) -> None:
    """Drop the device copies :func:`device_tensors` made of ``split``."""
    _copies(split).clear()


def iterate_batches(split: AVSplit, batch_size: int, device: torch.device | str = "cpu", *, shuffle: bool = False,
                    generator: torch.Generator | None = None, augment: bool = False, clips: torch.Tensor | None = None,
                    where: str = "auto"):
    """Yield ``(audio, visual, y, index)``: audio (B,1,F,T) float32, visual (B,T,3,S,S) float32
    normalised with ImageNet's mean and std, and the labels and the samples' indices into the split,
    all on ``device`` (the indices there too, so that a method looking up per-sample values on the
    device copies nothing per batch).

    ``S`` is the short side of the cached frames; frames cached wider (or taller) than square are
    cut to their central ``S`` x ``S`` unless augmented. ``clips`` (indices into the split)
    restricts the batches to those samples (default: all). With ``shuffle`` the order is a
    permutation drawn from ``generator`` (on the CPU), and a final batch of a single sample is
    dropped (BatchNorm cannot train on it). ``augment`` applies RandomResizedCrop to ``S`` and a
    horizontal flip, one box and flip per clip for all of its frames, drawn once for the epoch
    from torch's global generator (:mod:`.augment`). ``where``: ``"auto"`` (:func:`placement`),
    ``"resident"`` or ``"streamed"``; the batches are the same whichever.
    """
    if where not in PLACEMENTS:
        raise ValueError(f"where must be one of {PLACEMENTS}, got {where!r}")
    device = _normalise_device(device)
    pool = torch.arange(len(split)) if clips is None else torch.as_tensor(clips, dtype=torch.long)
    n = len(pool)
    order = pool[torch.randperm(n, generator=generator)] if shuffle else pool
    starts = [s for s in range(0, n, batch_size) if not (shuffle and min(batch_size, n - s) < 2)]
    size = frame_size(split.visual)
    crops = None
    if augment:
        used = min(n, starts[-1] + batch_size) if starts else 0
        boxes, flips = crop_parameters(used, *split.visual.shape[-2:])
        crops = boxes.to(device), flips
    finish = _Finisher(device, size, crops)
    if (placement(split, device) if where == "auto" else where) == "resident":
        audio, visual, labels = device_tensors(split, device)
        on_device = order.to(visual.device)
        for start in starts:
            sel = on_device[start:start + batch_size]
            yield finish(audio[sel], visual[sel], labels[sel], start, sel)
        return
    loader = _Prefetcher(split, [order[s:s + batch_size] for s in starts], pin=device.type == "cuda")
    on_device = order.to(device)
    try:
        for start, (audio, visual, labels) in zip(starts, loader):
            index = on_device[start:start + batch_size]
            yield finish(audio.to(device, non_blocking=True), visual.to(device, non_blocking=True),
                         labels.to(device, non_blocking=True), start, index)
    finally:
        loader.close()


class _Finisher:
    """Gathered uint8 frames and float16 spectrograms -> the model's float inputs (crop, flip, normalise)."""

    def __init__(self, device: torch.device, size: int, crops) -> None:
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1)
        self.size, self.crops = size, crops

    def __call__(self, audio, visual, labels, start: int, index):
        if self.crops is None:
            visual = centre_crop(visual, self.size).float()
        else:
            boxes, flips = (c[start:start + len(index)] for c in self.crops)
            visual = flip_clips_(resized_crops(visual.float(), boxes, self.size), flips)
        # in place: the same arithmetic as (v / 255 - mean) / std without two full-size temporaries
        visual.div_(255).sub_(self.mean).div_(self.std)
        return audio.float(), visual, labels, index


_END = object()


class _Prefetcher:
    """Gathers the rows of each batch in a background thread, ``PREFETCH`` batches ahead, into pinned memory."""

    def __init__(self, split: AVSplit, batches: list[torch.Tensor], pin: bool) -> None:
        self.split, self.batches, self.pin = split, batches, pin
        self.queue: queue.Queue = queue.Queue(maxsize=PREFETCH)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gapkit-prefetch", daemon=True)
        self.thread.start()

    def _gather(self, tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        out = torch.empty((len(index), *tensor.shape[1:]), dtype=tensor.dtype, pin_memory=self.pin)
        return torch.index_select(tensor, 0, index, out=out)

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for index in self.batches:
                item = tuple(self._gather(t, index) for t in (self.split.audio, self.split.visual, self.split.labels))
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - raised again in the consuming thread
            self._put(exc)

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join()
