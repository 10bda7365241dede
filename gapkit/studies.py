"""The multi-run experiments behind Tables 1-3: which runs each table needs, training the missing ones, and
collecting their results as tidy tables. No plotting here (that is :mod:`gapkit.report`).

Every run lives in ``<results>/<profile>/<dataset>/runs/<name>/`` and is trained by
:func:`gapkit.experiments.train_run`, which returns a finished run's ``metrics.json``
instead of training it again. So each study below costs only the runs that are still
missing, and a run shared by two tables is trained once:

* Table 1: one full run per seed and method, ``adaptive-seed<s>`` (Ours) and
  ``concat-seed<s>`` (the same model on L_MM alone for the same total epochs).
  The adaptive run's ``warmup.pt`` (the state at the end of warm-up) is the shared
  starting point of Tables 2 and 3.
* Table 2 (ablations of Eq. 10): the full model is the Table 1 run itself; ``alpha = 0``,
  ``beta = 0``, ``gamma = 0`` and "w/o weights" (``use_weights=False``) branch from the
  same seed's warm-up checkpoint, so they differ from the full model only after warm-up.
* Table 3 (optimizer): SGD with the state reset at the start of adaptive training is
  the Table 1 run; "SGD, same state" branches from its warm-up with
  ``reset_optimizer=False``. Adam needs its own warm-up: "Adam, reset state" is a
  full run with ``optimizer="adam"`` (lr :data:`ADAM_LR`), and "Adam, same state"
  branches from that run's warm-up. Runs that differ only in profile fields get
  their own folder names (``adaptive-keepstate-seed0``, ``adaptive-adam-seed0``,
  ``adaptive-adam-keepstate-seed0``), since :func:`~gapkit.experiments.run_name`
  only encodes the method, its options and the seed.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data.base import AVData
from .experiments import run_name, train_run
from .paths import results_dir
from .profiles import Profile
from .training import resolve_device

#: Adam's learning rate in Table 3. The paper does not state it; 1e-3 is Adam's usual default (SGD keeps the
#: profile's lr). Adam's lr is ~ the size of each weight step, SGD's is scaled by the gradient, so the two
#: numbers are not comparable and Adam's is not derived from SGD's.
ADAM_LR = 1e-3

#: The ablations of Table 2 (Eq. 10), in the paper's row order: label -> method options.
ABLATIONS = {
    "Full model": {},
    "w/o L_MM (alpha = 0)": {"alpha": 0},
    "w/o |g|^2 (beta = 0)": {"beta": 0},
    "w/o |g - mu_0|^2 (gamma = 0)": {"gamma": 0},
    "w/o GMM weights": {"use_weights": False},
}

#: Controls of Table 2 that isolate the GMM (not in the paper): Eq. 10 with w_imb replaced by a weight that keeps
#: its batch mean but not the GMM's separation of samples (:func:`gapkit.losses.control_weights`).
WEIGHT_CONTROLS = {
    "w_imb -> |g| rescaled (control)": {"weight_control": "gap-magnitude"},
    "w_imb shuffled in the batch (control)": {"weight_control": "shuffled"},
}

#: Controls of Table 1 (not in the paper): Eq. 7 for the whole budget, with the optimizer state kept or reset
#: where adaptive training would start. Both branch from the adaptive run's warm-up (the same Eq. 7 epochs).
CONTROL_METHODS = ("warmup-only", "warmup-reset")

#: The optimizer settings of Table 3, in the paper's row order: label -> (optimizer, reset state).
OPTIMIZER_SETTINGS = {
    "SGD (reset state)": ("sgd", True),
    "Adam (reset state)": ("adam", True),
    "SGD (same state)": ("sgd", False),
    "Adam (same state)": ("adam", False),
}

#: The columns of a run table taken from ``metrics.json``.
METRIC_COLUMNS = ("test_acc", "test_acc_audio", "test_acc_visual", "val_acc", "best_val_epoch", "last_test_acc",
                  "last_test_acc_audio", "last_test_acc_visual", "last_val_acc", "epochs", "seconds")


@dataclass(frozen=True)
class RunSpec:
    """One training run a table needs.

    ``overrides`` are profile fields that differ from the study's profile (Table 3);
    ``parent`` names the run whose ``warmup.pt`` this one branches from (``None``: a full run).
    """

    study: str
    variant: str
    seed: int
    method: str
    name: str
    options: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    parent: str | None = None


def run_root(profile: Profile, dataset: str = "synthetic", results_root=None) -> Path:
    """``<results>/<profile>/<dataset>/runs``: where every run of a profile and dataset lives."""
    return Path(results_root if results_root is not None else results_dir()) / profile.name / dataset / "runs"


def _seeds(profile: Profile, seeds) -> list[int]:
    return list(profile.seeds) if seeds is None else [int(s) for s in seeds]


# ---------------------------------------------------------------------------------------------- the plans

def table1_methods() -> list[str]:
    """The registered methods that have a row in Table 1, in the paper's order (concat and ours first of all)."""
    from .methods import METHODS
    from .report.tables import TABLE1_ROWS

    return [key for _, key, *_ in TABLE1_ROWS if key in METHODS]


def plan_warmup(profile: Profile, seeds=None) -> list[RunSpec]:
    """Table 1's adaptive runs, one full run per seed (warm-up, then the adaptive steps)."""
    return [RunSpec("table1", "Ours", s, "adaptive", run_name("adaptive", s)) for s in _seeds(profile, seeds)]


#: Table 1's own two rows; every other method of the table is a peer
BASELINE_AND_OURS = ("concat", "adaptive")


def plan_table1(profile: Profile, seeds=None, methods=None, peer_seeds=None) -> list[RunSpec]:
    """Every Table 1 run: each method (default: every registered one with a Table 1 row) for each seed.

    Concat, ours and the controls run for ``seeds``; the peer methods for ``peer_seeds`` (default: ``seeds``),
    so that a tight time budget can give the peers fewer seeds (an empty list leaves them out), with the
    profile's ``peer_options``.
    """
    from .report.tables import TABLE1_LABELS

    methods = table1_methods() if methods is None else list(methods)
    specs = []
    for method in methods:
        own = method in BASELINE_AND_OURS or method in CONTROL_METHODS or peer_seeds is None
        for s in _seeds(profile, seeds if own else peer_seeds):
            parent = run_name("adaptive", s) if method in CONTROL_METHODS else None
            options = profile.peer_options.get(method, {})
            specs.append(RunSpec("table1", TABLE1_LABELS.get(method, method), s, method,
                                 run_name(method, s, **options), options, parent=parent))
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


def plan_optimizers(profile: Profile, seeds=None, adam_lr: float = ADAM_LR) -> list[RunSpec]:
    """Table 3: SGD/Adam x reset/keep the optimizer state when adaptive training starts."""
    specs = []
    for s in _seeds(profile, seeds):
        sgd, adam = run_name("adaptive", s), f"adaptive-adam-seed{s}"
        adam_over = {"optimizer": "adam", "lr": adam_lr}
        specs += [
            RunSpec("table3", "SGD (reset state)", s, "adaptive", sgd),
            RunSpec("table3", "Adam (reset state)", s, "adaptive", adam, overrides=adam_over),
            RunSpec("table3", "SGD (same state)", s, "adaptive", f"adaptive-keepstate-seed{s}",
                    overrides={"reset_optimizer": False}, parent=sgd),
            RunSpec("table3", "Adam (same state)", s, "adaptive", f"adaptive-adam-keepstate-seed{s}",
                    overrides={**adam_over, "reset_optimizer": False}, parent=adam),
        ]
    return specs


# ---------------------------------------------------------------------------------------------- running them

def execute(specs: list[RunSpec], profile: Profile, data: AVData, *, dataset: str = "synthetic", results_root=None,
            device: str | None = None, progress: bool = False, log=print, workers: int | None = None) -> pd.DataFrame:
    """Train every run of ``specs`` that is not finished yet (parents first), and return the run table.

    Full runs are queued first, then the runs branching from their warm-ups. On the CPU, ``workers`` runs
    (default: the profile's) train at once, each in its own process with ``threads // workers`` threads.
    On the default profile's small models a second thread barely speeds up the evaluation, gap
    collection and bookkeeping of a run, so two single-threaded runs finish about 1.2-1.3 times sooner
    than the same two runs one after the other on two threads (measured on 2 cores: a full adaptive run
    alone 24.7 s, two side by side 34-39 s; README, Speed). A run's numbers do not depend
    on which other runs share the machine, but may differ in the last digits with its thread count.
    ``log`` gets one line per run (``None``: silent); ``progress`` shows a bar per run's epochs (one
    worker only).
    """
    root = run_root(profile, dataset, results_root)
    jobs = _with_parents(specs)
    workers = profile.workers if workers is None else workers
    if resolve_device(device or profile.device).type != "cpu":
        workers = 1
    todo = [j for j in jobs if not (root / j.name / "metrics.json").exists()]
    todo.sort(key=lambda j: j.parent is not None)  # full runs first, then the branches of their warm-ups
    if log:
        for job in todo:
            log(f"training {job.name} ({job.study}: {job.variant})"
                + (f", branching from {job.parent}/warmup.pt" if job.parent else ""))
    done: dict[str, dict] = {}
    if workers > 1 and len(todo) > 1:
        done.update(_train_in_pool(todo, profile, data, root, dataset, device, workers, log))
    else:
        for job in todo:
            done[job.name] = _log_done(job, _train(job, profile, data, root, dataset, device, progress), log)
    for job in jobs:
        if job.name not in done:  # finished before this call: read back
            done[job.name] = _train(job, profile, data, root, dataset, device, False)
    return pd.DataFrame([run_row(spec, done[spec.name], root / spec.name) for spec in specs])


def _with_parents(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` without repeats, plus the full run each branch starts from where ``specs`` lacks it
    (always an adaptive run, the one two-stage method whose warm-up the studies share)."""
    jobs = list({s.name: s for s in specs}.values())
    names = {j.name for j in jobs}
    for spec in list(jobs):
        if spec.parent is not None and spec.parent not in names:
            parent_overrides = {k: v for k, v in spec.overrides.items() if k != "reset_optimizer"}
            jobs.append(RunSpec(spec.study, "parent", spec.seed, "adaptive", spec.parent, overrides=parent_overrides))
            names.add(spec.parent)
    return jobs


def _train(job: RunSpec, profile: Profile, data: AVData, root: Path, dataset: str, device, progress: bool) -> dict:
    """One run of a study (its finished ``metrics.json`` if there is one)."""
    prof = profile.replace(**job.overrides) if job.overrides else profile
    init_from = root / job.parent / "warmup.pt" if job.parent else None
    return train_run(prof, data, job.method, job.seed, out_dir=root / job.name, init_from=init_from, device=device,
                     progress=progress, dataset=dataset, **job.options)


def _log_done(job: RunSpec, metrics: dict, log) -> dict:
    if log:
        log(f"  {job.name} done in {metrics['wall_seconds']:.0f} s: test accuracy {metrics['test_acc']:.4f} "
            f"(audio {metrics['test_acc_audio']:.4f}, visual {metrics['test_acc_visual']:.4f}) at epoch "
            f"{metrics['best_val_epoch']} (best validation in the final stage), {metrics['last_test_acc']:.4f} "
            f"at the last")
    return metrics


_WORKER_DATA: AVData | None = None


def _start_worker(data: AVData, threads: int) -> None:
    global _WORKER_DATA
    torch.set_num_threads(threads)
    _WORKER_DATA = data


def _train_in_worker(job: RunSpec, profile: Profile, root: Path, dataset: str, device) -> dict:
    return _train(job, profile, _WORKER_DATA, root, dataset, device, False)


def _train_in_pool(todo: list[RunSpec], profile: Profile, data: AVData, root: Path, dataset: str, device,
                   workers: int, log) -> dict[str, dict]:
    """Train ``todo`` in ``workers`` fresh processes, each run as soon as its parent's warm-up exists (so that no
    process waits for a whole wave to end); the first failure stops the pool and is raised with the run's name."""
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process whose thread pools are running
    waiting = {job.parent for job in todo if job.parent is not None} & {job.name for job in todo}
    out: dict[str, dict] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(data, threads)) as pool:
        running = {}
        pending = list(todo)

        def submit_ready():
            for job in [j for j in pending if j.parent not in waiting]:
                pending.remove(job)
                running[pool.submit(_train_in_worker, job, profile, root, dataset, device)] = job

        submit_ready()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    out[job.name] = _log_done(job, future.result(), log)
                except BaseException as err:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise RuntimeError(f"run {job.name} failed: {err}") from err
                waiting.discard(job.name)
            submit_ready()
    return out


def run_row(spec: RunSpec, metrics: dict, run_dir: Path) -> dict:
    """One row of a run table: what the run is and its accuracies (fractions) at the selected epoch (best validation
    accuracy in the final stage, :func:`gapkit.training.selected_epoch`) and at the last epoch (``last_*``)."""
    cfg = metrics["config"]
    row = {"study": spec.study, "variant": spec.variant, "method": spec.method, "seed": spec.seed,
           "name": spec.name, "optimizer": cfg["optimizer"], "lr": cfg["lr"],
           "reset_optimizer": cfg["reset_optimizer"], "options": json.dumps(spec.options, sort_keys=True),
           "branched_from": spec.parent}
    row.update({k: metrics[k] for k in METRIC_COLUMNS})
    row["wall_seconds"] = metrics.get("wall_seconds")
    row["run_dir"] = str(run_dir)
    return row


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


def optimizer_runs(profile: Profile, data: AVData, seeds=None, adam_lr: float = ADAM_LR, **kw) -> pd.DataFrame:
    """Table 3's runs; SGD with reset is reused from Table 1."""
    return execute(plan_optimizers(profile, seeds, adam_lr), profile, data, **kw)


# ---------------------------------------------------------------------------------------------- collecting

#: the accuracy the tables report (see :func:`gapkit.training.selected_epoch`)
REPORTED = "test_acc"


def aggregate(runs: pd.DataFrame, by=("variant",), columns=("test_acc", "test_acc_audio", "test_acc_visual",
                                                            "last_test_acc"), level: float = 0.95) -> pd.DataFrame:
    """Per group, in first-seen order: for each column its mean over seeds, sample standard deviation (ddof 1) and
    ``level`` confidence interval of the mean (``<column>_mean``, ``_std``, ``_ci_low``, ``_ci_high``; see
    :func:`mean_interval`, the std and interval are NaN for a single seed), then ``n_seeds`` and ``seeds``.

    The interval is what the tables show next to the paper's numbers: with a handful of seeds a std alone
    does not say how far the mean itself may be off.
    """
    rows = []
    for key, group in runs.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for column in columns:
            stats = mean_interval(group[column], level)
            row.update({f"{column}_{stat}": stats[stat] for stat in ("mean", "std", "ci_low", "ci_high")})
        row["n_seeds"] = group["seed"].nunique()
        row["seeds"] = ",".join(map(str, sorted(group["seed"].unique())))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, reference: str, other: str, column: str = REPORTED) -> pd.Series:
    """Per seed: ``column`` of variant ``reference`` minus that of variant ``other``, for the seeds both have
    (empty where either variant has no run). Pairing by seed removes what the two runs share (the data order,
    the initialisation, a branch's warm-up), so the differences vary less than the two accuracies do."""
    pivot = runs.pivot_table(index="seed", columns="variant", values=column, aggfunc="first")
    if reference not in pivot or other not in pivot:
        return pd.Series(dtype=np.float64, index=pd.Index([], name="seed"))
    return (pivot[reference] - pivot[other]).dropna()


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean, sample standard deviation (ddof 1), count ``n`` and the two-sided ``level`` Student-t confidence interval
    of the mean (``ci_low``, ``ci_high``: mean -+ t_{(1 + level) / 2, n - 1} std / sqrt(n)) of ``values``, NaN ignored.

    The one place an interval is computed (tables and claims). Over a few seeds the t quantile, not the normal one,
    keeps the interval honest: 4.30 instead of 1.96 standard errors at three seeds. The std and the interval are NaN
    for n < 2 (one seed says nothing about the spread), the mean too for n = 0.
    """
    from scipy.stats import t

    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level!r}")
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = len(x)
    if n < 2:
        return {"mean": float(x.mean()) if n else np.nan, "std": np.nan, "n": n, "ci_low": np.nan, "ci_high": np.nan}
    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = float(t.ppf((1 + level) / 2, n - 1)) * std / np.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci_low": float(mean - half), "ci_high": float(mean + half)}


def load_history(run_dir) -> dict:
    return json.loads((Path(run_dir) / "history.json").read_text())


def history_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch records (losses, train/val/test accuracies, phase and step) of every run in ``runs``."""
    frames = []
    for row in runs.itertuples(index=False):
        epochs = pd.DataFrame(load_history(row.run_dir)["epochs"])
        epochs.insert(0, "seed", row.seed)
        epochs.insert(0, "variant", row.variant)
        frames.append(epochs)
    return pd.concat(frames, ignore_index=True)


def gmm_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per GMM fit of every run in ``runs``: fit 0 is after warm-up, fit k after k adaptive steps.

    Columns ``w_bal``/``w_imb`` (pi_0, pi_1 of Eq. 8), ``mu_bal``/``mu_imb``, ``var_bal``/``var_imb``,
    ``density_at_0`` and ``fallback`` (why a single Gaussian was used, or ``None``).
    """
    rows = []
    for row in runs.itertuples(index=False):
        for fit, g in enumerate(load_history(row.run_dir)["gmm"]):
            rows.append({"variant": row.variant, "seed": row.seed, "fit": fit, "step": g["step"], "epoch": g["epoch"],
                         "label": g["label"], "w_bal": g["weights"][0], "w_imb": g["weights"][1],
                         "mu_bal": g["means"][0], "mu_imb": g["means"][1], "var_bal": g["variances"][0],
                         "var_imb": g["variances"][1], "density_at_0": g["density_at_0"],
                         "fallback": g.get("fallback"), "n_fit": g.get("n_fit")})
    return pd.DataFrame(rows)


def load_gaps(run_dir) -> dict[str, np.ndarray]:
    """``gaps.npz`` of a run: ``fit0`` (after warm-up), ``fit1``, ... and the training ``labels``, in split order."""
    with np.load(Path(run_dir) / "gaps.npz") as z:
        return {k: z[k] for k in z.files}


def gap_bic(gaps: np.ndarray, seed: int = 0) -> dict:
    """BIC of a 1- and a 2-component Gaussian mixture on the gaps (lower is better; Section 3.2)."""
    from .mixture import bic

    b1, b2 = bic(gaps, 1, seed), bic(gaps, 2, seed)
    return {"bic_1": b1, "bic_2": b2, "delta_bic": b1 - b2, "bimodal": bool(b2 < b1)}


def degradation_auroc(w_imb: np.ndarray, clips: list[str], degradation: dict) -> dict:
    """AUROC of the imbalanced-component posterior ``w_imb`` (Eq. 9) for the clips recorded as degraded.

    ``degradation`` maps clip -> ``"none" | "audio" | "visual"`` (the embedded corpus's record). ``w_imb``
    flags samples where audio >> visual, so visual degradation is what it should detect; the audio-degraded
    clips (visual >> audio) should rather score low. Each AUROC compares one kind against the undegraded clips
    (``any``: every degraded clip); ``None`` where a class is empty.
    """
    from sklearn.metrics import roc_auc_score

    kinds = np.array([_degradation_kind(degradation.get(c, "none")) for c in clips])
    w = np.asarray(w_imb, dtype=np.float64)
    out = {"n_clips": len(clips), **{f"n_{k}": int((kinds == k).sum()) for k in ("none", "audio", "visual")}}
    for name, positive in (("any", kinds != "none"), ("visual", kinds == "visual"), ("audio", kinds == "audio")):
        keep = positive | (kinds == "none")
        y = positive[keep]
        out[f"auroc_{name}"] = float(roc_auc_score(y, w[keep])) if 0 < y.sum() < len(y) else None
    return out


def _degradation_kind(value) -> str:
    if isinstance(value, dict):  # tolerate {"degraded": ..., "kind": ...} records
        value = value.get("degraded", "none")
    return str(value or "none")


def warmup_mixture(run_dir):
    """The GMM fitted after warm-up (``history.json`` gmm[0]) and the gaps it was fitted to (``gaps.npz`` fit0)."""
    from .mixture import GapMixture

    history = load_history(run_dir)
    if not history["gmm"]:
        raise ValueError(f"{run_dir} has no GMM fit: is it a two-stage (adaptive) run?")
    gaps = load_gaps(run_dir)
    return GapMixture.from_dict(history["gmm"][0], seed=history["config"]["seed"]), gaps["fit0"], gaps["labels"]


def imbalance_weights(mixture, gaps: np.ndarray) -> np.ndarray:
    """w_imb = w_{i,1} of Eq. 9 for every gap (numpy in, numpy out)."""
    return mixture.posteriors(torch.as_tensor(np.asarray(gaps, dtype=np.float64)))[1].numpy()


def warmup_gmm_summary(runs: pd.DataFrame, data: AVData | None = None) -> pd.DataFrame:
    """Per adaptive run (seed): the post-warm-up GMM, BIC of 1 vs 2 components and, where the dataset records
    degraded clips (the embedded corpus), the AUROC of w_imb for them (:func:`degradation_auroc`).

    The gaps of ``gaps.npz`` are in the training split's order; ``data`` must be the dataset the run was
    trained on (checked through the labels), so that ``data.train.clips`` names them.
    """
    rows = []
    for row in runs.itertuples(index=False):
        mix, gaps, labels = warmup_mixture(row.run_dir)
        out = {"seed": row.seed, "w_bal": mix.weights[0], "w_imb": mix.weights[1], "mu_bal": mix.means[0],
               "mu_imb": mix.means[1], "var_bal": mix.variances[0], "var_imb": mix.variances[1],
               "density_at_0": float(mix.density([0.0])[0]), "fallback": mix.fallback, "n_gaps": len(gaps),
               **gap_bic(gaps, seed=int(row.seed))}
        if data is not None and data.info.get("degradation"):
            if not np.array_equal(labels, data.train.labels.numpy()):
                raise ValueError(f"{row.run_dir}: its gaps do not follow this dataset's training split")
            out.update(degradation_auroc(imbalance_weights(mix, gaps), data.train.clips, data.info["degradation"]))
        rows.append(out)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- per-sample view

#: the test subsets of :func:`per_sample_outcomes`: a sample whose w_imb (Eq. 9) exceeds :data:`IMBALANCED_ABOVE`
#: is "imbalanced" (the GMM's component 1, audio >> visual), every other one "balanced" (component 0)
SUBSETS = ("balanced", "imbalanced")
IMBALANCED_ABOVE = 0.5


def per_sample_outcomes(runs: pd.DataFrame, profile: Profile, data: AVData, device: str | None = None) -> pd.DataFrame:
    """Every test sample's fused prediction before and after each run of ``runs``, and the subset it belongs to.

    The partition of seed s is fixed by the adaptive run ``adaptive-seed<s>`` (in the folder of ``runs``' run
    folders): its warm-up model (``warmup.pt``) gives each test sample's gap g_i (Eq. 6) and its post-warm-up GMM
    (Eq. 8, :func:`warmup_mixture`) the posterior w_imb = w_{i,1} (Eq. 9); the sample is "imbalanced" where
    w_imb > :data:`IMBALANCED_ABOVE`, else "balanced". "Before" is that warm-up model's fused prediction; "after",
    that of each run of ``runs`` (a Table 1 run table: ``variant``, ``seed``, ``method``, ``run_dir``), with the
    model selected by validation (``best.pt``) and the method's own modules and prediction rule. Both models are
    evaluated by :meth:`gapkit.training.Trainer.evaluate` with the run's own config (``metrics.json``), on a model
    built as :func:`gapkit.experiments.build_model` builds it for ``profile``.

    One row per run and test sample, in split order: ``variant``, ``method``, ``seed``, ``sample`` (index in the
    test split), ``label``, ``gap``, ``w_imb``, ``subset``, ``pred_before``, ``pred_after``.
    """
    from .experiments import build_model
    from .training import TrainConfig, Trainer

    def test_outputs(run_dir: Path, state_file: str):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if metrics["data"].get("cache_key") != data.info.get("cache_key"):
            raise ValueError(f"{run_dir / 'metrics.json'}: trained on data {metrics['data'].get('cache_key')!r}, "
                             f"not on this dataset ({data.info.get('cache_key')!r})")
        config = TrainConfig(**metrics["config"])
        trainer = Trainer(build_model(profile, data.num_classes, config.seed), data, config,
                          device=device or profile.device)
        state = torch.load(run_dir / state_file, map_location=trainer.device, weights_only=False)
        trainer.model.load_state_dict(state["model"] if state_file == "warmup.pt" else state)
        return trainer.evaluate("test")

    partitions: dict[int, dict] = {}
    frames = []
    for row in runs.itertuples(index=False):
        seed = int(row.seed)
        if seed not in partitions:
            adaptive = Path(row.run_dir).parent / run_name("adaptive", seed)
            if not (adaptive / "warmup.pt").exists():
                raise FileNotFoundError(f"{adaptive / 'warmup.pt'} is missing: seed {seed}'s test partition needs "
                                        f"the warm-up of its adaptive run")
            before = test_outputs(adaptive, "warmup.pt")
            gaps = before.gaps().numpy()
            w_imb = imbalance_weights(warmup_mixture(adaptive)[0], gaps)
            partitions[seed] = {"sample": np.arange(len(gaps)), "label": before.labels.numpy(), "gap": gaps,
                                "w_imb": w_imb, "subset": np.where(w_imb > IMBALANCED_ABOVE, "imbalanced", "balanced"),
                                "pred_before": before.logits.argmax(1).numpy()}
        after = test_outputs(Path(row.run_dir), "best.pt")
        frames.append(pd.DataFrame({"variant": row.variant, "method": row.method, "seed": seed, **partitions[seed],
                                    "pred_after": after.logits.argmax(1).numpy()}))
    return pd.concat(frames, ignore_index=True)


def per_sample_gain(outcomes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fused test accuracy (fraction) per run and subset of :func:`per_sample_outcomes`, and its summary over seeds.

    The first table has one row per run (``variant``, ``method``, ``seed``) and subset: ``n_samples``,
    ``accuracy_before`` (the warm-up model), ``accuracy_after`` (the run's selected model) and
    ``change`` = after - before; a subset a seed leaves empty has ``n_samples`` 0 and NaN accuracies. The summary is
    :func:`aggregate` of it per method and subset (mean and sd over seeds; the means skip empty subsets), plus
    ``n_seeds_with_samples``, the seeds whose subset is not empty.
    """
    correct = outcomes.assign(before=outcomes["pred_before"] == outcomes["label"],
                              after=outcomes["pred_after"] == outcomes["label"])
    rows = []
    for (variant, method, seed), run in correct.groupby(["variant", "method", "seed"], sort=False):
        for subset in SUBSETS:
            part = run[run["subset"] == subset]
            before, after = part["before"].mean(), part["after"].mean()  # NaN for an empty subset
            rows.append({"variant": variant, "method": method, "seed": seed, "subset": subset, "n_samples": len(part),
                         "accuracy_before": before, "accuracy_after": after, "change": after - before})
    table = pd.DataFrame(rows)
    by = ["variant", "method", "subset"]
    summary = aggregate(table, by=by, columns=("n_samples", "accuracy_before", "accuracy_after", "change"))
    summary["n_seeds_with_samples"] = table.groupby(by, sort=False)["change"].count().to_numpy()
    return table, summary
