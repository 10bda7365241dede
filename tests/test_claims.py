"""The claims' decision rules on hand-made per-seed values: sign, paper's effect size, BIC and dip rules."""
import pandas as pd

from gapkit.report import claims


def _runs(diffs, base=70.0):
    rows = []
    for seed, d in enumerate(diffs):
        rows.append({"variant": "A", "seed": seed, "test_acc": (base + d) / 100})
        rows.append({"variant": "B", "seed": seed, "test_acc": base / 100})
    return pd.DataFrame(rows)


def test_an_interval_that_excludes_the_papers_effect_says_so():
    row = claims.comparison("A beats B", "Sec.", "paper", _runs([0.5, -0.4, 0.2, -0.1, 0.3]), "A", "B",
                            paper_effect=13.18)
    assert row["status"].startswith("not resolved at 5 seeds")
    assert "excludes the paper's +13.2" in row["status"]
    # mean +0.1, sd 0.35: t(4) = 2.776 -> half-width 0.44, interval [-0.34, +0.54]
    assert "no difference larger than 0.5 points" in row["status"]
    assert "smallest effect this interval detects: 0.4 points" in row["measured"]


def test_a_clear_effect_holds_and_a_reversed_one_is_contradicted():
    assert claims.comparison("c", "s", "p", _runs([3.0, 3.5, 2.5]), "A", "B", paper_effect=3.0)["status"] == "holds"
    row = claims.comparison("c", "s", "p", _runs([-3.0, -3.5, -2.5]), "A", "B", paper_effect=13.18)
    assert row["status"] == "contradicted; excludes the paper's +13.2"
    assert "inside" not in row["measured"]


def test_bic_and_dip_are_decided_seed_by_seed():
    fits = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "fit": [0, 0, 0, 1, 1, 1],
                         "mu_bal": [0.01] * 6, "mu_imb": [0.5] * 6, "w_imb": [0.2] * 6,
                         "density_at_0": [3.0] * 6, "fallback": [None] * 6})
    # three seeds favouring two components by +38 to +208 decide the BIC claim (an interval over them would not)
    bic = pd.DataFrame({"seed": [0, 1, 2], "bic_1": [138.0, 308.0, 200.0], "bic_2": [100.0, 100.0, 100.0],
                        "dip_p": [0.001, 0.3, 0.01]})
    rows = claims.gmm_claims(fits, bic)
    assert rows[0]["status"] == "not resolved at 3 seeds"  # the dip test rejects one mode at two seeds of three
    assert rows[1]["status"] == "holds"
    bic["dip_p"] = [0.5, 0.4, 0.9]
    bic["bic_2"] = [150.0, 320.0, 230.0]
    rows = claims.gmm_claims(fits, bic)
    assert rows[0]["status"] == "contradicted" and rows[1]["status"] == "contradicted"
    assert claims.gmm_claims(fits.iloc[[0, 3]], bic.iloc[[0]])[0]["status"] == "not resolved at 1 seed"
