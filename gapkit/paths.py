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


#: each root's environment variable; its default is ``<project>/<kind>``
ROOT_VARIABLES = {"data": "GAPKIT_DATA", "cache": "GAPKIT_CACHE", "results": "GAPKIT_RESULTS",
                  "figures": "GAPKIT_FIGURES", "tables": "GAPKIT_TABLES", "executed": "GAPKIT_EXECUTED"}


def root(kind: str) -> Path:
    """``$GAPKIT_<KIND>`` or ``<project>/<kind>``: ``data`` (generated corpora), ``cache`` (preprocessed tensors),
    ``results`` (run folders, the notebooks' scalar results), ``figures`` and ``tables`` (made by the notebooks),
    ``executed`` (executed copies of the notebooks, ``run_all.sh``)."""
    return Path(os.environ.get(ROOT_VARIABLES[kind], project_root() / kind))


def data_dir() -> Path:
    return root("data")


def cache_dir() -> Path:
    return root("cache")


def results_dir() -> Path:
    return root("results")


def figures_dir() -> Path:
    return root("figures")


def tables_dir() -> Path:
    return root("tables")


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return dataset


def dataset_part(dataset: str) -> str:
    """The subfolder of a dataset's outputs below ``<root>/<profile>/``: none for the embedded corpus."""
    return "" if check_dataset(dataset) == EMBEDDED else dataset


def run_root(profile: str, dataset: str, results_root=None) -> Path:
    """``<results>/<profile>/<dataset>/runs``: the run folders of a profile (its name) and dataset."""
    results = Path(results_root) if results_root is not None else results_dir()
    return results / profile / check_dataset(dataset) / "runs"


def outputs(profile: str, dataset: str, *, results_root=None, figures_root=None, tables_root=None,
            executed_root=None) -> dict[str, Path]:
    """Where a profile's (its name) outputs on ``dataset`` go: ``results`` (the notebooks' scalar results),
    ``figures``, ``tables``, ``executed`` (executed notebooks), each ``<root>/<profile>/[<dataset>/]``, and
    ``runs`` (:func:`run_root`). A root left ``None`` is the default one."""
    part = dataset_part(dataset)
    given = {"results": results_root, "figures": figures_root, "tables": tables_root, "executed": executed_root}
    out = {kind: (Path(path) if path is not None else root(kind)) / profile / part for kind, path in given.items()}
    out["runs"] = run_root(profile, dataset, results_root)
    return out
