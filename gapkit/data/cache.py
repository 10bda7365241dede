"""Decode a corpus once into an on-disk cache of fixed-size arrays; later loads only read them.

An entry is a folder ``<cache root>/<dataset>-<preprocessing key>-<corpus digest>/``:

    audio.npy      (N, 1, F, T) float16   log spectrograms
    visual.npy     (N, T, 3, H, W) uint8  frames, the short side ``frame_size``, the source's aspect ratio kept
    labels.npy     (N,) int64
    clips.json     the N clip names, sorted
    manifest.json  the key, the preprocessing, the corpus identity, shapes, the skipped clips

Frames keep their source's aspect ratio: ``H`` x ``W`` is the frame size at the
median aspect ratio of the corpus's clips (:func:`~gapkit.data.frames.corpus_aspect`,
read from the files' headers before decoding; a clip of another aspect ratio loses a
centred margin, never is squashed), and the batches crop squares from them
(:mod:`.augment`). ``FORMAT``, part of the key, names what the decoding puts in an
entry: an entry built by an older decoding (squashed square frames, an annotated
event's audio cut to its first ``clip_seconds``) has another key and is never read
for a newer one.

The key hashes every :class:`~gapkit.data.base.Preprocessing` field together with
the corpus identity (dataset name and every clip's name, label, media paths relative
to the corpus root, and segment), never where the corpus or the checkout lies: a
moved, renamed or copied corpus finds its entry. An entry is valid only for the media
it was built from: its manifest records each media file's size, modification time
and sha256, checked on every load (a file whose size changed, or whose time changed
and whose content did too, rebuilds the entry, and a warning says which file); and
the sha256 of the cached arrays (``content_digest``), part of every run's identity.
An entry with skipped clips is reused only under ``on_error="skip"`` and while the
skipped clips' files are as they were; otherwise they are decoded again.

An entry is built in a temporary sibling folder (``<entry>.tmp-<pid>``) with
``manifest.json`` written last, then renamed into place in one step, so a killed
build never leaves a folder that is read as complete; its leftover is removed by the
next build once its process is gone.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import paths
from ..io import atomic_write_text, discard_folder, publish_folder, remove_stale_staging, staging_folder
from .base import Preprocessing
from .media import ListingError, MediaError, corpus_aspect, decode_clip, expected_shapes, source_aspect

#: bump when the decoding changes what an entry holds. 3: frames keep the source's aspect ratio; an annotated
#: event's whole audio (2: square frames, an event's audio cut to its first clip_seconds)
FORMAT = 3
PARALLEL_FROM = 64  # clips per decoding process: fewer decode faster in-process than a process starts


@dataclass(frozen=True)
class ClipSource:
    """Where one clip's media are: ``audio`` (sound file or video), ``visual`` (video, frame folder or image).

    ``segment`` (start, end in seconds) restricts both to a time span; ``origin``
    (listing file, line) is named by errors about this clip.
    """

    clip: str
    label: int
    audio: Path
    visual: Path
    segment: tuple[float, float] | None = None
    origin: tuple[Path, int] | None = None


@dataclass
class Corpus:
    """What a dataset module reads from a corpus's listings, before any decoding.

    ``splits`` maps ``train`` / ``test`` (and ``val`` where the corpus has its own)
    to clip names in listing order; ``info`` is provenance for :attr:`AVData.info`.
    """

    sources: list[ClipSource]
    splits: dict[str, list[str]]
    classes: list[str]
    info: dict = field(default_factory=dict)


@dataclass
class CachedCorpus:
    """A cache entry in memory: one row per decoded clip, in ``clips`` order (sorted by name)."""

    audio: torch.Tensor
    visual: torch.Tensor
    labels: torch.Tensor
    clips: list[str]
    skipped: list[dict]
    key: str
    path: Path
    built: bool
    #: sha256 of the cached arrays and clip list: what the data is, wherever it lies
    content_digest: str
    #: width / height of the cached frames' source (:func:`~gapkit.data.frames.corpus_aspect`)
    aspect: float = 1.0

    def index(self) -> dict[str, int]:
        """``clip -> row``."""
        return {clip: i for i, clip in enumerate(self.clips)}


def _clip_name(source: ClipSource) -> str:
    return source.clip


def relative(path, root) -> str:
    """``path`` relative to the corpus root, with ``/`` separators (``../`` where it lies outside)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()


def corpus_key(dataset: str, root, sources: list[ClipSource], pre: Preprocessing) -> str:
    """``<preprocessing key>-<corpus digest>``: what names a cache entry (never where the corpus lies)."""
    identity = {
        "format": FORMAT, "dataset": dataset,
        "clips": [[s.clip, s.label, relative(s.audio, root), relative(s.visual, root), s.segment]
                  for s in sorted(sources, key=_clip_name)],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{pre.key()}-{digest}"


def load_or_build(sources: list[ClipSource], pre: Preprocessing, *, dataset: str, root, cache_root=None,
                  on_error: str = "raise", progress: bool = False, workers: int | None = None) -> CachedCorpus:
    """The cached tensors of ``sources`` under ``pre``, decoding them first if no complete entry exists.

    ``on_error="raise"`` stops at the first clip that cannot be read, with an error
    naming its file (and the listing file and line for a missing file);
    ``"skip"`` leaves such clips out and lists them (``clip``, ``file``, ``reason``)
    in the entry's manifest and in :attr:`CachedCorpus.skipped`. ``workers``
    processes decode (default :func:`decode_processes`); rows are written in clip
    order whatever their number, and the bytes are the same.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    names = [s.clip for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate clip names in {dataset} corpus")
    sources = sorted(sources, key=_clip_name)
    key = corpus_key(dataset, root, sources, pre)
    entry = Path(cache_root if cache_root is not None else paths.cache_dir()).resolve() / f"{dataset}-{key}"
    built = False
    complete = _is_complete(entry, key)
    if complete and not _media_unchanged(entry, sources, root, on_error):
        discard_folder(entry)  # stale: out of the way first, or the rebuild would keep it as another's result
        complete = False
    if not complete:
        _build(entry, key, sources, pre, dataset, root, on_error, progress, workers)
        built = True
    return _load(entry, built)


def _is_complete(entry: Path, key: str) -> bool:
    try:
        manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("key") == key and manifest.get("format") == FORMAT


def _media_files(source: ClipSource) -> list[Path]:
    """The files a clip is decoded from: its audio file, and its visual file or every file of its frame folder."""
    files = [Path(source.audio)]
    visual = Path(source.visual)
    if visual.is_dir():
        files += sorted(p for p in visual.iterdir() if p.is_file())
    elif visual != files[0]:
        files.append(visual)
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def media_fingerprints(sources: list[ClipSource], root) -> dict[str, list | None]:
    """``relative path -> [size, mtime_ns, sha256]`` of every media file of ``sources`` (``None``: missing)."""
    out = {}
    for source in sources:
        for path in _media_files(source):
            try:
                stat = path.stat()
            except OSError:
                out[relative(path, root)] = None
                continue
            out[relative(path, root)] = [stat.st_size, stat.st_mtime_ns, _sha256(path)]
    return out


def _media_unchanged(entry: Path, sources: list[ClipSource], root, on_error: str) -> bool:
    """Whether the entry still describes the media on disk (see the module docstring); a warning says why not."""
    manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
    if manifest["skipped"] and on_error == "raise":
        return False  # decode the skipped clips again: the error raised must be today's
    recorded = manifest["media"]
    current = {relative(p, root): p for s in sources for p in _media_files(s)}
    if set(current) != set(recorded):
        return _stale(entry, sorted(set(current) ^ set(recorded))[0], "was added or removed")
    refreshed = False
    for rel, fingerprint in recorded.items():
        try:
            stat = current[rel].stat()
        except OSError:
            if fingerprint is None:
                continue
            return _stale(entry, rel, "is missing")
        if fingerprint is None:
            return _stale(entry, rel, "exists now")
        size, mtime, digest = fingerprint
        if stat.st_size != size:
            return _stale(entry, rel, "changed size")
        if stat.st_mtime_ns != mtime:
            if _sha256(current[rel]) != digest:
                return _stale(entry, rel, "changed content")
            fingerprint[1] = stat.st_mtime_ns  # same content (a copy, a touch): remember the new time
            refreshed = True
    if refreshed:
        atomic_write_text(json.dumps(manifest, indent=1), entry / "manifest.json")
    return True


def _stale(entry: Path, rel: str, why: str) -> bool:
    warnings.warn(f"cache entry {entry.name}: media file {rel} {why} since the entry was built; decoding the "
                  f"corpus again", stacklevel=3)
    return False


def _load(entry: Path, built: bool) -> CachedCorpus:
    manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
    # copy-on-write maps: reading is lazy, and indexing a split copies only its rows
    audio = torch.from_numpy(np.load(entry / "audio.npy", mmap_mode="c"))
    visual = torch.from_numpy(np.load(entry / "visual.npy", mmap_mode="c"))
    labels = torch.from_numpy(np.load(entry / "labels.npy"))
    clips = json.loads((entry / "clips.json").read_text(encoding="utf-8"))
    return CachedCorpus(audio, visual, labels, clips, manifest["skipped"], manifest["key"], entry, built,
                        manifest["content_digest"], manifest["aspect"])


# --------------------------------------------------------------------------- building

def _missing_file(source: ClipSource) -> Path | None:
    for path in (source.audio, source.visual):
        if not Path(path).exists():
            return Path(path)
    return None


def decode_processes(clips: int) -> int:
    """Decoding processes for ``clips`` clips: one per ``PARALLEL_FROM`` clips, at most one per usable core, at
    least one (in this process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, clips // PARALLEL_FROM))


def _decode(job):
    """Worker: ``(row, spectrogram, frames, None)`` or ``(row, None, None, (file, reason))``."""
    row, audio, visual, segment, pre, aspect = job
    try:
        spec, frames = decode_clip(audio, visual, pre, segment, aspect)
    except MediaError as exc:
        return row, None, None, (str(exc.path), exc.reason)
    return row, spec.numpy(), frames.numpy(), None


def _quiet_worker() -> None:
    torch.set_num_threads(1)  # one process per core: no oversubscription


def _build(entry: Path, key: str, sources: list[ClipSource], pre: Preprocessing, dataset: str, root,
           on_error: str, progress: bool, workers: int | None) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(entry)
    started = time.time()
    skipped, decodable = [], []
    for source in sources:
        missing = _missing_file(source)
        if missing is None:
            decodable.append(source)
        elif on_error == "skip":
            skipped.append({"clip": source.clip, "file": str(missing), "reason": "file not found"})
        elif source.origin is not None:
            raise ListingError(source.origin[0], source.origin[1], f"clip {source.clip}: media file missing: {missing}")
        else:
            raise MediaError(missing, f"file not found (clip {source.clip})")
    if not decodable:
        raise ValueError(f"none of the {len(sources)} clips of {dataset} has its media files "
                         f"(first missing: {skipped[0]['file']})")
    workers = workers or decode_processes(len(decodable))

    tmp = staging_folder(entry)
    try:
        with _decoders(workers) as run:  # leaving it stops the workers, on an error too
            aspect = corpus_aspect(run(source_aspect, [s.visual for s in decodable], 16))
            audio_shape, visual_shape = expected_shapes(pre, aspect)
            audio = np.lib.format.open_memmap(tmp / "audio.npy", "w+", np.float16, (len(decodable), *audio_shape))
            visual = np.lib.format.open_memmap(tmp / "visual.npy", "w+", np.uint8, (len(decodable), *visual_shape))
            kept = []
            jobs = [(row, s.audio, s.visual, s.segment, pre, aspect) for row, s in enumerate(decodable)]
            bar = tqdm(total=len(jobs), disable=not progress, desc=f"decoding {dataset}", unit="clip")
            with bar:
                _fill(run(_decode, jobs, 4), decodable, audio, visual, kept, skipped, on_error, bar)
        if not kept:
            raise ValueError(f"none of the {len(sources)} clips of {dataset} could be decoded "
                             f"(first: {skipped[0]['file']}: {skipped[0]['reason']})")
        audio.flush()
        visual.flush()
        del audio, visual
        if len(kept) < len(decodable):
            _shrink(tmp / "audio.npy", len(kept))
            _shrink(tmp / "visual.npy", len(kept))
        np.save(tmp / "labels.npy", np.array([s.label for s in kept], dtype=np.int64))
        (tmp / "clips.json").write_text(json.dumps([s.clip for s in kept]), encoding="utf-8")
        skipped.sort(key=lambda s: s["clip"])
        digest = hashlib.sha256()
        for name in ("audio.npy", "visual.npy", "labels.npy", "clips.json"):
            digest.update(_sha256(tmp / name).encode())
        manifest = {
            "format": FORMAT, "key": key, "dataset": dataset, "on_error": on_error,
            "content_digest": digest.hexdigest()[:16], "media": media_fingerprints(sources, root),
            "preprocessing": pre.to_dict(), "preprocessing_key": pre.key(), "clips": len(kept),
            "requested": len(sources), "skipped": skipped, "audio_shape": list(audio_shape),
            "visual_shape": list(visual_shape), "aspect": aspect, "workers": workers, "seconds": round(time.time() - started, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        publish_folder(tmp, entry, lambda folder: _is_complete(folder, key))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fill(results, decodable, audio, visual, kept: list, skipped: list, on_error: str, bar) -> None:
    """Write the decoded clips into the arrays' next rows, in clip order; count or raise the failures."""
    for row, spec, frames, error in results:
        bar.update()
        source = decodable[row]
        if error is not None:
            if on_error == "raise":
                raise MediaError(error[0], f"{error[1]} (clip {source.clip})")
            skipped.append({"clip": source.clip, "file": error[0], "reason": error[1]})
            continue
        audio[len(kept)], visual[len(kept)] = spec, frames
        kept.append(source)


@contextmanager
def _decoders(workers: int):
    """``run(function, items, chunksize)``: the results in order, from this process or a pool of ``workers``.

    The pool's processes are spawned (a fresh interpreter each, safe whatever threads this
    process runs; a script that builds a cache from its top level needs the usual
    ``if __name__ == "__main__":`` guard); each uses one thread.
    """
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one short clip at a time: thread start-up would cost more than it saves
        try:
            yield lambda function, items, chunksize: map(function, items)
        finally:
            torch.set_num_threads(threads)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_quiet_worker) as pool:
        yield lambda function, items, chunksize: pool.imap(function, items, chunksize=chunksize)


def _shrink(path: Path, rows: int) -> None:
    """Keep the first ``rows`` rows of an ``.npy`` file (after skipped clips left its tail unused)."""
    full = np.load(path, mmap_mode="r")
    part = path.with_suffix(".part.npy")
    small = np.lib.format.open_memmap(part, "w+", full.dtype, (rows, *full.shape[1:]))
    small[:] = full[:rows]
    small.flush()
    del small, full
    os.replace(part, path)
