"""Mixed precision: the ``precision`` setting, bf16 autocast with float32 losses and gaps, a bf16 run on the CPU, and
runs recorded before the setting existed."""
import json
import math

import pytest
import torch

from fixtures_tiny import tiny_profile, tiny_split
from gapkit.data.base import AVData
from gapkit.gap import modality_gap
from gapkit.losses import adaptive_loss, warmup_loss
from gapkit.mixture import GapMixture
from gapkit.models import AVClassifier
from gapkit.profiles import get_profile
from gapkit.runs import load_data, train_run
from gapkit.train_config import TrainConfig, recorded_config, resolve_precision
from gapkit.training import Trainer


def test_precision_setting_and_what_auto_means():
    assert TrainConfig().precision == "auto"
    assert resolve_precision("auto", "cpu") == "float32" and resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("float32", "cuda:1") == "float32"
    with pytest.raises(ValueError, match="precision = 'fp16': expected 'auto', 'float32' or 'bf16'"):
        TrainConfig(precision="fp16")
    assert get_profile("smoke", precision="bf16").training.precision == "bf16"


def test_losses_and_gaps_are_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = AVClassifier(3, width=2)
    audio, visual, y = torch.randn(6, 1, 16, 16), torch.randn(6, 1, 3, 16, 16), torch.arange(6) % 3
    mix = GapMixture.from_dict({"weights": [0.7, 0.3], "means": [0.0, 0.3], "variances": [0.01, 0.02]})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encode(audio, visual)[0].dtype == torch.bfloat16   # the forward pass is bf16
        logits, logits_a, logits_v = (t.bfloat16() for t in model(audio, visual))  # as bf16 as logits can be
        warm = warmup_loss(logits, logits_a, logits_v, y)
        adapt = adaptive_loss(logits, logits_a, logits_v, y, mix, epoch=1)
        gap = modality_gap(logits_a, logits_v, y)
    assert warm.dtype == adapt.dtype == gap.dtype == torch.float32
    # the same numbers as from the logits cast to float32 by hand, outside autocast
    as32 = [t.detach().float() for t in (logits, logits_a, logits_v)]
    assert torch.equal(adapt.detach(), adaptive_loss(*as32, y, mix, epoch=1))
    assert torch.equal(warm.detach(), warmup_loss(*as32, y))
    assert torch.equal(gap.detach(), modality_gap(as32[1], as32[2], y))


def test_channels_last_path_trains_the_same_steps(one_thread):
    """The layout CUDA gets (model and audio batches in channels_last), forced on the CPU: it trains, and its
    first epoch's loss agrees with the default layout's to rounding."""
    data = AVData(tiny_split(24, 0), tiny_split(6, 1), tiny_split(6, 2), ["a", "b", "c"])
    config = TrainConfig(warmup_epochs=1, adaptive_steps=1, adaptive_epochs=1, batch_size=8, lr=0.05, seed=0)
    results = []
    for layout in (False, True):
        torch.manual_seed(0)
        trainer = Trainer(AVClassifier(3, width=2), data, config, device="cpu")
        if layout:
            trainer.channels_last = True
            trainer.model.to(memory_format=torch.channels_last)
            audio = next(iter(trainer.batches("train")))[0]
            assert audio.is_contiguous(memory_format=torch.channels_last)
        results.append(trainer.fit().history["epochs"][0]["loss"])
    assert math.isfinite(results[1]) and results[1] == pytest.approx(results[0], rel=1e-4)


#: How far a bf16 run's test accuracy may lie from the float32 run's on the smoke profile: twice the standard error
#: of the difference of two independent accuracies on its 24 test clips at the float32 run's accuracy p,
#: 2 * sqrt(2 p (1 - p) / 24) (0.24 at p = 0.21). bf16 rounds every convolution, so the two trajectories part
#: after the first few SGD steps as two seeds' do; on 24 clips (one clip = 4.2 points) only a difference beyond
#: sampling noise says that bf16 trained a different model. Before they part, the first epoch's training loss
#: (the mean over the same 192 clips in the same order from the same weights) must agree to 2%: bf16 keeps 8
#: significant bits (0.4% per rounding).
FIRST_EPOCH_LOSS_REL = 0.02


def test_bf16_autocast_run_on_the_cpu_matches_float32_within_noise(tmp_path):
    profile = get_profile("smoke")
    data = load_data(profile)
    runs = {p: train_run(profile.replace(precision=p), data, "adaptive", 0, out_dir=tmp_path / p, device="cpu")
            for p in ("float32", "bf16")}
    assert runs["bf16"]["precision"] == "bf16" and runs["float32"]["precision"] == "float32"
    p, n = runs["float32"]["test_acc"], runs["float32"]["data"]["split_sizes"]["test"]
    tolerance = 2 * math.sqrt(2 * p * (1 - p) / n)
    assert abs(runs["bf16"]["test_acc"] - p) <= tolerance
    assert abs(runs["bf16"]["last_test_acc"] - runs["float32"]["last_test_acc"]) <= tolerance
    history = {k: json.loads((tmp_path / k / "history.json").read_text()) for k in runs}
    first = [history[k]["epochs"][0]["loss"] for k in ("float32", "bf16")]
    assert first[1] == pytest.approx(first[0], rel=FIRST_EPOCH_LOSS_REL)
    assert all(math.isfinite(e["loss"]) for e in history["bf16"]["epochs"])
    assert all(fit["fallback"] is None for fit in runs["bf16"]["gmm"])  # the gaps still separate into two components


def test_runs_recorded_before_the_precision_setting_stay_valid(tmp_path, one_thread):
    """A run folder whose metrics.json has no ``precision`` (made before the setting) is the run that the default
    ("auto") gives on the CPU: reused, not refused; on a GPU it trained in float32, which "auto" no longer is."""
    profile = tiny_profile().replace(seeds=(0,))
    data = AVData(tiny_split(24, 0), tiny_split(6, 1), tiny_split(6, 2), ["a", "b", "c"])
    first = train_run(profile, data, "concat", 0, out_dir=tmp_path / "run")
    path = tmp_path / "run" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["identity"]["config"]["precision"], metrics["config"]["precision"], metrics["precision"]
    path.write_text(json.dumps(metrics))
    again = train_run(profile, data, "concat", 0, out_dir=tmp_path / "run")
    assert again["wall_seconds"] == first["wall_seconds"]          # the finished run, returned as it is
    with pytest.raises(ValueError, match="precision: 'auto' there, 'bf16' here"):
        train_run(profile.replace(precision="bf16"), data, "concat", 0, out_dir=tmp_path / "run")
    old = {"lr": 0.1}
    assert recorded_config(old, "cpu") == {"lr": 0.1, "precision": "auto"}
    assert recorded_config(old, "cuda:0") == {"lr": 0.1, "precision": "float32"}
    assert recorded_config({"precision": "bf16"}, "cpu") == {"precision": "bf16"}
