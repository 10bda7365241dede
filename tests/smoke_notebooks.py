"""One smoke run of the six notebooks under nbval, shared by the notebook and results tests.

The notebooks run in a fresh pytest process with nbval (``--nbval-lax``: the cells marked
``# NBVAL_CHECK_OUTPUT`` must reproduce their stored output, every cell must run without error),
on the smoke profile (``GAPKIT_PROFILE=smoke``), writing results, figures and tables to a
temporary folder (``GAPKIT_RESULTS``, ``GAPKIT_FIGURES``, ``GAPKIT_TABLES``; the generated corpus
and its cache too, unless ``GAPKIT_DATA`` / ``GAPKIT_CACHE`` are set). Run alone with:

    GAPKIT_PROFILE=smoke .venv/bin/python -m pytest --nbval-lax --nbval-current-env notebooks/
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


@dataclass
class SmokeRun:
    returncode: int
    output: str
    seconds: float
    results: Path
    figures: Path
    tables: Path

    @property
    def profile_results(self) -> Path:
        return self.results / "smoke"


def run_notebooks(base: Path) -> SmokeRun:
    env = dict(os.environ)
    env.update({"GAPKIT_PROFILE": "smoke", "GAPKIT_RESULTS": str(base / "results"),
                "GAPKIT_FIGURES": str(base / "figures"), "GAPKIT_TABLES": str(base / "tables"),
                "MPLBACKEND": "Agg", "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    # the smoke model is tiny: one thread is as fast, and far faster when another process holds a core
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("GAPKIT_DATA", str(base / "data"))
    env.setdefault("GAPKIT_CACHE", str(base / "cache"))
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900",
           "-p", "no:cacheprovider", "-q", "-o", "addopts=", "--rootdir", str(NOTEBOOKS), str(NOTEBOOKS)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return SmokeRun(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - started,
                    base / "results", base / "figures", base / "tables")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """The six notebooks, run once per test session on the smoke profile (about 2 minutes on 2 cores)."""
    return run_notebooks(tmp_path_factory.mktemp("smoke-notebooks"))
