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
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data.base import AVData
from .experiments import run_name, train_run
from .paths import results_dir
from .profiles import Profile

#: Adam's learning rate in Table 3. The paper does not state it; 1e-3 is Adam's usual default
#: (SGD keeps the paper's 2e-3). Adam's lr is ~ the size of each weight step, SGD's is scaled by
#: the gradient, so the two numbers are not comparable and Adam's is not derived from SGD's.
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

    Concat and ours run for ``seeds``; the peer methods for ``peer_seeds`` (default: ``seeds``), so that
    a tight time budget can give the peers fewer seeds (an empty list leaves them out).
    """
    from .report.tables import TABLE1_LABELS

    methods = table1_methods() if methods is None else list(methods)
    specs = []
    for method in methods:
        own = method in BASELINE_AND_OURS or method in CONTROL_METHODS or peer_seeds is None
        for s in _seeds(profile, seeds if own else peer_seeds):
            parent = run_name("adaptive", s) if method in CONTROL_METHODS else None
            specs.append(RunSpec("table1", TABLE1_LABELS.get(method, method), s, method, run_name(method, s),
                                 parent=parent))
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
            device: str | None = None, progress: bool = False, log=print) -> pd.DataFrame:
    """Train every run of ``specs`` that is not finished yet (parents first), and return the run table.

    ``log`` gets one line per run (``None``: silent); ``progress`` shows a bar per run's epochs.
    """
    root = run_root(profile, dataset, results_root)
    by_name = {s.name: s for s in specs}
    done: dict[str, dict] = {}

    def run(spec: RunSpec) -> dict:
        if spec.name in done:
            return done[spec.name]
        init_from = None
        if spec.parent is not None:
            parent = by_name.get(spec.parent) or RunSpec(spec.study, "parent", spec.seed, spec.method, spec.parent,
                                                        overrides={k: v for k, v in spec.overrides.items()
                                                                   if k != "reset_optimizer"})
            run(parent)
            init_from = root / spec.parent / "warmup.pt"
        prof = profile.replace(**spec.overrides) if spec.overrides else profile
        out_dir = root / spec.name
        finished = (out_dir / "metrics.json").exists()
        started = time.perf_counter()
        if log and not finished:
            log(f"training {spec.name} ({spec.study}: {spec.variant})"
                + (f", branching from {spec.parent}/warmup.pt" if init_from else ""))
        metrics = train_run(prof, data, spec.method, spec.seed, out_dir=out_dir, init_from=init_from,
                            device=device, progress=progress, dataset=dataset, **spec.options)
        if log and not finished:
            log(f"  done in {time.perf_counter() - started:.0f} s: test accuracy {metrics['test_acc']:.4f} "
                f"(audio {metrics['test_acc_audio']:.4f}, visual {metrics['test_acc_visual']:.4f}) at epoch "
                f"{metrics['best_val_epoch']} (best validation in the final stage), {metrics['last_test_acc']:.4f} "
                f"at the last")
        done[spec.name] = metrics
        return metrics

    rows = [run_row(spec, run(spec), root / spec.name) for spec in specs]
    return pd.DataFrame(rows)


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


def concat_runs(profile: Profile, data: AVData, seeds=None, **kw) -> pd.DataFrame:
    """The concat baseline, same seeds and total epochs as the adaptive runs."""
    return execute(plan_table1(profile, seeds, methods=["concat"]), profile, data, **kw)


def table1_runs(profile: Profile, data: AVData, seeds=None, methods=None, peer_seeds=None, **kw) -> pd.DataFrame:
    """Every Table 1 run: concat and ours for ``seeds``, every registered peer for ``peer_seeds`` (default: ``seeds``)."""
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
                                                            "last_test_acc")) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof 1; 0 for a single seed) and seed count per group, in first-seen order."""
    grouped = runs.groupby(list(by), sort=False)
    out = grouped[list(columns)].agg(["mean", "std", "count"])
    out.columns = [f"{c}_{stat}" if stat != "count" else f"{c}_n" for c, stat in out.columns]
    for c in columns:
        out[f"{c}_std"] = out[f"{c}_std"].fillna(0.0)
    out["n_seeds"] = grouped["seed"].nunique()
    out["seeds"] = grouped["seed"].agg(lambda s: ",".join(map(str, sorted(s))))
    return out.drop(columns=[f"{c}_n" for c in columns]).reset_index()


def paired_differences(runs: pd.DataFrame, reference: str, other: str, column: str = REPORTED) -> pd.Series:
    """Per seed: ``column`` of variant ``reference`` minus that of variant ``other`` (seeds both have)."""
    pivot = runs.pivot_table(index="seed", columns="variant", values=column, aggfunc="first")
    return (pivot[reference] - pivot[other]).dropna()


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
    import torch

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
