"""The ImageStore contract, run on the in-memory fake and on the real OCI layout store."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.errors import ImageError, NotFound
from corral.images import FakeImageStore, LocalImageStore
from corral.ports.images import ImageStore
from corral.spec.model import ImageSpec

MakeStore = Callable[[Path], ImageStore]

SPEC = ImageSpec.model_validate({
    "copy": [{"src": "app/", "dest": "/app", "exclude": ["*.pyc"]},
             {"src": "settings.toml", "dest": "/etc/app/", "mode": 0o600}],
    "env": {"APP_VERSION": "1"},
    "workdir": "/app",
    "user": "1000:1000",
    "entrypoint": ["python3", "/app/server.py"],
    "cmd": ["--verbose"],
    "ports": [8000],
    "labels": {"team": "shop"},
})


@pytest.fixture(params=["fake", "local"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    fakes: list[FakeImageStore] = []

    def make(project: Path) -> ImageStore:
        if request.param == "fake":
            fakes.append(FakeImageStore())
            return fakes[-1]
        return LocalImageStore(project / ".corral", cache_dir=tmp_path / "machine-cache")

    yield make
    for fake in fakes:
        fake.close()


def _project(folder: Path, greeting: str = "hello") -> Path:
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "server.py").write_text(f"print({greeting!r})\n")
    (folder / "app" / "server.pyc").write_bytes(b"\x00\x01")
    (folder / "settings.toml").write_text("debug = false\n")
    return folder


def test_a_build_is_named_by_its_manifest_digest(make_store: MakeStore, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    digest = store.build("web", SPEC, project)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert store.resolve("web") == store.resolve("web:latest") == store.resolve(digest) == digest


def test_the_same_inputs_in_another_folder_give_the_same_digest(make_store: MakeStore,
                                                                 tmp_path: Path) -> None:
    one, two = _project(tmp_path / "one"), _project(tmp_path / "two")
    assert make_store(one).build("web", SPEC, one) == make_store(two).build("web", SPEC, two)


def test_changed_content_gives_a_new_digest(make_store: MakeStore, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    first = store.build("web", SPEC, project)
    (project / "app" / "server.py").write_text("print('changed')\n")
    second = store.build("web", SPEC, project)
    assert first != second
    assert store.resolve("web") == second
    assert store.resolve(first) == first  # the old image is still there


def test_a_dry_build_gives_the_digest_a_build_would_and_moves_no_tag(
        make_store: MakeStore, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    first = store.build("web", SPEC, project)
    (project / "app" / "server.py").write_text("print('changed')\n")
    dry = store.build("web", SPEC, project, dry=True)
    assert dry != first and store.resolve("web") == first
    assert store.config(dry).env["APP_VERSION"] == "1"  # a plan can read what it would run
    assert store.build("web", SPEC, project) == dry and store.resolve("web") == dry


def test_the_config_carries_the_runtime_keys(make_store: MakeStore, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    digest = store.build("web", SPEC, project, labels={"corral.git": "abc"})
    config = store.config(digest)
    assert config.digest == digest
    assert config.entrypoint == ("python3", "/app/server.py")
    assert config.cmd == ("--verbose",)
    assert config.env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "APP_VERSION": "1"}
    assert (config.workdir, config.user, config.ports) == ("/app", "1000:1000", (8000,))
    provenance = {"dev.corral.spec.digest", "dev.corral.builder.version"}
    assert set(config.labels) == {"team", "corral.git", *provenance}
    assert (config.labels["team"], config.labels["corral.git"]) == ("shop", "abc")


def test_build_labels_change_the_digest(make_store: MakeStore, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    assert store.build("web", SPEC, project, labels={"a": "1"}) != store.build(
        "web", SPEC, project, labels={"a": "2"})


def test_the_unpacked_root_holds_the_copied_files(make_store: MakeStore, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    digest = store.build("web", SPEC, project)
    root = store.unpack(digest)
    assert (root / "app" / "server.py").read_text() == "print('hello')\n"
    assert not (root / "app" / "server.pyc").exists()
    assert (root / "etc" / "app" / "settings.toml").stat().st_mode & 0o777 == 0o600
    assert store.unpack(digest) == root


def test_the_unpacked_root_does_not_follow_later_edits(make_store: MakeStore,
                                                       tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    digest = store.build("web", SPEC, project)
    (project / "app" / "server.py").write_text("print('edited after build')\n")
    assert (store.unpack(digest) / "app" / "server.py").read_text() == "print('hello')\n"


def test_list_shows_each_image_with_its_names(make_store: MakeStore, tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(project)
    web = store.build("web", SPEC, project)
    api = store.build("api", ImageSpec.model_validate({"entrypoint": ["/bin/api"]}), project)
    summaries = {s.digest: s for s in store.list()}
    assert summaries[web].names == ("web:latest",)
    assert summaries[api].names == ("api:latest",)
    assert summaries[web].size > 0


def test_unknown_names_and_digests_are_not_found(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    missing = "sha256:" + "0" * 64
    for call in (lambda: store.resolve("nope"), lambda: store.resolve("web:v9"),
                 lambda: store.resolve(missing), lambda: store.config(missing),
                 lambda: store.unpack(missing)):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.hint


def test_a_missing_copy_source_is_an_image_error(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    spec = ImageSpec.model_validate({"copy": [{"src": "absent/", "dest": "/app"}]})
    with pytest.raises(ImageError, match="absent"):
        store.build("web", spec, tmp_path)


def test_a_run_step_on_scratch_is_refused_for_want_of_a_shell(make_store: MakeStore,
                                                              tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(ImageError, match="no /bin/sh"):
        store.build("web", ImageSpec.model_validate({"run": ["true"]}), tmp_path)


def test_a_context_removed_after_build_does_not_matter(make_store: MakeStore,
                                                       tmp_path: Path) -> None:
    project = _project(tmp_path / "p")
    store = make_store(tmp_path / "state")
    digest = store.build("web", SPEC, project)
    shutil.rmtree(project)
    assert (store.unpack(digest) / "app" / "server.py").exists()
