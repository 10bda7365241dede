"""Figures are byte-stable (the same data give the same PNG and PDF bytes, whatever numpy's global generator holds)
and Figure 2 speaks the paper's numbering with its legend off the data."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from gapkit.mixture import GapMixture  # noqa: E402
from gapkit.report import figures  # noqa: E402


@pytest.fixture(scope="module")
def gaps():
    rng = np.random.default_rng(0)
    return np.clip(np.concatenate([rng.normal(0.0, 0.12, 400), rng.normal(0.55, 0.15, 100)]), -1, 1)


def _strip_plot(gaps):
    kinds = np.random.default_rng(1).choice(["none", "visual", "audio"], len(gaps))
    return figures.w_imb_by_degradation(np.abs(gaps), kinds, seed=0)


def _bars_and_dots(_):
    runs = pd.DataFrame({"variant": ["Concat", "Concat", "Ours", "Ours"], "seed": [0, 1, 0, 1],
                         "test_acc": [0.7, 0.72, 0.69, 0.71], "test_acc_audio": [0.6, 0.58, 0.6, 0.62],
                         "test_acc_visual": [0.3, 0.35, 0.4, 0.38]})
    return figures.table1_accuracy(runs)


def _figure2(gaps):
    return figures.fig2_gap_gmm(gaps, GapMixture(seed=0).fit(gaps))


@pytest.mark.parametrize("draw", [_strip_plot, _bars_and_dots, _figure2],
                         ids=["strip-plot", "bars-and-dots", "figure-2"])
def test_same_data_same_bytes(draw, gaps, tmp_path):
    for i, global_seed in enumerate((1, 2)):
        np.random.seed(global_seed)  # the strip plot's jitter draws from numpy's global generator
        fig = draw(gaps)
        after = np.random.random()
        np.random.seed(global_seed)
        assert after == np.random.random(), "drawing changed the caller's random state"
        figures.save_figure(fig, tmp_path / str(i), "f")
        plt.close(fig)
    for ext in ("png", "pdf"):
        first, second = ((tmp_path / str(i) / f"f.{ext}").read_bytes() for i in (0, 1))
        assert first == second, f"{ext} differs between two drawings of the same data"
    png, pdf = (tmp_path / "0" / "f.png").read_bytes(), (tmp_path / "0" / "f.pdf").read_bytes()
    assert b"tIME" not in png and b"Software" not in png
    assert b"CreationDate" not in pdf and b"Producer" not in pdf


def test_figure2_numbers_components_as_eq8_and_keeps_its_legend_off_the_data(gaps):
    fig = figures.fig2_gap_gmm(gaps, GapMixture(seed=0).fit(gaps))
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert any(label.startswith("component 0, balanced") for label in labels), labels
    assert any(label.startswith("component 1, imbalanced") for label in labels), labels
    assert not any("component 2" in label for label in labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0, "legend overlaps the axes"
    plt.close(fig)
