"""Read-only: run folders -> run tables, intervals, paired differences, GMM and per-sample summaries.

Nothing here trains. A run table (one row per run, :func:`read_runs`) is read from the run folders that
:mod:`gapkit.studies` trained (:func:`gapkit.paths.run_root`); a missing run is an error naming the notebook
and the command that make it (:class:`MissingRunError`). :mod:`gapkit.report` draws on these tables.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data.base import AVData
from .paths import EMBEDDED, run_root
from .profiles import PROFILES, Profile, get_profile
from .mixture import GapMixture, bic
from .runs import recorded_identity
from .checkpoints import identity_differences

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

    def parent_spec(self) -> "RunSpec | None":
        """The full run this one branches from (``None`` for a full run): always an adaptive run, the one two-stage
        method whose warm-up the studies share, with this run's overrides but the optimizer state's."""
        if self.parent is None:
            return None
        overrides = {k: v for k, v in self.overrides.items() if k != "reset_optimizer"}
        return RunSpec(self.study, "parent", self.seed, "adaptive", self.parent, overrides=overrides)

    def config(self, profile: Profile) -> dict:
        """The training config this run has under ``profile`` (as its ``metrics.json`` records it)."""
        prof = profile.replace(**self.overrides) if self.overrides else profile
        return prof.train_config(self.method, self.seed, **self.options).to_dict()


# ---------------------------------------------------------------------------------------------- run tables

#: the notebook that trains each study's runs
STUDY_NOTEBOOKS = {"warmup": "02_warmup", "table1": "04_adaptive_training", "table2": "05_ablations",
                   "readings": "05_ablations", "table3": "06_optimizer_study"}


class MissingRunError(FileNotFoundError):
    """A run a table needs has not been trained (its folder has no ``metrics.json``)."""


def run_row(spec: RunSpec, metrics: dict, run_dir: Path) -> dict:
    """One row of a run table: what the run is and its accuracies (fractions) at the selected epoch (best validation
    accuracy in the final stage, :func:`gapkit.training.selected_epoch`) and at the last epoch (``last_*``), and
    ``component_swaps``, the GMM fits of the run (the one after training included) whose balanced component is not
    the one nearest 0 (:func:`gapkit.mixture.track_components`; always 0 under the default reading)."""
    cfg = metrics["config"]
    row = {"study": spec.study, "variant": spec.variant, "method": spec.method, "seed": spec.seed,
           "name": spec.name, "optimizer": cfg["optimizer"], "lr": cfg["lr"],
           "reset_optimizer": cfg["reset_optimizer"], "options": json.dumps(spec.options, sort_keys=True),
           "branched_from": spec.parent}
    swaps = sum(bool(fit.get("swapped")) for fit in metrics.get("gmm", []))
    return {**row, **{k: metrics[k] for k in METRIC_COLUMNS}, "component_swaps": swaps,
            "wall_seconds": metrics.get("wall_seconds"), "run_dir": str(run_dir)}


def read_runs(specs: list[RunSpec], profile: Profile, *, dataset: str = EMBEDDED, results_root=None,
              data: AVData | None = None) -> pd.DataFrame:
    """The run table of ``specs``: one :func:`run_row` per run, read from its finished run folder.

    Each run's recorded config and model must be the ones ``profile`` gives it, and with ``data`` its data
    and split the same (:func:`gapkit.runs.run_identity`); a run with other settings is a ``ValueError``
    naming each field that differs. Missing runs are a :class:`MissingRunError`
    naming them, the notebook that trains them and a command that trains the first of them.
    """
    root = run_root(profile.name, dataset, results_root)
    missing = [spec for spec in specs if not (root / spec.name / "metrics.json").exists()]
    if missing:
        raise MissingRunError(_missing_message(missing, profile, dataset, results_root))
    rows = []
    for spec in specs:
        folder = root / spec.name
        metrics = json.loads((folder / "metrics.json").read_text())
        expected = spec.config(profile)
        recorded = recorded_identity(metrics) or {}
        diff = identity_differences(recorded.get("config"), expected, "config")
        diff.update(identity_differences(recorded.get("model"), {"width": profile.width}, "model"))
        if data is not None:
            diff.update(identity_differences(recorded.get("data"), data.identity(), "data"))
        if diff:
            raise ValueError(f"{folder} holds a run that differs from what the {profile.name} profile gives it in "
                             + "; ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in diff.items())
                             + "; train it again (python -m gapkit train ... --force) or choose another results root")
        rows.append(run_row(spec, metrics, folder))
    return pd.DataFrame(rows)


def train_command(spec: RunSpec, profile: Profile, dataset: str = EMBEDDED, results_root=None) -> str | None:
    """The ``python -m gapkit train`` command line that trains ``spec`` into its folder (its parent must exist);
    ``None`` for a profile that is not one of the named ones."""
    if profile.name not in PROFILES:
        return None
    root = run_root(profile.name, dataset, results_root)
    base, mine = get_profile(profile.name).to_dict(), profile.replace(**spec.overrides).to_dict()
    args = ["python", "-m", "gapkit", "train", "--profile", profile.name, "--dataset", dataset,
            "--method", spec.method, "--seed", str(spec.seed)]
    for key, value in mine.items():
        if value != base[key] and key not in ("device", "workers", "runs_per_gpu"):
            args += ["--set", f"{key}={_cli_value(value)}"]
    for key, value in spec.options.items():
        args += ["--option", f"{key}={_cli_value(value)}"]
    if spec.parent is not None:
        args += ["--init-from", str(root / spec.parent / "warmup.pt")]
    args += ["--out", str(root / spec.name)]
    if dataset != EMBEDDED:
        args += ["--data-root", "PATH"]
    return shlex.join(args)


def _cli_value(value) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return value if isinstance(value, str) else json.dumps(value)


def _missing_message(missing: list[RunSpec], profile: Profile, dataset: str, results_root) -> str:
    root = run_root(profile.name, dataset, results_root)
    notebooks = sorted({STUDY_NOTEBOOKS.get(spec.study, "04_adaptive_training") for spec in missing})
    only = ",".join(nb[:2] for nb in notebooks)
    where = "" if dataset == EMBEDDED else f" --dataset {dataset} --data-root PATH"
    text = (f"{len(missing)} run(s) not trained yet in {root}: {', '.join(spec.name for spec in missing)}. "
            f"Notebook(s) {', '.join(notebooks)} train them: ./run_all.sh --profile {profile.name}{where} "
            f"--only {only} (or gapkit.studies.execute).")
    first = missing[0]
    parent = first.parent_spec()
    todo = [parent] if parent is not None and not (root / parent.name / "metrics.json").exists() else []
    commands = [train_command(spec, profile, dataset, results_root) for spec in [*todo, first]]
    if all(commands):
        text += " One run at a time: " + "; then ".join(commands)
    return text


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
    ``density_at_0``, ``fallback`` (why a single Gaussian was used, or ``None``), ``n_fit`` (the gaps fitted) and
    ``swapped`` (balanced component not the one nearest 0, :func:`gapkit.mixture.track_components`).
    """
    rows = []
    for row in runs.itertuples(index=False):
        for fit, g in enumerate(load_history(row.run_dir)["gmm"]):
            rows.append({"variant": row.variant, "seed": row.seed, "fit": fit, "step": g["step"], "epoch": g["epoch"],
                         "label": g["label"], "w_bal": g["weights"][0], "w_imb": g["weights"][1],
                         "mu_bal": g["means"][0], "mu_imb": g["means"][1], "var_bal": g["variances"][0],
                         "var_imb": g["variances"][1], "density_at_0": g["density_at_0"],
                         "fallback": g.get("fallback"), "n_fit": g.get("n_fit"), "swapped": bool(g.get("swapped"))})
    return pd.DataFrame(rows)


def load_gaps(run_dir) -> dict[str, np.ndarray]:
    """``gaps.npz`` of a run: ``fit0`` (after warm-up), ``fit1``, ... and the training ``labels``, in split order."""
    with np.load(Path(run_dir) / "gaps.npz") as z:
        return {k: z[k] for k in z.files}


def gap_bic(gaps: np.ndarray, seed: int = 0) -> dict:
    """BIC of a 1- and a 2-component Gaussian mixture on the gaps (lower is better; Section 3.2), and Hartigan's
    dip test of unimodality (``dip``, ``dip_p``: a small p rejects one mode). BIC favours two components for any
    skewed distribution; only the dip test asks whether there are two modes."""
    from diptest import diptest

    b1, b2 = bic(gaps, 1, seed), bic(gaps, 2, seed)
    dip, p = diptest(np.asarray(gaps, dtype=np.float64))
    return {"bic_1": b1, "bic_2": b2, "delta_bic": b1 - b2, "dip": float(dip), "dip_p": float(p)}


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

#: the test subsets of :func:`gapkit.reevaluate.per_sample_outcomes`: a sample whose w_imb (Eq. 9) exceeds
#: :data:`IMBALANCED_ABOVE` is "imbalanced" (the GMM's component 1, audio >> visual), every other one "balanced"
#: (component 0)
SUBSETS = ("balanced", "imbalanced")
IMBALANCED_ABOVE = 0.5


def per_sample_gain(outcomes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fused test accuracy (fraction) per run and subset of :func:`gapkit.reevaluate.per_sample_outcomes`, and its
    summary over seeds.

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
