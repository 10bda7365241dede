"""What every notebook does after its parameters cell: check the parameters, resolve the profile, name the output folders.

A notebook's first cell (tagged ``parameters``) holds plain values only; papermill may inject a
cell after it (``-p NAME VALUE``). :func:`setup` then

* refuses a parameter name the notebook does not know (a typo would otherwise be a silently
  ignored variable: papermill itself only warns),
* resolves the profile (``get_profile(profile, **overrides)`` with the device),
* names where results, figures and tables go: ``<results>/<profile>/...``,
  ``<figures>/<profile>/``, ``<tables>/<profile>/``; a corpus other than the embedded one gets
  a ``<dataset>/`` subfolder so that its outputs never overwrite the embedded dataset's,
* lets pandas show every column of a table (the run tables are wider than its default of 20).

The helpers a cell ends with return nothing (``save_results``, like ``report.figures.save_figure``), so
that a cell shows its figure or table and no echo of paths.
"""
from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .io import atomic_write_text
from .paths import check_dataset
from .profiles import Profile, get_profile

DEVICES = ("auto", "cpu", "cuda")
#: parameters every notebook has
COMMON_PARAMETERS = ("profile", "dataset", "data_root", "device", "seeds", "overrides", "results_root",
                     "figures_root", "tables_root")
#: the first line of the cell papermill injects
PAPERMILL_HEADER = "# Parameters"


class UnknownParameterError(ValueError):
    """A parameter name the notebook does not define."""


def injected_names(namespace: dict) -> list[str]:
    """Names assigned in the cells papermill injected into this kernel (found in IPython's input history ``In``)."""
    names: list[str] = []
    for source in namespace.get("In", []) or []:
        if not isinstance(source, str) or not source.lstrip().startswith(PAPERMILL_HEADER):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def check_parameters(namespace: dict, known) -> None:
    """Raise :class:`UnknownParameterError` if papermill injected a name that is not in ``known``."""
    unknown = sorted(set(injected_names(namespace)) - set(known))
    if unknown:
        raise UnknownParameterError(f"unknown parameter(s) {unknown}; this notebook's parameters are "
                                    f"{', '.join(sorted(known))}")


def resolve_seeds(seeds, profile: Profile, allow_empty: bool = False) -> list[int]:
    """``None`` -> the profile's seeds; else a list, a number or "0,1,2"."""
    if allow_empty and (seeds == [] or seeds == ()):
        return []
    if seeds is None or (isinstance(seeds, str) and seeds.strip().lower() in ("", "none")):
        return list(profile.seeds)
    if isinstance(seeds, str):
        seeds = [s for s in seeds.replace("[", "").replace("]", "").split(",") if s.strip()]
    elif isinstance(seeds, (int, float)):
        seeds = [seeds]
    out = [int(s) for s in seeds]
    if not out:
        raise ValueError("seeds is empty")
    return out


@dataclass
class NotebookSetup:
    """The resolved parameters of one notebook run."""

    notebook: str
    profile: Profile
    dataset: str
    data_root: str | None
    device: str
    seeds: list[int]
    #: seeds of Table 3 and the readings: the profile's ``study_seeds`` (or ``seeds``) unless other seeds are given
    study_seeds: list[int]
    results_root: Path
    figures: Path
    tables: Path
    extra: dict = field(default_factory=dict)

    @property
    def results_json(self) -> Path:
        """``<results>/<profile>/[<dataset>/]<notebook>.json``: the notebook's scalar results."""
        return paths.outputs(self.profile.name, self.dataset, results_root=self.results_root)["results"] \
            / f"{self.notebook}.json"

    @property
    def read(self) -> dict:
        """Keyword arguments for :func:`gapkit.results.read_runs`: where the runs are (read only)."""
        return {"dataset": self.dataset, "results_root": self.results_root}

    @property
    def study(self) -> dict:
        """Keyword arguments for :mod:`gapkit.studies`' functions (they train what is missing, with progress bars)."""
        return {**self.read, "device": self.device, "progress": True}

    def load_data(self, progress: bool = True):
        """The profile's corpus, generated or decoded into the cache on first use (with a progress bar)."""
        from .runs import load_data

        return load_data(self.profile, self.dataset, self.data_root, progress=progress)

    def save_results(self, values: dict) -> None:
        """Write the notebook's scalar results (with the settings that produced them) as JSON to
        :attr:`results_json`."""
        payload = {"notebook": self.notebook, "profile": self.profile.to_dict(), "dataset": self.dataset,
                   "seeds": self.seeds, **_clean(values)}
        atomic_write_text(json.dumps(payload, indent=1, default=str) + "\n", self.results_json)

    def describe(self) -> str:
        p, t = self.profile, self.profile.training
        return (f"{self.notebook}: profile {p.name!r} on {self.dataset!r}, seeds {self.seeds}, device {self.device}\n"
                f"  {t.warmup_epochs} warm-up epochs + {t.adaptive_steps} adaptive steps x {t.adaptive_epochs} epochs, "
                f"batch {t.batch_size}, {t.optimizer} lr {t.lr}, width {p.width}\n"
                f"  figures -> {self.figures}\n  tables  -> {self.tables}\n  results -> {self.results_json}")


def _clean(value):
    """JSON-safe copy: NaN -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def show_all_columns() -> None:
    """pandas display options for the notebooks: every column of a frame (no "..." hiding the last ones)."""
    import pandas as pd

    pd.set_option("display.max_columns", None)
    pd.set_option("display.width", 240)


def setup(notebook: str, namespace: dict, *, extra=()) -> NotebookSetup:
    """Check and resolve a notebook's parameters (the globals of its parameters cell and papermill's injected cell).

    ``extra`` names the notebook's own parameters beyond :data:`COMMON_PARAMETERS`.
    """
    known = set(COMMON_PARAMETERS) | set(extra)
    check_parameters(namespace, known)
    missing = sorted(name for name in known if name not in namespace)
    if missing:
        raise UnknownParameterError(f"the parameters cell does not define {missing}")
    dataset, device = check_dataset(namespace["dataset"]), namespace["device"]
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    overrides = dict(namespace["overrides"] or {})
    profile = get_profile(namespace["profile"], **overrides).replace(device=device)
    results_root = Path(namespace["results_root"]) if namespace["results_root"] else paths.results_dir()
    out = paths.outputs(profile.name, dataset, figures_root=namespace["figures_root"] or None,
                        tables_root=namespace["tables_root"] or None)
    seeds = resolve_seeds(namespace["seeds"], profile)
    show_all_columns()
    return NotebookSetup(
        notebook=notebook, profile=profile, dataset=dataset, data_root=namespace["data_root"] or None, device=device,
        seeds=seeds, study_seeds=list(profile.study_seeds or seeds) if seeds == list(profile.seeds) else seeds,
        results_root=results_root,
        figures=out["figures"], tables=out["tables"], extra={name: namespace[name] for name in extra})
