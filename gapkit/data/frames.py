"""Frames: picked from a video, a folder of frames or one image, and scaled to the cached shape without distortion.

:func:`read_video_frames` (the first frame of each second, or of each ``1 / fps``
interval), :func:`read_frame_folder` or :func:`read_image` (all three through
:func:`read_frames`), then :func:`select_frames` and :func:`resize_frames`.
Cached frames keep their source's aspect ratio: the short side is the profile's
``frame_size``, the other follows :func:`corpus_aspect` (the median of the clips'
own, :func:`source_aspect`), and training and evaluation crop squares from them
(:mod:`.augment`), as the peer codebases crop from their sources.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .decoders import MediaError, MissingDecoderError, check_duration, check_file, decoder, media_failure, stated_seconds

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def read_video_frames(path, fps: float, start: float | None = None, end: float | None = None) -> list[Image.Image]:
    """The first frame of each ``1 / fps`` interval of a video (PyAV), as RGB images.

    With ``fps = 1`` this is the field's "first frame of each second". Times count
    from the first decoded frame; with ``start`` / ``end`` (seconds) only frames in
    ``[start, end)`` are kept, the intervals counted from ``start``. A stream that
    ends far short of the duration its header (or its container's) states is
    truncated (:func:`check_duration`), unless decoding stopped at ``end`` first.
    """
    path = Path(path)
    check_file(path)
    av = decoder("av", path)
    start = start or 0.0
    kept, last_interval, origin, t, reached_end = [], -1, None, None, False
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stated = stated_seconds(container, stream)
            step = 1 / float(stream.average_rate or 25)
            for index, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else index * step
                origin = t if origin is None else origin
                t -= origin
                if end is not None and t >= end - 1e-6:
                    reached_end = True
                    break
                if t < start - 1e-6:
                    continue
                interval = math.floor((t - start) * fps + 1e-6)
                if interval > last_interval:
                    kept.append(frame.to_image())
                    last_interval = interval
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a MediaError naming the file
        raise media_failure(path, "video", exc) from None
    if t is not None and not reached_end:
        check_duration(path, t + step, stated, "video stream")
    if not kept:
        where = f" in [{start}, {end}) s" if end is not None or start else ""
        raise MediaError(path, f"no decodable frame{where}")
    return kept


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def read_frame_folder(folder) -> list[Image.Image]:
    """Every image in ``folder`` (png, jpg, ...), in natural name order (``frame_2`` before ``frame_10``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(folder, "frame folder not found")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise MediaError(folder, "no image files in the frame folder")
    return [read_image(p) for p in files]


def read_image(path) -> Image.Image:
    """One image of any size and mode (grey, palette, RGBA, ...) as an RGB image.

    The alpha channel is dropped. An image whose colour channels are one flat colour
    while its alpha channel varies (a mask or a drawing kept in alpha only) would
    become a blank frame, so it is a :class:`MediaError`. So is an image larger than
    PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, doubled).
    """
    path = Path(path)
    check_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            if _alpha_only(image):
                raise MediaError(path, "the content is only in the alpha channel (the colour channels are one "
                                       "flat colour), which frames drop: flatten the image onto a background "
                                       "or store its content in the colour channels")
            return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise MediaError(path, f"cannot decode image: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a MediaError naming the file
        raise media_failure(path, "image", exc) from None


def _alpha_only(image: Image.Image) -> bool:
    """Whether all of ``image``'s content is in its alpha channel: flat colour channels, varying alpha."""
    if "A" not in image.getbands() and not (image.mode == "P" and "transparency" in image.info):
        return False
    extrema = image.convert("RGBA").getextrema()
    return all(low == high for low, high in extrema[:3]) and extrema[3][0] != extrema[3][1]


def select_frames(frames: list, count: int) -> list:
    """``count`` frames evenly spread over ``frames``; the last repeated when there are fewer.

    Frame ``i`` is taken from the middle of the ``i``-th of ``count`` equal parts of
    the clip (index ``floor((i + 1/2) * n / count)``): with 1 fps frames of a 3 s
    clip, one frame is the middle second's, three are all of them.
    """
    n = len(frames)
    if n == 0:
        raise ValueError("no frames to select from")
    if n <= count:
        return list(frames) + [frames[-1]] * (count - n)
    return [frames[int((i + 0.5) * n / count)] for i in range(count)]


def frame_shape(size: int, aspect: float = 1.0) -> tuple[int, int]:
    """``(height, width)`` of cached frames: the short side ``size``, the other ``size * aspect`` (width / height)
    or ``size / aspect``, rounded."""
    if aspect >= 1:
        return size, max(size, round(size * aspect))
    return max(size, round(size / aspect)), size


def resize_frames(frames: list[Image.Image], size: int, aspect: float = 1.0) -> torch.Tensor:
    """Frames scaled to :func:`frame_shape` ``(size, aspect)`` without distortion, as uint8 (T, 3, H, W).

    Each frame is scaled (bilinear, antialiased) so that it covers the shape with its
    own aspect ratio kept; what overhangs is cut evenly from both sides (a frame of
    another aspect ratio than ``aspect`` loses a centred margin, never is squashed).
    """
    height, width = frame_shape(size, aspect)
    arrays = []
    for f in frames:
        w, h = f.size
        if w * height == h * width:  # the same aspect ratio: the whole frame
            box = None
        elif w * height > h * width:  # wider: cut the sides
            keep = h * width / height
            box = ((w - keep) / 2, 0.0, (w + keep) / 2, float(h))
        else:  # taller: cut top and bottom
            keep = w * height / width
            box = (0.0, (h - keep) / 2, float(w), (h + keep) / 2)
        arrays.append(np.asarray(f.resize((width, height), Image.BILINEAR, box=box)))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def source_aspect(visual) -> float | None:
    """Width / height of a clip's frames as they decode (a video's stream, a frame folder's first image, an
    image), read from the headers only; ``None`` where they cannot be read (decoding reports why)."""
    visual = Path(visual)
    try:
        if visual.is_dir():
            files = sorted((p for p in visual.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
            visual = files[0]
        if visual.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(visual) as image:
                width, height = image.size
        else:
            with decoder("av", visual).open(str(visual)) as container:
                context = container.streams.video[0].codec_context
                width, height = context.width, context.height
    except MissingDecoderError:
        raise
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the decoding that follows
        return None
    return width / height if width > 0 and height > 0 else None


def corpus_aspect(aspects) -> float:
    """The aspect ratio frames are cached at: the median of the clips' own (:func:`source_aspect`), 1 if none."""
    known = sorted(a for a in aspects if a is not None)
    return float(np.median(known)) if known else 1.0




def read_frames(visual, fps: float, segment: tuple[float, float] | None = None) -> list[Image.Image]:
    """Frames from a video file, a folder of frames or a single image (used as the only frame).

    ``segment`` (start, end in seconds) applies to videos only.
    """
    visual = Path(visual)
    if visual.is_dir() or visual.suffix.lower() in IMAGE_SUFFIXES:
        if segment is not None:
            raise ValueError(f"{visual}: a time segment needs a video, not a frame folder or image")
        return read_frame_folder(visual) if visual.is_dir() else [read_image(visual)]
    start, end = segment if segment is not None else (None, None)
    return read_video_frames(visual, fps, start, end)

