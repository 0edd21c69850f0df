"""What the released wheel and sdist hold, as the build backend (hatchling) selects it.

The sdist is built from a working tree, where runs leave files git does not track (the Rust
engine's ``data/``, hypothesis' ``.hypothesis/``): only the project's own paths may go in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hatchling.builders.sdist import SdistBuilder
from hatchling.builders.wheel import WheelBuilder
from hatchling.metadata.core import ProjectMetadata

ROOT = Path(__file__).resolve().parent.parent


def _selected(builder: SdistBuilder | WheelBuilder) -> set[str]:
    return {f.distribution_path.replace("\\", "/") for f in builder.recurse_included_files()}


def _tree(tmp_path: Path) -> Path:
    """The project's build configuration over a small tree, with what runs leave behind."""
    for name in ("pyproject.toml", ".gitignore", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for rel in ("iii_rx/__init__.py", "iii_rx/py.typed", "tests/test_x.py", "docs/index.md",
                "examples/demo.py", "data/state_store.db", "data/stream_store",
                ".hypothesis/constants/0a1b", "iii_rx/__pycache__/x.cpython-312.pyc"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    return tmp_path


def test_the_wheel_holds_every_file_of_the_package_and_nothing_else() -> None:
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "iii_rx").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    selected = _selected(WheelBuilder(str(ROOT)))
    assert "iii_rx/py.typed" in selected  # users' mypy sees the types
    assert selected == on_disk


def test_the_sdist_leaves_out_what_runs_leave_in_the_working_tree(tmp_path: Path) -> None:
    selected = _selected(SdistBuilder(str(_tree(tmp_path))))
    assert {"iii_rx/__init__.py", "iii_rx/py.typed", "tests/test_x.py", "docs/index.md",
            "examples/demo.py", "pyproject.toml", "README.md"} <= selected
    assert not {p for p in selected if p.startswith(("data/", ".hypothesis/"))}, selected
    assert not {p for p in selected if "__pycache__" in p}, selected


def test_the_distribution_reports_the_version_workers_send_the_engine() -> None:
    """Workers send the engine the installed distribution's version (pyproject.toml's), users
    read ``iii_rx.__version__``: two copies that a release must bump together."""
    import iii_rx

    assert ProjectMetadata(str(ROOT), None).version == iii_rx.__version__


def test_both_distributions_carry_the_license_text() -> None:
    """The metadata says Apache-2.0, whose terms require shipping its text with the code."""
    metadata = ProjectMetadata(str(ROOT), None)
    assert metadata.core.license == "Apache-2.0"
    assert "LICENSE" in metadata.core.license_files  # the wheel's .dist-info/licenses
    assert "LICENSE" in _selected(SdistBuilder(str(ROOT)))
    assert "Apache License" in (ROOT / "LICENSE").read_text()
