"""Saved models evaluated again: the per-sample view and the GMM on validation gaps, and with them everything the
claims table is decided on (:func:`claim_inputs`).

Read-only like :mod:`gapkit.results` (nothing here trains), but where that module reads what the runs
wrote, this one rebuilds a run's models from its checkpoints (``warmup.pt``, ``best.pt``, ``last.pt``) and
evaluates them on a split, which takes seconds per model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data.base import AVData
from .mixture import GapMixture
from .profiles import Profile
from .paper import FULL_MODEL, REFERENCE_VARIANT, TABLE1_LABELS
from .results import (IMBALANCED_ABOVE, gmm_frame, history_frame, imbalance_weights, load_history, per_sample_gain,
                      warmup_gmm_summary, warmup_mixture)
from .runs import build_model, run_name
from .training import TrainConfig, Trainer, selected_epoch

#: the model :func:`validation_gmm_frame` compares with the warm-up model: file in the run folder and its label
FINAL_MODELS = {"last": ("last.pt", "final model (last.pt)"), "best": ("best.pt", "selected model (best.pt)")}


def load_run_model(run_dir, state_file: str, profile: Profile, data: AVData, device: str | None = None) -> Trainer:
    """A :class:`~gapkit.training.Trainer` holding the model of ``run_dir / state_file``, rebuilt as
    :func:`gapkit.runs.build_model` builds it for ``profile`` with the run's own config (``metrics.json``), so that
    its ``evaluate(split)`` gives the run's outputs. ``warmup.pt`` and ``last.pt`` are checkpoints (the model under
    ``"model"``), ``best.pt`` a bare state dict. The run must have been trained on ``data`` (its ``cache_key``)."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics["data"].get("cache_key") != data.info.get("cache_key"):
        raise ValueError(f"{run_dir / 'metrics.json'}: trained on data {metrics['data'].get('cache_key')!r}, "
                         f"not on this dataset ({data.info.get('cache_key')!r})")
    config = TrainConfig(**metrics["config"])
    trainer = Trainer(build_model(profile, data.num_classes, config.seed), data, config,
                      device=device or profile.device)
    state = torch.load(run_dir / state_file, map_location=trainer.device, weights_only=False)
    trainer.model.load_state_dict(state if state_file == "best.pt" else state["model"])
    return trainer


def warmup_checkpoint(run_dir) -> Path:
    """The ``warmup.pt`` a two-stage run started its adaptive phase from: its own, or for a run branched from another
    run's warm-up (Tables 2, 3, the controls) the one it was initialised from (``metrics.json`` ``init_from``)."""
    run_dir = Path(run_dir)
    init_from = json.loads((run_dir / "metrics.json").read_text()).get("init_from")
    path = (run_dir / init_from).resolve() if init_from else run_dir / "warmup.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the warm-up of {run_dir} (is it a two-stage run?)")
    return path


def validation_gmm_frame(runs: pd.DataFrame, profile: Profile, data: AVData, device: str | None = None,
                         final: str = "last") -> pd.DataFrame:
    """Eq. 8 fitted to the validation clips' gaps (Eq. 6) of each run's warm-up model and of its final model.

    The training-gap fits of :func:`gmm_frame` describe the gaps the adaptive loss itself was trained on; these
    describe clips no epoch trained on, so the Figure 3 claims can be decided on them too
    (:func:`gapkit.report.claims.gmm_claims`, ``validation_fits``). ``runs``: a run table of two-stage runs (Table 1's
    "Ours", Table 2's rows: ``variant``, ``seed``, ``run_dir``). The warm-up model is the ``warmup.pt`` the run
    started its adaptive phase from (:func:`warmup_checkpoint`; a branched run shares its parent's, evaluated once);
    the final model is ``last.pt`` (the end of training, the model of :func:`gmm_frame`'s last fit) or, with
    ``final="best"``, ``best.pt`` (the model selected by validation accuracy, which the tables report). Each model is
    evaluated in eval mode on the validation split (:func:`load_run_model`) and a fresh
    :class:`~gapkit.mixture.GapMixture` (seeded by the run's seed, balanced component nearest 0, as Algorithm 1's
    fits under the default reading) is fitted to its gaps; a split too small for two components falls back to one
    Gaussian (``fallback``), as the trainer's fits do.

    Two rows per run, in :func:`gmm_frame`'s columns: ``fit`` 0 (warm-up model) and 1 (final model), ``step``
    (adaptive steps begun before the model was saved: 0 for the warm-up model, ``adaptive_steps`` for ``last.pt``,
    the selected epoch's step + 1 for ``best.pt``), ``epoch`` (epochs trained), ``label``, ``w_bal``, ``w_imb``,
    ``mu_bal``, ``mu_imb``, ``var_bal``, ``var_imb``, ``density_at_0``, ``fallback``, ``n_fit`` (the validation gaps
    fitted), ``swapped`` (always False), plus ``model`` (the checkpoint's path). Per seed, ``fit`` 0 against ``fit``
    1 is the before/after of mu_imb, w_imb and the density at 0.
    """
    if final not in FINAL_MODELS:
        raise ValueError(f"final must be one of {sorted(FINAL_MODELS)}, got {final!r}")
    final_file, final_label = FINAL_MODELS[final]
    fitted: dict[Path, dict] = {}

    def fit(run_dir: Path, state_file: str, seed: int) -> dict:
        path = (run_dir / state_file).resolve()
        if path not in fitted:
            gaps = load_run_model(run_dir, state_file, profile, data, device).evaluate("val").gaps()
            mix = GapMixture(seed=seed).fit(gaps.numpy().astype(np.float32))
            fitted[path] = {"w_bal": float(mix.weights[0]), "w_imb": float(mix.weights[1]),
                            "mu_bal": float(mix.means[0]), "mu_imb": float(mix.means[1]),
                            "var_bal": float(mix.variances[0]), "var_imb": float(mix.variances[1]),
                            "density_at_0": float(mix.density([0.0])[0]), "fallback": mix.fallback,
                            "n_fit": mix.n_fit, "swapped": False, "model": str(path)}
        return fitted[path]

    rows = []
    for row in runs.itertuples(index=False):
        run_dir, seed = Path(row.run_dir), int(row.seed)
        history = load_history(run_dir)
        config = history["config"]
        warmup = warmup_checkpoint(run_dir)
        if final == "last":
            step, epoch = config["adaptive_steps"], len(history["epochs"])
        else:
            best = selected_epoch(history["epochs"])
            step, epoch = history["epochs"][best]["step"] + 1, best + 1  # the steps begun by the selected epoch
        for i, (folder, state_file, label, at_step, at_epoch) in enumerate([
                (warmup.parent, warmup.name, "warm-up model (warmup.pt)", 0, config["warmup_epochs"]),
                (run_dir, final_file, final_label, step, epoch)]):
            rows.append({"variant": row.variant, "seed": seed, "fit": i, "step": at_step, "epoch": at_epoch,
                         "label": label, **fit(folder, state_file, seed)})
    return pd.DataFrame(rows)


def per_sample_outcomes(runs: pd.DataFrame, profile: Profile, data: AVData, device: str | None = None) -> pd.DataFrame:
    """Every test sample's fused prediction before and after each run of ``runs``, and the subset it belongs to.

    The partition of seed s is fixed by the adaptive run ``adaptive-seed<s>`` (in the folder of ``runs``' run
    folders): its warm-up model (``warmup.pt``) gives each test sample's gap g_i (Eq. 6) and its post-warm-up GMM
    (Eq. 8, :func:`warmup_mixture`) the posterior w_imb = w_{i,1} (Eq. 9); the sample is "imbalanced" where
    w_imb > :data:`IMBALANCED_ABOVE`, else "balanced". "Before" is that warm-up model's fused prediction; "after",
    that of each run of ``runs`` (a Table 1 run table: ``variant``, ``seed``, ``method``, ``run_dir``), with the
    model selected by validation (``best.pt``) and the method's own modules and prediction rule. Both models are
    evaluated by :meth:`gapkit.training.Trainer.evaluate` with the run's own config (``metrics.json``), on a model
    built as :func:`gapkit.runs.build_model` builds it for ``profile``.

    One row per run and test sample, in split order: ``variant``, ``method``, ``seed``, ``sample`` (index in the
    test split), ``label``, ``gap``, ``w_imb``, ``subset``, ``pred_before``, ``pred_after``.
    """
    def test_outputs(run_dir: Path, state_file: str):
        return load_run_model(run_dir, state_file, profile, data, device).evaluate("test")

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


def claim_inputs(table1: pd.DataFrame, table2: pd.DataFrame, profile: Profile, data: AVData,
                 device: str | None = None) -> dict:
    """What :func:`gapkit.report.claims.claims_table` decides on besides the run tables, from the run tables of
    Tables 1 and 2 (``table1`` with concat, ours and the two Table 1 controls): the warm-up GMM's BIC, dip test and
    AUROC of Table 1's adaptive runs, their GMM fits and histories, Table 2's GMM fits, the GMM fitted to the
    validation gaps of the full model's and :data:`~gapkit.paper.REFERENCE_VARIANT`'s checkpoints, and the per-sample
    outcomes of Table 1's runs (both re-evaluated on ``device``)."""
    ours = table1[table1["variant"] == TABLE1_LABELS["adaptive"]]
    summary = warmup_gmm_summary(ours, data)
    auroc = summary[["seed", "auroc_any", "auroc_visual", "auroc_audio"]] if "auroc_visual" in summary else None
    reference = table2[table2["variant"].isin([FULL_MODEL, REFERENCE_VARIANT])]
    per_sample, _ = per_sample_gain(per_sample_outcomes(table1, profile, data, device=device))
    return {"fits": gmm_frame(ours), "bic": summary, "history": history_frame(ours), "auroc": auroc,
            "reference_fits": gmm_frame(table2),
            "validation_fits": validation_gmm_frame(reference, profile, data, device=device),
            "per_sample": per_sample}
