"""Decoding of audio and frames into fixed-size arrays, one function per job.

Audio: :func:`read_wav` (any rate, any channel count, mixed to mono and resampled)
or :func:`read_video_audio` (the audio track of a video), then :func:`fit_length`
(tile or cut to a fixed duration) and :func:`log_spectrogram`.
Frames: :func:`read_video_frames` (the first frame of each second, or of each
``1 / fps`` interval), :func:`read_frame_folder` or :func:`read_image`, then
:func:`select_frames` and :func:`resize_frames`. :func:`decode_clip` chains them
as :class:`~gapkit.data.base.Preprocessing` says.

Every failure to read a file raises :class:`MediaError`, whose message names the file:
whatever the decoder raises (PyAV, libsndfile, PIL, its ``DecompressionBombError``
included) is turned into one. So are a video that decodes to far less than the
duration its container states (a file cut short: :func:`check_duration`) and an
image whose content is only in its alpha channel (:func:`read_image`).
"""
from __future__ import annotations

import functools
import math
import re
import struct
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio
from PIL import Image

from .base import Preprocessing

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg"}
LOG_EPSILON = 1e-7  # log(|S| + 1e-7), as the OGM-GE codebase
#: a stream decoding to less than its stated duration by more than this many seconds, and by more than
#: SHORTFALL_FRACTION of it, is cut short (a few frames' difference between container and stream is normal)
SHORTFALL_SECONDS = 0.5
SHORTFALL_FRACTION = 0.2


class MediaError(ValueError):
    """A media file that cannot be used: missing, empty, truncated, corrupt or without frames."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ListingError(ValueError):
    """A bad line in a file that lists clips (split file, manifest, annotations)."""

    def __init__(self, path, line: int | None, reason: str):
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")


def _failure(path, what: str, exc: Exception) -> MediaError:
    """A decoder's exception as a :class:`MediaError` naming ``path`` (a MediaError passes unchanged)."""
    if isinstance(exc, MediaError):
        return exc
    detail = str(exc) or type(exc).__name__
    if not isinstance(exc, av.FFmpegError) and type(exc).__name__ not in detail:  # FFmpeg's say what they are
        detail = f"{type(exc).__name__}: {detail}"
    return MediaError(path, f"cannot decode {what} ({detail})")


def check_duration(path, decoded: float, stated: float | None, what: str = "video") -> None:
    """Raise :class:`MediaError` when ``decoded`` seconds fall far short of the ``stated`` duration.

    A file cut short keeps its header, so the container still states the whole
    duration while the decoder stops where the bytes do (an FLV cut in half decodes
    half its frames without an error). "Far short": more than ``SHORTFALL_SECONDS``
    and more than ``SHORTFALL_FRACTION`` of the stated duration missing.
    """
    if stated is None or not math.isfinite(stated) or stated <= 0:
        return
    missing = stated - decoded
    if missing > SHORTFALL_SECONDS and missing > SHORTFALL_FRACTION * stated:
        raise MediaError(path, f"truncated: the {what} decodes to {decoded:.2f} s of the {stated:.2f} s its "
                               f"container states")


def _stated_seconds(container, stream, use_container: bool = True) -> float | None:
    """A stream's duration from its own header, else (``use_container``) from the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if use_container and container.duration is not None:
        return container.duration / av.time_base
    return None


# --------------------------------------------------------------------------- audio

def _check_file(path: Path) -> None:
    if not path.is_file():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")


def _wav_shortfall(path: Path) -> int:
    """Bytes missing from a RIFF/WAVE file's ``data`` chunk (0 when complete or not a plain WAV).

    libsndfile silently shortens a truncated WAV to what is there; the header
    still tells how long the recording was.
    """
    with open(path, "rb") as f:
        if f.read(12)[8:12] != b"WAVE":
            return 0
        size = path.stat().st_size
        while True:
            head = f.read(8)
            if len(head) < 8:
                return 0
            chunk, length = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk == b"data":
                if length in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                    return 0
                return max(0, length - (size - f.tell()))
            f.seek(length + (length & 1), 1)


def read_wav(path, sample_rate: int) -> torch.Tensor:
    """A sound file as a mono float32 waveform (samples,) at ``sample_rate`` Hz.

    Channels are averaged; the rate is converted with
    ``torchaudio.functional.resample`` when it differs. Raises :class:`MediaError`
    for a missing, empty, truncated or undecodable file or one without samples.
    """
    path = Path(path)
    _check_file(path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        missing = _wav_shortfall(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a MediaError naming the file
        raise _failure(path, "audio", exc) from None
    if missing:
        raise MediaError(path, f"truncated: {missing} bytes of audio data missing")
    if len(data) == 0:
        raise MediaError(path, "no audio samples")
    return resample(torch.from_numpy(data.mean(axis=1)), rate, sample_rate)


def read_video_audio(path, sample_rate: int) -> torch.Tensor:
    """The first audio track of a video file (PyAV), as :func:`read_wav` returns it.

    A track decoding to far less than the duration its own header states is
    truncated (:func:`check_duration`).
    """
    path = Path(path)
    _check_file(path)
    mono = av.AudioResampler(format="fltp", layout="mono")
    chunks, rate, stated = [], None, None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(path, "no audio track")
            # the track's own duration only: a container's may be the video's, legitimately longer
            stated = _stated_seconds(container, container.streams.audio[0], use_container=False)
            for frame in container.decode(audio=0):
                rate = frame.sample_rate
                chunks += [f.to_ndarray()[0] for f in mono.resample(frame)]
            chunks += [f.to_ndarray()[0] for f in mono.resample(None)]
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a MediaError naming the file
        raise _failure(path, "audio", exc) from None
    samples = sum(len(c) for c in chunks)
    if samples == 0:
        raise MediaError(path, "no decodable audio samples")
    check_duration(path, samples / rate, stated, "audio track")
    return resample(torch.from_numpy(np.concatenate(chunks).astype(np.float32)), rate, sample_rate)


def resample(wave: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    """``wave`` converted from ``rate`` to ``sample_rate`` Hz (unchanged when equal)."""
    if rate == sample_rate:
        return wave
    return torchaudio.functional.resample(wave, rate, sample_rate)


def fit_length(wave: torch.Tensor, samples: int) -> torch.Tensor:
    """Tile (repeat from the start) or cut ``wave`` to exactly ``samples`` samples.

    OGM-GE tiles every CREMA-D clip to 3 s this way rather than padding with silence.
    """
    if len(wave) == 0:
        raise ValueError("cannot tile an empty waveform")
    if len(wave) < samples:
        wave = wave.repeat(math.ceil(samples / len(wave)))
    return wave[:samples]


@functools.lru_cache(maxsize=8)
def _spectrogram(n_fft: int, hop_length: int) -> torchaudio.transforms.Spectrogram:
    return torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop_length, power=1.0)


def log_spectrogram(wave: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """``log(|STFT| + 1e-7)`` of a mono waveform: float32 (1, n_fft // 2 + 1, 1 + samples // hop_length).

    Hann window of ``n_fft`` samples, centred frames (reflect padding).
    """
    with torch.no_grad():
        magnitude = _spectrogram(n_fft, hop_length)(wave.float())
    return torch.log(magnitude + LOG_EPSILON).unsqueeze(0)


# --------------------------------------------------------------------------- frames

def read_video_frames(path, fps: float, start: float | None = None, end: float | None = None) -> list[Image.Image]:
    """The first frame of each ``1 / fps`` interval of a video (PyAV), as RGB images.

    With ``fps = 1`` this is the field's "first frame of each second". Times count
    from the first decoded frame; with ``start`` / ``end`` (seconds) only frames in
    ``[start, end)`` are kept, the intervals counted from ``start``. A stream that
    ends far short of the duration its header (or its container's) states is
    truncated (:func:`check_duration`), unless decoding stopped at ``end`` first.
    """
    path = Path(path)
    _check_file(path)
    start = start or 0.0
    kept, last_interval, origin, t, reached_end = [], -1, None, None, False
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stated = _stated_seconds(container, stream)
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
        raise _failure(path, "video", exc) from None
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
    _check_file(path)
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
        raise _failure(path, "image", exc) from None


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


def resize_frames(frames: list[Image.Image], size: int) -> torch.Tensor:
    """Frames resized to ``size`` x ``size`` (bilinear, antialiased) as uint8 (T, 3, size, size)."""
    arrays = [np.asarray(f.resize((size, size), Image.BILINEAR)) for f in frames]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- one clip

def read_audio(path, sample_rate: int) -> torch.Tensor:
    """A waveform from a sound file (wav, flac, ogg) or from the audio track of a video."""
    if Path(path).suffix.lower() in SOUNDFILE_SUFFIXES:
        return read_wav(path, sample_rate)
    return read_video_audio(path, sample_rate)


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


def decode_clip(audio_path, visual_path_or_folder, pre: Preprocessing = Preprocessing(),
                segment: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip as the cache stores it: (spectrogram float16 (1, F, T), frames uint8 (T, 3, H, W)).

    The audio is read at ``pre.sample_rate``, cut to ``segment`` when given, tiled or
    cut to ``pre.clip_seconds`` and turned into :func:`log_spectrogram`; the frames
    are sampled at ``pre.fps`` (inside ``segment``), ``pre.frames`` of them picked
    by :func:`select_frames` and resized to ``pre.frame_size``. Any failure is a
    :class:`MediaError` naming the audio or the visual file.
    """
    try:
        wave = read_audio(audio_path, pre.sample_rate)
        if segment is not None:
            wave = wave[round(segment[0] * pre.sample_rate):round(segment[1] * pre.sample_rate)]
            if len(wave) == 0:
                raise MediaError(audio_path, f"no audio in the segment {segment[0]}-{segment[1]} s")
        wave = fit_length(wave, round(pre.clip_seconds * pre.sample_rate))
        spec = log_spectrogram(wave, pre.n_fft, pre.hop_length).to(torch.float16)
    except Exception as exc:  # noqa: BLE001
        raise _failure(audio_path, "audio", exc) from None
    try:
        frames = resize_frames(select_frames(read_frames(visual_path_or_folder, pre.fps, segment), pre.frames),
                               pre.frame_size)
    except Exception as exc:  # noqa: BLE001
        raise _failure(visual_path_or_folder, "frames", exc) from None
    return spec, frames


def expected_shapes(pre: Preprocessing) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of :func:`decode_clip`'s two outputs under ``pre``."""
    samples = round(pre.clip_seconds * pre.sample_rate)
    return (1, pre.n_fft // 2 + 1, 1 + samples // pre.hop_length), (pre.frames, 3, pre.frame_size, pre.frame_size)
