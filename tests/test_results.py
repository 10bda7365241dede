"""After the smoke run of the notebooks: every figure, table and results file exists and holds sane numbers."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from gapkit.report.claims import CONTROLS_SOURCE
from gapkit.paper import TABLE1_ROWS, TABLE2_REPORTED, TABLE3_REPORTED, WEIGHT_CONTROLS

FIGURES = ["data_examples", "fig2_gap_gmm", "fig3_gmm_evolution", "fig4a_warmup_accuracy", "fig4b_adaptive_accuracy",
           "table1_accuracy", "w_imb_degradation"]
TABLE_ROWS = {
    "table1": [label for label, *_ in TABLE1_ROWS],
    "table2": [*TABLE2_REPORTED, *WEIGHT_CONTROLS],
    "table3": list(TABLE3_REPORTED),
    "gmm_params": None,
    "claims": None,
    "data_splits": ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG", "total"],
    "data_degradation": ["none", "audio", "visual", "total"],
}
NOTEBOOK_RESULTS = ["01_data_prep", "02_warmup", "03_gmm_analysis", "04_adaptive_training", "05_ablations",
                    "06_optimizer_study"]


@pytest.fixture(scope="module")
def run(smoke_run):
    if not (smoke_run.tables / "smoke" / "claims.csv").exists():
        pytest.fail(f"the smoke run of the notebooks left no claims table:\n{smoke_run.output[-4000:]}")
    return smoke_run


def _csv(run, name) -> pd.DataFrame:
    return pd.read_csv(run.tables / "smoke" / f"{name}.csv", keep_default_na=False, na_values=[""])


@pytest.mark.parametrize("name", FIGURES)
def test_figure_files(run, name):
    png, pdf = (run.figures / "smoke" / f"{name}.{ext}" for ext in ("png", "pdf"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000


@pytest.mark.parametrize("name", sorted(TABLE_ROWS))
def test_table_files_and_rows(run, name):
    base = run.tables / "smoke" / name
    md, tex = (base.with_suffix(s).read_text() for s in (".md", ".tex"))
    frame = _csv(run, name)
    assert len(frame) > 0
    rows = TABLE_ROWS[name]
    if rows is not None:
        assert frame.iloc[:, 0].astype(str).tolist() == rows
        for row in rows:
            assert f"| {row.replace('|', chr(92) + '|')} |" in md
    assert md.count("\n|") >= len(frame) + 1 and "| :--- |" in md
    assert tex.count(r"\\") == len(frame) + 1 and r"\begin{tabular}" in tex and r"\bottomrule" in tex


@pytest.mark.parametrize("name", ["table1", "table2", "table3"])
def test_accuracy_tables(run, name):
    frame = _csv(run, name)
    reproduced = frame["reproduced_mean"].dropna()
    assert len(reproduced) >= {"table1": 2, "table2": 5, "table3": 4}[name]
    assert reproduced.between(0, 100).all() and frame["reproduced_std"].dropna().ge(0).all()
    measured = frame[frame["reproduced_mean"].notna()]
    several = measured["n_seeds"] >= 2  # a single seed has no interval
    assert measured.loc[~several, ["reproduced_ci_low", "reproduced_ci_high"]].isna().all().all()
    inside = measured[several]
    assert (inside["reproduced_ci_low"] <= inside["reproduced_mean"]).all()
    assert (inside["reproduced_mean"] <= inside["reproduced_ci_high"]).all()
    assert frame["crema_d_reported"].dropna().between(60, 90).all()  # the control rows have no reported value
    if name == "table1":
        ours = frame.set_index("method").loc[["Concat", "Ours"]]
        assert ours["reproduced_mean"].notna().all() and (ours["n_seeds"] >= 1).all()


def test_gmm_params_table(run):
    frame = _csv(run, "gmm_params").set_index("key")
    assert frame.loc["w_bal", "reproduced_mean"] + frame.loc["w_imb", "reproduced_mean"] == pytest.approx(1)
    for key in ("w_bal", "w_imb"):
        assert 0 <= frame.loc[key, "reproduced_mean"] <= 1
    for key in ("mu_bal", "mu_imb"):
        assert -1 <= frame.loc[key, "reproduced_mean"] <= 1  # gaps live in [-1, 1]
    assert abs(frame.loc["mu_bal", "reproduced_mean"]) <= abs(frame.loc["mu_imb", "reproduced_mean"])
    assert frame.loc["density_at_0", "reproduced_mean"] >= 0
    assert frame.loc["mu_bal", "paper"] == 0.0056 and frame.loc["w_imb", "paper"] == 0.143


def test_claims_table(run):
    frame = _csv(run, "claims")
    assert len(frame) == 26
    # the smoke profile runs one seed: no interval, so no claim is resolved either way
    assert set(frame["status"]) == {"not resolved at 1 seed"}
    assert frame["measured"].str.len().gt(10).all()
    assert (frame["source"].str.contains("Sec.") | (frame["source"] == CONTROLS_SOURCE)).all()
    assert (frame["source"] == CONTROLS_SOURCE).sum() == 7


@pytest.mark.parametrize("notebook", NOTEBOOK_RESULTS)
def test_results_json(run, notebook):
    values = json.loads((run.profile_results / f"{notebook}.json").read_text())
    assert values["notebook"] == notebook and values["profile"]["name"] == "smoke"
    for record in values.get("runs", []):
        for key in ("test_acc", "test_acc_audio", "test_acc_visual", "last_test_acc"):
            assert 0 <= record[key] <= 1, (notebook, record["name"], key)
        if record["method"] == "adaptive":  # the tables' selection never reports a warm-up epoch
            assert record["best_val_epoch"] >= 2, record["name"]  # smoke: 2 warm-up epochs


def test_scalar_results_in_range(run):
    r = run.profile_results
    data = json.loads((r / "01_data_prep.json").read_text())
    assert data["classes"] == ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
    assert sum(data["split_sizes"].values()) == 240  # the smoke corpus
    gmm = json.loads((r / "03_gmm_analysis.json").read_text())
    for fit in gmm["gmm_after_warmup"]:
        assert fit["w_bal"] + fit["w_imb"] == pytest.approx(1)
        assert fit["bic_1"] - fit["bic_2"] == pytest.approx(fit["delta_bic"])
    for key, value in gmm["auroc_mean"].items():
        assert 0 <= value <= 1, key
    table3 = json.loads((r / "06_optimizer_study.json").read_text())
    assert {row["optimizer"] for row in table3["runs"]} == {"sgd", "adam"}
    assert {row["lr"] for row in table3["runs"] if row["optimizer"] == "adam"} == {table3["adam_lr"]}


def test_run_folders(run):
    runs = run.results / "smoke" / "synthetic" / "runs"
    names = {p.name for p in runs.iterdir() if (p / "metrics.json").exists()}
    expected = {"adaptive-seed0", "concat-seed0", "adaptive-alpha0-seed0", "adaptive-beta0-seed0",
                "adaptive-gamma0-seed0", "adaptive-useweightsFalse-seed0", "adaptive-keepstate-seed0",
                "adaptive-adam-seed0", "adaptive-adam-keepstate-seed0", "warmup-only-seed0", "warmup-reset-seed0",
                "adaptive-weightcontrolgap-magnitude-seed0", "adaptive-weightcontrolshuffled-seed0"}
    assert expected <= names
    assert (runs / "adaptive-seed0" / "warmup.pt").exists() and (runs / "adaptive-adam-seed0" / "warmup.pt").exists()
    for name in expected:
        m = json.loads((runs / name / "metrics.json").read_text())
        assert 0 <= m["test_acc"] <= 1 and m["epochs"] == 4  # smoke: 2 warm-up + 2 x 1 adaptive epochs
        if name not in ("adaptive-seed0", "adaptive-adam-seed0", "concat-seed0"):
            assert m["init_from"].endswith("warmup.pt")  # branched from a shared warm-up
