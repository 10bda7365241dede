"""The studies (which runs each table needs, branching, reuse), the tables and the claims, on a tiny dataset."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fixtures_tiny import tiny_profile, tiny_split
from gapkit import paper, results, studies
from gapkit.data.base import AVData
from gapkit.notebook import UnknownParameterError, check_parameters, resolve_seeds, setup
from gapkit.profiles import Profile, get_profile
from gapkit.report import claims, gmm_claims, tables
from gapkit.training import selected_epoch, summarize


@pytest.fixture(scope="module")
def data():
    train = tiny_split(48, 0)
    degradation = {c: ("visual" if i % 5 == 0 else "audio" if i % 7 == 0 else "none") for i, c in enumerate(train.clips)}
    return AVData(train, tiny_split(12, 1), tiny_split(12, 2), ["a", "b", "c"],
                  info={"cache_key": "tiny", "degradation": degradation})


@pytest.fixture(scope="module")
def profile():
    return tiny_profile()


@pytest.fixture(scope="module")
def tables_runs(tmp_path_factory, profile, data, one_thread):
    root = tmp_path_factory.mktemp("studies")
    kw = dict(dataset="synthetic", results_root=root, log=None)
    t1 = studies.table1_runs(profile, data, methods=paper.BASELINE_AND_OURS, **kw)
    t2 = studies.ablation_runs(profile, data, [0], **kw)
    t3 = studies.optimizer_runs(profile, data, [0], **kw)
    return root, kw, t1, t2, t3


def test_plans_name_and_branch_runs(profile):
    t2 = studies.plan_ablations(profile, [1])
    assert [s.name for s in t2] == ["adaptive-seed1", "adaptive-alpha0-seed1", "adaptive-beta0-seed1",
                                    "adaptive-gamma0-seed1", "adaptive-useweightsFalse-seed1",
                                    "adaptive-weightcontrolgap-magnitude-seed1", "adaptive-weightcontrolshuffled-seed1"]
    assert [s.parent for s in t2] == [None] + ["adaptive-seed1"] * 6
    t3 = {s.variant: s for s in studies.plan_optimizers(profile, [0], adam_lr=3e-4)}
    assert t3["SGD (reset state)"].name == "adaptive-seed0" and t3["SGD (reset state)"].parent is None
    assert t3["SGD (same state)"].overrides == {"reset_optimizer": False}
    assert t3["SGD (same state)"].parent == "adaptive-seed0"
    assert t3["Adam (reset state)"].overrides == {"optimizer": "adam", "lr": 3e-4}
    assert t3["Adam (same state)"].parent == "adaptive-adam-seed0"
    t1 = studies.plan_table1(profile, methods=["concat", "adaptive", "pmr", "warmup-only"], peer_seeds=[0])
    assert [(s.method, s.seed) for s in t1] == [("concat", 0), ("concat", 1), ("adaptive", 0), ("adaptive", 1),
                                                ("pmr", 0), ("warmup-only", 0), ("warmup-only", 1)]
    assert [s.parent for s in t1] == [None] * 5 + ["adaptive-seed0", "adaptive-seed1"]  # controls branch


def test_studies_share_runs_and_branch_from_warmup(tables_runs):
    root, kw, t1, t2, t3 = tables_runs
    assert list(t1["variant"]) == ["Concat", "Concat", "Ours", "Ours"]
    full = t1[(t1["variant"] == "Ours") & (t1["seed"] == 0)].iloc[0]
    # the full model of Table 2 and SGD-reset of Table 3 are the Table 1 run itself
    assert t2.iloc[0]["run_dir"] == full["run_dir"] == t3.iloc[0]["run_dir"]
    assert t2.iloc[0]["test_acc"] == full["test_acc"]
    runs = root / "tiny" / "synthetic" / "runs"
    for name in ("adaptive-alpha0-seed0", "adaptive-keepstate-seed0"):
        m = json.loads((runs / name / "metrics.json").read_text())
        assert m["init_from"] == "../adaptive-seed0/warmup.pt"  # relative: the results folder can move
        # the branch starts from the shared warm-up: its first epochs are the parent's
        assert (json.loads((runs / name / "history.json").read_text())["epochs"][:2]
                == json.loads((runs / "adaptive-seed0" / "history.json").read_text())["epochs"][:2])
    m = json.loads((runs / "adaptive-adam-keepstate-seed0" / "metrics.json").read_text())
    assert m["config"]["optimizer"] == "adam" and m["config"]["reset_optimizer"] is False
    assert m["init_from"].endswith("adaptive-adam-seed0/warmup.pt")
    assert set(t3["optimizer"]) == {"sgd", "adam"}


def test_parallel_runs_equal_sequential_ones(tables_runs, profile, data, tmp_path):
    root, kw, t1, *_ = tables_runs  # trained by two worker processes of one thread each (profile.workers = 2)
    lines = []
    alone = studies.table1_runs(profile, data, methods=paper.BASELINE_AND_OURS,
                                **{**kw, "results_root": tmp_path, "workers": 1, "log": lines.append})
    columns = ["name", "test_acc", "test_acc_audio", "test_acc_visual", "best_val_epoch", "last_test_acc"]
    pd.testing.assert_frame_equal(alone[columns], t1[columns])
    assert sum(line.startswith("training ") for line in lines) == 4


def test_finished_runs_are_reused(tables_runs, profile, data):
    root, kw, t1, *_ = tables_runs
    lines = []
    again = studies.table1_runs(profile, data, methods=paper.BASELINE_AND_OURS, **{**kw, "log": lines.append})
    assert lines == []  # nothing trained
    pd.testing.assert_frame_equal(again, t1)


def test_results_read_without_training(tables_runs, profile, data):
    root, kw, t1, *_ = tables_runs
    plan = studies.plan_table1(profile, methods=paper.BASELINE_AND_OURS)
    pd.testing.assert_frame_equal(results.read_runs(plan, profile, results_root=root, data=data), t1)
    with pytest.raises(results.MissingRunError, match=r"pmr-seed0.*04_adaptive_training.*--only 04"):
        results.read_runs(studies.plan_table1(profile, methods=["pmr"]), profile, results_root=root)
    assert not (root / "tiny" / "synthetic" / "runs" / "pmr-seed0").exists()
    with pytest.raises(ValueError, match=r"config\.lr: 0\.05 there, 0\.5 here"):
        results.read_runs(studies.plan_warmup(profile), profile.replace(lr=0.5), results_root=root)


def test_missing_run_names_its_command(tmp_path):
    smoke = get_profile("smoke", lr=0.5)
    spec = studies.plan_optimizers(smoke, [0])[3]
    assert spec.variant == "Adam (same state)"
    runs = tmp_path / "smoke" / "synthetic" / "runs"
    command = results.train_command(spec, smoke, results_root=tmp_path)
    assert command == ("python -m gapkit train --profile smoke --dataset synthetic --method adaptive --seed 0 "
                       "--set optimizer=adam --set lr=0.001 --set reset_optimizer=false "
                       f"--init-from {runs}/adaptive-adam-seed0/warmup.pt --out {runs}/adaptive-adam-keepstate-seed0")
    with pytest.raises(results.MissingRunError) as missing:
        results.read_runs([spec], smoke, results_root=tmp_path)
    # the parent's warm-up is missing too: its command comes first
    assert f"--out {runs}/adaptive-adam-seed0; then python -m gapkit train" in str(missing.value)
    assert "06_optimizer_study" in str(missing.value)
    with pytest.raises(results.MissingRunError, match=r"Notebook\(s\) 02_warmup train them: .* --only 02 .*"
                                                      r"--method adaptive --seed 0 --set lr=0\.5 "):
        results.read_runs(studies.plan_warmup(smoke), smoke, results_root=tmp_path)


def test_aggregate_and_paired_differences():
    runs = pd.DataFrame({"variant": ["A", "A", "B", "B"], "seed": [0, 1, 0, 1], "test_acc": [0.5, 0.7, 0.4, 0.8],
                         "test_acc_audio": 0.1, "test_acc_visual": 0.2, "last_test_acc": 0.3})
    agg = results.aggregate(runs, columns=("test_acc", "last_test_acc")).set_index("variant")
    assert agg.loc["A", "test_acc_mean"] == pytest.approx(0.6)
    assert agg.loc["A", "test_acc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert agg.loc["B", "n_seeds"] == 2 and agg.loc["B", "seeds"] == "0,1"
    half = 12.706204736174698 * np.std([0.5, 0.7], ddof=1) / np.sqrt(2)  # t_{0.975, 1}
    assert (agg.loc["A", "test_acc_ci_low"], agg.loc["A", "test_acc_ci_high"]) == pytest.approx((0.6 - half, 0.6 + half))
    diff = results.paired_differences(runs, "A", "B", column="test_acc")
    assert diff.to_dict() == pytest.approx({0: 0.1, 1: -0.1})
    assert results.paired_differences(runs, "A", "C").empty  # C has no run


def test_mean_interval_by_hand():
    stats = results.mean_interval([0.5, 0.7, 0.6])
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t_{0.975, 2} std / sqrt(n) = 0.248414...
    assert half == pytest.approx(0.2484137711750329)
    assert stats["mean"] == pytest.approx(0.6) and stats["std"] == pytest.approx(0.1) and stats["n"] == 3
    assert (stats["ci_low"], stats["ci_high"]) == pytest.approx((0.6 - half, 0.6 + half))
    single = results.mean_interval([0.4, np.nan])  # NaN ignored: one value, no spread, no interval
    assert single["mean"] == 0.4 and single["n"] == 1 and np.isnan([single["std"], single["ci_low"]]).all()
    with pytest.raises(ValueError, match="got 95"):
        results.mean_interval([0.5, 0.7], level=95)


def _paired_runs(differences: list[float]) -> pd.DataFrame:
    """Variant "B" at 0.5 and "A" at 0.5 + difference, one seed per difference."""
    seeds = list(range(len(differences)))
    return pd.DataFrame({"variant": ["A"] * len(seeds) + ["B"] * len(seeds), "seed": seeds * 2,
                         "test_acc": [0.5 + d for d in differences] + [0.5] * len(seeds)})


@pytest.mark.parametrize("differences, status", [
    ([0.02, 0.03, 0.04], "holds"),  # mean 3 points, interval 3 -+ 2.48: excludes 0 in the paper's direction
    ([-0.02, -0.03, -0.04], "contradicted"),  # excludes 0 the other way
    # straddles 0: mean 2, std 3, interval 2 -+ 4.3027 * 3 / sqrt(3) = [-5.45, +9.45]
    ([0.05, -0.01, 0.02], "not resolved at 3 seeds"),
    ([0.05], "not resolved at 1 seed"),  # no interval
])
def test_comparison_status(differences, status):
    row = claims.comparison("A beats B", "Sec. 0", "-", _paired_runs(differences), "A", "B")
    assert row["status"] == status
    # the bound of a sign left open is a measurement (it moves with every re-run), not part of the status
    assert ("no difference larger than 9.5 points" in row["measured"]) == (differences == [0.05, -0.01, 0.02])
    assert "seed 0: " in row["measured"] and ("95% CI" in row["measured"]) == (len(differences) > 1)


def test_comparison_interval_in_points():
    row = claims.comparison("A beats B", "Sec. 0", "-", _paired_runs([0.02, 0.03, 0.04]), "A", "B")
    assert "A - B = +3.00 [95% CI +0.52, +5.48] points" in row["measured"]  # 3 -+ 4.3027 * 1 / sqrt(3)
    assert claims.comparison("A beats C", "Sec. 0", "-", _paired_runs([0.02]), "A", "C")["status"] == "not measured"


def test_threshold_claims_decide_on_the_interval():
    below = results.mean_interval([0.01, 0.02, 0.015])
    assert claims.decide(below, -1, gmm_claims.BALANCED_TOLERANCE) == "holds"
    assert claims.decide(below, +1, gmm_claims.BALANCED_TOLERANCE) == "contradicted"
    assert claims.decide(results.mean_interval([0.55, 0.7, 0.62]), +1, claims.AUROC_THRESHOLD) == "not resolved at 3 seeds"
    assert claims.all_of(["holds", "not resolved at 2 seeds"], 2) == "not resolved at 2 seeds"
    assert claims.all_of(["holds", "contradicted"], 2) == "contradicted"
    assert claims.all_of(["holds", "holds"], 2) == "holds"


def test_selection_never_picks_a_warmup_epoch():
    def epoch(i, phase, val, test):
        return {"epoch": i, "phase": phase, "val_acc": val, "test_acc": test, "test_acc_audio": 0,
                "test_acc_visual": 0, "seconds": 1.0}

    two_stage = {"epochs": [epoch(0, "warmup", 0.9, 0.8), epoch(1, "adaptive", 0.5, 0.4),
                            epoch(2, "adaptive", 0.6, 0.7), epoch(3, "adaptive", 0.6, 0.1)], "gmm": []}
    assert selected_epoch(two_stage["epochs"]) == 2  # earliest of the tied maxima
    summary = summarize(two_stage)
    assert summary["best_val_epoch"] == 2 and summary["test_acc"] == 0.7 and summary["last_test_acc"] == 0.1
    single = [epoch(0, "train", 0.9, 0.8), epoch(1, "train", 0.5, 0.4)]
    assert selected_epoch(single) == 0


def test_degradation_auroc():
    clips = [f"c{i}" for i in range(6)]
    record = {"c0": "visual", "c1": "visual", "c2": "audio", "c3": "none", "c4": "none", "c5": "none"}
    w = np.array([0.9, 0.8, 0.05, 0.1, 0.2, 0.3])
    out = results.degradation_auroc(w, clips, record)
    assert out["auroc_visual"] == 1.0 and out["auroc_audio"] == 0.0
    assert out["auroc_any"] == pytest.approx(6 / 9)
    assert (out["n_none"], out["n_audio"], out["n_visual"]) == (3, 1, 2)


def test_tables_and_claims(tables_runs, profile, data):
    root, kw, t1, t2, t3 = tables_runs
    t1 = studies.table1_runs(profile, data, methods=[*paper.BASELINE_AND_OURS, *paper.CONTROL_METHODS], **kw)
    t1_table = tables.table1(t1, "synthetic")
    assert t1_table.display["Method"].tolist() == [label for label, *_ in paper.TABLE1_ROWS]
    assert t1_table.display["Method"].tolist()[-3:] == ["Ours", "Warm-up loss throughout (control)",
                                                        "Warm-up loss + optimizer reset (control)"]
    by = t1_table.data.set_index("method")
    assert by.loc["PMR", "crema_d_reported"] == 68.55 and np.isnan(by.loc["PMR", "reproduced_mean"])
    assert by.loc["Ours", "n_seeds"] == 2 and 0 <= by.loc["Ours", "reproduced_mean"] <= 100
    ours_acc = 100 * t1.loc[t1["variant"] == "Ours", "test_acc"]
    assert (by.loc["Ours", "reproduced_ci_low"], by.loc["Ours", "reproduced_ci_high"]) == pytest.approx(
        (ours_acc.mean() - 12.706204736174698 * ours_acc.std() / np.sqrt(2),
         ours_acc.mean() + 12.706204736174698 * ours_acc.std() / np.sqrt(2)))
    cell = t1_table.display.set_index("Method").loc["Ours", "Synthetic reproduced (%)"]
    assert cell == (f"{by.loc['Ours', 'reproduced_mean']:.2f} ± {by.loc['Ours', 'reproduced_std']:.2f} "
                    f"[{by.loc['Ours', 'reproduced_ci_low']:.2f}, {by.loc['Ours', 'reproduced_ci_high']:.2f}]")
    assert t1_table.display.set_index("Method").loc["PMR", "Synthetic reproduced (%)"] == ""
    assert "2 seeds (0, 1)" in t1_table.caption and "95% Student-t" in t1_table.caption
    t2_table = tables.table2(t2, "synthetic")
    assert t2_table.display["Variant"].tolist() == [*paper.ABLATIONS, *paper.WEIGHT_CONTROLS]
    assert t2_table.display.set_index("Variant").loc["w_imb shuffled in the batch (control)", "AVE reported (%)"] == "-"
    assert "1 seed (0)" in t2_table.caption  # a single seed: the mean alone
    assert t2_table.display["Synthetic reproduced (%)"].str.fullmatch(r"\d+\.\d\d").all()
    ours = t1[t1["variant"] == "Ours"]
    summary = results.warmup_gmm_summary(ours, data)
    assert list(summary["seed"]) == [0, 1] and {"bic_1", "bic_2", "auroc_visual"} <= set(summary)
    table = claims.claims_table(fits=results.gmm_frame(ours), bic=summary, history=results.history_frame(ours),
                                table1=t1, table2=t2, table3=t3, auroc=summary[["seed", "auroc_visual", "auroc_audio",
                                                                                "auroc_any"]])
    statuses = {"holds", "contradicted", "not resolved at 1 seed", "not resolved at 2 seeds"}
    assert len(table.data) == 21
    assert all(status.split(";")[0] in statuses for status in table.data["status"])
    by_claim = table.data.set_index("claim")
    assert by_claim.loc["Ablation 'w/o GMM weights' lowers accuracy", "status"] == "not resolved at 1 seed"
    assert "seed 0" in table.data.loc[7, "measured"] and "seed 1" in table.data.loc[7, "measured"]
    assert (table.data["source"] == claims.CONTROLS_SOURCE).sum() == 6
    # the chance a re-run keeps each status: none for the rows decided seed by seed (dip test, BIC) or on several
    # intervals (Fig. 4) or at one seed; a probability for the others, summed into the caption's expectation
    rerun = table.data["rerun"]
    assert rerun.iloc[:2].isna().all() and rerun[table.data["claim"].str.startswith("Unimodal")].isna().all()
    assert rerun.notna().sum() > 0 and rerun.dropna().between(0, 1).all()
    assert (table.display["Re-run"] == "-").sum() == rerun.isna().sum()
    assert f"over the {rerun.notna().sum()} rows with a chance" in table.caption
    assert f"expected to change {(1 - rerun.dropna()).sum():.1f}" in table.caption
    paths = tables.save_table(table, root / "tables")
    assert paths["tex"].read_text().count(r"\\") == 22


def test_latex_and_markdown_escaping():
    frame = pd.DataFrame({"Method": ["D&R", "w/o |g|^2 (beta = 0)"], "Acc (%)": ["1.00 ± 0.50", "50_1"]})
    tex = tables.to_latex(frame, "Caption 100%", "x")
    assert r"D\&R" in tex and r"\^{}2" in tex and r"$\pm$" in tex and r"Caption 100\%" in tex and r"50\_1" in tex
    md = tables.to_markdown(frame)
    assert r"w/o \|g\|^2" in md and md.splitlines()[1] == "| :--- | ---: |"


def test_parameter_checks():
    injected = "# Parameters\nprofile = \"smoke\"\nseedz = [0]\n"
    with pytest.raises(UnknownParameterError, match="seedz"):
        check_parameters({"In": ["", "import os\nprofile = 'x'", injected]}, {"profile", "seeds"})
    check_parameters({"In": ["", "# Parameters\nprofile = \"smoke\"\n", "seedz = 1"]}, {"profile"})  # own cells: fine
    check_parameters({}, {"profile"})  # outside IPython: nothing to check
    p = Profile("x", seeds=(3, 4))
    assert resolve_seeds(None, p) == [3, 4]
    assert resolve_seeds("0,2", p) == [0, 2] and resolve_seeds([1], p) == [1] and resolve_seeds(5, p) == [5]
    assert resolve_seeds([], p, allow_empty=True) == []


def test_setup_resolves_profile_and_folders(tmp_path):
    ns = {"profile": "smoke", "dataset": "crema-d", "data_root": None, "device": "cpu", "seeds": None,
          "overrides": {"width": 2}, "results_root": str(tmp_path / "r"), "figures_root": str(tmp_path / "f"),
          "tables_root": str(tmp_path / "t")}
    nb = setup("02_warmup", ns)
    assert nb.profile.width == 2 and nb.profile.device == "cpu" and nb.seeds == list(nb.profile.seeds)
    assert nb.figures == tmp_path / "f" / "smoke" / "crema-d"
    assert nb.results_json == tmp_path / "r" / "smoke" / "crema-d" / "02_warmup.json"
    with pytest.raises(ValueError, match="unknown dataset"):
        setup("02_warmup", {**ns, "dataset": "cremad"})
    with pytest.raises(ValueError, match="unknown profile setting"):
        setup("02_warmup", {**ns, "overrides": {"widht": 2}})
    with pytest.raises(UnknownParameterError, match="does not define"):
        setup("02_warmup", {k: v for k, v in ns.items() if k != "seeds"})


def test_setup_gives_table3_and_the_readings_the_profiles_study_seeds_unless_seeds_are_given(tmp_path):
    ns = {"profile": "smoke", "dataset": "synthetic", "data_root": None, "device": "cpu", "seeds": None,
          "overrides": {"seeds": [0, 1, 2, 3], "study_seeds": [1, 3]}, "results_root": str(tmp_path / "r"),
          "figures_root": "", "tables_root": ""}
    nb = setup("06_optimizer_study", ns)
    assert nb.seeds == [0, 1, 2, 3] and nb.study_seeds == [1, 3]
    assert setup("06_optimizer_study", {**ns, "seeds": "0,2"}).study_seeds == [0, 2]  # given seeds: every study
    assert setup("06_optimizer_study", {**ns, "overrides": {"seeds": [5, 6]}}).study_seeds == [5, 6]  # none set
