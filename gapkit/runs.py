"""One run: settings -> run folder. Load a dataset, train a run, reuse a finished one.

Many runs (the tables' plans, several processes) are :mod:`gapkit.studies`; reading run folders,
:mod:`gapkit.results`.

A run's folder holds ``metrics.json`` (the summary, every setting that produced it,
versions, git commit, device and wall time), ``history.json``, ``gaps.npz`` and the
checkpoints. ``metrics.json`` is written last: a folder without it is an unfinished
run, which :func:`train_run` resumes from its last checkpoint.
"""
from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from .data.base import AVData
from .models import AVClassifier
from .paths import project_root, run_root
from .profiles import Profile
from .io import atomic_write_text
from .training import Trainer, resolve_device


def load_data(profile: Profile, dataset: str = "synthetic", data_root=None, *, on_error: str = "raise",
              progress: bool = False) -> AVData:
    """The dataset named by ``dataset``, preprocessed as the profile says (decoded once, then cached)."""
    from .data import load_dataset

    return load_dataset(dataset, data_root, profile.preprocessing(),
                        synthetic=profile.synthetic_spec() if dataset == "synthetic" else None,
                        val_fraction=profile.val_fraction, split_seed=profile.split_seed,
                        on_error=on_error, progress=progress)


def build_model(profile: Profile, num_classes: int, seed: int) -> AVClassifier:
    """A freshly initialised model; the seed fixes its initial weights."""
    torch.manual_seed(seed)
    return AVClassifier(num_classes, width=profile.width)


def run_name(method: str, seed: int, **method_options) -> str:
    """A folder name that says what the run is: ``adaptive-gamma0-seed1``."""
    tag = "".join(f"-{k.replace('_', '')}{v}" for k, v in sorted(method_options.items()))
    return f"{method}{tag}-seed{seed}"


def default_run_dir(profile: Profile, dataset: str, name: str) -> Path:
    return run_root(profile.name, dataset) / name


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def versions() -> dict:
    import numpy
    import sklearn
    import torchaudio
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "torchaudio": torchaudio.__version__, "numpy": numpy.__version__, "scikit-learn": sklearn.__version__}


def train_run(profile: Profile, data: AVData, method: str = "adaptive", seed: int | None = None, *,
              out_dir: str | Path | None = None, init_from: str | Path | None = None, device: str | None = None,
              progress: bool = False, dataset: str = "synthetic", **method_options) -> dict:
    """Train one run (or return the finished one found in ``out_dir``) and return its metrics.

    ``init_from`` names a warm-up checkpoint (``warmup.pt`` of another run) to branch from:
    the run then skips the warm-up and starts adaptive training from that state.
    """
    seed = profile.seeds[0] if seed is None else seed
    config = profile.train_config(method, seed, **method_options)
    out_dir = Path(out_dir) if out_dir is not None else default_run_dir(profile, dataset,
                                                                        run_name(method, seed, **method_options))
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        if metrics["config"] == config.to_dict() and metrics["data"].get("cache_key") == data.info.get("cache_key"):
            return metrics
        raise ValueError(f"{out_dir} holds a finished run with other settings; remove it or choose another out_dir")
    device = device or profile.device
    model = build_model(profile, data.num_classes, seed)
    trainer = Trainer(model, data, config, device=device, out_dir=out_dir, progress=progress)
    started = time.time()
    result = trainer.fit(init_from=init_from)
    metrics = {
        **result.summary(), "method": method, "seed": seed, "config": config.to_dict(), "profile": profile.to_dict(),
        "dataset": dataset, "data": {k: v for k, v in data.info.items() if k != "degradation"},
        "classes": data.classes, "init_from": str(init_from) if init_from else None,
        "device": str(resolve_device(device)), "versions": versions(), "git_commit": git_commit(),
        "wall_seconds": time.time() - started,
    }
    atomic_write_text(json.dumps(metrics, indent=1, default=str), metrics_path)
    return metrics
