"""The paper's figures, redrawn from saved results with seaborn; file names carry the paper's numbering.

Every function takes tables or arrays that :mod:`gapkit.results` reads from the run folders and
returns a matplotlib Figure; :func:`save_figure` writes it as PNG (for the README) and PDF (for
papers), without timestamps so that an unchanged figure gives unchanged files. No training here.
"""
from __future__ import annotations

import textwrap
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..io import atomic_write_bytes
from ..mixture import GapMixture
from ..paper import GMM_REPORTED, dataset_label
from ..results import IMBALANCED_ABOVE

GAP_LABEL = r"modality gap $g = s^a_y - s^v_y$ (Eq. 6; difference of probabilities, no unit)"
DENSITY_LABEL = "probability density (per unit of g)"
MODALITY_COLUMNS = {"val_acc": "fused", "val_acc_audio": "audio", "val_acc_visual": "visual"}
MODALITY_PALETTE = {"fused": "#333333", "audio": "#1f77b4", "visual": "#ff7f0e"}


#: the seed of everything random in a drawing (seaborn's strip-plot jitter draws from numpy's global generator)
PLOT_SEED = 0


@contextmanager
def style():
    """The figures' look: seaborn's whitegrid at notebook scale; numpy's global generator seeded with
    :data:`PLOT_SEED` inside (and restored after), so that the same data give the same pixels."""
    state = np.random.get_state()
    np.random.seed(PLOT_SEED)
    try:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
            yield
    finally:
        np.random.set_state(state)


def figure_paths(directory, name: str) -> dict[str, Path]:
    """Where :func:`save_figure` writes: ``{"png": <directory>/<name>.png, "pdf": <directory>/<name>.pdf}``."""
    directory = Path(directory)
    return {"png": directory / f"{name}.png", "pdf": directory / f"{name}.pdf"}


def save_figure(fig: matplotlib.figure.Figure, directory, name: str, dpi: int = 150) -> None:
    """Write ``<directory>/<name>.png`` and ``.pdf`` (:func:`figure_paths`), without timestamps or software
    versions in their metadata, so that the same figure gives the same bytes. Returns nothing: a notebook cell
    that ends with it shows only the figure."""
    out = figure_paths(directory, name)
    options = {"png": {"dpi": dpi, "metadata": {"Software": None}},
               "pdf": {"metadata": {"CreationDate": None, "Creator": None, "Producer": None}}}
    for kind, kwargs in options.items():  # rendered in memory, then written whole: no half-written figure
        buffer = BytesIO()
        fig.savefig(buffer, format=kind, bbox_inches="tight", **kwargs)
        atomic_write_bytes(buffer.getvalue(), out[kind])


def _mixture(params) -> GapMixture:
    return params if isinstance(params, GapMixture) else GapMixture.from_dict(params)


# ---------------------------------------------------------------------------------------------- Figure 2

def fig2_gap_gmm(gaps: np.ndarray, params, *, dataset: str = "synthetic", seed: int | None = None,
                 bins: int = 60) -> matplotlib.figure.Figure:
    """Figure 2: histogram of the post-warm-up gaps, both weighted components (dashed) and their sum (Eq. 8).

    Components are numbered as in Eq. 8 and the tables: 0 balanced, 1 imbalanced (the paper's figure itself says
    "Component 1" and "Component 2"). The legend and the paper's values sit below the axes, off the data.
    """
    mix = _mixture(params)
    gaps = np.asarray(gaps, dtype=float)
    gaps = gaps[np.isfinite(gaps)]
    x = np.linspace(-1, 1, 1001)
    comp = mix.component_densities(x)
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 4.6))
        sns.histplot(gaps, bins=np.linspace(-1, 1, bins + 1), stat="density", color="#9ecae1", edgecolor="white",
                     linewidth=0.3, ax=ax, label=f"gaps of the {len(gaps)} training clips")
        colors = ("#d62728", "#2ca02c")
        names = ("balanced", "imbalanced")
        for k in range(2):
            mu, w = mix.means[k], mix.weights[k]
            ax.plot(x, comp[k], "--", color=colors[k], lw=2,
                    label=rf"component {k}, {names[k]}: $\mu_{k}$ = {mu:.4f}, $\pi_{k}$ = {w:.3f}")
            if w > 0:
                ax.axvline(mu, color=colors[k], ls=":", lw=1)
        ax.plot(x, comp.sum(0), "-", color="black", lw=1.2, label="mixture p(g) (Eq. 8)")
        ax.set_xlim(-1, 1)
        ax.set_xlabel(GAP_LABEL)
        ax.set_ylabel(DENSITY_LABEL)
        who = f", seed {seed}" if seed is not None else ""
        ax.set_title(f"Figure 2. GMM fit of the modality gap after warm-up ({dataset_label(dataset)}{who})")
        r = GMM_REPORTED
        note = (f"dotted: component means.  Paper (CREMA-D): $\\mu_0$ = {r['mu_bal']}, $\\pi_0$ = {r['w_bal']};  "
                f"$\\mu_1$ = {r['mu_imb']}, $\\pi_1$ = {r['w_imb']}")
        if mix.fallback:
            note += f"\nsingle-Gaussian fallback: {mix.fallback}"
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize=8, frameon=False,
                  title=note, title_fontsize=8)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- Figure 3

def _fit_label(fit: int) -> str:
    return "after warm-up" if fit == 0 else f"after adaptive step {fit}"


def fig3_gmm_evolution(fits: pd.DataFrame, *, seed: int | None = None,
                       dataset: str = "synthetic") -> matplotlib.figure.Figure:
    """Figure 3: the GMM density after warm-up and after each adaptive step (one seed, overlaid), and per step
    the imbalanced weight pi_1, the imbalanced mean mu_1 and the density at g = 0 (every seed).

    ``fits`` is :func:`gapkit.results.gmm_frame` of the adaptive runs.
    """
    seed = int(fits["seed"].iloc[0]) if seed is None else seed
    one = fits[fits["seed"] == seed].sort_values("fit")
    x = np.linspace(-1, 1, 1001)
    palette = sns.color_palette("viridis", len(one))
    with style():
        fig = plt.figure(figsize=(12, 5.2))
        grid = fig.add_gridspec(3, 2, width_ratios=(1.7, 1), hspace=0.5, wspace=0.25)
        ax = fig.add_subplot(grid[:, 0])
        for color, row in zip(palette, one.itertuples(index=False)):
            mix = GapMixture.from_dict({"weights": [row.w_bal, row.w_imb], "means": [row.mu_bal, row.mu_imb],
                                        "variances": [row.var_bal, row.var_imb]})
            ax.plot(x, mix.density(x), color=color, lw=2,
                    label=f"{_fit_label(row.fit)}: p(0) = {row.density_at_0:.2f}, $\\pi_1$ = {row.w_imb:.3f}")
        ax.set_xlim(-1, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel(GAP_LABEL)
        ax.set_ylabel(DENSITY_LABEL)
        ax.set_title(f"GMM density p(g) (Eq. 8), seed {seed}")
        ax.legend(fontsize=8, loc="upper left")
        panels = [("w_imb", r"imbalanced weight $\pi_1$"), ("mu_imb", r"imbalanced mean $\mu_1$"),
                  ("density_at_0", "density at g = 0")]
        several = fits["seed"].nunique() > 1
        for i, (key, label) in enumerate(panels):
            side = fig.add_subplot(grid[i, 1])
            sns.lineplot(data=fits, x="fit", y=key, hue="seed" if several else None, marker="o", ax=side,
                         palette="tab10" if several else None, legend=(i == 0 and several), errorbar=None)
            side.set_ylabel(label, fontsize=8)
            side.set_xlabel("adaptive steps done (0 = after warm-up)" if i == 2 else "")
            side.set_xticks(sorted(fits["fit"].unique()))
            if i == 0 and several:
                side.legend(title="seed", fontsize=7, title_fontsize=7, loc="upper right")
        fig.suptitle(f"Figure 3. Evolution of the GMM during adaptive training ({dataset_label(dataset)}; "
                     f"paper: density at 0 from about 3.3 to above 20)", y=0.99)
    return fig


# ---------------------------------------------------------------------------------------------- Figure 4

def accuracy_long(history: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """Per-epoch fused/audio/visual accuracy (%) of ``split`` in long form (one row per epoch and modality)."""
    cols = {f"{split}_acc": "fused", f"{split}_acc_audio": "audio", f"{split}_acc_visual": "visual"}
    long = history.melt(id_vars=["seed", "epoch", "phase", "step"], value_vars=list(cols), var_name="modality",
                        value_name="accuracy")
    long["modality"] = long["modality"].map(cols)
    long["accuracy"] *= 100
    long["epoch"] += 1  # 1-based: "after epoch 1"
    return long


def fig4_accuracy(history: pd.DataFrame, phase: str, *, dataset: str = "synthetic") -> matplotlib.figure.Figure:
    """Figure 4: fused, audio and visual validation accuracy per epoch over warm-up (a) or adaptive training (b),
    mean over seeds with a ±1 sd band when there are several.
    """
    part = history[history["phase"] == phase]
    long = accuracy_long(part)
    n = part["seed"].nunique()
    with style():
        fig, ax = plt.subplots(figsize=(7, 4.3))
        sns.lineplot(data=long, x="epoch", y="accuracy", hue="modality", palette=MODALITY_PALETTE, marker="o",
                     errorbar="sd" if n > 1 else None, ax=ax)
        if phase == "adaptive":
            for epoch in sorted(part.groupby("step")["epoch"].min())[1:]:
                ax.axvline(epoch + 0.5, color="grey", ls=":", lw=1)
            ax.text(0.01, 0.02, "dotted: GMM refitted (a new adaptive step)", transform=ax.transAxes, fontsize=8,
                    color="grey")
        last = long[long["epoch"] == long["epoch"].max()].groupby("modality")["accuracy"].mean()
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        letter, what = ("a", "warm-up") if phase == "warmup" else ("b", "adaptive training")
        seeds = f"mean ± sd over {n} seeds" if n > 1 else f"seed {int(part['seed'].iloc[0])}"
        ax.set_title(f"Figure 4({letter}). Validation accuracy during {what}\n({dataset_label(dataset)}, {seeds}; "
                     f"last epoch: audio - visual = {last['audio'] - last['visual']:+.1f} points)")
        ax.legend(title=None, loc="lower right")
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- Table 1

def wrap_label(name: str) -> str:
    """A method's name on lines of at most 16 characters, so that long ones (the controls) do not overlap."""
    return textwrap.fill(name, 16)


def table1_accuracy(runs: pd.DataFrame, *, dataset: str = "synthetic") -> matplotlib.figure.Figure:
    """Fused, audio-only and visual-only test accuracy (%) per method of Table 1 (as in the table: best validation
    epoch after warm-up): bars = mean, ticks = sd, dots = seeds."""
    cols = {"test_acc": "fused", "test_acc_audio": "audio", "test_acc_visual": "visual"}
    long = runs.melt(id_vars=["variant", "seed"], value_vars=list(cols), var_name="modality", value_name="accuracy")
    long["modality"] = long["modality"].map(cols)
    long["variant"] = long["variant"].map(wrap_label)
    long["accuracy"] *= 100
    n = runs["seed"].nunique()
    with style():
        fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * runs["variant"].nunique() + 3), 4.3))
        sns.barplot(data=long, x="variant", y="accuracy", hue="modality", palette=MODALITY_PALETTE,
                    errorbar="sd" if n > 1 else None, capsize=0.1, alpha=0.85, ax=ax)
        sns.stripplot(data=long, x="variant", y="accuracy", hue="modality", palette=MODALITY_PALETTE, dodge=True,
                      color="black", size=4, edgecolor="black", linewidth=0.6, legend=False, ax=ax)
        ax.set_xlabel("method")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"Table 1 methods: test accuracy per modality ({dataset_label(dataset)}, "
                     f"{'mean ± sd over ' + str(n) + ' seeds' if n > 1 else '1 seed'}; dots: seeds)")
        ax.legend(title="logits", loc="upper left", ncols=3)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- the data

def data_examples(data, *, per_class: int = 2, sample_rate: int | None = None, hop_length: int | None = None,
                  split: str = "train") -> matplotlib.figure.Figure:
    """A grid per class: the frames of ``per_class`` clips and their log-magnitude spectrograms (as cached)."""
    part = data.splits()[split]
    labels = part.labels.numpy()
    classes = data.classes
    with style(), sns.axes_style("white"):
        fig, axes = plt.subplots(2 * per_class, len(classes), figsize=(2.3 * len(classes), 2.1 * 2 * per_class),
                                 squeeze=False)
        for c, name in enumerate(classes):
            members = np.flatnonzero(labels == c)[:per_class]
            for k in range(per_class):
                ax_f, ax_s = axes[2 * k, c], axes[2 * k + 1, c]
                if k >= len(members):
                    ax_f.axis("off")
                    ax_s.axis("off")
                    continue
                i = int(members[k])
                frames = part.visual[i].permute(0, 2, 3, 1).numpy()  # T, H, W, 3
                ax_f.imshow(np.concatenate(list(frames), axis=1))
                ax_f.set_xticks([])
                ax_f.set_yticks([])
                ax_f.set_title(f"{name}: {part.clips[i]}", fontsize=7)
                spec = part.audio[i, 0].float().numpy()
                n_freq, n_time = spec.shape
                extent = None
                if sample_rate and hop_length:
                    extent = (0, n_time * hop_length / sample_rate, 0, sample_rate / 2000)
                ax_s.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=extent)
                ax_s.tick_params(labelsize=6)
                if c == 0:
                    ax_s.set_ylabel("frequency (kHz)" if extent else "frequency bin", fontsize=7)
                    ax_f.set_ylabel(f"{frames.shape[0]} frame(s)", fontsize=7)
                ax_s.set_xlabel("time (s)" if extent else "STFT frame", fontsize=7)
        fig.suptitle(f"Examples per class ({split} split): frames (rows 1, 3, ...) and log-magnitude spectrograms",
                     y=1.0)
        fig.tight_layout()
    return fig


def w_imb_by_degradation(w_imb: np.ndarray, kinds, *, auroc: dict | None = None, dataset: str = "synthetic",
                         seed: int | None = None) -> matplotlib.figure.Figure:
    """The imbalanced-component posterior w_imb (Eq. 9, after warm-up) of each training clip, by its recorded
    degradation (none / audio / visual): the imbalanced component should gather the visually degraded clips.
    """
    frame = pd.DataFrame({"w_imb": np.asarray(w_imb, dtype=float), "degraded": list(kinds)})
    order = [k for k in ("none", "visual", "audio") if k in set(frame["degraded"])]
    counts = frame["degraded"].value_counts()
    with style():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        sns.boxplot(data=frame, x="degraded", y="w_imb", order=order, color="#dddddd", showfliers=False, ax=ax)
        sns.stripplot(data=frame, x="degraded", y="w_imb", order=order, hue="degraded",
                      palette={"none": "#7f7f7f", "visual": MODALITY_PALETTE["visual"], "audio": MODALITY_PALETTE["audio"]},
                      size=2.5,
                      alpha=0.6, jitter=0.3, legend=False, ax=ax)
        ax.set_xticks(range(len(order)), [f"{k}\n(n = {counts[k]})" for k in order])
        ax.set_xlabel("degraded modality, as recorded by the corpus generator")
        ax.set_ylabel(r"$w_{imb}$ = posterior of the imbalanced component (0-1)")
        ax.set_ylim(-0.03, 1.03)
        who = f", seed {seed}" if seed is not None else ""
        title = f"Which clips does the imbalanced component flag? ({dataset_label(dataset)}{who})"
        if auroc:
            fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
            title += (f"\nAUROC vs undegraded: visual {fmt(auroc.get('auroc_visual'))}, "
                      f"audio {fmt(auroc.get('auroc_audio'))}, any {fmt(auroc.get('auroc_any'))}")
        ax.set_title(title)
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- per-sample view

SUBSET_PALETTE = {"balanced": "#2ca02c", "imbalanced": "#d62728"}


def per_sample_change(table: pd.DataFrame, *, dataset: str = "synthetic") -> matplotlib.figure.Figure:
    """Change of fused test accuracy (points) from the warm-up model to each method's selected model, on the test
    samples the post-warm-up GMM calls balanced (w_imb <= 0.5, Eq. 9) and imbalanced (w_imb > 0.5): bars = mean over
    each method's seeds, dots = seeds. ``table`` is the first table of :func:`gapkit.results.per_sample_gain`.
    """
    frame = table.assign(change=table["change"] * 100)
    n = frame["seed"].nunique()
    per_method = frame.groupby("variant")["seed"].nunique()
    seeds = (f"bars: mean over {n} seeds" if per_method.min() == n > 1 else "1 seed" if n == 1
             else f"bars: mean over each method's seeds ({per_method.min()} to {n})")
    sizes = frame.drop_duplicates(["seed", "subset"]).groupby("subset")["n_samples"].mean()
    order = [s for s in SUBSET_PALETTE if s in sizes.index]
    labels = {s: f"{s} (n = {sizes[s]:.0f})" if n == 1 else f"{s} (n = {sizes[s]:.1f} per seed on average)"
              for s in order}
    frame["subset"] = frame["subset"].map(labels)
    frame["variant"] = frame["variant"].map(wrap_label)
    palette = {labels[s]: SUBSET_PALETTE[s] for s in order}
    with style():
        fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * frame["variant"].nunique() + 3), 4.6))
        sns.barplot(data=frame, x="variant", y="change", hue="subset", hue_order=list(palette), palette=palette,
                    errorbar=None, alpha=0.8, ax=ax)
        sns.stripplot(data=frame, x="variant", y="change", hue="subset", hue_order=list(palette), palette=palette,
                      dodge=True, size=4, edgecolor="black", linewidth=0.6, legend=False, ax=ax)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("method (selected model: best validation epoch of its final stage)")
        ax.set_ylabel("fused test accuracy: after - warm-up (points)")
        ax.set_title(f"Where does the gain come from? Test samples split by the post-warm-up GMM\n"
                     f"({dataset_label(dataset)}; imbalanced: $w_{{imb}}$ > {IMBALANCED_ABOVE}, Eq. 9; "
                     f"{seeds}, dots: seeds)", fontsize=10)
        ax.legend(title="test samples", loc="best", fontsize=8)
        fig.tight_layout()
    return fig
