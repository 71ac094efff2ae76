"""images/fresh.py: the stamps of a build's inputs hold until one of them changes, and an
image is intact while its tag, blobs and SBOM are all there. Real files and a real local
store building a scratch image (no sandbox needed); the clock is passed in."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from corral.images import LocalImageStore, fresh
from corral.images.oci.layout import Layout
from corral.spec.model import CopyStep, ImageSpec

LATER = time.time_ns() + 3_600 * 10**9  # stamped an hour from now: no file is racy
NO_ORIGINS: frozenset[str] = frozenset()


def _project(folder: Path) -> Path:
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "main.py").write_text("print('hi')\n")
    (folder / "corral.toml").write_text("[project]\nname = 'x'\n")
    (folder / ".corral" / "cache").mkdir(parents=True)
    (folder / ".git").mkdir()
    return folder


def _stamp(folder: Path, origins: frozenset[str] = NO_ORIGINS,
           now: int = LATER) -> dict[str, Any]:
    """Stamped before a build and after it, nothing changing in between."""
    inputs = fresh.stamp_inputs(fresh.folder_stamp(folder, now_ns=now), origins)
    assert inputs is not None
    return inputs


def _holds(folder: Path, origins: frozenset[str] = NO_ORIGINS, now: int = LATER) -> bool:
    return fresh.inputs_hold(_stamp(folder, origins, now))


def test_unchanged_inputs_hold(tmp_path: Path) -> None:
    assert _holds(_project(tmp_path))


@pytest.mark.parametrize("change", ["edit", "add", "remove", "chmod", "rename", "add folder"])
def test_any_change_in_the_project_folder_breaks_them(tmp_path: Path, change: str) -> None:
    folder = _project(tmp_path)
    inputs = _stamp(folder)
    main = folder / "app" / "main.py"
    if change == "edit":
        main.write_text("print('bye')\n")
    elif change == "add":
        (folder / "app" / "extra.py").write_text("")
    elif change == "remove":
        main.unlink()
    elif change == "chmod":
        main.chmod(0o755)
    elif change == "rename":
        main.rename(folder / "app" / "main2.py")
    else:
        (folder / "app" / "sub").mkdir()
    assert not fresh.inputs_hold(inputs)


def test_the_state_folder_and_git_are_not_stamped(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    inputs = _stamp(folder)
    (folder / ".corral" / "cache" / "new").write_text("state")
    (folder / ".git" / "index").write_text("git")
    assert fresh.inputs_hold(inputs)
    (folder / "app" / ".git").mkdir()  # only at the top: a nested one is project content
    assert not fresh.inputs_hold(inputs)


def test_a_recently_modified_file_is_compared_by_content(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    main = folder / "app" / "main.py"
    modified = main.stat().st_mtime_ns
    inputs = _stamp(folder, now=modified + 1)  # within the racy window: by content
    row = next(r for r in inputs["tree"] if r[0] == "app/main.py")
    assert row[4] == 0 and row[6]
    os.utime(main, ns=(modified + 5, modified + 5))  # touched: the same content holds
    assert fresh.inputs_hold(inputs)
    main.write_text("print('hx')\n")  # same size, other content
    os.utime(main, ns=(modified, modified))
    assert not fresh.inputs_hold(inputs)


def test_a_file_origin_is_compared_by_content_and_by_absence(tmp_path: Path) -> None:
    folder = _project(tmp_path / "p")
    outside = tmp_path / "layer.json"
    outside.write_text('{"digest": "a"}')
    origin = frozenset({fresh.file_origin(outside)})
    inputs = _stamp(folder, origin)
    assert fresh.inputs_hold(inputs)
    outside.write_text('{"digest": "b"}')
    assert not fresh.inputs_hold(inputs)
    outside.unlink()
    assert not fresh.inputs_hold(inputs)


def test_inputs_that_changed_while_the_build_ran_are_not_stamped(tmp_path: Path) -> None:
    folder = _project(tmp_path / "p")
    before = fresh.folder_stamp(folder, now_ns=LATER)
    (folder / "app" / "main.py").write_text("print('saved during the build')\n")
    assert fresh.stamp_inputs(before, NO_ORIGINS) is None
    before = fresh.folder_stamp(folder, now_ns=LATER)
    index = tmp_path / "index.json"
    index.write_text('{"manifests": []}')
    read = fresh.file_origin(index)  # as the build read it
    index.write_text('{"manifests": [{"moved": "by a later image of the same build"}]}')
    assert fresh.stamp_inputs(before, frozenset({read})) is None
    assert fresh.stamp_inputs(None, NO_ORIGINS) is None


def test_a_link_is_stamped_with_its_target(tmp_path: Path) -> None:
    folder = _project(tmp_path / "p")
    target = tmp_path / "data.txt"
    target.write_text("one")
    (folder / "app" / "data.txt").symlink_to(target)
    inputs = _stamp(folder)
    target.write_text("two, longer")
    assert not fresh.inputs_hold(inputs)


def test_a_volatile_origin_a_huge_folder_or_a_large_new_file_cannot_be_stamped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _project(tmp_path)
    before = fresh.folder_stamp(folder, now_ns=LATER)
    assert fresh.stamp_inputs(before, frozenset({fresh.volatile_origin("copy .git")})) is None
    modified = (folder / "app" / "main.py").stat().st_mtime_ns
    monkeypatch.setattr(fresh, "MAX_RACY_SIZE", 4)  # just modified and "large": hashed at
    assert fresh.folder_stamp(folder, now_ns=modified) is None  # every check, so not stamped
    monkeypatch.setattr(fresh, "MAX_ENTRIES", 2)
    assert fresh.folder_stamp(folder, now_ns=LATER) is None


def test_a_damaged_record_holds_nothing(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    inputs = _stamp(folder)
    assert not fresh.inputs_hold({**inputs, "tree": "not rows"})
    assert not fresh.inputs_hold({"files": {}})
    assert not fresh.inputs_hold({**inputs, "folder": str(tmp_path / "gone")})


@pytest.mark.parametrize(("src", "exclude", "covered"), [
    ("app/", (), True),
    ("app/main.py", (), True),
    (".", (".corral", ".git"), True),  # a Dockerfile's COPY . (it excludes both)
    (".", (".git",), False),  # would copy the state folder
    ("./", (), False),
    (".git/config", (), False),
    (".corral/", (), False),
    ("../elsewhere", (), False),
    ("/etc/passwd", (), False),
    ("link-out", (), False),  # a link out of the folder
])
def test_which_copy_steps_a_stamp_covers(tmp_path: Path, src: str, exclude: tuple[str, ...],
                                          covered: bool) -> None:
    folder = _project(tmp_path / "p")
    (tmp_path / "elsewhere").mkdir()
    (folder / "link-out").symlink_to(tmp_path / "elsewhere")
    step = CopyStep.model_construct(src=src, dest="/x/", exclude=exclude)  # as the builder
    assert fresh.stamped(step, folder) is covered


def test_an_image_is_intact_until_its_tag_a_blob_or_its_sbom_goes(tmp_path: Path) -> None:
    folder = _project(tmp_path)
    store = LocalImageStore(folder / ".corral", cache_dir=tmp_path / "machine-cache")
    image = ImageSpec.model_validate({"copy": [{"src": "app/", "dest": "/app"}]})
    digest = store.build("web", image, folder)
    assert store.build_origins("web") == frozenset()  # scratch, files of the folder only
    state = folder / ".corral"
    assert fresh.image_intact(state, "web", digest)
    assert not fresh.image_intact(state, "other", digest)
    assert not fresh.image_intact(state, "web", "sha256:" + "0" * 64)

    layout = Layout(state / "images")
    manifest = layout.read_json(digest)
    layer = layout.blob_path(manifest["layers"][0]["digest"])
    held = layer.read_bytes()
    layer.unlink()
    assert not fresh.image_intact(state, "web", digest)
    layer.write_bytes(held)
    assert fresh.image_intact(state, "web", digest)

    index = layout.read_index()
    layout_index = state / "images" / "index.json"
    kept = layout_index.read_text()
    index["manifests"] = [d for d in index["manifests"] if not d.get("artifactType")]
    layout_index.write_text(json.dumps(index))
    assert not fresh.image_intact(state, "web", digest), "the SBOM is gone"
    layout_index.write_text(kept)
    assert fresh.image_intact(state, "web", digest)


def test_a_build_names_its_debian_and_layout_bases_and_what_it_cannot_stamp(
        tmp_path: Path) -> None:
    folder = _project(tmp_path)
    store = LocalImageStore(folder / ".corral", cache_dir=tmp_path / "machine-cache")
    base = ImageSpec.model_validate({"copy": [{"src": "app/", "dest": "/app"}]})
    store.build("base", base, folder)
    on_layout = ImageSpec(base="layout:.corral/images:base:latest")
    store.build("app", on_layout, folder)
    layout = Layout(folder / ".corral" / "images")
    read = fresh.tag_origin(layout, "base:latest")
    tagged = layout.find_tag("base:latest")
    assert tagged is not None and read.endswith(f"\tbase:latest\t{tagged['digest']}")
    assert store.build_origins("app") == frozenset({read})  # the tag as the build resolved it
    inputs = fresh.stamp_inputs(fresh.folder_stamp(folder, now_ns=LATER), frozenset({read}))
    assert inputs is not None and fresh.inputs_hold(inputs)
    base2 = ImageSpec.model_validate({"copy": [{"src": "app/", "dest": "/elsewhere"}]})
    store.build("base", base2, folder)  # the base's tag moves
    assert not fresh.inputs_hold(inputs)
    whole = ImageSpec.model_validate({"copy": [{"src": ".", "dest": "/srv",
                                                "exclude": [".corral"]}]})
    store.build("whole", whole, folder)
    assert store.build_origins("whole") == frozenset({fresh.volatile_origin("copy .")})
