"""The benchmark scripts run end to end on the smoke profile (timings are not checked, only the outputs' shape)."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench_methods(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("bench_methods")


def test_bench_methods_smoke(bench_methods, tmp_path, capsys):
    rc = bench_methods.main(["--profile", "smoke", "--methods", "adaptive", "--repeats", "1", "--warmup-rounds", "0",
                             "--set", "adaptive_steps=1", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "methods_smoke.json").read_text())
    assert set(report["methods"]) == {"concat", "adaptive"}  # concat, the reference, is always added
    assert report["settings"]["threads"] >= 1 and report["machine"]["cpu"]
    concat, adaptive = report["methods"]["concat"], report["methods"]["adaptive"]
    assert concat["ratio_to_concat"] == pytest.approx(1.0)
    assert concat["epoch_seconds"]["n"] == 2          # single stage: warmup_epochs + adaptive_steps epochs, all timed
    assert adaptive["epoch_seconds"]["n"] == 1        # two stage: the adaptive epoch only
    assert adaptive["gmm_seconds_median"] > 0
    assert [e["phase"] for e in report["raw"]["adaptive"][0]["timed"]] == ["adaptive"]
    table = (tmp_path / "methods_smoke.md").read_text()
    assert "| adaptive | 1 (adaptive) |" in table and table in capsys.readouterr().out


def test_bench_methods_rejects_unknown_method(bench_methods, tmp_path):
    with pytest.raises(SystemExit):
        bench_methods.main(["--profile", "smoke", "--methods", "nope", "--out", str(tmp_path)])
    with pytest.raises(ValueError):
        bench_methods.main(["--profile", "smoke", "--option", "pmr:nope=1", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_bench_epoch_parts_smoke(monkeypatch, tmp_path, capsys):
    # the default layout only: channels_last aborts on the smoke profile's width-4 model (the script's docstring)
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("bench_epoch_parts")
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--profile", "smoke", "--repeats", "1", "--layouts", "default", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "epoch_parts_smoke.json").read_text())
    now = result["parts_seconds"]["default"]
    assert list(result["parts_seconds"]) == ["default"] and set(now) == {"train", "val", "test", "gaps"}
    assert all(v > 0 for v in now.values())
    assert result["epoch_seconds"] == pytest.approx({   # the projections from the parts, as the docstring says
        "default layout, test every epoch (before)": now["train"] + now["val"] + now["test"],
        "default layout, test for the selected and last model (now)":
            now["train"] + now["val"] + now["test"] * 2 / result["epochs"]})
    text = (tmp_path / "epoch_parts_smoke.md").read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n" and text.count("\n| ") == 10
    for bad in (["--repeats", "0"], ["--layouts", "nchw"]):
        with pytest.raises(SystemExit):
            bench.main([*bad, "--out", str(tmp_path)])


@pytest.mark.parametrize("script", ["bench_training", "bench_methods", "bench_gpu", "bench_epoch_parts",
                                    "perturbation"])
def test_bench_help(script, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(script).main()
    assert exit_.value.code == 0
    assert "usage" in capsys.readouterr().out


#: a GPU node's python has torch, torchvision, torchaudio, scikit-learn, pandas and h5py, none of these, no gapkit
HIDDEN_ON_GPU_NODE = ("soundfile", "av", "papermill", "nbval", "diptest", "tqdm")
SITECUSTOMIZE = f"""
import sys
HIDDEN = {set(HIDDEN_ON_GPU_NODE)!r}
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
        return None
sys.meta_path.insert(0, _Hide())
# gapkit not installed: drop the editable install's finder (the script must find the checkout itself)
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable___gapkit")]
"""


def test_bench_gpu_tiny_cpu_as_on_a_gpu_node(tmp_path):
    """The GPU benchmark end to end at tiny sizes on the CPU, in a python where the media decoders, tqdm, papermill,
    nbval and diptest cannot be imported and gapkit is not installed (the site hook reaches the spawned runs too)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out" / "gpu.json"
    command = [sys.executable, str(BENCH / "bench_gpu.py"), "--device", "cpu", "--clips", "32", "--width", "4",
               "--frames", "1", "--frame-size", "32", "--set", "sample_rate=8000", "clip_seconds=1.0", "n_fft=62",
               "hop_length=125", "--batch-size", "8", "--steps", "2", "--warmup-steps", "1", "--seconds", "0.5",
               "--concurrency", "1,2", "--out", str(out)]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert {"av", "soundfile", "tqdm"} <= set(report["stand_ins"])
    assert report["settings"]["audio_shape"] == [1, 32, 65]      # n_fft // 2 + 1 bins, 1 + 8000 // 125 frames
    assert report["settings"]["visual_shape"] == [1, 3, 32, 32]
    assert report["settings"]["clips"] == 32 and report["settings"]["profile_overrides"]["width"] == 4
    assert set(report["methods"]) == {"concat", "adaptive"}
    for name, row in report["methods"].items():
        assert set(row) >= {"config", "fixed_batch", "trainer", "real_loop"}, row
        trainer = row["trainer"]
        assert len(trainer["epochs"]) == 1 and trainer["epoch_seconds"] > 0 and trainer["test_seconds"] > 0
        assert trainer["train_clips_per_second"] > 0 and trainer["epoch_clips_per_second"] > 0
        assert 0 <= trainer["data_wait_share"] <= 1
        assert row["fixed_batch"]["clips_per_second"] > 0 and row["real_loop"]["clips_per_second"] > 0
        assert row["real_loop"]["gpu_busy_share"] is None and trainer["peak_memory_bytes"] is None  # on the CPU
        levels = report["concurrency"][name]
        assert [level["processes"] for level in levels] == [1, 2]
        assert all(level["clips_per_second"] > 0 and len(level["per_process"]) == level["processes"]
                   for level in levels), levels
    adaptive = report["methods"]["adaptive"]["trainer"]
    assert adaptive["epochs"][0]["phase"] == "adaptive" and adaptive["epochs"][0]["gmm_seconds"] > 0
    assert adaptive["final_gmm_seconds"] > 0 and adaptive["gmm_fit_seconds"] > 0
    assert report["methods"]["concat"]["trainer"]["gmm_fit_seconds"] is None
    assert report["projection"]["concat_seconds"] > 0 and report["projection"]["adaptive_seconds"] > 0
    table = (tmp_path / "out" / "gpu.md").read_text()
    assert "| adaptive |" in table and "## Concurrent runs" in table and table in proc.stdout


def test_bench_gpu_busy_seconds(monkeypatch):
    """The GPU busy time is the union of the device intervals of a chrome trace, overlaps counted once."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_gpu = importlib.import_module("bench_gpu")
    events = [{"cat": "kernel", "ts": 0, "dur": 10}, {"cat": "kernel", "ts": 5, "dur": 10},    # 0-15
              {"cat": "gpu_memcpy", "ts": 20, "dur": 5}, {"cat": "kernel", "ts": 21, "dur": 2},  # 20-25
              {"cat": "cpu_op", "ts": 0, "dur": 100}, {"cat": "gpu_memset", "ts": 30, "dur": 1e6}]
    assert bench_gpu.busy_seconds(events) == pytest.approx((15 + 5 + 1e6) / 1e6)
    assert bench_gpu.busy_seconds([]) == 0.0
    assert bench_gpu.busy_share(2.0, {"device_busy_seconds": 1.0}) == 0.5
    assert bench_gpu.busy_share(2.0, {"device_busy_seconds": None}) is None
