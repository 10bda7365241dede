"""Algorithm 1 as the loss and the optimizer see it, observed inside the training loop.

The history's side records (``lambda_t``, the config's ``reset_optimizer``) say what the trainer
meant to do; these tests watch what reaches the loss, the method, the optimizer and the model: the
lambda_t inside Eq. 10 at every epoch, what each epoch's context tells the method (phase, step, clips,
batch count, collected gaps, previous fit), the optimizer's state at the first mini-batch of every
epoch, the model's mode when it is evaluated and when the gaps are collected, the augmentation of the
training frames (on in the paper profile), and the progress bar.
"""
import math

import numpy as np
import pytest
import torch

import gapkit.methods.adaptive as adaptive_module
import gapkit.training as training_module
from fixtures_tiny import tiny_split
from gapkit.data.base import AVData, AVSplit
from gapkit.data.batches import IMAGENET_MEAN, IMAGENET_STD, iterate_batches
from gapkit.gap import collect_gaps, collect_outputs, modality_gap
from gapkit.methods import make_method
from gapkit.methods.adaptive import Adaptive, held_out_clips
from gapkit.models import AVClassifier
from gapkit.training import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return AVData(tiny_split(48, 0), tiny_split(12, 1), tiny_split(12, 2), ["a", "b", "c"], info={"cache_key": "tiny"})


def _trainer(data, out_dir=None, **kw):
    base = dict(method="adaptive", warmup_epochs=2, adaptive_steps=2, adaptive_epochs=2, batch_size=16, lr=0.05,
                seed=0)
    torch.manual_seed(0)
    return Trainer(AVClassifier(3, width=2), data, TrainConfig(**{**base, **kw}), device="cpu", out_dir=out_dir)


# --- lambda_t of Eq. 10, as the loss computes it ----------------------------------------------------

def test_lambda_used_by_the_loss_anneals_by_the_adaptive_epoch_across_steps(data, monkeypatch):
    """The lambda_t that Eq. 10 applies, read back from the loss itself at every mini-batch.

    With alpha = 0, beta = 1, gamma = 0, Eq. 10 is lambda_t * mean(g^2): the loss's value over
    mean(g^2) is the lambda it used, whatever ``epoch`` argument the method passed to produce it.
    """
    real_loss = adaptive_module.adaptive_loss
    real_step = Adaptive.training_step
    seen = []  # (global epoch, lambda_t inside the loss)
    epoch_now = []

    def loss(logits, logits_a, logits_v, y, mix, epoch, **kw):
        with torch.no_grad():
            g = modality_gap(logits_a, logits_v, y)
            probe = real_loss(logits, logits_a, logits_v, y, mix, epoch, alpha=0.0, beta=1.0, gamma=0.0)
            seen.append((epoch_now[-1], probe.item() / (g ** 2).mean().item()))
        return real_loss(logits, logits_a, logits_v, y, mix, epoch, **kw)

    def step(self, model, audio, visual, y, ctx):
        epoch_now.append(ctx.epoch)
        return real_step(self, model, audio, visual, y, ctx)

    monkeypatch.setattr(adaptive_module, "adaptive_loss", loss)
    monkeypatch.setattr(Adaptive, "training_step", step)
    _trainer(data).fit()
    per_epoch = {}
    for epoch, lam in seen:
        per_epoch.setdefault(epoch, set()).add(round(lam, 5))
    # warm-up (global epochs 0-1) never calls Eq. 10; then t = 0, 1 in step 0 and t = 2, 3 in step 1
    assert sorted(per_epoch) == [2, 3, 4, 5]
    assert [per_epoch[e] for e in (2, 3, 4, 5)] == [{round(0.96 ** t, 5)} for t in range(4)]
    assert len(seen) == 4 * 3  # every mini-batch of every adaptive epoch (48 clips, batches of 16)


# --- where training stands, as each method is told -------------------------------------------------

@pytest.mark.parametrize("method, expected", [
    # two warm-up epochs, then two adaptive steps of two epochs: (phase, adaptive_epoch, step, step_epoch)
    ("adaptive", [("warmup", 0, -1, 0)] * 2 + [("adaptive", 0, 0, 0), ("adaptive", 1, 0, 1),
                                               ("adaptive", 2, 1, 0), ("adaptive", 3, 1, 1)]),
    # a single-stage method: one stage of the whole budget, outside adaptive training at every epoch
    ("concat", [("train", 0, -1, 0)] * 6),
])
def test_each_epoch_tells_the_method_its_phase_step_and_epochs(data, monkeypatch, method, expected):
    cls = type(make_method(method))
    real_step, seen = cls.training_step, {}

    def step(self, model, audio, visual, y, ctx):
        seen.setdefault(ctx.epoch, (ctx.phase, ctx.adaptive_epoch, ctx.step, ctx.step_epoch, ctx.total_epochs))
        return real_step(self, model, audio, visual, y, ctx)

    monkeypatch.setattr(cls, "training_step", step)
    _trainer(data, method=method).fit()
    assert [seen[e] for e in range(6)] == [(*x, 6) for x in expected]


def test_held_out_reading_trains_adaptive_epochs_on_the_other_clips_and_says_how_many_batches(data, monkeypatch):
    """gap_source="held-out": warm-up on all 48 clips (5 batches of 10), adaptive epochs on the 38 clips outside
    held_out_clips(48, seed) only (4 batches), the batch count the method is told matching what it is fed."""
    real_step, seen = Adaptive.training_step, {}

    def step(self, model, audio, visual, y, ctx):
        clips = None if ctx.train_clips is None else ctx.train_clips.tolist()
        record = seen.setdefault(ctx.epoch, {"clips": clips, "told": ctx.batches_per_epoch, "fed": set(),
                                             "batches": 0})
        record["fed"].update(ctx.batch_index.tolist())
        record["batches"] += 1
        return real_step(self, model, audio, visual, y, ctx)

    monkeypatch.setattr(Adaptive, "training_step", step)
    _trainer(data, method_options={"gap_source": "held-out"}, seed=5, batch_size=10).fit()
    others = sorted(set(range(48)) - set(held_out_clips(48, 5).tolist()))
    assert len(others) == 38
    for e in (0, 1):
        assert seen[e] == {"clips": None, "told": 5, "fed": set(range(48)), "batches": 5}
    for e in (2, 3, 4, 5):
        assert seen[e] == {"clips": others, "told": 4, "fed": set(others), "batches": 4}


def test_each_step_hands_the_method_its_collected_gaps_and_each_fit_the_previous_one(data, monkeypatch):
    """Algorithm 1's step preamble as the method sees it: every adaptive epoch's context holds the gaps collected for
    its step's fit (none in warm-up); each fit, the final one after training included, is given the fit before it;
    the per-epoch hooks get the trainer's own model and data."""
    real_step, real_fit = Adaptive.training_step, Adaptive.fit_mixture
    real_start, real_end = Adaptive.on_epoch_start, Adaptive.on_epoch_end
    gaps_seen, previous_seen, hooks = {}, [], []

    def step(self, model, audio, visual, y, ctx):
        gaps_seen.setdefault(ctx.epoch, None if ctx.train_gaps is None else ctx.train_gaps.clone())
        return real_step(self, model, audio, visual, y, ctx)

    def fit(self, gaps, previous, seed):
        previous_seen.append(None if previous is None else previous.to_dict())
        return real_fit(self, gaps, previous, seed)

    def start(self, model, data_, ctx):
        hooks.append(("start", ctx.epoch, model is trainer.model, data_ is data))
        return real_start(self, model, data_, ctx)

    def end(self, model, data_, ctx):
        hooks.append(("end", ctx.epoch, model is trainer.model, data_ is data))
        return real_end(self, model, data_, ctx)

    for name, fn in {"training_step": step, "fit_mixture": fit, "on_epoch_start": start, "on_epoch_end": end}.items():
        monkeypatch.setattr(Adaptive, name, fn)
    trainer = _trainer(data, method_options={"components": "tracked"})
    result = trainer.fit()
    assert len(result.gaps) == 3                                  # before steps 0 and 1, and after training
    assert gaps_seen[0] is None and gaps_seen[1] is None
    for epoch, step_index in ((2, 0), (3, 0), (4, 1), (5, 1)):
        assert torch.equal(gaps_seen[epoch], torch.from_numpy(result.gaps[step_index]))
    fits = [{k: v for k, v in fit.items() if k not in ("step", "epoch", "label", "seconds")}
            for fit in result.history["gmm"]]
    assert previous_seen == [None, fits[0], fits[1]]
    assert hooks == [(kind, e, True, True) for e in range(6) for kind in ("start", "end")]


# --- the optimizer's state --------------------------------------------------------------------------

def _watch_optimizer(monkeypatch):
    """Record, at every epoch's first mini-batch, the optimizer object and its momentum buffers."""
    seen = {}
    original_step = Adaptive.training_step

    def step(self, model, audio, visual, y, ctx):
        if ctx.epoch not in seen:
            opt = ctx.optimizer
            buffers = [s["momentum_buffer"].clone() for s in opt.state.values() if "momentum_buffer" in s]
            seen[ctx.epoch] = (id(opt), opt, buffers)
        return original_step(self, model, audio, visual, y, ctx)

    monkeypatch.setattr(Adaptive, "training_step", step)
    return seen


def test_optimizer_is_reset_once_when_adaptive_training_starts(data, monkeypatch):
    seen = _watch_optimizer(monkeypatch)
    made = []
    real_make = training_module.make_optimizer
    monkeypatch.setattr(training_module, "make_optimizer", lambda *a, **k: made.append(1) or real_make(*a, **k))
    _trainer(data).fit()
    ids = [seen[e][0] for e in range(6)]
    assert len(made) == 2                      # one at the start, one at the stage boundary
    assert ids[0] == ids[1] and ids[2] == ids[3] == ids[4] == ids[5] and ids[1] != ids[2]
    assert seen[0][2] == [] and len(seen[1][2]) > 0   # momentum accumulates during warm-up
    assert seen[2][2] == []                           # and starts from zero when adaptive training starts
    for e in (3, 4, 5):                               # then carries over every adaptive epoch and step
        assert len(seen[e][2]) == len(seen[1][2]) and any(b.abs().sum() > 0 for b in seen[e][2])


def test_kept_optimizer_carries_its_momentum_into_adaptive_training(data, monkeypatch):
    seen = _watch_optimizer(monkeypatch)
    _trainer(data, reset_optimizer=False).fit()
    assert len({seen[e][0] for e in range(6)}) == 1
    assert seen[0][2] == [] and all(len(seen[e][2]) > 0 for e in range(1, 6))


# --- eval mode for evaluation and gap collection ----------------------------------------------------

class ModeDependent(torch.nn.Module):
    """Logits that depend on the module's mode: the true class in eval mode, class 0 in train mode."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(3.0))

    def forward(self, audio, visual):
        y = audio.flatten(1)[:, 0].round().long().clamp(0, 2)
        if self.training:
            y = torch.zeros_like(y)
        l_a = torch.nn.functional.one_hot(y, 3).float() * self.scale
        l_v = torch.zeros_like(l_a)
        return l_a + l_v, l_a, l_v


def _labelled_batches(n=10):
    labels = torch.arange(n) % 3
    audio = labels.float().view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return [(audio[:5], torch.zeros(5), labels[:5], torch.arange(5)),
            (audio[5:], torch.zeros(n - 5), labels[5:], torch.arange(5, n))]


def test_collect_outputs_runs_in_eval_mode_and_restores_the_mode():
    model = ModeDependent().train()
    out = collect_outputs(model, _labelled_batches())
    assert out.accuracy()["acc"] == 1.0            # train mode would give the 4 class-0 samples of 10
    assert model.training
    g = collect_gaps(model, _labelled_batches())
    s = math.exp(3) / (math.exp(3) + 2)            # softmax of (3, 0, 0) at the true class, minus 1/3
    torch.testing.assert_close(g, torch.full((10,), s - 1 / 3))
    model.eval()
    collect_outputs(model, _labelled_batches())
    assert not model.training


def _eval_mode_gaps_and_accuracy(model, split):
    """Eq. 6 and the fused accuracy by hand: eval mode, no gradients, no shared helper."""
    model.eval()
    gaps, correct = [], 0
    with torch.no_grad():
        for audio, visual, y, _ in iterate_batches(split, 7):
            logits, l_a, l_v = model(audio, visual)
            gaps.append(modality_gap(l_a, l_v, y))
            correct += (logits.argmax(1) == y).sum().item()
    return torch.cat(gaps).numpy(), correct / len(split)


def test_trainer_evaluates_and_collects_gaps_in_eval_mode(data, tmp_path):
    result = _trainer(data, out_dir=tmp_path, adaptive_steps=1, adaptive_epochs=1).fit()
    ckpt = torch.load(tmp_path / "warmup.pt", weights_only=False)
    model = AVClassifier(3, width=2)
    model.load_state_dict(ckpt["model"])
    gaps, _ = _eval_mode_gaps_and_accuracy(model, data.train)
    # batch norm makes train-mode outputs differ from eval-mode ones on this model
    model.train()
    with torch.no_grad():
        audio, visual, y, _ = next(iterate_batches(data.train, 48))
        train_mode_gaps = modality_gap(*model(audio, visual)[1:], y).numpy()
    assert np.abs(train_mode_gaps - gaps).max() > 1e-3
    # the GMM of the first adaptive step is fitted to the warm-up model's eval-mode gaps
    np.testing.assert_allclose(result.gaps[0], gaps, atol=1e-5)
    # the validation accuracy of every epoch, and the test accuracy of the last model, in eval mode
    for state, epoch, split in ((ckpt["model"], 1, "val"), (result.last_state, -1, "test")):
        model.load_state_dict(state)
        _, acc = _eval_mode_gaps_and_accuracy(model, getattr(data, split))
        assert result.history["epochs"][epoch][f"{split}_acc"] == pytest.approx(acc)


# --- augmentation (the paper profile's augment=True) ------------------------------------------------

def _clip_split(n=6, frames=2, size=16):
    """Clips whose frames are identical, plus one clip of a single colour."""
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (n, 1, 3, size, size), generator=g, dtype=torch.uint8)
    visual = frame.expand(n, frames, 3, size, size).clone()
    visual[0] = 77
    labels = torch.arange(n) % 3
    return AVSplit(torch.randn(n, 1, 8, 8, generator=g).half(), visual, labels, [f"c{i}" for i in range(n)])


def _normalise(visual):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    return (visual.float() / 255 - mean) / std


def test_augmentation_crops_and_flips_each_clip_once_for_all_its_frames():
    split = _clip_split()
    plain = next(iterate_batches(split, 6))
    torch.testing.assert_close(plain[1], _normalise(split.visual))
    torch.manual_seed(1)
    audio, visual, y, index = next(iterate_batches(split, 6, augment=True))
    assert visual.shape == plain[1].shape and visual.dtype == torch.float32
    torch.testing.assert_close(audio, split.audio.float())
    assert torch.equal(y, split.labels) and torch.equal(index, torch.arange(6))
    torch.testing.assert_close(visual[:, 0], visual[:, 1])             # the same crop and flip on both frames
    torch.testing.assert_close(visual[0], _normalise(split.visual[:1])[0])  # a uniform clip stays uniform
    changed = [(visual[i] - plain[1][i]).abs().max().item() > 1e-3 for i in range(1, 6)]
    assert all(changed)                                                 # every textured clip is transformed
    # the global RNG draws the crops: the same seed, the same batch
    torch.manual_seed(1)
    again = next(iterate_batches(split, 6, augment=True))[1]
    torch.testing.assert_close(again, visual)


def test_trainer_augments_only_the_shuffled_training_batches(data, monkeypatch):
    calls = []
    real = training_module.iterate_batches

    def spy(split, batch_size, device="cpu", *, shuffle=False, generator=None, augment=False, clips=None):
        name = next(k for k, v in data.splits().items() if v is split)
        calls.append((name, shuffle, augment))
        return real(split, batch_size, device, shuffle=shuffle, generator=generator, augment=augment, clips=clips)

    monkeypatch.setattr(training_module, "iterate_batches", spy)
    augmented = _trainer(data, augment=True, adaptive_steps=1, adaptive_epochs=1).fit()
    assert {c for c in calls if c[2]} == {("train", True, True)}
    assert ("train", False, False) in calls          # the gaps of the GMM fit: no augmentation
    assert {(n, s) for n, s, a in calls if not a} == {("train", False), ("val", False), ("test", False)}
    monkeypatch.setattr(training_module, "iterate_batches", real)
    plain = _trainer(data, augment=False, adaptive_steps=1, adaptive_epochs=1).fit()
    assert augmented.history["epochs"][0]["loss"] != plain.history["epochs"][0]["loss"]


# --- the progress bar -------------------------------------------------------------------------------

@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_shows_the_run_its_epochs_and_last_numbers_only_when_asked(data, capsys, progress):
    torch.manual_seed(0)
    config = TrainConfig(method="concat", warmup_epochs=1, adaptive_steps=1, adaptive_epochs=1, batch_size=16, seed=3)
    result = Trainer(AVClassifier(3, width=2), data, config, device="cpu", progress=progress).fit()
    err = capsys.readouterr().err
    if not progress:
        assert err == ""
        return
    last = result.history["epochs"][-1]
    assert "concat seed 3" in err and "2/2" in err and ("epoch/s" in err or "s/epoch" in err)
    assert f"loss={last['loss']:.3f}" in err and f"val={last['val_acc']:.3f}" in err


@pytest.mark.parametrize("batch_size, batches", [(16, 3), (47, 1), (23, 3)])
def test_the_batch_count_the_method_is_told_is_the_count_it_is_fed(data, monkeypatch, batch_size, batches):
    """48 training clips: in batches of 16 three full ones; of 47 one, the last clip alone being dropped (a batch
    of one sample cannot train batch norm); of 23 two full ones and one of 2."""
    real_step, seen = Adaptive.training_step, {}

    def step(self, model, audio, visual, y, ctx):
        told, fed = seen.setdefault(ctx.epoch, (ctx.batches_per_epoch, []))
        fed.append(len(y))
        return real_step(self, model, audio, visual, y, ctx)

    monkeypatch.setattr(Adaptive, "training_step", step)
    result = _trainer(data, batch_size=batch_size, warmup_epochs=1, adaptive_steps=1, adaptive_epochs=1).fit()
    assert {e: (told, len(fed)) for e, (told, fed) in seen.items()} == {0: (batches, batches), 1: (batches, batches)}
    for record in result.history["epochs"]:     # the time spent waiting for batches is a part of the epoch's time
        assert 0 <= record["data_wait_seconds"] <= record["seconds"]
