"""Decoding of audio and frames into fixed-size arrays, one function per job.

Audio: :func:`read_wav` (any rate, any channel count, mixed to mono and resampled)
or :func:`read_video_audio` (the audio track of a video), then :func:`fit_length`
(tile or cut to a fixed duration) and :func:`log_spectrogram`.
Frames (:mod:`.frames`): :func:`read_video_frames` (the first frame of each second,
or of each ``1 / fps`` interval), :func:`read_frame_folder` or :func:`read_image`,
then :func:`select_frames` and :func:`resize_frames` (aspect ratio kept).
:func:`decode_clip` chains them as :class:`~gapkit.data.base.Preprocessing` says.

Every failure to read a file raises :class:`MediaError`, whose message names the file:
whatever the decoder raises (PyAV, libsndfile, PIL, its ``DecompressionBombError``
included) is turned into one. So are a video that decodes to far less than the
duration its container states (a file cut short: :func:`check_duration`) and an
image whose content is only in its alpha channel (:func:`read_image`). PyAV and
soundfile are imported on first use (:mod:`.decoders`): where one is missing,
decoding raises :class:`MissingDecoderError` naming it, and everything else
(``import gapkit``, training from a cache) works without it.
"""
from __future__ import annotations

import functools
import math
import struct
from pathlib import Path

import numpy as np
import torch
import torchaudio

from .base import Preprocessing
from .decoders import (DECODERS, ListingError, MediaError, MissingDecoderError, check_duration, check_file, decoder,
                       media_failure, stated_seconds)
from .frames import (IMAGE_SUFFIXES, corpus_aspect, frame_shape, read_frame_folder, read_frames, read_image,
                     read_video_frames, resize_frames, select_frames, source_aspect)

__all__ = ["DECODERS", "IMAGE_SUFFIXES", "ListingError", "MediaError", "MissingDecoderError", "check_duration",
           "corpus_aspect", "decode_clip", "decoder", "expected_shapes", "fit_length", "frame_shape",
           "log_spectrogram", "read_audio", "read_frame_folder", "read_frames", "read_image", "read_video_audio",
           "read_video_frames", "read_wav", "resample", "resize_frames", "select_frames", "source_aspect"]

SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg"}
LOG_EPSILON = 1e-7  # log(|S| + 1e-7), as the OGM-GE codebase


# --------------------------------------------------------------------------- audio

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
    check_file(path)
    sf = decoder("soundfile", path)
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        missing = _wav_shortfall(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a MediaError naming the file
        raise media_failure(path, "audio", exc) from None
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
    check_file(path)
    av = decoder("av", path)
    mono = av.AudioResampler(format="fltp", layout="mono")
    chunks, rate, stated = [], None, None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(path, "no audio track")
            # the track's own duration only: a container's may be the video's, legitimately longer
            stated = stated_seconds(container, container.streams.audio[0], use_container=False)
            for frame in container.decode(audio=0):
                rate = frame.sample_rate
                chunks += [f.to_ndarray()[0] for f in mono.resample(frame)]
            chunks += [f.to_ndarray()[0] for f in mono.resample(None)]
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a MediaError naming the file
        raise media_failure(path, "audio", exc) from None
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


def log_spectrogram(wave: torch.Tensor, n_fft: int, hop_length: int, frames: int | None = None) -> torch.Tensor:
    """``log(|STFT| + 1e-7)`` of a mono waveform: float32 (1, n_fft // 2 + 1, 1 + samples // hop_length).

    Hann window of ``n_fft`` samples, centred frames (reflect padding). With ``frames``, a
    longer waveform's magnitudes are averaged over time down to ``frames`` columns
    (adaptive average pooling, before the log): every sample counts, at a coarser time step.
    """
    with torch.no_grad():
        magnitude = _spectrogram(n_fft, hop_length)(wave.float())
        if frames is not None and magnitude.shape[-1] > frames:
            magnitude = torch.nn.functional.adaptive_avg_pool1d(magnitude.unsqueeze(0), frames).squeeze(0)
    return torch.log(magnitude + LOG_EPSILON).unsqueeze(0)




# --------------------------------------------------------------------------- one clip

def read_audio(path, sample_rate: int) -> torch.Tensor:
    """A waveform from a sound file (wav, flac, ogg) or from the audio track of a video."""
    if Path(path).suffix.lower() in SOUNDFILE_SUFFIXES:
        return read_wav(path, sample_rate)
    return read_video_audio(path, sample_rate)



def decode_clip(audio_path, visual_path_or_folder, pre: Preprocessing = Preprocessing(),
                segment: tuple[float, float] | None = None, aspect: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip as the cache stores it: (spectrogram float16 (1, F, T), frames uint8 (T, 3, H, W)).

    Audio: read at ``pre.sample_rate``, tiled or cut to ``pre.clip_seconds`` and turned
    into :func:`log_spectrogram`. With a ``segment`` (an annotated event, start and end
    in seconds) the audio window is the event: an event up to ``clip_seconds`` long is
    tiled to it; a longer one is kept whole, its spectrogram's magnitudes averaged over
    time down to the ``T`` columns of ``clip_seconds`` (the same frequency bins, a
    coarser time step), so the sound covers the same span as the frames.
    Frames: sampled at ``pre.fps`` (inside ``segment``), ``pre.frames`` of them picked by
    :func:`select_frames` and scaled without distortion to :func:`frame_shape`
    ``(pre.frame_size, aspect)`` (:func:`resize_frames`). Any failure is a
    :class:`MediaError` naming the audio or the visual file.
    """
    samples = round(pre.clip_seconds * pre.sample_rate)
    try:
        wave = read_audio(audio_path, pre.sample_rate)
        columns = None
        if segment is not None:
            wave = wave[round(segment[0] * pre.sample_rate):round(segment[1] * pre.sample_rate)]
            if len(wave) == 0:
                raise MediaError(audio_path, f"no audio in the segment {segment[0]}-{segment[1]} s")
            columns = 1 + samples // pre.hop_length
        if columns is None or len(wave) <= samples:
            wave = fit_length(wave, samples)
        spec = log_spectrogram(wave, pre.n_fft, pre.hop_length, columns).to(torch.float16)
    except MissingDecoderError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise media_failure(audio_path, "audio", exc) from None
    try:
        frames = resize_frames(select_frames(read_frames(visual_path_or_folder, pre.fps, segment), pre.frames),
                               pre.frame_size, aspect)
    except MissingDecoderError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise media_failure(visual_path_or_folder, "frames", exc) from None
    return spec, frames


def expected_shapes(pre: Preprocessing, aspect: float = 1.0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of :func:`decode_clip`'s two outputs under ``pre`` (frames cached at ``aspect``, width / height)."""
    samples = round(pre.clip_seconds * pre.sample_rate)
    return (1, pre.n_fft // 2 + 1, 1 + samples // pre.hop_length), (pre.frames, 3, *frame_shape(pre.frame_size, aspect))

