"""`make unit` (`pytest -m "not integration and not e2e"`) runs no real processes only if
every file in tests/integration and tests/e2e carries its folder's marker: this checks it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def _module_marks(path: Path) -> set[str]:
    """The marks a test module sets for all its tests (`pytestmark = pytest.mark.X`)."""
    marks = set()
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)):
            values = node.value.elts if isinstance(node.value, ast.List) else [node.value]
            marks |= {ast.unparse(v).removeprefix("pytest.mark.") for v in values}
    return marks


@pytest.mark.parametrize("folder", ["integration", "e2e"])
def test_every_test_file_of_the_folder_carries_its_marker(folder: str) -> None:
    files = sorted((TESTS / folder).glob("test_*.py"))
    assert files
    unmarked = [f.name for f in files if folder not in _module_marks(f)]
    assert unmarked == []


def test_a_file_without_the_assignment_is_found_unmarked(tmp_path: Path) -> None:
    marked, bare = tmp_path / "test_a.py", tmp_path / "test_b.py"
    marked.write_text("import pytest\n\npytestmark = [pytest.mark.integration]\n")
    bare.write_text("import pytest\n\n\n@pytest.mark.integration\ndef test_x():\n    pass\n")
    assert _module_marks(marked) == {"integration"} and _module_marks(bare) == set()
