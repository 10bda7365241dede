"""The trainer of Algorithm 1 on a tiny in-memory dataset: schedule, selection, checkpoints, resume."""
import json
import re

import numpy as np
import pytest
import torch

from gapkit.data.base import AVData, AVSplit, data_key
from gapkit.data.batches import iterate_batches
from gapkit.methods.adaptive import Adaptive
from gapkit.models import AVClassifier
from gapkit.training import NonFiniteLossError, TrainConfig, Trainer, selected_epoch, summarize


def _split(n, seed, classes=3):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    audio = torch.randn(n, 1, 16, 16, generator=g) * 0.5
    audio[:, :, :, :] += labels.view(n, 1, 1, 1).float()        # audio: an easy class signal
    visual = torch.randint(0, 256, (n, 1, 3, 16, 16), generator=g, dtype=torch.uint8)
    visual[:, :, 0] = (labels.view(n, 1, 1, 1) * 100).to(torch.uint8)  # visual: red channel by class
    return AVSplit(audio.half(), visual, labels, [f"c{seed}_{i}" for i in range(n)])


@pytest.fixture
def data():
    return AVData(_split(48, 0), _split(12, 1), _split(12, 2), ["a", "b", "c"], info={"cache_key": "tiny"})


def _config(**kw):
    base = dict(method="adaptive", warmup_epochs=2, adaptive_steps=2, adaptive_epochs=1, batch_size=16,
                lr=0.05, seed=0)
    return TrainConfig(**{**base, **kw})


def _train(data, out_dir=None, init_from=None, **kw):
    torch.manual_seed(0)
    model = AVClassifier(3, width=2)
    return Trainer(model, data, _config(**kw), device="cpu", out_dir=out_dir).fit(init_from=init_from)


_ACC = ("test_acc", "test_acc_audio", "test_acc_visual")


def _accuracy(state, split):
    """Fused, audio and visual accuracy of a model state on a split, in eval mode, by hand."""
    model = AVClassifier(3, width=2)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        audio, visual, y, _ = next(iterate_batches(split, len(split)))
        outputs = model(audio, visual)
    return {k: (o.argmax(1) == y).float().mean().item() for k, o in zip(_ACC, outputs)}


def test_schedule_history_and_gmm_fits(data):
    result = _train(data)
    epochs = result.history["epochs"]
    assert [e["phase"] for e in epochs] == ["warmup", "warmup", "adaptive", "adaptive"]
    assert [e["step"] for e in epochs] == [-1, -1, 0, 1]
    assert [e["lambda_t"] for e in epochs[2:]] == [1.0, 0.96]
    best = result.summary()["best_val_epoch"]
    # the test split is evaluated for the selected and the last model only
    assert [i for i, e in enumerate(epochs) if "test_acc" in e] == sorted({best, 3})
    # accuracies count whole clips: the running train accuracy over all 48, val and test over their 12
    for key, n in (("train_acc", 48), ("train_acc_audio", 48), ("train_acc_visual", 48), ("val_acc", 12),
                   ("val_acc_audio", 12), ("val_acc_visual", 12), ("test_acc", 12), ("test_acc_audio", 12),
                   ("test_acc_visual", 12)):
        assert all(e[key] * n == pytest.approx(round(e[key] * n)) for e in epochs if key in e), key
    # the last epoch's record is the final model's accuracy, and the summary's the selected model's
    assert {k: epochs[-1][k] for k in _ACC} == _accuracy(result.last_state, data.test)
    assert best >= 2 and {k: epochs[best][k] for k in _ACC} == _accuracy(result.best_state, data.test)
    assert result.summary()["test_acc"] == epochs[best]["test_acc"]
    gmm = result.history["gmm"]
    assert [g["step"] for g in gmm] == [0, 1, 2]          # one fit per step, and one after training
    assert len(result.gaps) == 3 and all(len(g) == 48 for g in result.gaps)
    assert all(len(g["weights"]) == 2 and abs(sum(g["weights"]) - 1) < 1e-9 for g in gmm)


def test_concat_has_no_second_stage(data):
    result = _train(data, method="concat")
    assert {e["phase"] for e in result.history["epochs"]} == {"train"}
    assert len(result.history["epochs"]) == 4 and result.history["gmm"] == [] and result.gaps == []


def test_learns_above_chance(data):
    result = _train(data, warmup_epochs=6)
    assert max(e["val_acc"] for e in result.history["epochs"]) > 0.6  # chance is 1/3


def test_selection_uses_validation_never_test():
    history = {"gmm": [{"means": [0.0, 0.5]}], "epochs": [
        {"val_acc": 0.5, "test_acc": 0.9, "test_acc_audio": 0.1, "test_acc_visual": 0.1, "val_acc_audio": 0, "seconds": 1},
        {"val_acc": 0.7, "test_acc": 0.6, "test_acc_audio": 0.2, "test_acc_visual": 0.3, "val_acc_audio": 0, "seconds": 1},
        {"val_acc": 0.7, "test_acc": 0.8, "test_acc_audio": 0.4, "test_acc_visual": 0.5, "val_acc_audio": 0, "seconds": 1},
    ]}
    s = summarize(history)
    # the selected epoch: best validation accuracy, earliest on a tie (1, not 2), never the best test accuracy (0)
    assert s == {"test_acc": 0.6, "test_acc_audio": 0.2, "test_acc_visual": 0.3, "val_acc": 0.7, "best_val_epoch": 1,
                 "last_test_acc": 0.8, "last_test_acc_audio": 0.4, "last_test_acc_visual": 0.5, "last_val_acc": 0.7,
                 "epochs": 3, "gmm": [{"means": [0.0, 0.5]}], "seconds": 3.0}


def test_same_seed_same_numbers(data):
    a, b = _train(data), _train(data)
    assert a.history["epochs"][-1]["loss"] == b.history["epochs"][-1]["loss"]
    np.testing.assert_array_equal(a.gaps[-1], b.gaps[-1])


def _strip(history):
    return [{k: v for k, v in e.items() if "seconds" not in k} for e in history["epochs"]]


def _strip_fits(history):
    return [{k: v for k, v in fit.items() if k != "seconds"} for fit in history["gmm"]]


def test_killed_run_resumes_to_the_same_result(data, tmp_path, monkeypatch):
    full = _train(data)
    original = Trainer._train_epoch

    def dies_at_epoch_3(self, optimizer, generator, ctx):
        if ctx.epoch == 3:
            raise KeyboardInterrupt
        return original(self, optimizer, generator, ctx)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _train(data, out_dir=tmp_path)
    killed = torch.load(tmp_path / "last.pt", weights_only=False)
    assert killed["epoch"] == 3     # and it says what data it was made on, which a resume or a branch checks
    assert killed["data_identity"] == data.identity() and killed["data_key"] == data_key(data.identity())
    assert not (tmp_path / "history.json").exists()
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    resumed = _train(data, out_dir=tmp_path)
    assert _strip(resumed.history) == _strip(full.history)
    assert json.loads((tmp_path / "history.json").read_text())["epochs"][-1]["loss"] == full.history["epochs"][-1]["loss"]
    assert not list(tmp_path.glob("*.tmp"))


def test_branch_from_warmup_checkpoint_equals_one_run(data, tmp_path):
    full = _train(data, out_dir=tmp_path / "full")
    # what the run folder holds: the selected model, every fit's gaps, the history
    best = full.summary()["best_val_epoch"]
    saved = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    assert _accuracy(saved, data.test) == {k: full.history["epochs"][best][k] for k in _ACC}
    with np.load(tmp_path / "full" / "gaps.npz") as gaps:
        assert len(full.gaps) >= 2 and sorted(gaps.files) == [f"fit{i}" for i in range(len(full.gaps))] + ["labels"]
        np.testing.assert_array_equal(gaps["labels"], data.train.labels.numpy())
        for i, g in enumerate(full.gaps):
            np.testing.assert_array_equal(gaps[f"fit{i}"], g)
    assert json.loads((tmp_path / "full" / "history.json").read_text()) == json.loads(json.dumps(full.history))
    branched = _train(data, out_dir=tmp_path / "branch", init_from=tmp_path / "full" / "warmup.pt")
    assert _strip(branched.history) == _strip(full.history)
    assert branched.history.keys() == full.history.keys()   # the same record: config, epochs, GMM fits
    assert _strip_fits(branched.history) == _strip_fits(full.history)
    variant = _train(data, out_dir=tmp_path / "gamma0", init_from=tmp_path / "full" / "warmup.pt",
                     method_options={"gamma": 0.0})
    assert _strip(variant.history)[:2] == _strip(full.history)[:2]
    assert variant.history["epochs"][-1]["loss"] != full.history["epochs"][-1]["loss"]


def test_branch_refuses_other_warmup_settings(data, tmp_path):
    _train(data, out_dir=tmp_path / "full")
    warmup = tmp_path / "full" / "warmup.pt"
    with pytest.raises(ValueError, match=f"{re.escape(str(warmup))} was made with other settings.*lr"):
        _train(data, out_dir=tmp_path / "other", init_from=warmup, lr=0.01)


def test_optimizer_reset_versus_kept_state(data):
    reset = _train(data, optimizer="adam", lr=1e-3)
    kept = _train(data, optimizer="adam", lr=1e-3, reset_optimizer=False)
    assert _strip(reset.history)[:2] == _strip(kept.history)[:2]
    assert reset.history["epochs"][2]["loss"] != kept.history["epochs"][2]["loss"]


def _nan_loss_at(monkeypatch, epoch: int) -> None:
    """The adaptive method's loss becomes NaN at every mini-batch of ``epoch``."""
    original = Adaptive.training_step

    def step(self, model, audio, visual, y, ctx):
        out = original(self, model, audio, visual, y, ctx)
        if ctx.epoch == epoch:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Adaptive, "training_step", step)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(data, tmp_path, monkeypatch):
    _nan_loss_at(monkeypatch, 3)
    with pytest.raises(NonFiniteLossError, match="epoch 3.*last.pt"):
        _train(data, out_dir=tmp_path)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("folder, where", [(True, "none yet (no epoch completed)"), (False, "none (no out_dir)")])
def test_nonfinite_loss_in_the_first_epoch_says_there_is_no_good_checkpoint(data, tmp_path, monkeypatch, folder,
                                                                          where):
    _nan_loss_at(monkeypatch, 0)
    with pytest.raises(NonFiniteLossError, match=re.escape(f"at epoch 0, batch 0 (adaptive); last good checkpoint: "
                                                            f"{where}")):
        _train(data, out_dir=tmp_path if folder else None)
    assert not list(tmp_path.iterdir())


def test_empty_split_is_refused_before_training(data):
    empty = AVData(data.train, data.val.subset([]), data.test, data.classes)
    with pytest.raises(ValueError, match="val split is empty"):
        Trainer(AVClassifier(3, width=2), empty, _config(), device="cpu")


def test_unknown_method_and_option(data):
    with pytest.raises(ValueError, match="unknown method"):
        Trainer(AVClassifier(3, width=2), data, _config(method="nope"), device="cpu")
    with pytest.raises(ValueError, match="no option"):
        Trainer(AVClassifier(3, width=2), data, _config(method_options={"delta": 1}), device="cpu")


def test_warmup_controls_schedule(data, tmp_path):
    only = _train(data, method="warmup-only")  # the config says reset (True); warmup-only keeps the state anyway
    reset = _train(data, method="warmup-reset", reset_optimizer=False)  # and warmup-reset always resets
    for result in (only, reset):
        assert [e["phase"] for e in result.history["epochs"]] == ["warmup", "warmup", "adaptive", "adaptive"]
        assert result.history["gmm"] == []
    # same loss (Eq. 7) and state until the reset, then the reset makes them differ
    assert _strip(only.history)[:2] == _strip(reset.history)[:2]
    assert only.history["epochs"][2]["loss"] != reset.history["epochs"][2]["loss"]
    kept = _train(data, method="warmup-only", reset_optimizer=False)
    assert _strip(kept.history) == _strip(only.history)
    # both branch from the adaptive method's warm-up (the same Eq. 7 epochs) and end where a full run ends
    _train(data, out_dir=tmp_path / "adaptive")
    branched = _train(data, init_from=tmp_path / "adaptive" / "warmup.pt", method="warmup-reset")
    assert _strip(branched.history) == _strip(reset.history)


def test_warmup_alone_selects_among_its_epochs(data):
    result = _train(data, adaptive_steps=0)  # a two-stage method with nothing after its warm-up
    assert {e["phase"] for e in result.history["epochs"]} == {"warmup"}
    best = selected_epoch(result.history["epochs"])
    assert result.best_state is not None and result.summary()["best_val_epoch"] == best


def test_weight_controls_run(data):
    for kind in ("gap-magnitude", "shuffled"):
        result = _train(data, method_options={"weight_control": kind})
        assert np.isfinite(result.history["epochs"][-1]["loss"])
