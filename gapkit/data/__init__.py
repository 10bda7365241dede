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
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .. import paths
from .base import AVData, AVSplit, Preprocessing
from .cache import Corpus, load_or_build
from .media import ListingError, MediaError

DATASETS = ("synthetic", "crema-d", "ave", "manifest")

__all__ = ["DATASETS", "AVData", "AVSplit", "ListingError", "MediaError", "Preprocessing", "carve_validation",
           "load_dataset"]


def carve_validation(labels, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions ``(train, val)`` of a stratified hold-out: ``fraction * n_c`` of each class ``c`` to val.

    The count per class is rounded half up (``int(fraction * n_c + 0.5)``); the clips are
    drawn with ``numpy.random.default_rng(seed)``; both lists keep the input order.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = set()
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        val.update(rng.permutation(members)[:int(fraction * len(members) + 0.5)].tolist())
    return [i for i in range(len(labels)) if i not in val], sorted(val)


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
        return cremad.read_corpus(root, splits_dir=splits_dir, split=split, split_seed=split_seed)
    if split != "standard":
        raise ValueError(f"split={split!r} applies to CREMA-D layouts only; {dataset} has one split")
    if dataset == "ave":
        from . import ave
        return ave.read_corpus(root)
    from . import manifest
    return manifest.read_corpus(root)


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

    ``info`` records the dataset, root, preprocessing, cache key and path, split
    sizes, class counts, skipped clips and the corpus's provenance (split files and
    their sha256, annotation files, ...); for ``"synthetic"`` also
    ``info["degradation"]``: ``clip -> "none" | "audio" | "visual"`` for the loaded clips.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
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

    data = AVData(subset("train"), subset("val"), subset("test"), list(corpus.classes))
    data.info = {
        "dataset": dataset, "data_root": str(root), "preprocessing": preprocessing.to_dict(),
        "preprocessing_key": preprocessing.key(), "cache_key": cached.key, "cache_path": str(cached.path),
        "cache_built": cached.built, "split": split, "split_seed": split_seed, "val_source": val_source,
        "split_sizes": {part: len(s) for part, s in data.splits().items()},
        "class_counts": {part: _class_counts(s, corpus.classes) for part, s in data.splits().items()},
        "skipped_count": len(cached.skipped), "skipped": cached.skipped, **corpus.info, **extra,
    }
    if dataset == "synthetic":
        from .synthetic import read_degradation
        loaded = {c for s in data.splits().values() for c in s.clips}
        data.info["degradation"] = {c: k for c, k in read_degradation(root).items() if c in loaded}
    return data
