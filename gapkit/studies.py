"""Many runs: which runs Tables 1-3 need (the plans) and training the missing ones (one process or several).

Reading what they produced is :mod:`gapkit.results` (read-only); the paper's rows, labels and settings are
:mod:`gapkit.paper`; plotting is :mod:`gapkit.report`.

Every run lives in ``<results>/<profile>/<dataset>/runs/<name>/`` and is trained by
:func:`gapkit.runs.train_run`, which returns a finished run's ``metrics.json``
instead of training it again. So each study below costs only the runs that are still
missing, and a run shared by two tables is trained once:

* Table 1: one full run per seed and method, ``adaptive-seed<s>`` (Ours) and
  ``concat-seed<s>`` (the same model on L_MM alone for the same total epochs).
  The adaptive run's ``warmup.pt`` (the state at the end of warm-up) is the shared
  starting point of Tables 2 and 3.
* Table 2 (ablations of Eq. 10): the full model is the Table 1 run itself; ``alpha = 0``,
  ``beta = 0``, ``gamma = 0`` and "w/o weights" (``use_weights=False``) branch from the
  same seed's warm-up checkpoint, so they differ from the full model only after warm-up.
* Readings of Algorithm 1 (not in the paper): the default reading is the Table 1 run; each other reading
  (:data:`gapkit.paper.READINGS`, options of the adaptive method) branches from the same seed's warm-up, as the
  ablations do.
* Table 3 (optimizer): SGD with the state reset at the start of adaptive training is
  the Table 1 run; "SGD, same state" branches from its warm-up with
  ``reset_optimizer=False``. Adam needs its own warm-up: "Adam, reset state" is a
  full run with ``optimizer="adam"`` (lr :data:`gapkit.paper.ADAM_LR`), and "Adam, same state"
  branches from that run's warm-up. Runs that differ only in profile fields get
  their own folder names (``adaptive-keepstate-seed0``, ``adaptive-adam-seed0``,
  ``adaptive-adam-keepstate-seed0``), since :func:`~gapkit.runs.run_name`
  only encodes the method, its options and the seed.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .data.base import AVData
from .runs import run_name, train_run
from .methods.peer_settings import peer_overrides
from .paper import (ABLATIONS, ADAM_LR, BASELINE_AND_OURS, CONTROL_METHODS, OPTIMIZER_SETTINGS, READINGS,
                    TABLE1_LABELS, TABLE1_ROWS, WEIGHT_CONTROLS)
from .paths import EMBEDDED, project_root, run_root
from .profiles import Profile
from .results import RunSpec, read_runs


def _seeds(profile: Profile, seeds) -> list[int]:
    return list(profile.seeds) if seeds is None else [int(s) for s in seeds]


# ---------------------------------------------------------------------------------------------- the plans

def table1_methods() -> list[str]:
    """The registered methods that have a row in Table 1, in the paper's order (concat and ours first of all)."""
    from .methods import METHODS

    return [key for _, key, *_ in TABLE1_ROWS if key in METHODS]


def plan_warmup(profile: Profile, seeds=None) -> list[RunSpec]:
    """Table 1's adaptive runs, one full run per seed (warm-up, then the adaptive steps): the same run folders as
    :func:`plan_table1`'s "Ours", planned as the warm-up study (notebook 02 trains them, notebook 03 reads them)."""
    return [RunSpec("warmup", "Ours", s, "adaptive", run_name("adaptive", s)) for s in _seeds(profile, seeds)]


def plan_table1(profile: Profile, seeds=None, methods=None, peer_seeds=None) -> list[RunSpec]:
    """Every Table 1 run: each method (default: every registered one with a Table 1 row) for each seed.

    Concat, ours and the controls run for ``seeds``; the peer methods for ``peer_seeds`` (default: ``seeds``),
    so that a tight time budget can give the peers fewer seeds (an empty list leaves them out), with the
    profile's ``peer_options``. Under ``peer_settings="authors"`` a peer also trains with its authors' optimizer,
    lr and schedule (:func:`gapkit.methods.peer_settings.peer_overrides`, as profile ``overrides``), in a run
    folder marked ``-authors`` so that it never reuses a run trained with the shared settings.
    """
    methods = table1_methods() if methods is None else list(methods)
    specs = []
    for method in methods:
        own = method in BASELINE_AND_OURS or method in CONTROL_METHODS or peer_seeds is None
        for s in _seeds(profile, seeds if own else peer_seeds):
            parent = run_name("adaptive", s) if method in CONTROL_METHODS else None
            options = profile.peer_options.get(method, {})
            overrides = peer_overrides(method, profile.peer_settings)
            name = run_name(method, s, **options)
            if overrides:
                name = name.removesuffix(f"-seed{s}") + f"-authors-seed{s}"
            specs.append(RunSpec("table1", TABLE1_LABELS.get(method, method), s, method, name, options,
                                 overrides=overrides, parent=parent))
    return specs


def plan_ablations(profile: Profile, seeds=None) -> list[RunSpec]:
    """Table 2: the full model (the Table 1 run), four ablations and two weight controls branching from its warm-up."""
    specs = []
    for s in _seeds(profile, seeds):
        full = run_name("adaptive", s)
        for label, options in {**ABLATIONS, **WEIGHT_CONTROLS}.items():
            specs.append(RunSpec("table2", label, s, "adaptive", run_name("adaptive", s, **options), options,
                                 parent=full if options else None))
    return specs


def plan_readings(profile: Profile, seeds=None) -> list[RunSpec]:
    """The readings of Algorithm 1: the default reading (the Table 1 run) and each other reading branching from its
    warm-up."""
    specs = []
    for s in _seeds(profile, seeds):
        full = run_name("adaptive", s)
        for label, options in READINGS.items():
            specs.append(RunSpec("readings", label, s, "adaptive", run_name("adaptive", s, **options), options,
                                 parent=full if options else None))
    return specs


def plan_optimizers(profile: Profile, seeds=None, adam_lr: float = ADAM_LR) -> list[RunSpec]:
    """Table 3: SGD/Adam x reset/keep the optimizer state when adaptive training starts."""
    specs = []
    for s in _seeds(profile, seeds):
        for label, (optimizer, reset) in OPTIMIZER_SETTINGS.items():
            stem = "adaptive" if optimizer == "sgd" else f"adaptive-{optimizer}"
            overrides = {} if optimizer == "sgd" else {"optimizer": optimizer, "lr": adam_lr}
            full = f"{stem}-seed{s}"  # SGD: run_name("adaptive", s), the Table 1 run
            if reset:
                specs.append(RunSpec("table3", label, s, "adaptive", full, overrides=overrides))
            else:
                specs.append(RunSpec("table3", label, s, "adaptive", f"{stem}-keepstate-seed{s}",
                                     overrides={**overrides, "reset_optimizer": False}, parent=full))
    return specs


# ---------------------------------------------------------------------------------------------- running them

#: bench_gpu.py's result on a CUDA device (``python benchmarks/bench_gpu.py``), read for :func:`gpu_runs_per_device`
GPU_MEASUREMENT = Path("benchmarks") / "results" / "gpu_cuda.json"
#: the fewest concurrent runs whose measured throughput is within this share of the best level's
GPU_THROUGHPUT_SHARE = 0.95


def gpu_runs_per_device(measurement: Path | None = None) -> tuple[int, str]:
    """How many runs to train at once on one GPU, and why: from bench_gpu.py's throughput of 1, 2, 4, 8 concurrent
    runs (``measurement``, default :data:`GPU_MEASUREMENT` in the checkout), the fewest runs within
    :data:`GPU_THROUGHPUT_SHARE` of the best throughput, for every method measured (the largest of theirs).
    Without a measurement: 1, and the reason says that none exists (no guess)."""
    path = measurement if measurement is not None else project_root() / GPU_MEASUREMENT
    try:
        concurrency = json.loads(Path(path).read_text()).get("concurrency") or {}
    except (OSError, ValueError):
        return 1, f"no GPU measurement ({GPU_MEASUREMENT} is absent): one run per GPU"
    best = []
    for method, rows in concurrency.items():
        if method == "levels" or not isinstance(rows, list):
            continue
        rows = [r for r in rows if isinstance(r, dict) and r.get("clips_per_second")]
        if rows:
            top = max(r["clips_per_second"] for r in rows)
            best.append(min(r["processes"] for r in rows if r["clips_per_second"] >= GPU_THROUGHPUT_SHARE * top))
    if not best:
        return 1, f"{path} holds no measured concurrency level: one run per GPU"
    return max(best), f"measured by bench_gpu.py ({path})"


def runs_per_gpu_note(profile: Profile) -> str:
    if profile.runs_per_gpu:
        return "the profile's runs_per_gpu"
    return gpu_runs_per_device()[1]


def visible_gpus() -> int:
    """The CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applies)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_slots(device: str, workers: int, runs_per_gpu: int = 0, gpus: int | None = None) -> list[tuple[str, int]]:
    """Where a study's runs train: ``[(device, runs at once)]``, one entry per worker pool.

    On the CPU one pool of ``workers`` processes on ``device``. On CUDA (``"auto"`` with a
    GPU, or ``"cuda"``) one pool per visible GPU (``gpus``, default :func:`visible_gpus`), ``"cuda:<i>"``, each of
    ``runs_per_gpu`` processes (0: :func:`gpu_runs_per_device`); ``"cuda:<i>"`` names one GPU, the only one used.
    """
    if gpus is None:
        gpus = visible_gpus()
    kind = "cuda" if device == "auto" and gpus > 0 else device
    if not str(kind).startswith("cuda"):
        return [(device, max(1, workers))]
    per = runs_per_gpu if runs_per_gpu > 0 else gpu_runs_per_device()[0]
    if ":" in str(kind):
        return [(str(kind), per)]
    if gpus < 1:
        raise ValueError(f"device {device!r}: no CUDA device is visible")
    return [(f"cuda:{i}", per) for i in range(gpus)]


def execute(specs: list[RunSpec], profile: Profile, data: AVData, *, dataset: str = EMBEDDED, results_root=None,
            device: str | None = None, progress: bool = False, log=print, workers: int | None = None,
            runs_per_gpu: int | None = None) -> pd.DataFrame:
    """Train every run of ``specs`` that is not finished yet (parents first), and return the run table
    (:func:`gapkit.results.read_runs`).

    Full runs are queued first, then the runs branching from their warm-ups. On the CPU, ``workers`` runs
    (default: the profile's) train at once, each in its own process with the profile's ``threads``
    (a run's setting, recorded with it: its numbers depend on its own thread count, never on which other
    runs share the machine; README, Speed). On GPUs, ``runs_per_gpu`` runs (default: the profile's,
    :func:`gpu_runs_per_device`) train at once on each visible GPU, each GPU with its own pool of worker
    processes (:func:`worker_slots`); a worker loads the data itself from the memory-mapped cache.
    ``log`` gets one line per run (``None``: silent); ``progress`` shows a bar over the runs to train and, with
    one worker, a bar per run's epochs (widgets in a notebook, text in a terminal).
    """
    root = run_root(profile.name, dataset, results_root)
    jobs = _with_parents(specs)
    for job in jobs:  # every run's settings (overrides, method, options) checked before the first one trains
        job.config(profile)
    slots = worker_slots(device or profile.device, profile.workers if workers is None else workers,
                         profile.runs_per_gpu if runs_per_gpu is None else runs_per_gpu)
    todo = [j for j in jobs if not (root / j.name / "metrics.json").exists()]
    todo.sort(key=lambda j: j.parent is not None)  # full runs first, then the branches of their warm-ups
    if log:
        if todo and str(slots[0][0]).startswith("cuda"):
            log(f"{len(slots)} GPU(s), {slots[0][1]} run(s) at once on each ({runs_per_gpu_note(profile)})")
        for job in todo:
            log(f"training {job.name} ({job.study}: {job.variant})"
                + (f", branching from {job.parent}/warmup.pt" if job.parent else ""))
    with tqdm(total=len(todo), desc="runs", unit="run", disable=not (progress and todo)) as bar:
        if sum(n for _, n in slots) > 1 and len(todo) > 1:
            _train_in_pools(todo, profile, data, root, dataset, slots, log, bar)
        else:
            for job in todo:
                _log_done(job, _train(job, profile, data, root, dataset, slots[0][0], progress), log)
                bar.update()
    return read_runs(specs, profile, dataset=dataset, results_root=results_root, data=data)


def _with_parents(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` without repeats, plus the full run each branch starts from where ``specs`` lacks it
    (:meth:`~gapkit.results.RunSpec.parent_spec`)."""
    jobs = list({s.name: s for s in specs}.values())
    names = {j.name for j in jobs}
    for spec in list(jobs):
        if spec.parent is not None and spec.parent not in names:
            jobs.append(spec.parent_spec())
            names.add(spec.parent)
    return jobs


def _train(job: RunSpec, profile: Profile, data: AVData, root: Path, dataset: str, device, progress: bool) -> dict:
    """One run of a study (its finished ``metrics.json`` if there is one)."""
    prof = profile.replace(**job.overrides) if job.overrides else profile
    init_from = root / job.parent / "warmup.pt" if job.parent else None
    return train_run(prof, data, job.method, job.seed, out_dir=root / job.name, init_from=init_from, device=device,
                     progress=progress, dataset=dataset, **job.options)


def _log_done(job: RunSpec, metrics: dict, log) -> None:
    if log:
        log(f"  {job.name} done in {metrics['wall_seconds']:.0f} s: test accuracy {metrics['test_acc']:.4f} "
            f"(audio {metrics['test_acc_audio']:.4f}, visual {metrics['test_acc_visual']:.4f}) at epoch "
            f"{metrics['best_val_epoch']} (best validation in the final stage), {metrics['last_test_acc']:.4f} "
            f"at the last")


_WORKER: dict = {}


def _start_worker(data: AVData | None, source: dict | None, data_key: str | None, device: str) -> None:
    """A worker process's set-up: its device (a GPU of its own pool) and its data, loaded from the memory-mapped
    cache by the worker itself where the parent's data came from it (:attr:`AVData.source`), else as sent."""
    from .data import reload_dataset

    if device.startswith("cuda:"):
        import torch
        torch.cuda.set_device(torch.device(device))
    _WORKER.update(data=data if source is None else reload_dataset(source, data_key), device=device)


def _train_in_worker(job: RunSpec, profile: Profile, root: Path, dataset: str) -> dict:
    return _train(job, profile, _WORKER["data"], root, dataset, _WORKER["device"], False)


def worker_data(data: AVData) -> tuple:
    """What a worker process receives to get the data: ``(None, source, data_key)`` for data loaded from the cache
    (the worker loads it itself: no tensors pickled through a pipe per process), ``(data, None, None)`` for data
    built in memory."""
    if data.source is not None and "data_key" in data.info:
        return None, data.source, data.info["data_key"]
    return data, None, None


def free_pool(running: list[int], capacity: list[int]) -> int | None:
    """The pool a ready run goes to: the one with the most free places (the first on a tie), ``None`` when full."""
    free = [c - r for r, c in zip(running, capacity)]
    best = max(range(len(free)), key=lambda k: (free[k], -k))
    return best if free[best] > 0 else None


def _train_in_pools(todo: list[RunSpec], profile: Profile, data: AVData, root: Path, dataset: str,
                    slots: list[tuple[str, int]], log, bar) -> dict[str, str | None]:
    """Train ``todo`` in fresh processes: one pool of ``n`` worker processes for each ``(device, n)`` of ``slots``,
    each run in the pool with the most free places as soon as its parent's warm-up exists (so that no process waits
    for a whole wave to end); the first failure stops the pools and is raised with the run's name. Returns each
    run's device (its pool's)."""
    context = multiprocessing.get_context("spawn")  # no fork of a process whose thread pools are running
    waiting = {job.parent for job in todo if job.parent is not None} & {job.name for job in todo}
    sent = worker_data(data)
    pools = [ProcessPoolExecutor(n, mp_context=context, initializer=_start_worker, initargs=(*sent, device))
             for device, n in slots]
    capacity, busy, placed = [n for _, n in slots], [0] * len(slots), {}
    running: dict = {}
    pending = list(todo)
    try:
        def submit_ready():
            for job in [j for j in pending if j.parent not in waiting]:
                k = free_pool(busy, capacity)
                if k is None:
                    return
                pending.remove(job)
                busy[k] += 1
                placed[job.name] = slots[k][0]
                running[pools[k].submit(_train_in_worker, job, profile, root, dataset)] = (job, k)

        submit_ready()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, k = running.pop(future)
                busy[k] -= 1
                try:
                    _log_done(job, future.result(), log)
                except BaseException as err:
                    raise RuntimeError(f"run {job.name} failed: {err}") from err
                bar.update()
                waiting.discard(job.name)
            submit_ready()
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    return placed


def warmup_runs(profile: Profile, data: AVData, seeds=None, **kw) -> pd.DataFrame:
    """Table 1's adaptive runs (each one's first stage is the shared warm-up of Tables 2 and 3)."""
    return execute(plan_warmup(profile, seeds), profile, data, **kw)


def table1_runs(profile: Profile, data: AVData, seeds=None, methods=None, peer_seeds=None, **kw) -> pd.DataFrame:
    """Every Table 1 run: concat, ours and the controls for ``seeds``, every registered peer for ``peer_seeds``
    (default: ``seeds``)."""
    return execute(plan_table1(profile, seeds, methods, peer_seeds), profile, data, **kw)


def ablation_runs(profile: Profile, data: AVData, seeds=None, **kw) -> pd.DataFrame:
    """Table 2's runs; the full model is reused from Table 1."""
    return execute(plan_ablations(profile, seeds), profile, data, **kw)


def readings_runs(profile: Profile, data: AVData, seeds=None, **kw) -> pd.DataFrame:
    """The readings study's runs; the default reading is reused from Table 1."""
    return execute(plan_readings(profile, seeds), profile, data, **kw)


def optimizer_runs(profile: Profile, data: AVData, seeds=None, adam_lr: float = ADAM_LR, **kw) -> pd.DataFrame:
    """Table 3's runs; SGD with reset is reused from Table 1."""
    return execute(plan_optimizers(profile, seeds, adam_lr), profile, data, **kw)

