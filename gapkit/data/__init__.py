"""Corpora as cached tensors: :func:`load_dataset` is the one entry point.

    data = load_dataset("synthetic")                         # the embedded corpus, generated on first use
    data = load_dataset("crema-d", "path/to/CREMA-D", Preprocessing(frames=1))
    data = load_dataset("ave", "path/to/AVE")
    data = load_dataset("manifest", "path/to/manifest.csv")

Each dataset module (:mod:`.cremad`, :mod:`.ave`, :mod:`.manifest`; the synthetic
corpus is written in CREMA-D's layout) reads its listings into clips and splits;
:mod:`.cache` decodes them once (:mod:`.media`) and later loads read the cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..paths import DATASETS, check_dataset
from .base import AVData, AVSplit, Preprocessing, data_key
from .cache import Corpus, load_or_build
from .media import ListingError, MediaError


__all__ = ["DATASETS", "AVData", "AVSplit", "ListingError", "MediaError", "Preprocessing", "carve_validation",
           "load_dataset", "reload_dataset"]


def carve_validation(labels, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions ``(train, val)`` of a stratified hold-out: ``fraction * n_c`` of each class ``c`` to val.

    The count per class is rounded half up (``int(fraction * n_c + 0.5)``) and leaves
    at least one clip of every class in train; the clips are drawn with
    ``numpy.random.default_rng(seed)``; both lists keep the input order. A positive
    ``fraction`` that holds out no clip at all (too few clips per class) is an
    error that says how large ``fraction`` must be.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = set()
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(int(fraction * len(members) + 0.5), len(members) - 1)
        val.update(rng.permutation(members)[:take].tolist())
    if fraction > 0 and not val and len(labels):
        largest = max(Counter(labels.tolist()).values())
        if largest < 2:
            fix = "every class has a single train clip, which stays in train"
            remedy = "list validation clips in the corpus (a manifest's 'val' rows) or add train clips"
        else:
            fix = (f"the largest class has {largest} train clips; a class needs {max(2, math.ceil(0.5 / fraction))} "
                   f"for one to go to validation at this fraction")
            remedy = (f"raise val_fraction to at least {math.ceil(500 / largest) / 1000} (--set val_fraction=...), "
                      f"or list validation clips in the corpus (a manifest's 'val' rows)")
        raise ValueError(f"the validation split carved from train is empty: val_fraction {fraction} of each "
                         f"class's train clips rounds to 0 ({fix}). Fix: {remedy}")
    return [i for i in range(len(labels)) if i not in val], sorted(val)


def data_identity(dataset: str, cached, data: AVData, *, split: str, split_seed: int, val_fraction) -> dict:
    """What the loaded data is, wherever it lies: the cache entry's key and content digest, and the split
    (kind, seed, carved validation fraction, and a digest of the train / val / test clip lists)."""
    lists = {part: s.clips for part, s in data.splits().items()}
    clips = hashlib.sha256(json.dumps(lists, sort_keys=True).encode()).hexdigest()[:16]
    return {"dataset": dataset, "cache_key": cached.key, "content_digest": cached.content_digest,
            "split": {"kind": split, "seed": split_seed, "val_fraction": val_fraction, "clips_digest": clips}}


def _class_counts(split: AVSplit, classes: list[str]) -> dict[str, int]:
    counts = Counter(split.labels.tolist())
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def _default_root(dataset: str) -> Path:
    if dataset == "manifest":
        raise ValueError("dataset 'manifest' needs data_root: the manifest CSV")
    return paths.data_dir() / dataset


def _read_corpus(dataset: str, root: Path, split: str, split_seed: int, splits_dir) -> Corpus:
    if dataset in ("synthetic", "crema-d"):
        from . import cremad
        corpus = cremad.read_corpus(root, splits_dir=splits_dir, split=split, split_seed=split_seed)
    elif split != "standard":
        raise ValueError(f"split={split!r} applies to CREMA-D layouts only; {dataset} has one split")
    elif dataset == "ave":
        from . import ave
        corpus = ave.read_corpus(root)
    else:
        from . import manifest
        corpus = manifest.read_corpus(root)
    check_labels_trained(corpus, f"split='speaker' put whole actors in test with split_seed {split_seed}: "
                                 f"try another seed" if split == "speaker" else "")
    return corpus


def check_labels_trained(corpus: Corpus, note: str = "") -> None:
    """Refuse a corpus whose val or test split lists a label that its train split lacks: no model can learn it.

    The error names the labels, and the listing file and line of the first such clip;
    ``note`` says how the splits were made where the listing alone does not.
    """
    sources = {s.clip: s for s in corpus.sources}
    trained = {sources[c].label for c in corpus.splits["train"]}
    for part in ("val", "test"):
        untrained = {}
        for clip in corpus.splits.get(part, []):
            untrained.setdefault(sources[clip].label, sources[clip])
        untrained = {label: s for label, s in untrained.items() if label not in trained}
        if not untrained:
            continue
        names = ", ".join(repr(corpus.classes[label]) for label in sorted(untrained))
        first = min(untrained.values(), key=lambda s: s.origin[1] if s.origin else 0)
        reason = (f"label(s) {names} appear in the {part} split but not in train (first: clip {first.clip}): "
                  f"no model can learn them. Add train clips with these labels, or remove their {part} clips")
        if note:
            reason += f" ({note})"
        if first.origin is None:
            raise ValueError(reason)
        raise ListingError(first.origin[0], first.origin[1], reason)


def load_dataset(dataset: str, data_root=None, preprocessing: Preprocessing = Preprocessing(), *, synthetic=None,
                 val_fraction: float = 0.1, split_seed: int = 0, split: str = "standard", splits_dir=None,
                 cache_root=None, on_error: str = "raise", progress: bool = False) -> AVData:
    """A corpus as train / val / test tensors, decoded once into the cache and read from it afterwards.

    dataset: ``"synthetic"`` (generated with ``synthetic``, a
        :class:`~gapkit.data.synthetic.SyntheticSpec`, into ``data_root`` or its
        default folder), ``"crema-d"``, ``"ave"`` or ``"manifest"`` (``data_root``
        is the CSV). Default roots: ``gapkit.paths.data_dir() / dataset``.
    preprocessing: every decoding parameter; part of the cache key.
    val_fraction, split_seed: where the corpus has no validation split (CREMA-D,
        synthetic, a manifest without ``val`` rows) it is carved from train,
        stratified by class (:func:`carve_validation`), never from test. The paper
        splits 9:1.
    split: ``"standard"`` (the corpus's split files) or ``"speaker"`` (CREMA-D
        layouts: whole actors to train or test, seeded by ``split_seed``).
    splits_dir: CREMA-D: the folder holding ``train.csv`` / ``test.csv`` when not in
        ``data_root``.
    cache_root: default ``gapkit.paths.cache_dir()``.
    on_error: ``"raise"`` stops at the first unreadable clip with an error naming
        its file (and line of the listing); ``"skip"`` leaves such clips out and
        reports them in ``info["skipped"]``.

    ``info`` records the dataset, root, preprocessing, cache key and path, the aspect
    ratio the frames were cached at (``frame_aspect``, width / height: the short side is
    ``frame_size``, and the batches crop squares from them), split
    sizes, class counts, skipped clips and the corpus's provenance (split files and
    their sha256, annotation files, ...); for ``"synthetic"`` also
    ``info["degradation"]``: ``clip -> "none" | "audio" | "visual"`` for the loaded clips.
    """
    check_dataset(dataset)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if split not in ("standard", "speaker"):
        raise ValueError(f"split must be 'standard' or 'speaker', got {split!r}")
    extra = {}
    if dataset == "synthetic":
        from .synthetic import SyntheticSpec, ensure_corpus
        spec = synthetic or SyntheticSpec()
        root = ensure_corpus(spec, Path(data_root) if data_root is not None else None, progress=progress)
        extra["synthetic"] = {**dataclasses.asdict(spec), "key": spec.key()}
    else:
        root = Path(data_root) if data_root is not None else _default_root(dataset)
        if not root.exists():
            raise FileNotFoundError(f"{dataset} data root {root} does not exist")
    root = root.resolve()
    corpus = _read_corpus(dataset, root, split, split_seed, splits_dir)
    cached = load_or_build(corpus.sources, preprocessing, dataset=dataset, root=root, cache_root=cache_root,
                           on_error=on_error, progress=progress)

    rows = cached.index()
    positions = {part: [rows[c] for c in clips if c in rows] for part, clips in corpus.splits.items()}
    val_source = "corpus"
    if "val" not in positions:
        keep, held = carve_validation(cached.labels[positions["train"]].numpy(), val_fraction, split_seed)
        positions["train"], positions["val"] = ([positions["train"][i] for i in keep],
                                                [positions["train"][i] for i in held])
        val_source = f"carved from train: {val_fraction} of each class, seed {split_seed}"
    for part in ("train", "test"):
        if not positions[part]:
            raise ValueError(f"{dataset}: the {part} split is empty after {len(cached.skipped)} clips were skipped")

    def subset(part: str) -> AVSplit:
        index = torch.tensor(positions[part], dtype=torch.long)
        return AVSplit(cached.audio[index], cached.visual[index], cached.labels[index],
                       [cached.clips[i] for i in positions[part]])

    source = {"dataset": dataset, "data_root": str(root), "preprocessing": preprocessing.to_dict(),
              "synthetic": extra["synthetic"] if dataset == "synthetic" else None, "val_fraction": val_fraction,
              "split_seed": split_seed, "split": split, "splits_dir": None if splits_dir is None else str(splits_dir),
              "cache_root": str(Path(cached.path).parent), "on_error": on_error}
    data = AVData(subset("train"), subset("val"), subset("test"), list(corpus.classes), source=source)
    identity = data_identity(dataset, cached, data, split=split, split_seed=split_seed,
                             val_fraction=val_fraction if val_source != "corpus" else None)
    data.info = {
        "data_key": data_key(identity), "identity": identity,
        "dataset": dataset, "data_root": str(root), "preprocessing": preprocessing.to_dict(),
        "preprocessing_key": preprocessing.key(), "cache_key": cached.key, "cache_path": str(cached.path),
        "cache_built": cached.built, "frame_aspect": cached.aspect, "split": split, "split_seed": split_seed, "val_source": val_source,
        "split_sizes": {part: len(s) for part, s in data.splits().items()},
        "class_counts": {part: _class_counts(s, corpus.classes) for part, s in data.splits().items()},
        "skipped_count": len(cached.skipped), "skipped": cached.skipped, **corpus.info, **extra,
    }
    if dataset == "synthetic":
        from .synthetic import read_degradation
        loaded = {c for s in data.splits().values() for c in s.clips}
        data.info["degradation"] = {c: k for c, k in read_degradation(root).items() if c in loaded}
    return data


def reload_dataset(source: dict, data_key_expected: str | None = None) -> AVData:
    """The data :func:`load_dataset` made with the arguments ``source`` (:attr:`AVData.source`), loaded again from
    its cache, e.g. by a worker process instead of receiving the tensors from its parent. With
    ``data_key_expected`` (the first load's ``info["data_key"]``), data that came out otherwise is an error."""
    args = dict(source)
    args["preprocessing"] = Preprocessing(**args["preprocessing"])
    if args.get("synthetic") is not None:
        from .synthetic import SyntheticSpec
        names = {f.name for f in dataclasses.fields(SyntheticSpec)}
        args["synthetic"] = SyntheticSpec(**{k: v for k, v in args["synthetic"].items() if k in names})
    data = load_dataset(args.pop("dataset"), args.pop("data_root"), args.pop("preprocessing"), **args)
    if data_key_expected is not None and data.info["data_key"] != data_key_expected:
        raise RuntimeError(f"{source['dataset']} loaded again from {source['cache_root']} is not the data loaded "
                           f"first (data key {data.info['data_key']}, expected {data_key_expected}): did the corpus "
                           f"or its cache change in between?")
    return data
