"""Every setting is checked before any data is read; skipped clips are reported where a person looks.

The command-line cases call :func:`gapkit.__main__.main` in this process with ``load_data``
replaced by a function that fails the test: a bad setting must stop before it is reached.
One subprocess checks the real entry point's exit code and its one-line message.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from gapkit import runs
from gapkit.__main__ import main
from gapkit.data.base import Preprocessing
from gapkit.profiles import get_profile
from gapkit.results import RunSpec
from gapkit.studies import execute
from gapkit.training import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_data(monkeypatch):
    """``load_data`` that fails the test: the command must stop before reading any data."""
    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the settings were checked")
    monkeypatch.setattr(runs, "load_data", refuse)


@pytest.mark.parametrize("extra, message", [
    (["--method", "adaptiv"], "unknown method 'adaptiv'; available: concat, adaptive"),
    (["--option", "delta=1"], "method 'adaptive' has no option(s) ['delta']; its options are"),
    (["--option", "gamma=abc"], "option gamma = 'abc' of method 'adaptive': expected a finite number"),
    (["--option", "use_weights=1"], "option use_weights = 1 of method 'adaptive': expected true or false"),
    (["--method", "ogm-ge", "--option", "alpha=NaN"], "option alpha = nan of method 'ogm-ge'"),
    (["--set", "no_such=1"], "unknown profile setting 'no_such'; valid:"),
    (["--set", "lr=nan"], "lr = nan: expected a finite number"),
    (["--set", "lr=inf"], "lr = inf: expected a finite number"),
    (["--set", "batch_size=0"], "batch_size = 0: expected an integer >= 2"),
    (["--set", "warmup_epochs=-1"], "warmup_epochs = -1: expected an integer >= 0"),
    (["--set", "warmup_epochs=0", "--set", "adaptive_steps=0"], "at least one epoch in all"),
    (["--set", "momentum=1.5"], "momentum = 1.5: expected a number in [0, 1)"),
    (["--set", "val_fraction=0"], "val_fraction = 0.0: expected a number in (0, 1)"),
    (["--set", "frames=0"], "frames = 0: expected an integer >= 1"),
    (["--set", "sample_rate=80"], "sample_rate = 80: expected an integer >= 1000"),
    (["--set", "n_fft=100000"], "n_fft = 100000: expected at most"),
    (["--set", "fps=nan"], "fps = nan: expected a finite number"),
    (["--set", "width=0"], "width = 0: expected an integer >= 1"),
    (["--set", "device=tpu"], "device = 'tpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["--set", "seeds="], "seeds expects integers separated by commas"),
    (["--set", "threads=0"], "threads = 0: expected an integer >= 1"),
    (["--seed", "-1"], "--seed -1: expected an integer >= 0"),
    (["--init-from", "no/such/warmup.pt"], "--init-from no/such/warmup.pt: no such file"),
])
def test_bad_setting_stops_before_the_data_with_one_line(no_data, capsys, extra, message):
    assert main(["train", "--profile", "smoke", "--quiet", *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("gapkit train: error: ") and message in captured.err


def test_prepare_checks_the_profile_before_the_data(no_data, capsys):
    assert main(["prepare", "--profile", "smoke", "--set", "clip_seconds=0"]) == 2
    assert "clip_seconds = 0.0: expected a number of seconds > 0" in capsys.readouterr().err


def test_the_entry_point_exits_2_without_a_traceback(tmp_path):
    env = {**os.environ, "GAPKIT_DATA": str(tmp_path / "data"), "GAPKIT_CACHE": str(tmp_path / "cache"),
           "GAPKIT_RESULTS": str(tmp_path / "results")}
    proc = subprocess.run([sys.executable, "-m", "gapkit", "train", "--profile", "smoke", "--set", "lr=nan"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "gapkit train: error: lr = nan: expected a finite number\n"
    assert not (tmp_path / "data").exists() and not (tmp_path / "cache").exists()  # nothing generated or decoded


def test_profile_preprocessing_and_config_check_themselves():
    with pytest.raises(ValueError, match=r"^val_fraction = 1.5: expected a number in \(0, 1\)"):
        get_profile("default", val_fraction=1.5)
    with pytest.raises(ValueError, match=r"^seeds = \(\): expected one or more integers >= 0"):
        get_profile("default", seeds=())
    with pytest.raises(ValueError, match="^lr = nan"):
        get_profile("default", lr=float("nan"))
    with pytest.raises(ValueError, match="^hop_length = 0: expected an integer >= 1"):
        Preprocessing(hop_length=0)
    with pytest.raises(ValueError, match="^frame_size = 2.5: expected an integer"):
        Preprocessing(frame_size=2.5)
    with pytest.raises(ValueError, match="option reinit_epoch = 2.5 of method 'd-and-r': expected an integer"):
        TrainConfig(method="d-and-r", method_options={"reinit_epoch": 2.5})
    TrainConfig(method="adaptive", method_options={"gamma": 0, "weight_control": "shuffled"})  # int for a float


def test_a_study_checks_every_run_before_training_any(tmp_path):
    profile = get_profile("smoke")
    good = RunSpec("table1", "concat", 0, "concat", "concat-seed0")
    for bad, message in [(RunSpec("table1", "x", 0, "no-such", "x-seed0"), "unknown method 'no-such'"),
                         (RunSpec("table2", "x", 0, "adaptive", "x-seed0", options={"gama": 0}), "no option"),
                         (RunSpec("table3", "x", 0, "adaptive", "x-seed0", overrides={"lr": -1.0}), "lr = -1.0")]:
        with pytest.raises(ValueError, match=message):
            execute([good, bad], profile, None, results_root=tmp_path, log=None)  # data: never reached
    assert not (tmp_path / "smoke").exists()


# --------------------------------------------------------------------------- skipped clips

def _manifest_corpus(root: Path) -> Path:
    """Two classes, 10 train, 2 val and 2 test clips each (a wav and a still image); one train image broken."""
    rows, rng = ["audio,visual,label,split"], np.random.default_rng(0)
    for label, freq in (("low", 300), ("high", 1200)):
        for i in range(14):
            split = "train" if i < 10 else "val" if i < 12 else "test"
            t = np.arange(8000) / 8000
            wave = (0.5 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(8000)).astype(np.float32)
            (root / "sound").mkdir(parents=True, exist_ok=True)
            (root / "stills").mkdir(exist_ok=True)
            sf.write(root / "sound" / f"{label}{i}.wav", wave, 8000)
            Image.new("RGB", (16, 16), (200 if label == "high" else 20, 0, 0)).save(root / "stills" / f"{label}{i}.png")
            rows.append(f"sound/{label}{i}.wav,stills/{label}{i}.png,{label},{split}")
    (root / "stills" / "low3.png").write_bytes(b"not a png")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "manifest.csv"


def test_skipped_clips_are_counted_on_stderr_and_in_the_plain_output(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("GAPKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GAPKIT_RESULTS", str(tmp_path / "results"))
    manifest = _manifest_corpus(tmp_path / "corpus")
    tiny = ["--dataset", "manifest", "--data-root", str(manifest), "--profile", "smoke", "--quiet",
            "--set", "warmup_epochs=1", "--set", "adaptive_steps=1", "--set", "width=1", "--set", "batch_size=8"]
    assert main(["train", *tiny]) == 2  # on_error="raise": the broken file stops the run
    assert "low3.png" in capsys.readouterr().err

    assert main(["train", *tiny, "--on-error", "skip", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    listing = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]["cache_path"] + "/manifest.json"
    line = f"1 of 28 clips skipped as unreadable (--on-error skip); the list (clip, file, reason) is under " \
           f"'skipped' in {listing}"
    assert captured.err == f"gapkit train: warning: {line}\n"
    assert f"  {line}\n" in captured.out
    assert [s["clip"] for s in json.loads(Path(listing).read_text())["skipped"]] == ["sound/low3.wav"]

    assert main(["prepare", *tiny[:6], "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "1 of 28 clips skipped" in captured.err and "1 of 28 clips skipped" in captured.out
    assert "sound/low3.wav: " in captured.out and "low3.png" in captured.out


def test_a_loss_diverging_before_any_checkpoint_names_none(tmp_path, monkeypatch, one_thread):
    from fixtures_tiny import tiny_split
    from gapkit.data.base import AVData
    from gapkit.methods.adaptive import Adaptive
    from gapkit.models import AVClassifier
    from gapkit.training import NonFiniteLossError, Trainer

    original = Adaptive.training_step

    def nan_loss(self, model, audio, visual, y, ctx):
        out = original(self, model, audio, visual, y, ctx)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Adaptive, "training_step", nan_loss)
    data = AVData(tiny_split(24, 0), tiny_split(6, 1), tiny_split(6, 2), ["a", "b", "c"])
    config = TrainConfig(warmup_epochs=1, adaptive_steps=1, adaptive_epochs=1, batch_size=8, seed=0)
    trainer = Trainer(AVClassifier(3, width=2), data, config, device="cpu", out_dir=tmp_path / "run")
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, batch 0 .*last good checkpoint: none yet"):
        trainer.fit()
    assert not (tmp_path / "run" / "last.pt").exists()


def test_every_training_and_preprocessing_setting_is_a_profile_setting_and_reaches_the_run():
    """Every TrainConfig and Preprocessing field is a profile setting of the same flat name, held once; an
    override reaches the part that holds it and the run."""
    from dataclasses import fields

    from gapkit.profiles import RUN_FIELDS, Profile, setting_owners

    owners = setting_owners()
    assert {n for n, part in owners.items() if part == "training"} == \
        {f.name for f in fields(TrainConfig)} - set(RUN_FIELDS)
    assert {n for n, part in owners.items() if part == "preprocessing"} == {f.name for f in fields(Preprocessing)}
    assert not ({f.name for f in fields(Profile)} & {n for n, part in owners.items() if part is not None})
    profile = get_profile("smoke", lr=0.0123, lr_gamma=0.5, threads=2, frame_size=40, hop_length=200)
    config = profile.train_config("adaptive", 7, gamma=0)
    assert (config.lr, config.lr_gamma, config.threads, config.batch_size) == (0.0123, 0.5, 2, 32)
    assert (config.method, config.method_options, config.seed) == ("adaptive", {"gamma": 0}, 7)
    assert (profile.preprocessing.frame_size, profile.preprocessing.hop_length) == (40, 200)
    assert profile.setting("lr") == profile.training.lr == 0.0123 and profile.setting("width") == profile.width
    flat = profile.to_dict()
    assert flat["name"] == "smoke" and flat["lr"] == 0.0123 and flat["frame_size"] == 40
    assert set(flat) - {"name"} == set(owners) and not set(RUN_FIELDS) & set(flat)
    assert get_profile("smoke").training.lr == TrainConfig().lr  # one default, TrainConfig's
