"""The command line end to end: ``python -m gapkit train`` on the smoke profile shrunk further.

One subprocess runs the real entry point (``--json``, ``--option``, ``--set`` of every type);
the other cases call :func:`gapkit.__main__.main` in this process on the same cached corpus.
Every location (generated corpus, cache, results) is a temporary folder.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gapkit.__main__ import main

#: the smoke profile with fewer clips, a narrower model and one epoch per stage: seconds per run
TINY = ["--profile", "smoke", "--quiet", "--set", "synthetic_clips=60", "--set", "warmup_epochs=1",
        "--set", "adaptive_steps=1", "--set", "width=1", "--set", "batch_size=8"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    env = {"GAPKIT_DATA": str(base / "data"), "GAPKIT_CACHE": str(base / "cache"),
           "GAPKIT_RESULTS": str(base / "results")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield base, env


@pytest.fixture(scope="module")
def subprocess_run(places):
    """``python -m gapkit train --json`` with ``--set`` of each type and ``--option`` of each type."""
    base, env = places
    out = base / "run-json"
    args = [sys.executable, "-m", "gapkit", "train", *TINY, "--json", "--out", str(out),
            "--set", "lr=0.05",                     # float
            "--set", "reset_optimizer=false",       # bool
            "--set", "seeds=3,4",                   # tuple: the first is the default seed
            "--set", "optimizer=adam",              # str
            "--set", 'peer_options={"adaptive": {"beta": 0.5, "gamma": 3}}',  # dict: the method's options
            "--option", "gamma=0",                  # a number, over the profile's option
            "--option", "use_weights=false",        # a bool
            "--option", "weight_control=shuffled"]  # a string
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def test_train_json_prints_one_object_with_every_setting(subprocess_run):
    proc, out = subprocess_run
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    m = json.loads(lines[0])
    assert m["method"] == "adaptive" and m["seed"] == 3 and m["dataset"] == "synthetic"
    config = m["config"]
    assert config["warmup_epochs"] == 1 and config["adaptive_steps"] == 1 and config["batch_size"] == 8
    assert config["lr"] == 0.05 and isinstance(config["lr"], float)
    assert config["reset_optimizer"] is False and config["optimizer"] == "adam" and config["seed"] == 3
    assert config["method_options"] == {"beta": 0.5, "gamma": 0, "use_weights": False, "weight_control": "shuffled"}
    assert m["profile"]["seeds"] == [3, 4] and m["profile"]["width"] == 1 and m["profile"]["name"] == "smoke"
    assert m["profile"]["peer_options"] == {"adaptive": {"beta": 0.5, "gamma": 3}}
    assert m["data"]["split_sizes"] == {"train": 48, "val": 6, "test": 6}   # 60 clips, 10% test, 10% val
    assert m["epochs"] == 2 and m["best_val_epoch"] == 1                  # the only adaptive epoch


def test_train_json_agrees_with_the_run_folder(subprocess_run):
    proc, out = subprocess_run
    m = json.loads(proc.stdout)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test_acc"] == m["test_acc"] and on_disk["config"] == m["config"]
    history = json.loads((out / "history.json").read_text())
    best = history["epochs"][m["best_val_epoch"]]
    assert (best["test_acc"], best["val_acc"]) == (m["test_acc"], m["val_acc"])
    assert [e["phase"] for e in history["epochs"]] == ["warmup", "adaptive"]
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "history.json", "best.pt", "last.pt", "warmup.pt",
                                               "gaps.npz"}
    # accuracies over 6 test clips are multiples of 1/6
    assert round(m["test_acc"] * 6, 6) == round(m["test_acc"] * 6)


def test_train_text_output_and_default_run_folder(places, capsys):
    base, _ = places
    assert main(["train", *TINY, "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    run = base / "results" / "smoke" / "synthetic" / "runs" / "adaptive-seed0"
    assert json.loads((run / "metrics.json").read_text())["test_acc"] == m["test_acc"]
    assert m["seed"] == 0 and m["config"]["method_options"] == {}
    # the same command again finds the finished run, and prints it as text
    assert main(["train", *TINY]) == 0
    text = capsys.readouterr().out
    assert text.startswith("adaptive seed 0 on synthetic (smoke profile)")
    assert f"({m['best_val_epoch']}): fused {m['test_acc']:.4f}" in text
    assert text.count("  GMM ") == 2  # before the adaptive step and after training


@pytest.mark.parametrize("extra, message", [
    (["--set", "no_such_setting=1"], "unknown profile setting 'no_such_setting'"),
    (["--set", "warmup_epochs=two"], "warmup_epochs expects"),
    (["--set", "lr=fast"], "lr expects"),
    (["--set", "augment=maybe"], "augment expects true or false"),
    (["--set", "peer_options=[1]"], "peer_options expects a JSON object"),
    (["--set", "seeds=a,b"], "seeds expects"),
    (["--set", "warmup_epochs"], "expected key=value"),
    (["--set", "lr=-1"], "lr = -1.0: expected a number > 0"),
    (["--set", "batch_size=1"], "batch_size = 1"),
    (["--set", "optimizer=rmsprop"], "optimizer = 'rmsprop'"),
    (["--option", "delta=1"], "no option(s) ['delta']"),
    (["--method", "no-such-method"], "unknown method"),
])
def test_bad_input_is_an_error_naming_it(places, capsys, extra, message):
    assert main(["train", *TINY, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("gapkit train: error: ") and message in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("extra, message", [
    (["--option", "gamma"], "expected name=value"),
    (["--profile", "huge"], "invalid choice: 'huge'"),
    (["--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["--seed", "one"], "invalid int value"),
])
def test_malformed_arguments_are_usage_errors(capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(["train", *extra])
    assert exc.value.code == 2 and message in capsys.readouterr().err
