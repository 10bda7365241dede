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
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from . import distributed
from .data.base import AVData
from .models import AVClassifier
from .paths import project_root, run_root
from .profiles import Profile
from .io import LOCK_NAME, atomic_write_text, discard_folder, run_folder_lock
from .train_config import recorded_config
from .checkpoints import identity_differences
from .training import Trainer, resolve_device


def load_data(profile: Profile, dataset: str = "synthetic", data_root=None, *, on_error: str = "raise",
              progress: bool = False) -> AVData:
    """The dataset named by ``dataset``, preprocessed as the profile says (decoded once, then cached)."""
    from .data import load_dataset

    return load_dataset(dataset, data_root, profile.preprocessing,
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


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "auto") -> dict:
    """What a bug report needs and what a number depends on: code, versions, hardware, threads, locations.

    Written into every run's ``metrics.json`` and printed by ``python -m gapkit env``. The CPU model
    and the vector extensions torch dispatches to matter: another kernel choice rounds differently.
    """
    from . import __version__, paths

    cuda = torch.cuda.is_available()
    run_device = resolve_device(device)
    return {
        "gapkit": __version__, "git_commit": git_commit(), **versions(),
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": str(run_device),
        "gpu": torch.cuda.get_device_name(run_device if run_device.type == "cuda" else 0) if cuda else None,
        "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
        "locations": {kind: str(paths.root(kind)) for kind in ("data", "cache", "results")},
    }


def run_identity(profile: Profile, config, data: AVData) -> dict:
    """What makes a run the run it is: every training setting, the model, and the data with its split
    (never where the data or the checkout lies)."""
    return {"config": config.to_dict(), "model": {"width": profile.width}, "data": data.identity()}


def recorded_identity(metrics: dict) -> dict | None:
    """A finished run's identity as its ``metrics.json`` records it, with settings added since filled with what the
    run did (:func:`gapkit.train_config.recorded_config`), so that runs made before a new setting stay valid."""
    identity = metrics.get("identity")
    if not isinstance(identity, dict):
        return identity
    return {**identity, "config": recorded_config(identity.get("config"), metrics.get("device"))}


def train_run(profile: Profile, data: AVData, method: str = "adaptive", seed: int | None = None, *,
              out_dir: str | Path | None = None, init_from: str | Path | None = None, device: str | None = None,
              progress: bool = False, dataset: str = "synthetic", force: bool = False, **method_options) -> dict:
    """Train one run (or return the finished one found in ``out_dir``) and return its metrics.

    ``init_from`` names a warm-up checkpoint (``warmup.pt`` of another run) to branch from:
    the run then skips the warm-up and starts adaptive training from that state.

    A finished run is returned only if its identity (:func:`run_identity`: settings, model, data and
    split) is this call's; otherwise a ``ValueError`` names each field that differs, with both values.
    ``force=True`` discards that run folder and trains it again. The folder is owned by this process
    while it trains (:func:`gapkit.io.run_folder_lock`): a second process fails at once.

    Under ``torchrun`` (:mod:`gapkit.distributed`) every process calls this; rank 0 owns the folder, decides
    (reuse, refuse or train) and tells the others, which train with it and write nothing.
    """
    seed = profile.seeds[0] if seed is None else seed
    config = profile.train_config(method, seed, **method_options)
    group = distributed.current()
    distributed.check_method(method, group)
    out_dir = Path(out_dir) if out_dir is not None else default_run_dir(profile, dataset,
                                                                        run_name(method, seed, **method_options))
    identity = run_identity(profile, config, data)
    train = (profile, data, config, identity, method, seed, out_dir, init_from, device, progress, dataset)
    if group is not None and not group.is_main:
        verdict, value = group.broadcast(None)
        if verdict == "error":
            raise ValueError(value)
        return value if verdict == "done" else _train(*train)
    with run_folder_lock(out_dir):
        try:
            finished = _finished_run(out_dir, identity, force)
        except ValueError as err:
            if group is not None:
                group.broadcast(("error", str(err)))
            raise
        if group is not None:
            group.broadcast(("done", finished) if finished is not None else ("train", None))
        return finished if finished is not None else _train(*train)


def _finished_run(out_dir: Path, identity: dict, force: bool) -> dict | None:
    """The metrics of the finished run in ``out_dir`` if it is this one, ``None`` if there is none (or ``force``
    discarded it), a ``ValueError`` naming every difference if it is another."""
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists() and force:
        for item in out_dir.iterdir():
            if not item.name.startswith(LOCK_NAME):
                discard_folder(item) if item.is_dir() else item.unlink()
    if not metrics_path.exists():
        return None
    metrics = json.loads(metrics_path.read_text())
    differences = identity_differences(recorded_identity(metrics), identity, "run")
    if not differences:
        return metrics
    raise ValueError(
        f"{out_dir} holds a finished run that differs from this one in "
        + "; ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in differences.items())
        + ". Pass another out_dir (--out) to keep both, or force=True (--force) to train this one again")


def _train(profile, data, config, identity, method, seed, out_dir, init_from, device, progress, dataset) -> dict:
    metrics_path = out_dir / "metrics.json"
    device = device or profile.device
    model = build_model(profile, data.num_classes, seed)
    trainer = Trainer(model, data, config, device=device, out_dir=out_dir, progress=progress)
    group = trainer.dist
    started = time.time()
    result = trainer.fit(init_from=init_from)
    metrics = {
        **result.summary(), "method": method, "seed": seed, "config": config.to_dict(), "profile": profile.to_dict(),
        "dataset": dataset, "data": {k: v for k, v in data.info.items() if k != "degradation"},
        "classes": data.classes, "init_from": os.path.relpath(init_from, out_dir) if init_from else None,
        "identity": identity, "environment": environment(device), "versions": versions(),
        "git_commit": git_commit(), "device": str(resolve_device(device)), "precision": trainer.precision,
        "wall_seconds": time.time() - started,
    }
    if group is not None:  # one run on several processes (torchrun): recorded next to the device
        metrics["distributed"] = {"world_size": group.world_size, "backend": group.backend}
    if trainer.is_main:
        atomic_write_text(json.dumps(metrics, indent=1, default=str), metrics_path)
    return metrics
