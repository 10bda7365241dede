"""Tiny corpora in the real file formats, for the data tests: wav (soundfile), FLV and MP4 (PyAV), PNG frames.

Video frames encode where they are: frame ``i`` of a video at ``rate`` frames per
second is a flat colour with red ``24 * (i % rate)`` (position inside its second)
and green ``40 * (i // rate)`` (the second), so a test can tell which frame a
decoder kept despite lossy coding (tolerance ``COLOUR_TOLERANCE``).
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COLOUR_TOLERANCE = 10
CREMA_CLASSES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]


def shared_metadata(corpus: str, name: str) -> Path:
    """A real metadata file of ``../shared/data/<corpus>/``; the test is skipped where it is absent."""
    path = SHARED_DATA / corpus / name
    if not path.is_file():
        pytest.skip(f"real {corpus} metadata not found at {path} (../shared/data from the project root)")
    return path


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path, wave: np.ndarray, rate: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, rate, subtype="PCM_16")
    return path


def frame_colour(i: int, rate: int) -> tuple[int, int, int]:
    return 24 * (i % rate), 40 * (i // rate), 128


def write_video(path, seconds: float, rate: int = 10, size: tuple[int, int] = (64, 48), container: str = "flv",
                codec: str = "flv", audio: np.ndarray | None = None, audio_rate: int = 16000) -> Path:
    """A video whose frames encode their index (see the module doc), optionally with an AAC audio track."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=audio_rate, layout="mono") if audio is not None else None
        for i in range(round(seconds * rate)):
            image = np.empty((size[1], size[0], 3), np.uint8)
            image[:] = frame_colour(i, rate)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(audio.astype(np.float32)[None], format="flt", layout="mono")
            frame.sample_rate = audio_rate
            for packet in sound.encode(frame):
                out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return path


def write_split(path, rows: list[tuple[str, str]], bom: bool = True, crlf: bool = True) -> Path:
    """An OGM-GE split file: ``clip,LABEL`` lines, no header."""
    end = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + "".join(f"{clip},{label}{end}" for clip, label in rows)
    Path(path).write_bytes(text.encode("utf-8"))
    return Path(path)


def crema_clip(actor: int, sentence: int, label: str) -> str:
    return f"{actor}_S{sentence:02d}_{label}_XX"


def make_cremad(root, actors=(1001, 1002, 1003, 1004), labels=("NEU", "HAP", "SAD"), test_actor_share: int = 4,
                video_seconds: float = 2.5) -> dict[str, list[tuple[str, str]]]:
    """A CREMA-D layout: per actor and label two clips (a 16 kHz wav whose tone depends on the label, an FLV).

    Every ``test_actor_share``-th clip goes to test, so every actor is in both splits.
    Returns the split rows written to ``train.csv`` / ``test.csv``.
    """
    root = Path(root)
    rows = {"train": [], "test": []}
    n = 0
    for actor in actors:
        for sentence in range(2):
            for label in labels:
                clip = crema_clip(actor, sentence, label)
                write_wav(root / "AudioWAV" / f"{clip}.wav",
                          tone(300 + 200 * CREMA_CLASSES.index(label), 1.2 + 0.1 * sentence, 16000), 16000)
                write_video(root / "VideoFlash" / f"{clip}.flv", video_seconds)
                rows["test" if n % test_actor_share == 0 else "train"].append((clip, label))
                n += 1
    for part, part_rows in rows.items():
        write_split(root / f"{part}.csv", part_rows)
    return rows


def write_png_header(path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` RGB pixels but holds no image data (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path = Path(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


def cut_file(path, keep: float = 0.5) -> Path:
    """Truncate a file in place to the first ``keep`` of its bytes (a copy interrupted midway)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path
