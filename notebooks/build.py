"""Build the notebooks of this folder from their sources in ``src/`` (outputs stripped).

Each source is a Python file in the "percent" format that jupytext and VS Code read: a line
``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are comments.
Edit the source, run ``python notebooks/build.py`` and commit both; the tests check that the
``.ipynb`` files are what this script makes of the sources, and that they hold no outputs.
``--check`` only compares (exit status 1 if a notebook is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"


def cells_of(text: str) -> list[tuple[str, str]]:
    """``(kind, source)`` of each cell of a percent-format file."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
        source = "\n".join(lines).strip("\n")
        if source:
            out.append((kind, source))
    return out


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook of one source, with stable cell ids and no outputs."""
    nb = new_notebook(metadata={
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                       "name": "python3"},
        "language_info": {"name": "python"},
    })
    for n, (kind, text) in enumerate(cells_of(source.read_text(encoding="utf-8")), 1):
        cell = new_markdown_cell(text) if kind == "markdown" else new_code_cell(text)
        cell["id"] = f"{source.stem[:2]}-{n:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for source in sorted(SOURCES.glob("*.py")):
        target = HERE / f"{source.stem}.ipynb"
        text = text_of(build(source))
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(target.name)
        if "--check" not in argv:
            target.write_text(text, encoding="utf-8")
    if stale:
        print(("stale: " if "--check" in argv else "written: ") + ", ".join(stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
