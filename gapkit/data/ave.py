"""AVE (Audio-Visual Event localisation): annotations, its own train/val/test split, event segments.

``Annotations.txt`` has one line per clip, ``Category&VideoID&Quality&StartTime&EndTime``
(4143 lines, 28 categories, times in whole seconds within 10-second videos);
``train_order.h5`` / ``val_order.h5`` / ``test_order.h5`` each hold one dataset
``order``: 0-based indices into those lines (3339 / 402 / 402). gapkit ships copies
of these four files (``resources/ave/``), so only the videos are needed:
``<root>/AVE/<VideoID>.mp4`` or ``<root>/<VideoID>.mp4``. Copies in the data root,
when all are there, take precedence.

Choices
    - Class order: the order of first appearance in ``Annotations.txt`` (Church bell,
      Male speech, Bark, ...), the index order of the dataset's own code.
    - Clip names: ``<line index>_<VideoID>`` (``0000_RUhOCu3LNXM``): 45 videos are
      annotated twice, with two categories, so the video id alone is not unique.
    - Frames and audio both cover the annotated event ``[start, end)``: the frames
      are the first of each ``1 / fps`` interval from ``start``, ``frames`` of them
      spread over the event; the audio window is the event itself. An event up to
      ``clip_seconds`` long is tiled to it; a longer one (most are: 2750 of the 4143
      annotations span the whole 10 s) is heard whole, its spectrogram's magnitudes
      averaged over time down to the columns of ``clip_seconds``
      (:func:`~gapkit.data.media.decode_clip`), rather than cut to its first
      ``clip_seconds``. One annotation has ``start == end`` (line 27); a segment is
      widened to at least one second so that it holds a frame.
    - Frames keep their video's aspect ratio (the short side ``frame_size``; the
      videos' shapes vary, and the cache takes their median aspect ratio).
    - AVE's own validation split is used as it is; nothing is carved from train.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .cache import ClipSource, Corpus
from .media import ListingError

RESOURCES = Path(__file__).parent / "resources" / "ave"
ORDER_FILES = {"train": "train_order.h5", "val": "val_order.h5", "test": "test_order.h5"}
MIN_SEGMENT = 1.0  # seconds


@dataclass(frozen=True)
class Annotation:
    """One line of ``Annotations.txt`` (``index`` from 0, as the order files count)."""

    index: int
    category: str
    video_id: str
    quality: str
    start: float
    end: float

    @property
    def clip(self) -> str:
        return f"{self.index:04d}_{self.video_id}"


def read_annotations(path) -> list[Annotation]:
    """The lines of an AVE ``Annotations.txt``; errors name the file and line (numbered from 1)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ListingError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out = []
    for number, line in enumerate(lines, 1):
        fields = line.split("&")
        if len(fields) != 5 or not all(f.strip() for f in fields[:3]):
            raise ListingError(path, number, f"malformed line {line!r}: expected Category&VideoID&Quality&Start&End")
        try:
            start, end = float(fields[3]), float(fields[4])
        except ValueError:
            raise ListingError(path, number, f"start/end times {fields[3]!r}, {fields[4]!r} are not numbers") from None
        if start < 0 or end < start:
            raise ListingError(path, number, f"segment {start}-{end} s is not an interval")
        out.append(Annotation(number - 1, fields[0].strip(), fields[1].strip(), fields[2].strip(), start, end))
    if not out:
        raise ListingError(path, None, "no annotation lines")
    return out


def read_order(path, count: int) -> list[int]:
    """The ``order`` dataset of an AVE split file: indices into the ``count`` annotation lines."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            order = np.asarray(f["order"][()]).reshape(-1)
    except KeyError:
        raise ListingError(path, None, "no dataset named 'order'") from None
    except OSError as exc:
        raise ListingError(path, None, f"cannot read HDF5 ({exc})") from None
    bad = order[(order < 0) | (order >= count)]
    if len(bad):
        raise ListingError(path, None, f"index {int(bad[0])} outside the {count} annotation lines")
    if len(set(order.tolist())) != len(order):
        raise ListingError(path, None, "an annotation index is listed twice")
    if len(order) == 0:
        raise ListingError(path, None, "empty split")
    return [int(i) for i in order]


def metadata_folder(root) -> Path:
    """The data root when it holds ``Annotations.txt`` and the three order files, else the shipped copies."""
    names = ["Annotations.txt", *ORDER_FILES.values()]
    return Path(root) if all((Path(root) / n).is_file() for n in names) else RESOURCES


def video_path(root, video_id: str) -> Path:
    """``<root>/AVE/<id>.mp4`` or ``<root>/<id>.mp4`` (the first when neither exists)."""
    nested, flat = Path(root) / "AVE" / f"{video_id}.mp4", Path(root) / f"{video_id}.mp4"
    return flat if flat.is_file() and not nested.is_file() else nested


def categories(annotations: list[Annotation]) -> list[str]:
    """Class names in order of first appearance."""
    return list(dict.fromkeys(a.category for a in annotations))


def read_corpus(root) -> Corpus:
    """Every annotated clip of AVE under ``root`` with its segment, and the train/val/test lists."""
    folder = metadata_folder(root)
    annotations = read_annotations(folder / "Annotations.txt")
    classes = categories(annotations)
    splits, seen = {}, {}
    for part, name in ORDER_FILES.items():
        splits[part] = read_order(folder / name, len(annotations))
        for i in splits[part]:
            if i in seen:
                raise ListingError(folder / name, None, f"annotation {i} is also in the {seen[i]} split")
            seen[i] = part
    sources = []
    for a in (annotations[i] for i in sorted(seen)):
        path = video_path(root, a.video_id)
        segment = (a.start, max(a.end, a.start + MIN_SEGMENT))
        sources.append(ClipSource(a.clip, classes.index(a.category), path, path, segment,
                                  origin=(folder / "Annotations.txt", a.index + 1)))
    info = {"annotations": str(folder / "Annotations.txt"), "orders": [str(folder / n) for n in ORDER_FILES.values()]}
    return Corpus(sources, {part: [annotations[i].clip for i in idx] for part, idx in splits.items()}, classes, info)
