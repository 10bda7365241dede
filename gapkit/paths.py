"""Where gapkit keeps generated data, caches and results.

Every location is relative to the project checkout (the folder holding
``pyproject.toml`` next to the ``gapkit`` package) or, for an installed
package, to the current directory; each can be moved with an environment
variable. Nothing here names a machine path.
"""
from __future__ import annotations

import os
from pathlib import Path


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
