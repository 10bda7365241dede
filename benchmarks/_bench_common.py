"""Helpers shared by the benchmark scripts: the machine a benchmark ran on, atomic result files."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from gapkit.runs import cpu_model, versions
from gapkit.io import atomic_write_text


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (a busy machine makes every number of a benchmark an upper bound)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine() -> dict:
    """CPU model, core counts, torch's thread settings, GPU, OS and library versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {"cpu": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(), "cores_usable": usable,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "os": platform.platform(), "load_average_1_5_15min": load_average(), **versions()}


def write_atomic(text: str, path: str | Path) -> Path:
    """Write ``text`` through a temporary file and a rename (never a half-written result); return the path."""
    atomic_write_text(text, Path(path))
    return Path(path)
