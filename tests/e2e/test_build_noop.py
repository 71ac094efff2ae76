"""A rebuild with no change writes nothing (issue 3): `corral build` run twice in a real
project leaves every file under .corral/ as it was, while a changed input still builds and
records its `image.build` ledger entry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cli_project import CliProject

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

Snapshot = dict[str, tuple[str, int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every path under `root` (folders too, so an added or removed file shows in its
    folder's mtime): kind, size and mtime_ns, without following links."""
    found: Snapshot = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        kind = "dir" if path.is_dir() and not path.is_symlink() else "file"
        found[str(path.relative_to(root))] = (kind, info.st_size, info.st_mtime_ns)
    return found


def builds(project: CliProject) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = project.json("ledger", "--action", "image.build")["entries"]
    return [entry["detail"] for entry in entries]


def settle(folder: Path) -> None:
    """Date the project's own files a minute back: like git's index, the builder's stat
    index does not trust a file modified within the last moments (it could change again
    within the same timestamp), so it would still be learning them on the next build."""
    past = time.time() - 60
    for path in [folder / "corral.toml", *(folder / "app").rglob("*")]:
        os.utime(path, (past, past))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> CliProject:
    project = CliProject(tmp_path_factory.mktemp("noop"))
    project.corral("init", "--port", str(project.port))
    return project


def test_a_first_build_records_one_image_build_entry(project: CliProject) -> None:
    digest = project.json("build")["images"]["web"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert [(b["image"], b["digest"], b["cached"]) for b in builds(project)] == [
        ("web", digest, False)]


def test_a_second_build_with_no_change_leaves_every_file_under_corral_unchanged(
        project: CliProject) -> None:
    state = project.folder / ".corral"
    settle(project.folder)
    first = project.corral("build")  # the stat index learns the settled inputs
    before = snapshot(state)
    second = project.corral("build")
    after = snapshot(state)
    changed = {p: (before.get(p), after.get(p)) for p in before.keys() | after.keys()
               if before.get(p) != after.get(p)}
    assert not changed, f"a no-change build wrote under .corral/: {changed}"
    assert second.stdout == first.stdout
    assert "web: nothing changed since its last build" in second.stderr  # not even planned
    assert len(builds(project)) == 1, "a no-change build appended a ledger entry"


def test_a_changed_input_builds_a_new_image_and_records_it(project: CliProject) -> None:
    old = project.json("build")["images"]["web"]
    server = project.folder / "app" / "server.py"
    original = server.read_text()
    server.write_text(original + "\n# a change\n")
    new = project.json("build")["images"]["web"]
    assert new != old
    assert [(b["digest"], b["cached"]) for b in builds(project)][-1] == (new, False)
    server.write_text(original)
    back = project.json("build")["images"]["web"]
    assert back == old, "the same inputs gave another digest"
    recorded = builds(project)
    assert len(recorded) == 3
    assert (recorded[-1]["digest"], recorded[-1]["cached"]) == (old, True), \
        "moving the name back to an image that exists is a (cached) build"


_PROBE = """
import atexit, sys
atexit.register(lambda: print("MODULES " + " ".join(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["corral", "build"]
from corral.cli.main import main
main()
"""


def test_a_no_change_build_loads_neither_pydantic_the_builder_the_store_nor_rich(
        project: CliProject) -> None:
    project.corral("build")
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=project.folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    loaded = set(line.split()[1:])
    assert "nothing changed since its last build" in done.stderr
    assert {"pydantic", "corral.spec.model", "corral.images.build.builder",
            "corral.images.store", "sqlalchemy", "corral.stores.sql",
            "corral.engine.delivery.deploy", "httpx", "rich.console"} & loaded == set()
