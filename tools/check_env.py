"""Check a Python environment against requirements.lock before anything runs (run by run_all.sh).

    python tools/check_env.py            exit 0: every locked package at its locked version, the stack loads
    python tools/check_env.py --loose    exit 0: every package gapkit needs is present within pyproject's
                                         ranges (the torch stack exactly); other versions listed, not fatal

It needs nothing but the standard library and pip (whose vendored ``packaging`` it uses when
``packaging`` itself is absent), so it runs in an environment where torch is missing or broken.
Exit 1 with a list naming each package, the version found and the version wanted.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import importlib.util
import re
import sys
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare environment: pip always carries it
    from pip._vendor.packaging.markers import Marker
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
#: what the notebooks and tests import; torchaudio's compiled extension is checked separately
IMPORTS = ("torch", "torchvision", "torchaudio", "av", "soundfile", "sklearn", "scipy", "h5py", "PIL", "tqdm",
           "filelock", "diptest", "papermill", "ipykernel", "nbval", "seaborn", "matplotlib", "pandas", "pytest",
           "ipywidgets")


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """``name -> version`` of every lock entry whose environment marker holds for this Python."""
    out = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+))?", line)
        if not match:
            continue
        name, version, marker = match.groups()
        if marker is None or Marker(marker.strip()).evaluate():
            out[canonicalize_name(name)] = version
    return out


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The dependencies of pyproject.toml, every extra included."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    return [Requirement(r) for r in names]


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def problems_strict(lock: Path = LOCK) -> list[str]:
    out = []
    spec = importlib.util.find_spec("gapkit")
    here = (ROOT / "gapkit").resolve()
    if spec is None or spec.origin is None or Path(spec.origin).resolve().parent != here:
        found = Path(spec.origin).resolve().parent if spec and spec.origin else "nothing"
        out.append(f"gapkit: imports from {found}, wanted this checkout's {here} (a moved or copied checkout)")
    for name, wanted in sorted(locked_versions(lock).items()):
        found = installed(name)
        if found != wanted:
            out.append(f"{name}: found {found or 'nothing'}, wanted {wanted} (requirements.lock)")
    return out


def problems_loose(lock: Path = LOCK) -> tuple[list[str], list[str]]:
    """(fatal, informative): missing or out-of-range requirements; versions other than the lock's."""
    fatal, notes = [], []
    locked = locked_versions(lock)
    for req in project_requirements():
        found = installed(req.name)
        if found is None:
            fatal.append(f"{req.name}: found nothing, wanted {req.specifier or 'any'} "
                         f"(requirements.lock: {locked.get(canonicalize_name(req.name), '?')})")
        elif not req.specifier.contains(found, prereleases=True):
            fatal.append(f"{req.name}: found {found}, wanted {req.specifier}")
        elif locked.get(canonicalize_name(req.name)) not in (None, found):
            notes.append(f"{req.name}: {found} (requirements.lock: {locked[canonicalize_name(req.name)]})")
    return fatal, notes


def import_problems() -> list[str]:
    out = []
    for module in IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 -- any failure to import is what we report
            out.append(f"{module}: import failed: {type(err).__name__}: {err}")
    if not any(p.startswith("torchaudio:") for p in out):
        try:
            from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE
        except ImportError as err:
            out.append(f"torchaudio: its extension cannot be checked: {err}")
        else:
            if not _IS_TORCHAUDIO_EXT_AVAILABLE:
                out.append("torchaudio: its compiled extension does not load with this torch")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loose", action="store_true", help="accept pyproject's ranges (an existing environment)")
    parser.add_argument("--quiet", action="store_true", help="print nothing when all is well")
    args = parser.parse_args(argv)
    notes: list[str] = []
    if args.loose:
        fatal, notes = problems_loose()
    else:
        fatal = problems_strict()
    if not fatal:
        fatal = import_problems()
    if fatal:
        print(f"{sys.executable}: the environment does not match what gapkit needs:", file=sys.stderr)
        for line in fatal:
            print(f"  {line}", file=sys.stderr)
        return 1
    if notes:
        print(f"{sys.executable}: versions other than requirements.lock's (allowed by pyproject.toml; numbers "
              f"may differ in the last digits from the committed ones):", file=sys.stderr)
        for line in notes:
            print(f"  {line}", file=sys.stderr)
    if not args.quiet:
        print(f"{sys.executable}: environment ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
