"""One run on two processes: ``torchrun --nproc_per_node=2`` with gloo on the CPU, on the smoke profile."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gapkit import distributed
from gapkit.data.batches import iterate_batches
from gapkit.gap import collect_outputs
from gapkit.mixture import GapMixture
from gapkit.profiles import get_profile
from gapkit.runs import build_model, load_data

ROOT = Path(__file__).resolve().parents[1]


def _torchrun(out: Path, method: str = "adaptive", *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "gapkit", "train", "--profile", "smoke", "--method", method, "--seed", "0", "--device", "cpu",
               "--out", str(out), "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]


def _strip(history: dict) -> dict:
    return {k: [{f: v for f, v in e.items() if "seconds" not in f} for e in history[k]] for k in ("epochs", "gmm")}


def test_ddp_adaptive_run_fits_the_single_process_gmm_and_resumes(tmp_path):
    run = tmp_path / "run"
    _ok(_torchrun(run))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert metrics["epochs"] == 4 and len(metrics["gmm"]) == 3
    gaps = np.load(run / "gaps.npz")
    n = metrics["data"]["split_sizes"]["train"]
    for i, fit in enumerate(metrics["gmm"]):
        assert gaps[f"fit{i}"].shape == (n,) and np.isfinite(gaps[f"fit{i}"]).all()   # every clip's gap, gathered
        single = GapMixture(seed=0).fit(gaps[f"fit{i}"]).to_dict()                    # one process, the same gaps
        assert {k: fit[k] for k in single} == single
    # the gathered gaps are the ones one process collects from the same model (rank 0's, saved at warm-up's end)
    profile = get_profile("smoke")
    data = load_data(profile)
    model = build_model(profile, data.num_classes, 0)
    model.load_state_dict(torch.load(run / "warmup.pt", weights_only=False)["model"])
    alone = collect_outputs(model, iterate_batches(data.train, 32)).gaps().numpy()
    np.testing.assert_allclose(gaps["fit0"], alone, rtol=0, atol=1e-6)

    # resumed from the end of warm-up (as if killed there), the run ends as the uninterrupted one
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("last.pt", "warmup.pt"):
        (resumed / name).write_bytes((run / "warmup.pt").read_bytes())
    _ok(_torchrun(resumed))
    again = json.loads((resumed / "metrics.json").read_text())
    assert again["test_acc"] == metrics["test_acc"] and again["best_val_epoch"] == metrics["best_val_epoch"]
    assert _strip(json.loads((resumed / "history.json").read_text())) == _strip(json.loads((run / "history.json").read_text()))
    again_gaps = np.load(resumed / "gaps.npz")
    assert all(np.array_equal(gaps[k], again_gaps[k]) for k in gaps.files)
    # a finished run is returned, not trained again, by every process
    _ok(_torchrun(run))
    assert json.loads((run / "metrics.json").read_text())["wall_seconds"] == metrics["wall_seconds"]


def test_ddp_concat_run_completes(tmp_path):
    done = _torchrun(tmp_path / "concat", "concat", "--set", "warmup_epochs=1", "--set", "adaptive_steps=1", "--json")
    _ok(done)
    metrics = json.loads(done.stdout.strip().splitlines()[-1])  # printed once, by rank 0
    assert len(done.stdout.strip().splitlines()) == 1
    history = json.loads((tmp_path / "concat" / "history.json").read_text())
    assert [e["phase"] for e in history["epochs"]] == ["train", "train"] and metrics["gmm"] == []
    assert all(np.isfinite(e["loss"]) and 0 <= e["val_acc"] <= 1 for e in history["epochs"])
    assert 0 <= history["epochs"][-1]["test_acc"] <= 1 and 0 <= metrics["test_acc"] <= 1  # tested: selected and last


def test_peers_refuse_to_train_on_several_processes():
    group = distributed.Distributed(rank=0, world_size=2, backend="gloo")
    with pytest.raises(ValueError, match="method 'ogm-ge' cannot train on 2 processes.*concat, adaptive"):
        distributed.check_method("ogm-ge", group)
    for method in distributed.DDP_METHODS:
        distributed.check_method(method, group)
    distributed.check_method("ogm-ge", None)  # one process: every method


def test_epoch_shard_cuts_every_global_batch_into_the_ranks_parts():
    clips = torch.arange(50)
    single = clips[torch.randperm(50, generator=torch.Generator().manual_seed(3))]
    shards = [distributed.epoch_shard(clips, 8, torch.Generator().manual_seed(3),
                                      distributed.Distributed(rank, 2, "gloo")) for rank in (0, 1)]
    assert all(len(s) == 6 * 4 for s in shards)               # 6 full global batches of 8, 4 clips a rank
    for k in range(6):                                        # global batch k: rank 0's part, then rank 1's
        assert torch.equal(torch.cat([s[4 * k:4 * k + 4] for s in shards]), single[8 * k:8 * k + 8])
    with pytest.raises(ValueError, match="batch_size 9 must split into 2 equal parts"):
        distributed.Distributed(0, 2, "gloo").local_batch(9)
    fixed = [distributed.Distributed(rank, 3, "gloo").fixed_shard(10) for rank in range(3)]
    assert sorted(torch.cat(fixed).tolist()) == list(range(10))


def test_ddp_epoch_takes_one_optimizer_step_per_full_global_batch_with_augmentation(tmp_path):
    # Adam counts its steps: an epoch on two processes takes one step per full global batch (32 clips on the smoke
    # profile), each rank feeding its half of it; feeding batches of the global size would halve the steps
    run = tmp_path / "adam"
    _ok(_torchrun(run, "concat", "--set", "warmup_epochs=1", "--set", "adaptive_steps=0", "--set", "optimizer=adam",
                  "--set", "augment=true"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["augment"] is True and metrics["epochs"] == 1
    state = torch.load(run / "last.pt", weights_only=False)["optimizer"]["state"]
    steps = {float(s["step"]) for s in state.values()}
    assert steps == {float(metrics["data"]["split_sizes"]["train"] // metrics["config"]["batch_size"])}
