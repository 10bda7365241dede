"""The per-sample view of notebook 04: test samples split by the post-warm-up GMM (Eq. 9), accuracy before/after."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures_tiny import tiny_profile, tiny_split
from gapkit import reevaluate, results, studies
from gapkit.data.base import AVData
from gapkit.data.batches import iterate_batches
from gapkit.runs import build_model
from gapkit.gap import collect_outputs
from gapkit.methods import make_method
from gapkit.mixture import GapMixture
from gapkit.report import figures

METHODS = ["concat", "mla", "adaptive"]  # mla adds a head to the model and predicts through it


@pytest.fixture(scope="module")
def data():
    return AVData(tiny_split(48, 0), tiny_split(12, 1), tiny_split(30, 2), ["a", "b", "c"], info={"cache_key": "tiny"})


@pytest.fixture(scope="module")
def profile():
    return tiny_profile()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, profile, data, one_thread):
    """A Table 1 run table: concat and ours for seeds 0 and 1, MLA (a peer) for seed 0; trained one at a time."""
    return studies.table1_runs(profile, data, methods=METHODS, peer_seeds=[0], workers=1, log=None,
                               results_root=tmp_path_factory.mktemp("per-sample"))


@pytest.fixture(scope="module")
def view(runs, profile, data):
    outcomes = reevaluate.per_sample_outcomes(runs, profile, data)
    return outcomes, *results.per_sample_gain(outcomes)


def _test_predictions(model, data, predict=None) -> np.ndarray:
    return collect_outputs(model, iterate_batches(data.test, 16), predict).logits.argmax(1).numpy()


def _warmup(runs, seed, profile, data):
    """By hand: the warm-up model of ``adaptive-seed<seed>`` and the w_imb (Eq. 9) of its test gaps (Eq. 6)."""
    run_dir = runs.set_index(["method", "seed"]).loc[("adaptive", seed), "run_dir"]
    model = build_model(profile, data.num_classes, seed)
    model.load_state_dict(torch.load(f"{run_dir}/warmup.pt", weights_only=False)["model"])
    outputs = collect_outputs(model, iterate_batches(data.test, 16))
    history = json.loads(open(f"{run_dir}/history.json").read())
    w_imb = GapMixture.from_dict(history["gmm"][0]).posteriors(outputs.gaps())[1].numpy()
    return model, w_imb


def test_outcomes_cover_every_run_and_test_sample(view, runs, data):
    outcomes, table, summary = view
    n = len(data.test)
    assert len(outcomes) == len(runs) * n
    for row in runs.itertuples():
        one = outcomes[(outcomes["method"] == row.method) & (outcomes["seed"] == row.seed)]
        assert one["sample"].tolist() == list(range(n))
        assert np.array_equal(one["label"].to_numpy(), data.test.labels.numpy())
    # per run, the two subsets partition the test set
    sizes = table.groupby(["method", "seed"])["n_samples"].sum()
    assert (sizes == n).all() and len(sizes) == len(runs)
    assert set(table["subset"]) == set(results.SUBSETS) and set(outcomes["subset"]) <= set(results.SUBSETS)


def test_partition_follows_the_warmup_gmm(view, runs, profile, data):
    outcomes, table, _ = view
    for seed in (0, 1):
        _, w_imb = _warmup(runs, seed, profile, data)
        mine = outcomes[outcomes["seed"] == seed]
        for method, one in mine.groupby("method"):  # every method of a seed shares its partition
            np.testing.assert_allclose(one["w_imb"].to_numpy(), w_imb, rtol=1e-5, atol=1e-7)
            assert (one["subset"] == np.where(w_imb > 0.5, "imbalanced", "balanced")).all()
        counts = table[(table["seed"] == seed)].set_index(["method", "subset"])["n_samples"]
        hand = {"imbalanced": int((w_imb > 0.5).sum()), "balanced": int((w_imb <= 0.5).sum())}
        for (method, subset), count in counts.items():
            assert count == hand[subset], (seed, method, subset)


def test_before_is_the_warmup_model(view, runs, profile, data):
    outcomes, table, _ = view
    for seed in (0, 1):
        model, _ = _warmup(runs, seed, profile, data)
        pred = _test_predictions(model, data)
        for _, one in outcomes[outcomes["seed"] == seed].groupby("method"):
            assert np.array_equal(one["pred_before"].to_numpy(), pred)
        # the subsets' accuracies weighted by their sizes give the warm-up model's test accuracy
        part = table[(table["seed"] == seed) & (table["method"] == "concat")]
        overall = np.nansum(part["accuracy_before"] * part["n_samples"]) / part["n_samples"].sum()
        assert overall == pytest.approx(np.mean(pred == data.test.labels.numpy()), abs=1e-6)


def test_after_is_the_selected_model_with_its_own_prediction(view, runs, profile, data):
    outcomes, table, _ = view
    for row in runs.itertuples():
        metrics = json.loads(open(f"{row.run_dir}/metrics.json").read())
        method = make_method(metrics["config"]["method"], **metrics["config"]["method_options"])
        model = build_model(profile, data.num_classes, row.seed)
        method.setup(model)
        model.load_state_dict(torch.load(f"{row.run_dir}/best.pt", weights_only=True))
        one = outcomes[(outcomes["method"] == row.method) & (outcomes["seed"] == row.seed)]
        assert np.array_equal(one["pred_after"].to_numpy(), _test_predictions(model, data, method.predict))
        part = table[(table["method"] == row.method) & (table["seed"] == row.seed)]
        overall = np.nansum(part["accuracy_after"] * part["n_samples"]) / part["n_samples"].sum()
        assert overall == pytest.approx(metrics["test_acc"], abs=1e-6)  # the accuracy Table 1 reports


def test_accuracies_are_hand_computed_from_predictions(view):
    outcomes, table, summary = view
    for row in table.itertuples():
        one = outcomes[(outcomes["method"] == row.method) & (outcomes["seed"] == row.seed)
                       & (outcomes["subset"] == row.subset)]
        assert row.n_samples == len(one)
        if len(one) == 0:
            assert np.isnan(row.accuracy_before) and np.isnan(row.accuracy_after) and np.isnan(row.change)
            continue
        before = sum(int(p == y) for p, y in zip(one["pred_before"], one["label"])) / len(one)
        after = sum(int(p == y) for p, y in zip(one["pred_after"], one["label"])) / len(one)
        assert row.accuracy_before == pytest.approx(before) and row.accuracy_after == pytest.approx(after)
        assert row.change == pytest.approx(after - before)
    # the summary: mean change over seeds per method and subset
    for row in summary.itertuples():
        mine = table[(table["method"] == row.method) & (table["subset"] == row.subset)]
        assert row.n_seeds == mine["seed"].nunique() == (1 if row.method == "mla" else 2)
        assert row.n_seeds_with_samples == mine["change"].notna().sum()
        if row.n_seeds_with_samples:
            assert row.change_mean == pytest.approx(mine["change"].mean())


def test_gain_on_a_hand_made_example():
    outcomes = pd.DataFrame({
        "variant": "Ours", "method": "adaptive", "seed": 0, "sample": range(5), "label": [0, 1, 2, 0, 1],
        "subset": ["balanced", "balanced", "imbalanced", "imbalanced", "imbalanced"],
        "pred_before": [0, 0, 2, 1, 1], "pred_after": [0, 1, 2, 0, 0]})
    table, summary = results.per_sample_gain(outcomes)
    got = table.set_index("subset")
    assert got.loc["balanced", "n_samples"] == 2 and got.loc["imbalanced", "n_samples"] == 3
    assert got.loc["balanced", "accuracy_before"] == 0.5 and got.loc["balanced", "accuracy_after"] == 1.0
    assert got.loc["imbalanced", "accuracy_before"] == pytest.approx(2 / 3)
    assert got.loc["imbalanced", "change"] == pytest.approx(0.0)
    assert summary.set_index("subset").loc["balanced", "change_mean"] == 0.5


def test_missing_warmup_is_named(runs, profile, data, tmp_path):
    lone = runs[runs["method"] == "concat"].head(1).assign(run_dir=str(tmp_path / "concat-seed0"))
    with pytest.raises(FileNotFoundError, match="adaptive-seed0.warmup.pt"):
        reevaluate.per_sample_outcomes(lone, profile, data)


def test_figure(view, tmp_path):
    fig = figures.per_sample_change(view[1])
    assert figures.save_figure(fig, tmp_path, "per_sample_change") is None  # a notebook cell shows nothing else
    paths = figures.figure_paths(tmp_path, "per_sample_change")
    assert paths["png"].stat().st_size > 5000 and paths["pdf"].read_bytes()[:5] == b"%PDF-"
