"""No host sync inside the step loop: the epoch's sums on the device, the deferred non-finite check, the GMM's
parameters copied to the device once per fit, the batch indices on the batches' device."""
import pickle

import numpy as np
import pytest
import torch

from fixtures_tiny import tiny_split
from gapkit import training as training_module
from gapkit.data.base import AVData
from gapkit.data.batches import iterate_batches
from gapkit.methods.adaptive import Adaptive
from gapkit.methods.concat import Concat
from gapkit.mixture import GapMixture
from gapkit.models import AVClassifier
from gapkit.training import NonFiniteLossError, TrainConfig, Trainer


@pytest.fixture
def data():
    return AVData(tiny_split(48, 0), tiny_split(12, 1), tiny_split(12, 2), ["a", "b", "c"])


def _trainer(data, out_dir=None, **kw):
    config = TrainConfig(**{**dict(method="adaptive", warmup_epochs=2, adaptive_steps=2, adaptive_epochs=1,
                                   batch_size=8, lr=0.05, seed=0), **kw})
    torch.manual_seed(0)
    return Trainer(AVClassifier(3, width=2), data, config, device="cpu", out_dir=out_dir)


def test_epoch_loss_and_accuracy_are_the_host_sums_of_the_steps(data, monkeypatch, one_thread):
    """The loss and correct counts summed on the device give exactly what per-step Python floats gave."""
    steps = []
    original = Concat.training_step

    def spy(self, model, audio, visual, y, ctx):
        out = original(self, model, audio, visual, y, ctx)
        steps.append((ctx.epoch, out.loss.item(), len(y),
                      *[(lg.argmax(1) == y).sum().item() for lg in (out.logits, out.logits_a, out.logits_v)]))
        return out

    monkeypatch.setattr(Concat, "training_step", spy)
    result = _trainer(data, method="concat").fit()
    for record in result.history["epochs"]:
        mine = [s for s in steps if s[0] == record["epoch"]]
        total, seen = 0.0, 0
        for _, loss, n, *_ in mine:
            total += loss * n
            seen += n
        assert record["loss"] == total / seen
        for i, head in enumerate(("train_acc", "train_acc_audio", "train_acc_visual")):   # fused, audio, visual
            assert record[head] == (torch.tensor(float(sum(s[3 + i] for s in mine))) / seen).item()
    assert any(r["train_acc_audio"] != r["train_acc_visual"] for r in result.history["epochs"])


def test_nonfinite_check_deferred_names_the_first_bad_batch_and_keeps_the_last_checkpoint(data, tmp_path,
                                                                                         monkeypatch, one_thread):
    original = Adaptive.training_step

    def nan_at_epoch_3_batch_1(self, model, audio, visual, y, ctx):
        out = original(self, model, audio, visual, y, ctx)
        if ctx.epoch == 3 and len(nan_at_epoch_3_batch_1.seen) == 1:
            out.loss = out.loss * float("nan")
        if ctx.epoch == 3:
            nan_at_epoch_3_batch_1.seen.append(1)
        return out

    nan_at_epoch_3_batch_1.seen = []
    reads = []
    first = training_module._NonFiniteWatch.first

    def counted(self, *args):
        reads.append(1)
        return first(self, *args)

    monkeypatch.setattr(Adaptive, "training_step", nan_at_epoch_3_batch_1)
    monkeypatch.setattr(training_module._NonFiniteWatch, "first", counted)
    trainer = _trainer(data, out_dir=tmp_path)
    trainer.nonfinite_every = 4  # as on a GPU: the flag is read every 4 steps and at the epoch's end
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 3, batch 1 .*last.pt"):
        trainer.fit()
    # 6 batches an epoch: reads after step 4 and at the end, in each of epochs 0-2; the NaN is caught at step 4
    assert len(reads) == 3 * 2 + 1
    assert len(nan_at_epoch_3_batch_1.seen) == 4        # the steps after the NaN ran up to the read
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nonfinite_at_the_epochs_last_batch_is_caught_at_its_end(data, tmp_path, monkeypatch, one_thread):
    original = Adaptive.training_step

    def inf_at_last_batch(self, model, audio, visual, y, ctx):
        out = original(self, model, audio, visual, y, ctx)
        if ctx.epoch == 1 and len(y) < 10:
            out.loss = out.loss + float("inf")
        return out

    monkeypatch.setattr(Adaptive, "training_step", inf_at_last_batch)
    trainer = _trainer(data, out_dir=tmp_path, batch_size=10)  # 48 clips: batches of 10, 10, 10, 10, 8
    trainer.nonfinite_every = 100
    with pytest.raises(NonFiniteLossError, match=r"\(inf\) at epoch 1, batch 4 "):
        trainer.fit()
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 1


def test_nonfinite_check_every_step_on_the_cpu(data):
    assert _trainer(data).nonfinite_every == 1
    assert training_module.NONFINITE_EVERY > 1


def test_mixture_parameters_are_copied_to_the_device_once_per_fit():
    rng = np.random.default_rng(0)
    mix = GapMixture(seed=0).fit(np.concatenate([rng.normal(0, 0.05, 200), rng.normal(0.5, 0.05, 100)]))
    g = torch.linspace(-0.2, 0.7, 11)
    w_bal, w_imb = mix.posteriors(g)
    copies = mix._on_device[1]
    mix.posteriors(g * 2)
    assert all(a is b for a, b in zip(copies, mix._on_device[1]))  # no new copy for the next batch
    # the same numbers as from the numpy parameters directly
    log_normal = -0.5 * ((g.double()[:, None] - torch.from_numpy(mix.means)) ** 2 / torch.from_numpy(mix.variances)
                         + torch.log(2 * np.pi * torch.from_numpy(mix.variances)))
    expected = torch.softmax(torch.log(torch.from_numpy(mix.weights)) + log_normal, dim=1)[:, 1]
    assert torch.equal(w_imb, expected.float()) and torch.equal(w_bal, (1 - expected).float())
    # a refit (new values) makes a new copy; the copies are not pickled
    mix.fit(rng.normal(0, 1, 300))
    mix.posteriors(g)
    assert not all(a is b for a, b in zip(copies, mix._on_device[1]))
    assert "_on_device" not in pickle.loads(pickle.dumps(mix)).__dict__
    swapped = GapMixture.from_dict({**mix.to_dict(), "means": mix.means[::-1].tolist()})
    assert not torch.equal(swapped.posteriors(g)[1], mix.posteriors(g)[1])


def test_batch_indices_are_on_the_batches_device():
    split = tiny_split(20, 0)
    for where in ("resident", "streamed"):
        batches = list(iterate_batches(split, 8, "cpu", shuffle=True, generator=torch.Generator().manual_seed(0),
                                       where=where))
        for audio, visual, y, index in batches:
            assert index.device == y.device and torch.equal(y, split.labels[index])
        assert sorted(torch.cat([b[3] for b in batches]).tolist()) == list(range(20))
