"""The six notebooks run end to end under nbval on the smoke profile, and a wrong parameter stops a run."""
from __future__ import annotations

import pytest

from smoke_notebooks import NOTEBOOKS


def test_notebooks_run_and_reproduce_their_checked_outputs(smoke_run):
    import nbformat

    tail = smoke_run.output[-6000:]
    assert smoke_run.returncode == 0, f"nbval failed ({smoke_run.seconds:.0f} s):\n{tail}"
    cells = sum(1 for path in sorted(NOTEBOOKS.glob("*.ipynb"))
                for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
    assert f"{cells} passed" in smoke_run.output, tail  # nbval: one test per code cell of the six notebooks


def test_unknown_papermill_parameter_fails_the_run(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("GAPKIT_RESULTS", str(tmp_path / "results"))
    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter"):
        papermill.execute_notebook(str(NOTEBOOKS / "01_data_prep.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke", "seedz": [0]}, kernel_name="python3",
                                   progress_bar=False, cwd=str(NOTEBOOKS))
    assert not (tmp_path / "results").exists()  # it stopped before doing anything
