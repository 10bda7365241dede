"""The lock file, pyproject.toml and the installed environment agree (issue: a wildcard pin broke an install)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_env", ROOT / "tools" / "check_env.py")
check_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_env)


def test_torch_stack_is_pinned_exactly():
    pins = {r.name: str(r.specifier) for r in check_env.project_requirements()}
    assert pins["torch"] == "==2.11.0"
    assert pins["torchvision"] == "==0.26.0"
    assert pins["torchaudio"] == "==2.11.0"


def test_every_dependency_is_locked_at_an_allowed_version():
    locked = check_env.locked_versions()
    for req in check_env.project_requirements():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(locked[name], prereleases=True), \
            f"requirements.lock has {req.name}=={locked[name]}, pyproject.toml allows {req.specifier}"


def test_every_lock_entry_has_hashes():
    text = (ROOT / "requirements.lock").read_text()
    lines = text.splitlines()
    assert sum("==" in line and not line.startswith(("#", " ")) for line in lines) > 50
    for i, line in enumerate(lines):
        if "==" in line and not line.startswith(("#", " ")):
            assert line.rstrip().endswith("\\") and "--hash=sha256:" in lines[i + 1], f"no hash for {line}"


def test_locked_marker_parsing_picks_one_version_per_python():
    locked = check_env.locked_versions()
    assert locked["torch"] == "2.11.0"
    assert locked["numpy"].count(".") == 2  # one concrete version for this interpreter, not a marker


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="runs in the project's .venv only (an existing environment may hold other versions)")
def test_installed_environment_is_the_lock():
    assert check_env.problems_strict() == []
