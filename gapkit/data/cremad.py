"""CREMA-D: split files, media layout, the speaker-independent split and integrity checks.

Layout under the data root (as the corpus is distributed; ``train.csv`` / ``test.csv``
may instead sit in a ``splits_dir``):

    AudioWAV/<clip>.wav          16 kHz mono, about 2.5 s
    VideoFlash/<clip>.flv        video, decoded with PyAV
    VideoFrames/<clip>/*.png     or Image-01-FPS/<clip>/*.jpg: frames already extracted
                                 at 1 fps; used instead of the FLV when present
    train.csv, test.csv          the OGM-GE codebase's standard split: 6698 / 744 lines
                                 ``clip,LABEL``, no header, CRLF (a byte-order mark is
                                 tolerated), classes NEU HAP SAD FEA DIS ANG in that order

Clip names are ``<actor>_<sentence>_<emotion>_<level>`` (``1001_DFA_ANG_XX``). The
standard split shares every actor between train and test; ``split="speaker"``
instead assigns whole actors to train or test (about 90/10, seeded).

Default preprocessing (:class:`~gapkit.data.base.Preprocessing`) and why
    - frames: the first frame of each second (1 fps), as the peer codebases extract
      them; ``frames`` of them per clip (3 by default: a 2.5 s clip has 3 such
      frames), the same number at training and at test time, cached with the
      videos' aspect ratio kept (the short side ``frame_size``: 224 x 299 for 4:3
      video); training crops squares from them (RandomResizedCrop), evaluation
      the centre square. The number of frames moves the concat baseline
      by many points, so it is part of the cache key and of every result.
    - audio: resampled to 22,050 Hz and tiled (repeated, not zero-padded) to 3 s,
      then ``log(|STFT| + 1e-7)`` with n_fft 512 and hop 353 (Hann): 257 x 188, the
      OGM-GE pipeline, which most CREMA-D numbers in the paper's Table 1 come from.
      We compute the STFT with torchaudio (centred frames, reflect padding) rather
      than librosa; the shapes are the same.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import atomic_write_bytes
from .cache import ClipSource, Corpus
from .media import ListingError

CLASSES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
SPLIT_FILES = ("train.csv", "test.csv")
SPLITS_URL = "https://raw.githubusercontent.com/GeWu-Lab/OGM-GE_CVPR2022/main/data/CREMAD/"
SPLIT_SHA256 = {
    "train.csv": "68d0d3fd253830328fc92c68f3cf2e215db8c5b86757ad9c5112d2c76ba68bde",
    "test.csv": "14866c99301fd56fb4a16f8a7048a8a6372a47069aee9f216443bc718be45f1f",
}
CHECKSUMS = Path(__file__).parent / "resources" / "crema-d-checksums.csv.gz"
FRAME_FOLDERS = ("VideoFrames", "Image-01-FPS")


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split file: the clip, its label and the line number (from 1)."""

    clip: str
    label: str
    line: int


# --------------------------------------------------------------------------- split files

def read_split_file(path, classes: list[str] = CLASSES) -> list[SplitEntry]:
    """The ``clip,LABEL`` lines of an OGM-GE split file (BOM and CRLF tolerated; blank lines ignored).

    Raises :class:`~gapkit.data.media.ListingError` naming the file and line for a
    malformed line, a label outside ``classes`` or a clip listed twice, and naming
    the file for one that is not UTF-8 text or lists no clip.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"split file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ListingError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    entries, first = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2 or not all(fields) or any(" " in f for f in fields):
            raise ListingError(path, number, f"malformed line {line!r}: expected 'clip,LABEL'")
        clip, label = fields
        if label not in classes:
            raise ListingError(path, number, f"label {label!r} of clip {clip} is not one of {', '.join(classes)}")
        if clip in first:
            raise ListingError(path, number, f"duplicate clip id {clip} (first listed on line {first[clip]})")
        first[clip] = number
        entries.append(SplitEntry(clip, label, number))
    if not entries:
        raise ListingError(path, None, "empty split: the file lists no clip")
    return entries


def find_split_files(root, splits_dir=None) -> dict[str, Path]:
    """``{"train.csv": path, "test.csv": path}`` from ``splits_dir`` when given, else from the data root."""
    folder = Path(splits_dir) if splits_dir is not None else Path(root)
    found = {name: folder / name for name in SPLIT_FILES}
    missing = [name for name, path in found.items() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"CREMA-D split file(s) {', '.join(missing)} not found in {folder}. They are the OGM-GE codebase's "
            f"standard split: fetch them, checksum-verified, with `python -m gapkit prepare --dataset crema-d "
            f"--data-root {root} --download-splits` (or gapkit.data.cremad.download_splits(root)), or pass the "
            f"folder holding train.csv and test.csv as splits_dir.")
    return found


def sha256_file(path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_splits(dest, base_url: str = SPLITS_URL, timeout: float = 60) -> list[Path]:
    """Fetch the OGM-GE codebase's ``train.csv`` and ``test.csv`` into ``dest``, checking the pinned sha256.

    Files already in ``dest`` with the pinned checksum are kept as they are. A
    download whose checksum differs is not written (``ValueError``). ``base_url``
    is the folder holding the two files (any URL urllib reads, ``file://`` too).
    Returns the two paths.
    """
    if dest is None:
        raise ValueError("download_splits needs a destination folder (the CREMA-D data root)")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SPLIT_FILES:
        target = dest / name
        if not (target.is_file() and sha256_file(target) == SPLIT_SHA256[name]):
            url = base_url + name
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
            got = hashlib.sha256(payload).hexdigest()
            if got != SPLIT_SHA256[name]:
                raise ValueError(f"{url}: sha256 {got} differs from the pinned {SPLIT_SHA256[name]}; not written")
            atomic_write_bytes(payload, target)
        written.append(target)
    return written


# --------------------------------------------------------------------------- corpus

def audio_path(root, clip: str) -> Path:
    """``AudioWAV/<clip>.wav``."""
    return Path(root) / "AudioWAV" / f"{clip}.wav"


def visual_path(root, clip: str) -> Path:
    """The clip's frames folder (``VideoFrames/<clip>/`` or ``Image-01-FPS/<clip>/``) if any, else its FLV."""
    for folder in FRAME_FOLDERS:
        frames = Path(root) / folder / clip
        if frames.is_dir():
            return frames
    return Path(root) / "VideoFlash" / f"{clip}.flv"


def actor_of(clip: str) -> str:
    """The actor id: the first ``_``-separated field of the clip name."""
    return clip.split("_", 1)[0]


def speaker_split(clips: list[str], seed: int = 0, test_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """Speaker-independent ``(train, test)``: ``round(test_fraction * actors)`` whole actors go to test (seeded)."""
    actors = sorted({actor_of(c) for c in clips})
    if len(actors) < 2:
        raise ValueError(f"a speaker-independent split needs at least 2 actors, found {len(actors)}")
    n_test = min(len(actors) - 1, max(1, round(test_fraction * len(actors))))
    test_actors = {actors[i] for i in np.random.default_rng(seed).permutation(len(actors))[:n_test]}
    return [c for c in clips if actor_of(c) not in test_actors], [c for c in clips if actor_of(c) in test_actors]


def read_corpus(root, *, splits_dir=None, split: str = "standard", split_seed: int = 0) -> Corpus:
    """The clips, labels, media paths and train/test lists of a corpus in CREMA-D's layout.

    ``split="standard"`` keeps the split files' train/test; ``"speaker"`` pools their
    clips and splits them by actor with :func:`speaker_split` (seed ``split_seed``).
    """
    if split not in ("standard", "speaker"):
        raise ValueError(f"split must be 'standard' or 'speaker', got {split!r}")
    root = Path(root)
    files = find_split_files(root, splits_dir)
    listed, where = {}, {}
    for name, path in files.items():
        listed[name] = read_split_file(path)
        for e in listed[name]:
            if e.clip in where:
                other = where[e.clip]
                raise ListingError(path, e.line, f"duplicate clip id {e.clip} (also in {other[0]}, line {other[1]})")
            where[e.clip] = (path, e.line)
    sources = [ClipSource(e.clip, CLASSES.index(e.label), audio_path(root, e.clip), visual_path(root, e.clip),
                          origin=(files[name], e.line))
               for name in SPLIT_FILES for e in listed[name]]
    splits = {part: [e.clip for e in listed[f"{part}.csv"]] for part in ("train", "test")}
    if split == "speaker":
        train, test = speaker_split(splits["train"] + splits["test"], split_seed)
        splits = {"train": train, "test": test}
    digests = {name: sha256_file(path) for name, path in files.items()}
    info = {"split_files": {
        name: {"path": str(path), "sha256": digests[name], "ogm_ge_standard": digests[name] == SPLIT_SHA256[name]}
        for name, path in files.items()}}
    return Corpus(sources, splits, list(CLASSES), info)


# --------------------------------------------------------------------------- integrity

@dataclass
class VerifyReport:
    """The outcome of :func:`verify`: listed files that are missing, truncated (smaller) or corrupt."""

    root: Path
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.truncated or self.corrupt)

    def summary(self, show: int = 10) -> str:
        """A few lines for a person: counts, then the first ``show`` files of each problem."""
        good = self.checked - len(self.missing) - len(self.truncated) - len(self.corrupt)
        lines = [f"{self.root}: {self.checked} files checked, {good} intact, {len(self.missing)} missing, "
                 f"{len(self.truncated)} truncated, {len(self.corrupt)} corrupt"]
        for name in ("missing", "truncated", "corrupt"):
            files = getattr(self, name)
            lines += [f"  {name}: {f}" for f in files[:show]]
            if len(files) > show:
                lines.append(f"  ... and {len(files) - show} more {name}")
        return "\n".join(lines)


def read_checksums(path=None) -> list[tuple[str, str, int]]:
    """``(path, sha256, bytes)`` rows of a checksum CSV (``.gz`` allowed); default: the list shipped with gapkit."""
    path = Path(path) if path is not None else CHECKSUMS
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        reader = csv.DictReader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
        if reader.fieldnames is None or not {"path", "sha256", "bytes"} <= set(reader.fieldnames):
            raise ListingError(path, 1, f"expected the columns path,sha256,bytes, found {reader.fieldnames}")
        rows = []
        for row in reader:
            try:
                rows.append((row["path"], row["sha256"].lower(), int(row["bytes"])))
            except (TypeError, ValueError):
                raise ListingError(path, reader.line_num, f"malformed row {row}") from None
    return rows


def verify(root, checksums=None, progress: bool = False) -> VerifyReport:
    """Check every file of the checksum list (default: all 14,884 ``AudioWAV/*.wav`` and ``VideoFlash/*.flv``).

    A file is *missing* when absent, *truncated* when smaller than listed, and
    *corrupt* when its size is not smaller but its size or sha256 differs.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CREMA-D data root {root} does not exist")
    report = VerifyReport(root)
    for rel, sha, size in tqdm(read_checksums(checksums), disable=not progress, desc="verify", unit="file"):
        report.checked += 1
        path = root / rel
        if not path.is_file():
            report.missing.append(rel)
        elif path.stat().st_size < size:
            report.truncated.append(rel)
        elif path.stat().st_size != size or sha256_file(path) != sha:
            report.corrupt.append(rel)
    return report
