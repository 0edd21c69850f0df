"""The notebooks of notebooks/ run top to bottom on a fresh kernel (nbclient), against the
embedded engine, without an error; the committed ones are built from their sources and hold
no outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = sorted(p.stem for p in (NOTEBOOKS / "src").glob("*.py"))
CELL_TIMEOUT = 60


def _build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_five_notebooks() -> None:
    assert NAMES == ["01-quickstart", "02-channel-pipelines", "03-monitoring", "04-compat",
                     "05-state-and-events"]
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_built_from_its_source_without_outputs(name: str) -> None:
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {cell.id} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {cell.id} was executed"
    build = _build()
    assert path.read_text(encoding="utf-8") == build.text_of(
        build.build(NOTEBOOKS / "src" / f"{name}.py")), \
        f"{path.name} differs from src/{name}.py: run python notebooks/build.py"


def _monitoring_views_updated(nb: nbformat.NotebookNode) -> None:
    """03's live views are display handles updated from the client's loop thread: in the
    executed notebook each shows its last update, not its placeholder."""
    html = [output.data["text/html"] for cell in nb.cells if cell.cell_type == "code"
            for output in cell.outputs if "text/html" in output.get("data", {})]
    assert len(html) == 3
    topology, changes, spans = html
    assert "<td style='text-align:left'>monitor</td>" in topology
    assert "worker_disconnected" in changes
    for worker in ("inventory", "pricing", "shipping"):
        assert f"<td style='text-align:left'>{worker}</td>" in changes   # seen leaving
    assert "invoke inventory::check" in spans and "execute monitor::ping" in spans


CHECKS = {"03-monitoring": _monitoring_views_updated}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name: str, kernel_name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()       # raises CellExecutionError with the cell's traceback on any error
    stderr = [output.text for cell in nb.cells if cell.cell_type == "code"
              for output in cell.outputs
              if output.output_type == "stream" and output.name == "stderr"]
    assert not stderr, f"{name} wrote to stderr (a warning, a logged error): {stderr}"
    if name in CHECKS:
        CHECKS[name](nb)
