"""The GMM on validation gaps (reevaluate.validation_gmm_frame) and the claims with every optional input, tiny runs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures_tiny import tiny_profile, tiny_split
from gapkit import paper, reevaluate, results, studies
from gapkit.data.base import AVData
from gapkit.data.batches import iterate_batches
from gapkit.gap import collect_outputs
from gapkit.mixture import GapMixture
from gapkit.report import claims, gmm_claims
from gapkit.runs import build_model
from gapkit.training import selected_epoch

REFERENCE = "w/o GMM weights"


@pytest.fixture(scope="module")
def data():
    # 30 validation clips: enough for a two-component fit on most seeds
    return AVData(tiny_split(48, 0), tiny_split(30, 1), tiny_split(24, 2), ["a", "b", "c"], info={"cache_key": "tiny"})


@pytest.fixture(scope="module")
def profile():
    return tiny_profile()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, profile, data, one_thread):
    """Table 1 (concat, ours, the warm-up-loss control) and Table 2's full model and run without the GMM weights, for
    seeds 0 and 1; trained one at a time."""
    kw = dict(results_root=tmp_path_factory.mktemp("validation-gmm"), workers=1, log=None)
    t1 = studies.table1_runs(profile, data, methods=["concat", "adaptive", "warmup-only"], **kw)
    specs = [s for s in studies.plan_ablations(profile) if s.variant in ("Full model", REFERENCE)]
    t2 = studies.execute(specs, profile, data, **kw)
    return t1, t2


@pytest.fixture(scope="module")
def frame(runs, profile, data):
    return reevaluate.validation_gmm_frame(runs[1], profile, data)


def _val_fit(model_file, key, profile, data, seed) -> tuple[GapMixture, torch.Tensor]:
    """By hand: the model saved in ``model_file`` (``key``: where its state dict is), its validation gaps, the GMM."""
    model = build_model(profile, data.num_classes, seed)
    state = torch.load(model_file, weights_only=False)
    model.load_state_dict(state[key] if key else state)
    gaps = collect_outputs(model, iterate_batches(data.val, 16)).gaps()
    return GapMixture(seed=seed).fit(gaps.numpy().astype(np.float32)), model


def test_two_rows_per_run_with_gmm_frames_columns(frame, runs, profile):
    t2 = runs[1]
    assert len(frame) == 2 * len(t2)
    assert set(results.gmm_frame(t2).columns) - {"swapped"} <= set(frame.columns)
    for (variant, seed), one in frame.groupby(["variant", "seed"]):
        assert one["fit"].tolist() == [0, 1]
        assert one["label"].tolist() == ["warm-up model (warmup.pt)", "final model (last.pt)"]
        assert one["step"].tolist() == [0, profile.training.adaptive_steps]
        assert one["epoch"].tolist() == [profile.training.warmup_epochs, profile.training.total_epochs]
        assert (one["n_fit"] == 30).all()


def test_fits_are_hand_computed_on_the_validation_gaps(frame, runs, profile, data):
    t2 = runs[1].set_index(["variant", "seed"])
    for seed in profile.seeds:
        full = t2.loc[("Full model", seed), "run_dir"]
        # the warm-up model is the full run's own warmup.pt for both rows (the reference branched from it)
        warm, _ = _val_fit(f"{full}/warmup.pt", "model", profile, data, seed)
        for variant in ("Full model", REFERENCE):
            one = frame[(frame["variant"] == variant) & (frame["seed"] == seed)].set_index("fit")
            assert one.loc[0, "model"].endswith(f"{full.split('/')[-1]}/warmup.pt")
            assert one.loc[0, "w_imb"] == pytest.approx(warm.weights[1], abs=1e-9)
            assert one.loc[0, "mu_imb"] == pytest.approx(warm.means[1], abs=1e-9)
            assert one.loc[0, "density_at_0"] == pytest.approx(float(warm.density([0.0])[0]), rel=1e-9)
            run_dir = t2.loc[(variant, seed), "run_dir"]
            last, model = _val_fit(f"{run_dir}/last.pt", "model", profile, data, seed)
            assert one.loc[1, "w_imb"] == pytest.approx(last.weights[1], abs=1e-9)
            assert one.loc[1, "mu_imb"] == pytest.approx(last.means[1], abs=1e-9)
            assert one.loc[1, "density_at_0"] == pytest.approx(float(last.density([0.0])[0]), rel=1e-9)
            assert one.loc[1, "fallback"] == last.fallback
            # last.pt is the model of the trainer's last GMM fit: its training gaps are the ones that fit saw
            train_gaps = collect_outputs(model, iterate_batches(data.train, 16)).gaps().numpy()
            saved = results.load_gaps(run_dir)[f"fit{profile.training.adaptive_steps}"]
            np.testing.assert_allclose(train_gaps, saved, rtol=1e-5, atol=1e-6)
        # the two variants differ after training (different losses), not before
        both = frame[frame["seed"] == seed].set_index(["variant", "fit"])["mu_imb"]
        assert both[("Full model", 0)] == both[(REFERENCE, 0)]


def test_best_model_and_errors(runs, profile, data, tmp_path):
    t2 = runs[1]
    one = t2[(t2["variant"] == REFERENCE) & (t2["seed"] == 0)]
    best = reevaluate.validation_gmm_frame(one, profile, data, final="best").set_index("fit")
    fit, _ = _val_fit(f"{one['run_dir'].iloc[0]}/best.pt", None, profile, data, 0)
    assert best.loc[1, "label"] == "selected model (best.pt)"
    assert best.loc[1, "w_imb"] == pytest.approx(fit.weights[1], abs=1e-9)
    history = results.load_history(one["run_dir"].iloc[0])
    selected = selected_epoch(history["epochs"])
    assert best.loc[1, "epoch"] == selected + 1 and best.loc[1, "step"] == history["epochs"][selected]["step"] + 1
    with pytest.raises(ValueError, match="final must be one of"):
        reevaluate.validation_gmm_frame(one, profile, data, final="first")
    concat = runs[0][runs[0]["method"] == "concat"].head(1)
    with pytest.raises(FileNotFoundError, match="warmup.pt is missing"):
        reevaluate.validation_gmm_frame(concat, profile, data)
    other = AVData(data.train, data.val, data.test, data.classes, info={"cache_key": "other"})
    with pytest.raises(ValueError, match="trained on data 'tiny'"):
        reevaluate.validation_gmm_frame(one, profile, other)


def test_claims_table_with_every_optional_input(runs, frame, profile, data):
    t1, t2 = runs
    ours = t1[t1["variant"] == "Ours"]
    summary = results.warmup_gmm_summary(ours, data)
    base = dict(fits=results.gmm_frame(ours), bic=summary, history=results.history_frame(ours), table1=t1,
                table2=t2, table3=t1, profile="tiny")
    plain = claims.claims_table(**base).data
    per_sample, _ = results.per_sample_gain(reevaluate.per_sample_outcomes(t1, profile, data))
    full = claims.claims_table(**base, reference_fits=results.gmm_frame(t2), per_sample=per_sample,
                               validation_fits=frame).data
    assert len(full) == len(plain) + 3 + 2  # three evolution rows on validation gaps, two per-sample rows
    added = full[~full["claim"].isin(plain["claim"])]["claim"].tolist()
    assert added == [
        "The imbalanced component's weight pi_1 falls over the adaptive steps more than without the GMM weights",
        "The imbalanced component's mean moves toward 0 more than without the GMM weights",
        "The density at g = 0 rises more than without the GMM weights",
        *[f"{c} more than without the GMM weights (GMM fitted to the validation clips' gaps)"
          for c, *_ in gmm_claims.EVOLUTION_CLAIMS],
        "On the clips the warm-up GMM calls imbalanced, Ours gains more than Concat",
        "On the clips the warm-up GMM calls imbalanced, Ours gains more than the warm-up loss (Eq. 7) kept "
        "throughout from the same warm-up",
    ]
    # the evolution rows replaced, not added: as many rows as before, the three changed in place
    assert len(plain) - len(full[full["claim"].isin(plain["claim"])]) == 3
    statuses = full["status"].str.replace(r"; .*", "", regex=True)
    assert statuses.str.match(r"^(holds|contradicted|not measured|not resolved at \d+ seeds?)$").all()
    # the evolution decided against the reference agrees with a hand-made paired difference
    fits, ref = results.gmm_frame(ours), results.gmm_frame(t2[t2["variant"] == REFERENCE])
    def change(f):
        return f[f["fit"] == f["fit"].max()].set_index("seed")["w_imb"] - f[f["fit"] == 0].set_index("seed")["w_imb"]

    diff = change(fits) - change(ref)
    row = full[full["claim"].str.startswith("The imbalanced component's weight pi_1 falls over the adaptive steps "
                                            "more than")].iloc[0]
    assert row["status"] == claims.decide(results.mean_interval(diff, claims.LEVEL), -1)
    assert paper.TABLE1_LABELS["warmup-only"] in set(per_sample["variant"])
