"""`corral build` with nothing changed prints the last digests without building; any input
that changed makes it build (engine/images/fresh.py). A real project in a git work tree,
three Dockerfile images (`web` FROM the local image `base`, built after it), the real CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cli_project import CliProject

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SPEC = """[project]
name = "fresh"

[images.base]
dockerfile = "base.Dockerfile"

[images.app]
dockerfile = "Dockerfile"
build_args = { GREETING = "hello" }

[images.web]
dockerfile = "web.Dockerfile"
"""

FRESH = "nothing changed since its last build"


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@x",
                    *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> CliProject:
    folder = tmp_path_factory.mktemp("fresh")
    (folder / "corral.toml").write_text(SPEC)
    (folder / "base.Dockerfile").write_text("FROM scratch\nCOPY lib/ /lib/\n")
    (folder / "Dockerfile").write_text("FROM scratch\nARG GREETING\nENV GREETING=$GREETING\n"
                                       "COPY app/ /app/\nCMD [\"/app/run\"]\n")
    (folder / "web.Dockerfile").write_text("FROM base\nCOPY app/run /web/run\n")
    (folder / "lib").mkdir()
    (folder / "lib" / "util.txt").write_text("a library\n")
    (folder / "app").mkdir()
    (folder / "app" / "run").write_text("#!/bin/sh\necho hi\n")
    (folder / ".gitignore").write_text(".corral/\n")
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "first")
    return CliProject(folder)


def build(project: CliProject, *args: str,
          env: dict[str, str] | None = None) -> tuple[dict[str, str], bool]:
    """(digests, whether the build was skipped as unchanged)."""
    import json

    done = project.corral("build", *args, "--json", env=env)
    return json.loads(done.stdout)["images"], FRESH in done.stderr


def test_a_second_build_with_nothing_changed_is_not_built_again(project: CliProject) -> None:
    first, skipped = build(project)
    assert not skipped and set(first) == {"app", "base", "web"}
    assert build(project) == (first, True)
    human = project.corral("build")
    assert human.stdout.splitlines() == [f"{name}  {first[name]}" for name in sorted(first)]
    assert f"app: {FRESH}" in human.stderr and "layer" not in human.stderr


def test_a_changed_project_file_builds_and_the_old_inputs_give_the_old_digest(
        project: CliProject) -> None:
    before, _ = build(project)
    run = project.folder / "app" / "run"
    run.write_text("#!/bin/sh\necho changed\n")
    changed, skipped = build(project)
    assert not skipped and changed["app"] != before["app"]  # (base too: the tree is dirty)
    run.write_text("#!/bin/sh\necho hi\n")
    back, skipped = build(project)
    assert not skipped and back == before
    assert build(project) == (before, True)


def test_an_added_file_or_an_edited_spec_builds_again(project: CliProject) -> None:
    before, _ = build(project)
    (project.folder / "NOTES.md").write_text("not copied, but in the folder\n")
    assert build(project) == (before, False)
    spec = project.folder / "corral.toml"
    text = spec.read_text()
    spec.write_text(text + "# a comment\n")
    commented, skipped = build(project)  # other digests: the work tree is dirty now
    assert not skipped and commented != before
    spec.write_text(text)
    assert build(project) == (before, False)
    assert build(project) == (before, True)


def test_another_build_arg_or_image_name_is_another_build(project: CliProject) -> None:
    before, _ = build(project)
    other, skipped = build(project, "app", "--build-arg", "GREETING=hi")
    assert not skipped and other["app"] != before["app"]
    # The plain build's record still holds its inputs, but `app:latest` moved: it builds.
    again, skipped = build(project)
    assert not skipped and again == before
    one, skipped = build(project, "base")
    assert not skipped and one == {"base": before["base"]}
    assert build(project, "base") == ({"base": before["base"]}, True)


def test_a_rebuilt_local_base_makes_its_users_build(project: CliProject) -> None:
    before, _ = build(project)
    assert build(project, "web") == ({"web": before["web"]}, False)
    assert build(project, "web") == ({"web": before["web"]}, True)
    (project.folder / "lib" / "util.txt").write_text("a library, changed\n")
    base, _ = build(project, "base")
    assert base["base"] != before["base"]
    (project.folder / "lib" / "util.txt").write_text("a library\n")  # not web's own input
    web, skipped = build(project, "web")  # its files are as they were; its base's tag moved
    assert not skipped and web["web"] != before["web"]
    assert build(project, "web") == (web, True)
    assert build(project)[0] == before


def test_a_commit_or_source_date_epoch_builds_again(project: CliProject) -> None:
    before, _ = build(project)
    assert build(project)[1]
    git(project.folder, "add", "-A")
    git(project.folder, "commit", "-q", "-m", "second")
    committed, skipped = build(project)
    assert not skipped and committed["app"] != before["app"], "a new revision label"
    dated, skipped = build(project, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert not skipped and dated["app"] != committed["app"]
    assert build(project) == (committed, False)
    assert build(project) == (committed, True)


def test_a_missing_blob_builds_it_again(project: CliProject) -> None:
    import json

    before, _ = build(project)
    images = project.folder / ".corral" / "images"
    manifest = json.loads((images / "blobs" / "sha256" / before["app"][7:]).read_text())
    layer = images / "blobs" / "sha256" / manifest["layers"][-1]["digest"][7:]
    layer.unlink()
    assert build(project) == (before, False)
    assert layer.is_file()
    assert build(project) == (before, True)


def test_an_unknown_environment_is_still_refused(project: CliProject) -> None:
    assert build(project)[1]
    done = project.corral("build", "--env", "staging", check=False)
    assert done.returncode != 0 and "staging" in done.stderr
