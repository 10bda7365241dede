"""Committed notebooks are clean: no stray outputs, a plain parameters cell, nbval markers where outputs are kept."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"
REQUIRED_PARAMETERS = {"profile", "dataset", "data_root", "device", "seeds", "results_root", "figures_root",
                       "tables_root"}
MEMORY_ADDRESS = re.compile(r"0x[0-9a-f]{6,}", re.IGNORECASE)
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:home|root|work|tmp|Users|mnt|opt|var)/")


def _load(path: Path):
    return nbformat.read(path, as_version=4)


def test_six_numbered_notebooks():
    assert [p.stem[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_checked_cells_carry_outputs(path):
    nb = _load(path)
    nbformat.validate(nb)
    ordinal = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            assert not cell.get("outputs"), f"{path.name} cell {i}: a markdown cell with outputs"
            continue
        ordinal += 1
        checked = cell.source.startswith(CHECK)
        # nbval treats a stored output as a reference only in a cell with an execution count; there it is the count
        # a Run All on a fresh kernel gives the cell (its place among the code cells), elsewhere none
        assert cell.execution_count == (ordinal if checked else None), \
            f"{path.name} cell {i}: execution count {cell.execution_count}"
        assert "execution" not in cell.metadata, f"{path.name} cell {i}: execution timings in metadata"
        for key in ("papermill", "collapsed", "scrolled"):
            assert key not in cell.metadata, f"{path.name} cell {i}: metadata {key!r}"
        if not checked:
            assert cell.outputs == [], f"{path.name} cell {i}: stored output in a cell nbval does not check"
            continue
        assert cell.outputs, f"{path.name} cell {i}: a checked cell without its expected output"
        for out in cell.outputs:
            assert out.output_type == "stream" and out.name == "stdout", \
                f"{path.name} cell {i}: checked outputs must be printed text, got {out.output_type}"
            assert "execution_count" not in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_images_timings_addresses_or_machine_paths(path):
    text = path.read_text()
    raw = json.loads(text)
    assert "image/png" not in text and "image/svg" not in text, "embedded image"
    assert "papermill" not in raw["metadata"], "papermill metadata (an executed copy?)"
    assert "widgets" not in raw["metadata"]
    assert not MEMORY_ADDRESS.search(text), f"memory address {MEMORY_ADDRESS.search(text).group()}"
    assert not ABSOLUTE_PATH.search(text), f"absolute path near {ABSOLUTE_PATH.search(text).group()}"
    assert raw["metadata"]["kernelspec"]["name"] == "gapkit"


def _literal_or_env(node) -> bool:
    """A plain value, or ``os.environ.get("GAPKIT_...", <literal>)``."""
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        pass
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.environ.get":
        return all(isinstance(a, ast.Constant) for a in node.args) and not node.keywords \
            and str(node.args[0].value).startswith("GAPKIT_")
    return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_first_and_plain(path):
    nb = _load(path)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    assert nb.cells.index(first) <= 1, "the parameters cell must come first (after at most a title)"
    tree = ast.parse(first.source)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import) and [a.name for a in node.names] == ["os"]:
            continue
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"not a plain assignment: {ast.unparse(node)}"
        assert _literal_or_env(node.value), f"derived parameter: {ast.unparse(node)}"
        names.add(node.targets[0].id)
    assert REQUIRED_PARAMETERS <= names, f"missing parameters {sorted(REQUIRED_PARAMETERS - names)}"
    second = next(c for c in nb.cells[nb.cells.index(first) + 1:] if c.cell_type == "code")
    assert "setup(" in second.source and "globals()" in second.source, \
        "the cell after the parameters must check them (gapkit.notebook.setup)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_imports_are_used(path):
    code = [ast.parse(c.source) for c in _load(path).cells if c.cell_type == "code"]
    used = {n.id for tree in code for n in ast.walk(tree) if isinstance(n, ast.Name)}
    imported = {(a.asname or a.name).split(".")[0] for tree in code for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert imported <= used | {"os"}, f"imported, never used: {sorted(imported - used)}"


MARKDOWN_TARGET = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_shows_the_committed_default_outputs(path):
    """Nothing to run to see the results: the figures a notebook draws appear in its markdown as the committed
    default-profile PNGs (relative links, which JupyterLab resolves from notebooks/), and every link resolves."""
    nb = _load(path)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    targets = MARKDOWN_TARGET.findall(markdown)
    for target in targets:
        if "://" in target or target.startswith("#"):
            continue
        assert not target.startswith("/"), f"absolute link {target}"
        assert (path.parent / target).resolve().is_file(), f"{path.name}: link to a missing file {target}"
    drawn = set(re.findall(r"save_figure\([^)]*[\"'](\w+)[\"']\)", "\n".join(c.source for c in nb.cells)))
    shown = {Path(t).stem for t in targets if t.startswith("../figures/default/") and t.endswith(".png")}
    assert drawn <= shown, f"figures drawn but not shown as committed: {sorted(drawn - shown)}"
    assert re.search(r"\*\*Run time\*\*", markdown), "the first cell says how long a run takes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_checks_at_least_one_output(path):
    assert any(c.cell_type == "code" and c.source.startswith(CHECK) for c in _load(path).cells)


#: notebooks that only show results: they read run folders (gapkit.results) and never train
READ_ONLY = ["03_gmm_analysis"]


@pytest.mark.parametrize("name", READ_ONLY)
def test_reading_notebooks_never_train(name):
    from gapkit import studies

    trains = {n for n, f in vars(studies).items() if n.endswith("_runs") and f.__module__ == studies.__name__}
    trains |= {"execute", "train_run"}
    (path,) = [p for p in NOTEBOOKS if p.stem == name]
    code = [ast.parse(c.source) for c in _load(path).cells if c.cell_type == "code"]
    called = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)
              for tree in code for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not called & trains, f"{name} calls {sorted(called & trains)}, which train what is missing"
    assert "read_runs" in called
