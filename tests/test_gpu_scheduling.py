"""Many runs per GPU, one pool of worker processes per GPU: the placement logic with a faked device count, the
default from bench_gpu.py's measurement, and workers that load the data from the cache themselves."""
import json

import pytest
import torch
from tqdm.auto import tqdm

from fixtures_tiny import tiny_split
from gapkit import studies
from gapkit.data import reload_dataset
from gapkit.data.base import AVData
from gapkit.profiles import get_profile
from gapkit.runs import load_data, train_run


def test_cpu_keeps_one_pool_of_workers():
    assert studies.worker_slots("cpu", 2, 4, gpus=8) == [("cpu", 2)]
    assert studies.worker_slots("auto", 3, 4, gpus=0) == [("auto", 3)]


def test_every_visible_gpu_gets_a_pool_of_runs_per_gpu_workers(monkeypatch):
    assert studies.worker_slots("auto", 2, 3, gpus=2) == [("cuda:0", 3), ("cuda:1", 3)]
    assert studies.worker_slots("cuda", 1, 2, gpus=4) == [(f"cuda:{i}", 2) for i in range(4)]
    assert studies.worker_slots("cuda:2", 1, 2, gpus=4) == [("cuda:2", 2)]       # one GPU named: only it
    monkeypatch.setattr(studies, "visible_gpus", lambda: 3)                      # the count the process sees
    assert [d for d, _ in studies.worker_slots("auto", 1, 1)] == ["cuda:0", "cuda:1", "cuda:2"]
    monkeypatch.setattr(studies, "gpu_runs_per_device", lambda measurement=None: (4, "measured"))
    assert studies.worker_slots("auto", 1, 0) == [(f"cuda:{i}", 4) for i in range(3)]  # 0: the measurement's
    monkeypatch.setattr(studies, "visible_gpus", lambda: 0)
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        studies.worker_slots("cuda", 1, 1)


def test_a_ready_run_goes_to_the_pool_with_most_free_places():
    assert studies.free_pool([0, 0], [2, 2]) == 0
    assert studies.free_pool([1, 0], [2, 2]) == 1
    assert studies.free_pool([2, 1], [2, 2]) == 1
    assert studies.free_pool([2, 2], [2, 2]) is None
    running, capacity, order = [0, 0, 0], [2, 2, 2], []
    for _ in range(6):                                  # six runs over three GPUs of two: two on each, in turn
        k = studies.free_pool(running, capacity)
        running[k] += 1
        order.append(k)
    assert order == [0, 1, 2, 0, 1, 2] and studies.free_pool(running, capacity) is None


def _measurement(path, rows: dict) -> None:
    concurrency = {"levels": [1, 2, 4, 8]}
    for method, rates in rows.items():
        concurrency[method] = [{"processes": n, "clips_per_second": r} if r else {"processes": n, "skipped": "time"}
                               for n, r in zip((1, 2, 4, 8), rates)]
    path.write_text(json.dumps({"concurrency": concurrency}))


def test_runs_per_gpu_default_is_measured_or_one(tmp_path):
    runs, why = studies.gpu_runs_per_device(tmp_path / "absent.json")
    assert runs == 1 and "no GPU measurement" in why
    path = tmp_path / "gpu_cuda.json"
    # concat: 4 reaches 95% of its best (260 of 265); adaptive gains up to 8: the larger count wins
    _measurement(path, {"concat": [100, 190, 260, 265], "adaptive": [90, 170, 200, 230]})
    assert studies.gpu_runs_per_device(path) == (8, f"measured by bench_gpu.py ({path})")
    _measurement(path, {"concat": [100, 190, 195, None], "adaptive": [90, 92, None, None]})
    assert studies.gpu_runs_per_device(path)[0] == 2                      # skipped levels are not measurements
    path.write_text(json.dumps({"concurrency": {"levels": [1, 2], "error": "stopped"}}))
    assert studies.gpu_runs_per_device(path)[0] == 1
    assert get_profile("paper").runs_per_gpu == 0
    with pytest.raises(ValueError, match="runs_per_gpu"):
        get_profile("paper", runs_per_gpu=-1)


def test_workers_get_the_cache_not_the_tensors():
    data = load_data(get_profile("smoke"))
    sent = studies.worker_data(data)
    assert sent[0] is None and sent[1] == data.source and sent[2] == data.info["data_key"]
    again = reload_dataset(*sent[1:])
    for name, split in data.splits().items():
        other = again.splits()[name]
        assert split.clips == other.clips
        assert all(torch.equal(a, b) for a, b in zip((split.audio, split.visual, split.labels),
                                                      (other.audio, other.visual, other.labels)))
    with pytest.raises(RuntimeError, match="is not the data loaded first"):
        reload_dataset(data.source, "0" * 16)
    in_memory = AVData(tiny_split(6, 0), tiny_split(6, 1), tiny_split(6, 2), ["a", "b", "c"])
    assert studies.worker_data(in_memory) == (in_memory, None, None)


def test_runs_spread_over_two_pools_and_equal_a_run_in_this_process(tmp_path):
    """The layout of two GPUs with one run each, on the CPU: two pools of one worker, each loading the smoke data
    from the cache itself; every run trains, and a run's numbers are the ones it has in this process."""
    profile = get_profile("smoke", seeds=(0, 1), device="cpu")
    data = load_data(profile)
    todo = studies.plan_warmup(profile)
    with tqdm(disable=True) as bar:
        placed = studies._train_in_pools(todo, profile, data, tmp_path / "pools", "synthetic",
                                         [("cpu", 1), ("cpu", 1)], None, bar)
    assert sorted(placed) == ["adaptive-seed0", "adaptive-seed1"]
    pooled = json.loads((tmp_path / "pools" / "adaptive-seed1" / "metrics.json").read_text())
    here = train_run(profile, data, "adaptive", 1, out_dir=tmp_path / "here")
    for key in ("test_acc", "val_acc", "best_val_epoch", "last_test_acc"):
        assert pooled[key] == here[key]
    assert [{k: v for k, v in g.items() if k != "seconds"} for g in pooled["gmm"]] == \
           [{k: v for k, v in g.items() if k != "seconds"} for g in here["gmm"]]
