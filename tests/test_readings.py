"""The readings of Algorithm 1 (the adaptive method's options for the choices the paper leaves open), each watched
where it acts: the lambda_t inside Eq. 10, the posteriors handed to it, the GMM's labels, the gradient of the gap
terms, the gaps the GMM is fitted to and the clips adaptive training sees; then the readings study and its table."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import gapkit.methods.adaptive as adaptive_module
from fixtures_tiny import tiny_split
from gapkit import paper, results, studies
from gapkit.data.base import AVData
from gapkit.gap import modality_gap, one_sided_gap
from gapkit.losses import adaptive_loss
from gapkit.methods import Context, check_method_options, make_method
from gapkit.methods.adaptive import HELD_OUT_FRACTION, READING_CHOICES, Adaptive, held_out_clips
from gapkit.mixture import GapMixture, track_components
from gapkit.models import AVClassifier
from gapkit.profiles import Profile
from gapkit.report import tables
from gapkit.training import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return AVData(tiny_split(48, 0), tiny_split(12, 1), tiny_split(12, 2), ["a", "b", "c"], info={"cache_key": "tiny"})


def _trainer(data, out_dir=None, **options):
    config = TrainConfig(method="adaptive", method_options=options, warmup_epochs=2, adaptive_steps=2,
                         adaptive_epochs=2, batch_size=16, lr=0.05, seed=0)
    torch.manual_seed(0)
    return Trainer(AVClassifier(3, width=2), data, config, device="cpu", out_dir=out_dir)


def _watch_steps(monkeypatch):
    """Record the context of every adaptive mini-batch: (global epoch, phase, the batch's clip indices)."""
    seen = []
    real = Adaptive.training_step

    def step(self, model, audio, visual, y, ctx):
        seen.append((ctx.epoch, ctx.phase, ctx.batch_index.clone()))
        return real(self, model, audio, visual, y, ctx)

    monkeypatch.setattr(Adaptive, "training_step", step)
    return seen


def _watch_loss(monkeypatch):
    """Record every call of Eq. 10 by the method: its arguments, and the lambda_t it applies, read back from the loss
    itself (with alpha = 0, beta = 1, gamma = 0 Eq. 10 is lambda_t * mean(g^2))."""
    real = adaptive_module.adaptive_loss
    calls = []

    def loss(logits, logits_a, logits_v, y, mix, epoch, **kw):
        with torch.no_grad():
            g = modality_gap(logits_a, logits_v, y)
            probe = real(logits, logits_a, logits_v, y, mix, epoch, alpha=0.0, beta=1.0, gamma=0.0)
            calls.append({"lambda": probe.item() / (g ** 2).mean().item(), "g": g.clone(), "mix": mix, **kw})
        return real(logits, logits_a, logits_v, y, mix, epoch, **kw)

    monkeypatch.setattr(adaptive_module, "adaptive_loss", loss)
    return calls


# --- options -------------------------------------------------------------------------------------------------------

def test_each_reading_is_an_option_with_the_current_behaviour_as_default():
    method = make_method("adaptive")
    assert {k: method.options[k] for k in READING_CHOICES} == {
        "lambda_epoch": "continued", "posteriors": "batch", "components": "nearest-zero", "penalty": "symmetric",
        "gap_source": "train"}
    for option, values in READING_CHOICES.items():
        for value in values:
            check_method_options("adaptive", {option: value})
        with pytest.raises(ValueError, match=rf"option {option} = 'nope' of method 'adaptive': expected one of "
                                             + ", ".join(f"'{v}'" for v in values)):
            check_method_options("adaptive", {option: "nope"})
    with pytest.raises(ValueError, match="lambda_epoch = 'epoch'"):
        TrainConfig(method="adaptive", method_options={"lambda_epoch": "epoch"})
    with pytest.raises(ValueError, match="weight_control = 'random'"):
        make_method("adaptive", weight_control="random")


# --- lambda_epoch --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reading, exponents", [("continued", [0, 1, 2, 3]), ("per-step", [0, 1, 0, 1]),
                                                ("global", [2, 3, 4, 5])])
def test_lambda_used_by_the_loss_under_each_reading(data, monkeypatch, reading, exponents):
    """Warm-up 2 epochs, then 2 steps x 2 epochs: the lambda_t inside Eq. 10 at every mini-batch of each epoch."""
    steps = _watch_steps(monkeypatch)
    calls = _watch_loss(monkeypatch)
    result = _trainer(data, lambda_epoch=reading).fit()
    adaptive = [epoch for epoch, phase, _ in steps if phase == "adaptive"]
    assert len(adaptive) == len(calls) == 4 * 3  # 48 clips in batches of 16
    per_epoch = {}
    for epoch, call in zip(adaptive, calls):
        per_epoch.setdefault(epoch, []).append(call["lambda"])
    assert sorted(per_epoch) == [2, 3, 4, 5]
    for epoch, t in zip((2, 3, 4, 5), exponents):
        assert per_epoch[epoch] == pytest.approx([0.96 ** t] * 3, rel=1e-5), epoch
    # the history's record agrees with what the loss used
    assert [e["lambda_t"] for e in result.history["epochs"][2:]] == pytest.approx([0.96 ** t for t in exponents])


# --- posteriors ----------------------------------------------------------------------------------------------------

def _normal(x, mu, var):
    return math.exp(-(x - mu) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)


def test_collected_posteriors_are_eq9_of_the_collected_gaps_looked_up_by_index():
    mix = GapMixture.from_dict({"weights": [0.7, 0.3], "means": [0.0, 0.4], "variances": [0.02, 0.05]})
    collected = torch.tensor([0.3, -0.1, 0.05, 0.6, 0.2])
    ctx = Context(epoch=3, phase="adaptive", mixture=mix, train_gaps=collected, batch_index=torch.tensor([3, 0, 2]))
    batch_gaps = torch.tensor([-0.5, -0.5, -0.5])  # what the batch itself shows: ignored by "collected"
    w_bal, w_imb = Adaptive(posteriors="collected").posteriors(batch_gaps, ctx)
    for i, x in enumerate([0.6, 0.3, 0.05]):
        p0, p1 = 0.7 * _normal(x, 0.0, 0.02), 0.3 * _normal(x, 0.4, 0.05)
        assert w_imb[i].item() == pytest.approx(p1 / (p0 + p1), rel=1e-5)
        assert w_bal[i].item() == pytest.approx(p0 / (p0 + p1), rel=1e-5)
    # the batch reading takes the batch's own gaps
    torch.testing.assert_close(Adaptive().posteriors(batch_gaps, ctx)[1], mix.posteriors(batch_gaps)[1])


def test_collected_posteriors_in_the_loop_come_from_the_step_fit_gaps(data, monkeypatch):
    steps = _watch_steps(monkeypatch)
    calls = _watch_loss(monkeypatch)
    result = _trainer(data, posteriors="collected").fit()
    adaptive = [(epoch, index) for epoch, phase, index in steps if phase == "adaptive"]
    assert len(adaptive) == len(calls) == 12
    differ = 0.0
    for (epoch, index), call in zip(adaptive, calls):
        step = (epoch - 2) // 2
        fit = result.history["gmm"][step]
        assert call["mix"].to_dict()["means"] == fit["means"]
        # the gaps the trainer collected for this step's fit, in split order, looked up by the batch's clips
        gaps = torch.from_numpy(result.gaps[step])[index]
        w_bal, w_imb = call["weights"]
        torch.testing.assert_close(w_imb, GapMixture.from_dict(fit).posteriors(gaps)[1])
        torch.testing.assert_close(w_bal + w_imb, torch.ones_like(w_bal))
        differ = max(differ, (w_imb - call["mix"].posteriors(call["g"])[1]).abs().max().item())
    assert differ > 1e-4  # not the batch's train-mode gaps


# --- components ----------------------------------------------------------------------------------------------------

def _two_cohorts(mu_big, mu_small, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    big = int(0.7 * n)
    return np.concatenate([rng.normal(mu_big, 0.03, big), rng.normal(mu_small, 0.03, n - big)])


def test_tracked_labels_stay_with_their_component_when_nearest_zero_swaps():
    previous = GapMixture(seed=0).fit(_two_cohorts(0.02, 0.5))
    assert previous.means == pytest.approx([0.02, 0.5], abs=0.01) and not previous.swapped
    # the big cohort moved to -0.15 and the small one to 0.1: nearest zero now names the small one balanced
    gaps = _two_cohorts(-0.15, 0.1, seed=1)
    nearest = GapMixture(seed=0).fit(gaps)
    assert nearest.means == pytest.approx([0.1, -0.15], abs=0.01) and not nearest.swapped
    tracked = track_components(GapMixture(seed=0).fit(gaps), previous)
    assert tracked.means == pytest.approx([-0.15, 0.1], abs=0.01) and tracked.weights[0] == pytest.approx(0.7, abs=0.02)
    assert tracked.swapped and tracked.to_dict()["swapped"] and GapMixture.from_dict(tracked.to_dict()).swapped
    g = torch.tensor([-0.15, 0.1, 0.5])
    torch.testing.assert_close(tracked.posteriors(g)[0], nearest.posteriors(g)[1])
    # stable: the next fit of the same cohorts keeps the tracked labels (a swap relative to nearest zero again)
    again = track_components(GapMixture(seed=0).fit(_two_cohorts(-0.15, 0.1, seed=2)), tracked)
    assert again.means[0] == pytest.approx(-0.15, abs=0.01) and again.swapped
    # the first fit, a fit that needs no swap and a single-Gaussian fallback are never swapped
    assert not track_components(GapMixture(seed=0).fit(gaps), None).swapped
    assert not track_components(GapMixture(seed=0).fit(_two_cohorts(0.0, 0.45, seed=3)), previous).swapped
    fallback = track_components(GapMixture().fit(np.zeros(5)), previous)
    assert fallback.fallback and not fallback.swapped and fallback.weights.tolist() == [1.0, 0.0]


def test_tracked_reading_fits_through_the_method_and_counts_its_swaps(data):
    previous = GapMixture(seed=0).fit(_two_cohorts(0.02, 0.5))
    gaps = _two_cohorts(-0.15, 0.1, seed=1).astype(np.float32)
    assert Adaptive(components="tracked").fit_mixture(gaps, previous, 0).swapped
    assert not Adaptive().fit_mixture(gaps, previous, 0).swapped
    result = _trainer(data, components="tracked").fit()
    assert all("swapped" in fit for fit in result.history["gmm"])
    spec = results.RunSpec("readings", "tracked", 0, "adaptive", "x")
    metrics = {**result.summary(), "config": result.config.to_dict()}
    metrics["gmm"] = [{**fit, "swapped": i == 1} for i, fit in enumerate(metrics["gmm"])]
    assert results.run_row(spec, metrics, "x")["component_swaps"] == 1


# --- penalty -------------------------------------------------------------------------------------------------------

def test_one_sided_gap_has_the_gap_value_and_the_weaker_modality_gradient():
    l_a = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 0.0]], requires_grad=True)
    l_v = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 2.0], [1.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 0, 0])
    g = modality_gap(l_a, l_v, y)
    audio_stronger = (g > 0).tolist()
    assert audio_stronger == [True, False, True, False]
    mix = GapMixture.from_dict({"weights": [0.8, 0.2], "means": [0.05, 0.5], "variances": [0.01, 0.04]})
    symmetric = adaptive_loss(l_a + l_v, l_a, l_v, y, mix, epoch=1, alpha=0.0)
    one_sided = adaptive_loss(l_a + l_v, l_a, l_v, y, mix, epoch=1, alpha=0.0, penalty="one-sided")
    assert one_sided.item() == pytest.approx(symmetric.item(), rel=1e-6)
    torch.testing.assert_close(one_sided_gap(l_a, l_v, y), g)
    one_sided.backward()
    for i, stronger_is_audio in enumerate(audio_stronger):
        stronger, weaker = (l_a, l_v) if stronger_is_audio else (l_v, l_a)
        assert torch.equal(stronger.grad[i], torch.zeros(2)), i         # the stronger modality is a constant
        assert weaker.grad[i].abs().sum() > 0, i
    # on the weaker logits the gradient is the symmetric one's: only the stronger side is cut
    l_a.grad = l_v.grad = None
    symmetric = adaptive_loss(l_a + l_v, l_a, l_v, y, mix, epoch=1, alpha=0.0)
    symmetric.backward()
    assert all(l_a.grad[i].abs().sum() > 0 and l_v.grad[i].abs().sum() > 0 for i in range(4))
    with pytest.raises(ValueError, match="unknown penalty"):
        adaptive_loss(l_a + l_v, l_a, l_v, y, mix, epoch=1, penalty="both")


def test_one_sided_penalty_reaches_only_the_weaker_modality_head_of_the_model(data):
    torch.manual_seed(0)
    model = AVClassifier(3, width=2).eval()  # eval: batch norm does not mix the samples
    s = data.train
    audio, visual, y = s.audio.float(), (s.visual.float() / 255 - 0.5) / 0.25, s.labels
    with torch.no_grad():
        g = modality_gap(*model(audio, visual)[1:], y)
    audio_stronger = g > 0
    assert 2 <= audio_stronger.sum() <= len(g) - 2
    mix = GapMixture.from_dict({"weights": [0.8, 0.2], "means": [0.0, 0.5], "variances": [0.01, 0.04]})
    method = Adaptive(alpha=0.0, penalty="one-sided")
    ctx = Context(epoch=2, phase="adaptive", mixture=mix)
    d = model.feature_dim
    for rows, stronger, weaker in ((audio_stronger, "audio_encoder", "visual_encoder"),
                                   (~audio_stronger, "visual_encoder", "audio_encoder")):
        model.zero_grad()
        method.training_step(model, audio[rows], visual[rows], y[rows], ctx).loss.backward()
        grads = {name: sum(p.grad.abs().sum().item() for p in getattr(model, name).parameters())
                 for name in ("audio_encoder", "visual_encoder")}
        assert grads[stronger] == 0 and grads[weaker] > 0
        head = model.fusion.weight.grad
        stronger_cols, weaker_cols = (head[:, :d], head[:, d:]) if stronger == "audio_encoder" else (head[:, d:],
                                                                                                    head[:, :d])
        assert stronger_cols.abs().sum() == 0 and weaker_cols.abs().sum() > 0


def test_training_step_hands_eq10_the_weights_its_options_ask_for(data):
    """The weights inside the step's Eq. 10: a weight control's (computed from Eq. 9 on the batch's gaps), none
    (every weight 1) without weights whatever the posteriors reading, and the collected gaps' Eq. 9 under
    ``posteriors="collected"``."""
    from gapkit.losses import control_weights

    torch.manual_seed(0)
    model = AVClassifier(3, width=2).eval()  # eval: the same logits at every call
    s = data.train
    audio, visual, y = s.audio.float()[:12], (s.visual.float()[:12] / 255 - 0.5) / 0.25, s.labels[:12]
    mix = GapMixture.from_dict({"weights": [0.8, 0.2], "means": [0.0, 0.3], "variances": [0.01, 0.04]})
    collected = torch.linspace(-0.5, 0.5, 12)
    ctx = Context(epoch=3, phase="adaptive", adaptive_epoch=1, mixture=mix, train_gaps=collected,
                  batch_index=torch.arange(12).flip(0))
    with torch.no_grad():
        logits, l_a, l_v = model(audio, visual)
        g = modality_gap(l_a, l_v, y)

        def step(**options):
            return Adaptive(**options).training_step(model, audio, visual, y, ctx).loss.item()

        def eq10(**kw):
            return adaptive_loss(logits, l_a, l_v, y, mix, epoch=1, **kw).item()

        assert step() == pytest.approx(eq10(), rel=1e-6) and eq10() != pytest.approx(eq10(use_weights=False), rel=1e-4)
        assert step(alpha=0.5, beta=0.0, gamma=2.0) == pytest.approx(eq10(alpha=0.5, beta=0.0, gamma=2.0), rel=1e-6)
        torch.manual_seed(1)
        shuffled = eq10(weights=control_weights(g, *mix.posteriors(g), "shuffled"))
        torch.manual_seed(1)
        assert step(weight_control="shuffled") == pytest.approx(shuffled, rel=1e-6)
        magnitude = eq10(weights=control_weights(g, *mix.posteriors(g), "gap-magnitude"))
        assert step(weight_control="gap-magnitude") == pytest.approx(magnitude, rel=1e-6)
        assert magnitude != pytest.approx(eq10(), rel=1e-4)  # the control changes the loss
        unweighted = eq10(use_weights=False)
        assert step(use_weights=False, posteriors="collected") == pytest.approx(unweighted, rel=1e-6)
        assert step(use_weights=False, weight_control="gap-magnitude") == pytest.approx(unweighted, rel=1e-6)
        by_collected = eq10(weights=mix.posteriors(collected.flip(0)))
        assert step(posteriors="collected") == pytest.approx(by_collected, rel=1e-6)
        assert by_collected != pytest.approx(eq10(), rel=1e-4)


def test_fit_mixture_uses_the_runs_seed():
    gaps = np.random.default_rng(0).normal(0.0, 0.2, 200)
    assert Adaptive().fit_mixture(gaps, None, 7).seed == 7
    assert Adaptive(components="tracked").fit_mixture(gaps, None, 5).seed == 5


# --- gap_source ----------------------------------------------------------------------------------------------------

def test_held_out_clips_are_a_seeded_fifth():
    a = held_out_clips(48, seed=0)
    assert len(a) == round(HELD_OUT_FRACTION * 48) == 10 and torch.equal(a, a.sort().values)
    assert torch.equal(a, held_out_clips(48, seed=0)) and not torch.equal(a, held_out_clips(48, seed=1))
    assert not torch.equal(a, torch.randperm(48, generator=torch.Generator().manual_seed(0))[:10].sort().values)
    # at least one clip, and no more than the fraction asks for: 5% of 10 clips rounds to 0, so one clip; 25% of 4, one
    assert len(held_out_clips(10, seed=0, fraction=0.05)) == 1 and len(held_out_clips(4, seed=0, fraction=0.25)) == 1


def test_held_out_gap_source_fits_on_exactly_the_held_out_clips(data, monkeypatch):
    fitted = []
    real_fit = GapMixture.fit
    monkeypatch.setattr(GapMixture, "fit", lambda self, gaps: fitted.append(np.array(gaps)) or real_fit(self, gaps))
    steps = _watch_steps(monkeypatch)
    result = _trainer(data, gap_source="held-out").fit()
    held = held_out_clips(48, seed=0)
    assert len(fitted) == len(result.gaps) == 3  # before each of the 2 steps, and after training
    for gaps, all_gaps, record in zip(fitted, result.gaps, result.history["gmm"]):
        assert len(all_gaps) == 48  # gaps.npz keeps every training clip's gap
        np.testing.assert_array_equal(gaps, all_gaps[held.numpy()])
        assert record["n_fit"] == 10
    # warm-up trains on every clip, adaptive epochs on every clip but the held-out ones
    trained = {phase: set() for phase in ("warmup", "adaptive")}
    for epoch, phase, index in steps:
        trained[phase].update(index.tolist())
    assert trained["warmup"] == set(range(48))
    assert trained["adaptive"] == set(range(48)) - set(held.tolist())
    adaptive_batches = [len(index) for _, phase, index in steps if phase == "adaptive"]
    assert adaptive_batches == [16, 16, 6] * 4


def test_killed_run_of_the_other_readings_resumes_to_the_same_result(data, tmp_path, monkeypatch):
    options = {"lambda_epoch": "per-step", "posteriors": "collected", "components": "tracked",
               "penalty": "one-sided", "gap_source": "held-out"}
    full = _trainer(data, **options).fit()
    original = Trainer._train_epoch

    def dies_at_epoch_4(self, optimizer, generator, ctx):
        if ctx.epoch == 4:
            raise KeyboardInterrupt
        return original(self, optimizer, generator, ctx)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        _trainer(data, tmp_path, **options).fit()
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    resumed = _trainer(data, tmp_path, **options).fit()
    strip = lambda records: [{k: v for k, v in r.items() if "seconds" not in k} for r in records]  # noqa: E731
    assert strip(resumed.history["epochs"]) == strip(full.history["epochs"])
    assert strip(resumed.history["gmm"]) == strip(full.history["gmm"])


# --- the study and its table ---------------------------------------------------------------------------------------

def test_paper_readings_name_valid_options_and_the_literal_reading():
    defaults = Adaptive.defaults
    assert set(paper.LITERAL_READING) == set(READING_CHOICES)
    assert paper.READING_ROWS[0][1] == {}  # the default reading: the Table 1 run
    for label, options, literal in paper.READING_ROWS:
        check_method_options("adaptive", options)
        effective = {k: options.get(k, defaults[k]) for k in READING_CHOICES}
        assert literal == (effective == paper.LITERAL_READING), label
    assert [literal for *_, literal in paper.READING_ROWS].count(True) == 1
    # every non-default value of every choice has its row
    changed = {(k, v) for _, options, _ in paper.READING_ROWS for k, v in options.items()}
    assert changed == {(k, v) for k, values in READING_CHOICES.items() for v in values[1:]}


def test_plan_readings_branches_every_reading_from_the_full_model():
    profile = Profile("tiny").replace(width=2, warmup_epochs=2, adaptive_steps=2, adaptive_epochs=1, batch_size=16,
                                      seeds=(0, 1), device="cpu")
    specs = studies.plan_readings(profile, [1])
    assert [s.name for s in specs] == ["adaptive-seed1", "adaptive-lambdaepochper-step-seed1",
                                       "adaptive-lambdaepochglobal-seed1", "adaptive-posteriorscollected-seed1",
                                       "adaptive-componentstracked-seed1", "adaptive-penaltyone-sided-seed1",
                                       "adaptive-gapsourceheld-out-seed1"]
    assert [s.parent for s in specs] == [None] + ["adaptive-seed1"] * 6
    assert {s.study for s in specs} == {"readings"} and [s.variant for s in specs] == list(paper.READINGS)
    assert len(studies.plan_readings(profile)) == 14


def _fake_runs(accuracy: dict, swaps: dict) -> pd.DataFrame:
    rows = []
    for label, per_seed in accuracy.items():
        for seed, acc in enumerate(per_seed):
            rows.append({"variant": label, "seed": seed, "test_acc": acc, "test_acc_audio": acc,
                         "test_acc_visual": acc, "last_test_acc": acc, "component_swaps": swaps.get(label, [0] * 3)[seed]})
    return pd.DataFrame(rows)


def test_readings_table_pairs_each_reading_with_the_default_by_seed():
    labels = list(paper.READINGS)
    default, per_step, tracked = labels[0], labels[1], labels[4]
    accuracy = {label: [0.70, 0.72, 0.74] for label in labels}
    accuracy[per_step] = [0.75, 0.76, 0.80]  # +5, +4, +6 points: wholly above 0
    accuracy[tracked] = [0.69, 0.73, 0.74]   # -1, +1, 0: open
    table = tables.readings(_fake_runs(accuracy, {tracked: [0, 2, 1]}), "synthetic")
    by = table.data.set_index("reading")
    t = 4.302652729911275  # t(0.975, 2)
    assert by.loc[per_step, "minus_default_mean"] == pytest.approx(5.0)
    assert by.loc[per_step, "minus_default_ci_low"] == pytest.approx(5.0 - t * 1.0 / math.sqrt(3))
    assert by.loc[per_step, "status"] == "holds" and by.loc[tracked, "status"] == "not resolved at 3 seeds"
    assert np.isnan(by.loc[default, "minus_default_mean"]) and by.loc[default, "status"] == ""
    assert by.loc[tracked, "component_swaps"] == "0, 2, 1" and by.loc[tracked, "component_swaps_mean"] == 1.0
    assert by.loc[per_step, "literal"] and not by.loc[default, "literal"]
    assert json.loads(by.loc[per_step, "options"]) == {"lambda_epoch": "per-step"}
    shown = table.display.set_index("Reading")
    assert shown.loc[per_step, "Versus default"] == "higher" and shown.loc[per_step, "Paper's literal reading"] == "yes"
    assert shown.loc[per_step, "Minus default (points)"].startswith("+5.00 [95% CI +2.52, +7.48]")
    assert shown.loc[default, "Options"] == "(defaults)" and shown.loc[tracked, "Options"] == "components=tracked"
    assert "20% of the training clips" in table.caption


def test_readings_runs_train_the_study_and_its_table(data, tmp_path):
    profile = Profile("tiny").replace(width=2, warmup_epochs=2, adaptive_steps=2, adaptive_epochs=1, batch_size=16,
                                      lr=0.05, seeds=(0,), device="cpu")
    runs = studies.readings_runs(profile, data, results_root=tmp_path, log=None)
    assert list(runs["variant"]) == list(paper.READINGS) and set(runs["component_swaps"]) <= {0, 1, 2, 3}
    assert set(runs.loc[runs["variant"] != paper.READING_ROWS[4][0], "component_swaps"]) == {0}
    assert runs["branched_from"].isna().iloc[0] and list(runs["branched_from"].iloc[1:]) == ["adaptive-seed0"] * 6
    table = tables.readings(runs, "synthetic")
    assert table.display["Reading"].tolist() == list(paper.READINGS)
    assert (table.data["status"].iloc[1:] == "not resolved at 1 seed").all()
    paths = tables.save_table(table, tmp_path / "tables")
    assert paths["md"].read_text().count("\n| ") == len(paper.READINGS) + 2  # header, rule, rows
