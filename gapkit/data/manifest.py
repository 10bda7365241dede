"""Any corpus described by a CSV manifest: one row per clip, ``audio,visual,label,split``.

    audio,visual,label,split
    clips/a.wav,clips/a.mp4,dog,train
    clips/b.wav,frames/b/,cat,test
    clips/c.flac,stills/c.jpg,dog,val

``audio``: a sound file at any sample rate (wav, flac, ogg) or a video with an audio
track; ``visual``: a video, a folder of frames or one image (used for every frame).
Paths are relative to the manifest's folder (absolute ones are kept). ``split`` is
``train``, ``val`` or ``test``; without any ``val`` row, validation is carved from
train. Other columns are ignored. Labels are any strings or integers; the class
list is the sorted unique labels, as strings, sorted as numbers when all are
integers (so labels 0..10 keep their values as class indices). A clip is named by
its ``audio`` path in one spelling (``./sound/a.wav`` and ``sound//a.wav`` are
``sound/a.wav``); two rows whose audio is the same file, however written (relative,
absolute, through ``..``), are an error, so one clip cannot land in two splits.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from .cache import ClipSource, Corpus
from .media import ListingError

COLUMNS = ("audio", "visual", "label", "split")
SPLITS = ("train", "val", "test")


def manifest_path(data_root) -> Path:
    """The manifest CSV: ``data_root`` itself, or ``manifest.csv`` inside it when it is a folder."""
    path = Path(data_root)
    return path / "manifest.csv" if path.is_dir() else path


def clip_path(text: str) -> str:
    """A path as the manifest writes it, in one spelling: ``./a//b/../c.wav`` -> ``a/c.wav``."""
    return Path(os.path.normpath(text)).as_posix()


def _class_order(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def read_corpus(data_root) -> Corpus:
    """The clips and splits a manifest lists; errors name the manifest and the line (from 1, the header)."""
    path = manifest_path(data_root)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ListingError(path, 1, f"missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}, "
                                            f"found {','.join(header) or 'none'}")
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise ListingError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    entries, first = [], {}
    base = path.parent
    for line, row in rows:
        values = {c: (row.get(c) or "").strip() for c in COLUMNS}
        if not any(values.values()):
            continue
        empty = [c for c in COLUMNS if not values[c]]
        if empty:
            raise ListingError(path, line, f"empty {', '.join(empty)}")
        if values["split"] not in SPLITS:
            raise ListingError(path, line, f"unknown split {values['split']!r}; use train, val or test")
        written = values["audio"]
        values["audio"], values["visual"] = clip_path(values["audio"]), clip_path(values["visual"])
        file = (base / values["audio"]).resolve()  # one file, however its path is spelt
        if file in first:
            other_line, other = first[file]
            spelt = "" if other == written else f" (written {other!r} there)"
            raise ListingError(path, line, f"audio {written} already listed on line {other_line}{spelt}: "
                                           f"one clip cannot be listed twice")
        first[file] = (line, written)
        entries.append((line, values))
    for part in ("train", "test"):
        if not any(v["split"] == part for _, v in entries):
            raise ListingError(path, None, f"empty split: no '{part}' rows")

    classes = _class_order({v["label"] for _, v in entries})
    sources = [ClipSource(v["audio"], classes.index(v["label"]), base / v["audio"], base / v["visual"],
                          origin=(path, line)) for line, v in entries]
    splits = {part: [v["audio"] for _, v in entries if v["split"] == part] for part in SPLITS}
    if not splits["val"]:
        del splits["val"]
    return Corpus(sources, splits, classes, {"manifest": str(path)})
