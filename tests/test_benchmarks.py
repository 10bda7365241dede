"""The benchmark scripts run end to end on the smoke profile (timings are not checked, only the outputs' shape)."""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("script", ["bench_training", "bench_methods"])
def test_bench_help(script, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(script).main()
    assert exit_.value.code == 0
    assert "usage" in capsys.readouterr().out
