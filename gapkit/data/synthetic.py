"""The embedded dataset: a synthetic audio-visual emotion corpus in CREMA-D's layout.

Generated from a seed in well under a minute on a laptop, with no download, and
written to disk exactly as the real corpus is laid out, so that one loader reads
both. Every clip is a function of ``(spec, clip index)`` only (a numpy
``default_rng`` seeded with both), so generation is byte-identical whether it
runs sequentially or in a pool of worker processes.

The clips themselves, the corpus's settings (:class:`SyntheticSpec`) and how its classes
differ are in :mod:`gapkit.data.synthetic_render`; this module makes the corpus of them: which
clips are degraded, the train/test split, the folder and its publishing.

Degradation
    ``degraded_fraction`` of the clips (an exact count, seeded) have exactly one
    modality degraded: ``audio_degraded_share`` of them the audio, drowned in
    speech-band noise at ``degraded_snr_db``; the rest the faces, either occluded
    by a large patch or heavily blurred (half each). Most degradations are visual
    (70% by default) because the paper studies the imbalance where audio
    dominates: these are the "imbalanced" samples its mixture should find.
    ``degradation.csv`` records every clip.

Layout under the corpus folder
    ``AudioWAV/<clip>.wav``            16 kHz mono PCM_16, 1.8-3.0 s
    ``VideoFrames/<clip>/frame_000.png``  1 fps: one RGB frame per started second
    ``train.csv``, ``test.csv``        the peer codebases' split format: no header,
                                       ``clip,LABEL``, UTF-8 BOM, CRLF; 90/10,
                                       stratified by class, seeded
    ``degradation.csv``                ``clip,degraded,kind`` (none|audio|visual)
    ``spec.json``                      the spec, its key, the classes and counts;
                                       written last: its presence marks completion
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from .. import paths
from ..io import publish_folder, staging_folder
from .synthetic_render import CLASSES, SyntheticSpec, clip_name, make_clip, random_stream

__all__ = ["CLASSES", "SyntheticSpec", "clip_name", "ensure_corpus", "read_degradation"]


def ensure_corpus(spec: SyntheticSpec, root: Path | None = None, progress: bool = False, *,
                  workers: int | None = None) -> Path:
    """Return the corpus folder, generating it first if it is absent or incomplete.

    Default root: ``gapkit.paths.data_dir() / f"synthetic-{spec.key()}"``. The
    corpus is written into a temporary sibling folder and renamed to ``root``
    only once complete; leftovers of killed runs are removed. ``workers``
    processes generate the clips (default: up to 4 of the machine's cores); the
    result is the same byte for byte whatever their number.
    """
    root = Path(root) if root is not None else paths.data_dir() / f"synthetic-{spec.key()}"
    if _is_complete(root, spec):
        return root
    if root.exists():
        _check_replaceable(root)
    tmp = staging_folder(root)
    try:
        _generate(spec, tmp, progress, workers)
        if root.exists() and not _is_complete(root, spec):
            _check_replaceable(root)
        publish_folder(tmp, root, lambda folder: _is_complete(folder, spec))  # keeps one another process finished
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def read_degradation(root: Path) -> dict[str, str]:
    """``clip -> "none" | "audio" | "visual"`` from a corpus's ``degradation.csv``."""
    with open(Path(root) / "degradation.csv", newline="", encoding="utf-8-sig") as f:
        return {row["clip"]: row["degraded"] for row in csv.DictReader(f)}


# --------------------------------------------------------------------------- corpus

_CORPUS_ENTRIES = {"AudioWAV", "VideoFrames", "train.csv", "test.csv", "degradation.csv", "spec.json"}


def _is_complete(root: Path, spec: SyntheticSpec) -> bool:
    try:
        return json.loads((root / "spec.json").read_text(encoding="utf-8"))["key"] == spec.key()
    except (OSError, ValueError, KeyError):
        return False


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder holding anything a corpus does not: it is not ours to delete."""
    foreign = sorted(p.name for p in root.iterdir() if p.name not in _CORPUS_ENTRIES)
    if foreign:
        raise FileExistsError(f"{root} exists and is not a synthetic corpus (it holds {foreign[:5]}); "
                              f"move it away or pass another root")


def _assign_degradation(spec: SyntheticSpec) -> list[tuple[str, str]]:
    """``(degraded, kind)`` per clip: an exact, seeded count, ``audio_degraded_share`` of it audio."""
    rng = random_stream(spec, "assign")
    chosen = rng.permutation(spec.clips)[:round(spec.degraded_fraction * spec.clips)]
    n_audio = round(spec.audio_degraded_share * len(chosen))
    out = [("none", "none")] * spec.clips
    for rank, index in enumerate(chosen):
        if rank < n_audio:
            out[index] = ("audio", "noise")
        else:
            out[index] = ("visual", ("occlusion", "blur")[rank % 2])
    return out


def _split(spec: SyntheticSpec, labels: list[str]) -> list[str]:
    """``"train"``/``"test"`` per clip, stratified by class: ``test_fraction`` of each class to test."""
    rng = random_stream(spec, "split")
    out = ["train"] * len(labels)
    for label in CLASSES:
        members = [i for i, lab in enumerate(labels) if lab == label]
        for i in rng.permutation(members)[:round(spec.test_fraction * len(members))]:
            out[i] = "test"
    return out


def _generate(spec: SyntheticSpec, out: Path, progress: bool, workers: int | None) -> None:
    (out / "AudioWAV").mkdir()
    (out / "VideoFrames").mkdir()
    degradation = _assign_degradation(spec)
    jobs = [(spec, i, degradation[i], out) for i in range(spec.clips)]
    workers = workers or min(4, os.cpu_count() or 1)
    bar = dict(total=spec.clips, disable=not progress, desc="synthetic corpus", unit="clip")
    # threads suffice: numpy, Pillow's encoder and libsndfile release the GIL for the heavy parts
    pool = ThreadPoolExecutor(workers)
    try:
        made = list(tqdm(pool.map(make_clip, jobs), **bar))
    finally:
        pool.shutdown(cancel_futures=True)  # on an error or Ctrl-C, do not finish the queue first

    names = [m[0] for m in made]
    labels = [m[1] for m in made]
    split = _split(spec, labels)
    for part in ("train", "test"):
        lines = "".join(f"{n},{lab}\r\n" for n, lab, s in zip(names, labels, split) if s == part)
        (out / f"{part}.csv").write_bytes(("\ufeff" + lines).encode("utf-8"))
    rows = "".join(f"{n},{d},{k}\n" for n, (d, k) in zip(names, degradation))
    (out / "degradation.csv").write_text("clip,degraded,kind\n" + rows, encoding="utf-8", newline="")

    seconds = [m[2] for m in made]
    frames = [m[3] for m in made]
    counts = {
        part: {c: sum(1 for lab, s in zip(labels, split) if s == part and lab == c) for c in CLASSES}
        for part in ("train", "test")}
    counts["degraded"] = {d: sum(1 for x, _ in degradation if x == d) for d in ("none", "audio", "visual")}
    counts["kind"] = {k: sum(1 for _, x in degradation if x == k) for k in ("none", "noise", "occlusion", "blur")}
    counts["frames"] = {str(n): frames.count(n) for n in sorted(set(frames))}
    info = {**dataclasses.asdict(spec), "key": spec.key(), "classes": CLASSES, "counts": counts,
            "seconds": {"min": round(min(seconds), 4), "max": round(max(seconds), 4),
                        "mean": round(sum(seconds) / len(seconds), 4)}}
    (out / "spec.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
