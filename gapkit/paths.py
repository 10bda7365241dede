"""Where gapkit keeps generated data, caches and results: the one definition of the output layout.

Every location is relative to the project checkout (the folder holding
``pyproject.toml`` next to the ``gapkit`` package) or, for an installed
package, to the current directory; each root can be moved with an environment
variable. Nothing here names a machine path.

Below the roots, a profile's outputs go to ``<root>/<profile>/``, and a corpus other than the
embedded one gets a ``<dataset>/`` subfolder, so that its outputs never overwrite the embedded
dataset's (:func:`outputs`). Run folders always name their dataset:
``<results>/<profile>/<dataset>/runs/<name>/`` (:func:`run_root`).
"""
from __future__ import annotations

import os
from pathlib import Path

#: every dataset gapkit reads (gapkit.data.load_dataset); the first is the embedded corpus
DATASETS = ("synthetic", "crema-d", "ave", "manifest")
EMBEDDED = DATASETS[0]


def project_root() -> Path:
    """The source checkout holding this package, or the working directory."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def data_dir() -> Path:
    """Generated corpora (the embedded synthetic dataset): ``$GAPKIT_DATA`` or ``<root>/data``."""
    return Path(os.environ.get("GAPKIT_DATA", project_root() / "data"))


def cache_dir() -> Path:
    """Preprocessed tensors: ``$GAPKIT_CACHE`` or ``<root>/cache``."""
    return Path(os.environ.get("GAPKIT_CACHE", project_root() / "cache"))


def results_dir() -> Path:
    """Training outputs: ``$GAPKIT_RESULTS`` or ``<root>/results``."""
    return Path(os.environ.get("GAPKIT_RESULTS", project_root() / "results"))


def figures_dir() -> Path:
    """Figures made by the notebooks: ``$GAPKIT_FIGURES`` or ``<root>/figures``."""
    return Path(os.environ.get("GAPKIT_FIGURES", project_root() / "figures"))


def tables_dir() -> Path:
    """Tables made by the notebooks: ``$GAPKIT_TABLES`` or ``<root>/tables``."""
    return Path(os.environ.get("GAPKIT_TABLES", project_root() / "tables"))


def executed_dir() -> Path:
    """Executed copies of the notebooks (``run_all.sh``): ``$GAPKIT_EXECUTED`` or ``<root>/executed``."""
    return Path(os.environ.get("GAPKIT_EXECUTED", project_root() / "executed"))


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return dataset


def dataset_part(dataset: str) -> str:
    """The subfolder of a dataset's outputs below ``<root>/<profile>/``: none for the embedded corpus."""
    return "" if check_dataset(dataset) == EMBEDDED else dataset


def run_root(profile: str, dataset: str, results_root=None) -> Path:
    """``<results>/<profile>/<dataset>/runs``: the run folders of a profile (its name) and dataset."""
    root = Path(results_root) if results_root is not None else results_dir()
    return root / profile / check_dataset(dataset) / "runs"


def outputs(profile: str, dataset: str, *, results_root=None, figures_root=None, tables_root=None,
            executed_root=None) -> dict[str, Path]:
    """Where a profile's (its name) outputs on ``dataset`` go: ``results`` (the notebooks' scalar results),
    ``figures``, ``tables``, ``executed`` (executed notebooks), each ``<root>/<profile>/[<dataset>/]``, and
    ``runs`` (:func:`run_root`). A root left ``None`` is the default one."""
    part = dataset_part(dataset)
    roots = {"results": (results_root, results_dir), "figures": (figures_root, figures_dir),
             "tables": (tables_root, tables_dir), "executed": (executed_root, executed_dir)}
    out = {kind: (Path(given) if given is not None else default()) / profile / part
           for kind, (given, default) in roots.items()}
    out["runs"] = run_root(profile, dataset, results_root)
    return out
