"""A run's identity: its settings, model, data and split; never where the checkout lies.

A finished run is reused only for the same identity; a resume or a branch is refused across
data or splits; a copied checkout keeps its results; one process at a time owns a run folder.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from gapkit.io import RunFolderBusy
from gapkit.profiles import get_profile
from gapkit.runs import load_data, train_run
from gapkit.training import Trainer

TINY = dict(synthetic_clips=60, synthetic_test_fraction=0.2, width=2, frames=1, frame_size=16, warmup_epochs=1,
            adaptive_steps=1, adaptive_epochs=1, batch_size=16)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    for kind in ("data", "cache", "results"):
        monkeypatch.setenv(f"GAPKIT_{kind.upper()}", str(tmp_path / "project" / kind))
    return tmp_path / "project"


def _profile(**changes):
    return get_profile("smoke", **{**TINY, **changes})


def _never(*args, **kwargs):
    raise AssertionError("trained although a finished run should have been reused")


def test_the_split_is_part_of_the_data_identity(roots):
    base = load_data(_profile())
    same = load_data(_profile())
    other_seed = load_data(_profile(split_seed=1))
    other_fraction = load_data(_profile(val_fraction=0.3))
    assert base.info["data_key"] == same.info["data_key"]
    # the cache entry is shared (same media, same preprocessing), the split is not
    assert other_seed.info["identity"]["cache_key"] == base.info["identity"]["cache_key"]
    assert other_seed.info["data_key"] != base.info["data_key"]
    assert other_fraction.info["data_key"] != base.info["data_key"]
    assert other_seed.info["identity"]["split"]["clips_digest"] != base.info["identity"]["split"]["clips_digest"]


def test_a_finished_run_is_never_served_for_another_split(roots, monkeypatch):
    profile = _profile()
    out = roots / "run"
    first = train_run(profile, load_data(profile), "concat", 0, out_dir=out)
    monkeypatch.setattr(Trainer, "fit", _never)
    assert train_run(profile, load_data(profile), "concat", 0, out_dir=out)["test_acc"] == first["test_acc"]
    other = _profile(split_seed=1)
    with pytest.raises(ValueError, match=r"data\.split\.seed: 0 there, 1 here") as info:
        train_run(other, load_data(other), "concat", 0, out_dir=out)
    assert "--force" in str(info.value)


def test_a_finished_run_with_other_settings_is_refused_then_forced(roots):
    profile = _profile()
    out = roots / "run"
    data = load_data(profile)
    first = train_run(profile, data, "concat", 0, out_dir=out)
    changed = profile.replace(lr=0.05)
    with pytest.raises(ValueError, match=rf"config\.lr: {profile.training.lr} there, 0\.05 here"):
        train_run(changed, data, "concat", 0, out_dir=out)
    wider = profile.replace(width=3)
    with pytest.raises(ValueError, match=r"model\.width: 2 there, 3 here"):
        train_run(wider, data, "concat", 0, out_dir=out)
    forced = train_run(changed, data, "concat", 0, out_dir=out, force=True)
    assert forced["config"]["lr"] == 0.05 and forced["identity"]["config"]["lr"] == 0.05
    assert first["config"]["lr"] == profile.training.lr


def test_resume_and_branch_refuse_another_split(roots):
    profile = _profile()
    data = load_data(profile)
    out = roots / "parent"
    train_run(profile, data, "adaptive", 0, out_dir=out)
    other = _profile(split_seed=1)
    other_data = load_data(other)
    with pytest.raises(ValueError, match=r"data\.split"):
        train_run(other, other_data, "adaptive", 0, out_dir=roots / "branch", init_from=out / "warmup.pt",
                  gamma=0.0)
    # an unfinished run (last.pt, no metrics.json) resumed on another split
    (out / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"data\.split"):
        train_run(other, other_data, "adaptive", 0, out_dir=out)


def test_a_resume_with_another_thread_count_is_refused(roots):
    profile = _profile()
    data = load_data(profile)
    out = roots / "run"
    train_run(profile, data, "concat", 0, out_dir=out)
    (out / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"threads: 1 there, 2 here"):
        train_run(profile.replace(threads=2), data, "concat", 0, out_dir=out)


def test_a_copied_checkout_keeps_its_results(roots, tmp_path, monkeypatch):
    profile = _profile()
    first = train_run(profile, load_data(profile), "concat", 0)
    copy = tmp_path / "moved" / "checkout"
    shutil.copytree(roots, copy)  # new paths, new modification times, the same bytes
    for kind in ("data", "cache", "results"):
        monkeypatch.setenv(f"GAPKIT_{kind.upper()}", str(copy / kind))
    monkeypatch.setattr(Trainer, "fit", _never)
    data = load_data(profile)
    assert not data.info["cache_built"]
    assert train_run(profile, data, "concat", 0)["test_acc"] == first["test_acc"]


def test_one_process_at_a_time_owns_a_run_folder(roots):
    profile = _profile()
    out = roots / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gapkit.io import run_folder_lock\n"
                               "with run_folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(RunFolderBusy, match=f"in use by pid {holder.pid}"):
            train_run(profile, load_data(profile), "concat", 0, out_dir=out)
        assert time.monotonic() - started < 30  # fails at once instead of waiting for the holder
    finally:
        holder.kill()
        holder.wait()
    assert train_run(profile, load_data(profile), "concat", 0, out_dir=out)["seed"] == 0  # released by the kill
