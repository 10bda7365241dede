"""The training augmentation of frames, batched on tensors: RandomResizedCrop and a horizontal flip per clip.

The field's frame augmentation (torchvision's ``RandomResizedCrop(size)`` then
``RandomHorizontalFlip()``, applied to one clip at a time on the CPU) is done here
for a whole mini-batch at once, on whatever device the frames are on:

- :func:`crop_parameters` draws every clip's crop box and flip with torchvision's own
  rule (``RandomResizedCrop.get_params``: up to ten tries of an area fraction uniform
  in ``scale`` and a log-uniform aspect ratio in ``ratio``, a uniform position, and
  the centre crop when no try fits), vectorised over the clips. The draws come from
  the CPU generator given (default: torch's global one, which a run seeds and
  checkpoints), so the CPU and a GPU crop alike.
- :func:`resized_crops` cuts every clip's box out of all its frames and resizes it to
  ``size`` x ``size`` in one ``torchvision.ops.roi_align`` call: bilinear where the
  crop is enlarged, the mean of ``ceil(box / size)`` bilinear samples per output
  pixel (an antialiasing filter) where it is reduced.
- :func:`flip_clips_` mirrors the clips whose flip was drawn; :func:`centre_crop` is
  what evaluation sees instead (never augmented).

One box and one flip per clip, the same for all of its frames, as the per-clip
version did (``frame_augmentation`` in :mod:`.batches`, the reference the tests
compare the distributions of boxes with).
"""
from __future__ import annotations

import torch
from torchvision.ops import roi_align

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
TRIES = 10  # torchvision's number of tries before the centre crop


def crop_parameters(n: int, height: int, width: int, *, scale=SCALE, ratio=RATIO,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop boxes and flips of ``n`` clips of ``height`` x ``width`` frames, drawn as torchvision draws them.

    Returns ``boxes`` (n, 4) float32 ``[left, top, right, bottom]`` in pixels (a box of
    ``w`` x ``h`` pixels at column ``j``, row ``i`` is ``[j, i, j + w, i + h]``) and
    ``flips`` (n,) bool (probability 1/2), on the CPU.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio, dtype=torch.float64))
    # every random number in one draw from the generator: n x (tries x (area, ratio), top, left, flip)
    u = torch.rand(n, 2 * TRIES + 3, generator=generator, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[:, :TRIES])
    aspect = torch.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[:, TRIES:2 * TRIES])
    w = torch.round(torch.sqrt(target * aspect))  # round half to even, as Python's round
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # the first try that fits (0 when none does)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    top = torch.floor(u[:, -3] * (height - h + 1))
    left = torch.floor(u[:, -2] * (width - w + 1))
    none_fit = ~fits.any(dim=1)
    if none_fit.any():
        fh, fw = _centre_fallback(height, width, ratio)
        h, w = torch.where(none_fit, float(fh), h), torch.where(none_fit, float(fw), w)
        top = torch.where(none_fit, float((height - fh) // 2), top)
        left = torch.where(none_fit, float((width - fw) // 2), left)
    boxes = torch.stack([left, top, left + w, top + h], dim=1).float()
    return boxes, u[:, -1] < 0.5


def _centre_fallback(height: int, width: int, ratio) -> tuple[int, int]:
    """torchvision's crop when no try fits: the whole frame, cut to the nearest allowed aspect ratio."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def resized_crops(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each clip's box of all its frames, resized to ``size`` x ``size``: (B, T, C, H, W) float -> (B, T, C, size, size).

    ``boxes`` (B, 4) ``[left, top, right, bottom]`` in pixels, on the frames' device.
    """
    b, t, c, height, width = frames.shape
    rows = torch.arange(b, device=frames.device, dtype=frames.dtype).unsqueeze(1)
    rois = torch.cat([rows, boxes.to(frames.dtype)], dim=1)
    out = roi_align(frames.reshape(b, t * c, height, width), rois, output_size=(size, size), spatial_scale=1.0,
                    sampling_ratio=-1, aligned=True)
    return out.view(b, t, c, size, size)


def flip_clips_(frames: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror left-right, in place, the clips of ``frames`` (B, ..., W) whose flag in ``flips`` (B,) is set.

    The flags stay on the CPU (they are drawn there), so choosing the clips needs no
    host sync on a GPU; only the flipped half of the batch is read and written.
    """
    for k in flips.cpu().nonzero().flatten().tolist():
        frames[k] = frames[k].flip(-1)
    return frames


def centre_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` of frames (..., H, W) (a view; the frames themselves when square at ``size``).

    The offsets are torchvision's ``center_crop``'s: ``round((H - size) / 2)``.
    """
    height, width = frames.shape[-2:]
    if (height, width) == (size, size):
        return frames
    top, left = int(round((height - size) / 2)), int(round((width - size) / 2))
    return frames[..., top:top + size, left:left + size]


def frame_size(visual: torch.Tensor) -> int:
    """The side of the square frames a model sees: the short side of the cached frames (..., H, W)."""
    return int(min(visual.shape[-2:]))

