"""RUN after USER runs as that user, and COPY --chown takes names, as people write them:
a user made by `useradd -m` in one step (its home chowned to it), then steps run as that
user (its uid, primary and supplementary groups, HOME), the files they make owned by it in
the layer, the permissions of a non-root user enforced, and the user part of the step key.
Built for real: a Debian base from the machine cache, bubblewrap, gosu."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.spec.model import ImageSpec

pytestmark = pytest.mark.integration

MACHINE_CACHE = Path(os.environ.get("CORRAL_TEST_CACHE",
                                    Path.home() / ".cache" / "corral-tests")) / "corral-cache"

USERS = """FROM debian:bookworm
RUN groupadd -g 4321 crew && useradd -m -u 1234 -U -G crew app
"""

DOCKERFILE = USERS + """USER app
RUN id -u > $HOME/uid && id -G > $HOME/groups && echo $HOME > $HOME/home && touch $HOME/made
RUN --mount=type=cache,id=corral-tests-run-as-user,target=/home/app/.cache,uid=1234,gid=1234 \
    rm -f $HOME/.cache/marker && id -u > $HOME/.cache/marker && touch $HOME/cached
COPY --chown=app:crew notes.txt /srv/crew.txt
COPY --chown=app notes.txt /srv/app.txt
COPY --chown=7:8 notes.txt /srv/numbers.txt
"""


def _project(folder: Path, dockerfile: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("notes\n")
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


def _written(folder: Path, dockerfile: str) -> Path:
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


def _build(folder: Path, said: list[str] | None = None) -> tuple[LocalImageStore, str]:
    if os.geteuid() != 0 or shutil.which("bwrap") is None or shutil.which("gosu") is None:
        pytest.skip("needs root, bubblewrap and gosu (make setup installs them)")
    if not (MACHINE_CACHE / "bases").is_dir() and shutil.which("debootstrap") is None:
        pytest.skip("no cached Debian base and no debootstrap to make one")
    store = LocalImageStore(folder / ".corral", cache_dir=MACHINE_CACHE)
    image = ImageSpec.model_validate({"dockerfile": "Dockerfile", "packages": ["python3"]})
    return store, store.build("app", image, folder,
                              progress=None if said is None else said.append)


def _top_layers(store: LocalImageStore, digest: str, count: int) -> dict[str, tarfile.TarInfo]:
    """The entries of the image's last `count` layers, by name, with their content."""
    found: dict[str, tarfile.TarInfo] = {}
    for layer in store.layout.read_json(digest)["layers"][-count:]:
        with tarfile.open(store.layout.blob_path(layer["digest"])) as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                member.pax_headers = {"content": data.read().decode()} if data else {}
                found[member.name] = member
    return found


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project for the module: its step cache and layer cache serve every test (each
    writes the Dockerfile it builds)."""
    return _project(tmp_path_factory.mktemp("user") / "p", DOCKERFILE)


@pytest.fixture(scope="module")
def built(folder: Path) -> tuple[LocalImageStore, str, list[str]]:
    said: list[str] = []
    (folder / "Dockerfile").write_text(DOCKERFILE)
    store, digest = _build(folder, said)
    return store, digest, said


def test_useradd_makes_a_home_owned_by_the_new_user(
        built: tuple[LocalImageStore, str, list[str]]) -> None:
    store, digest, _ = built
    home = _top_layers(store, digest, 6)["home/app"]
    assert (home.uid, home.gid) == (1234, 1234)


def test_a_run_after_user_runs_as_that_user_and_its_files_are_its_own(
        built: tuple[LocalImageStore, str, list[str]]) -> None:
    store, digest, said = built
    entries = _top_layers(store, digest, 5)
    content = {name: entry.pax_headers.get("content") for name, entry in entries.items()}
    assert content["home/app/uid"] == "1234\n"
    assert content["home/app/groups"] == "1234 4321\n"  # primary, then supplementary
    assert content["home/app/home"] == "/home/app\n"
    made = entries["home/app/made"]
    assert (made.uid, made.gid) == (1234, 1234)
    assert any("(as app): running in bubblewrap" in line for line in said)


def test_a_cache_mount_with_uid_is_the_users_to_write(
        built: tuple[LocalImageStore, str, list[str]]) -> None:
    store, digest, _ = built
    assert "home/app/cached" in _top_layers(store, digest, 4)  # the step ran to its end
    folder = MACHINE_CACHE / "run-cache" / hashlib.sha256(
        b"corral-tests-run-as-user").hexdigest()[:24]
    assert (folder / "marker").read_text() == "1234\n"
    assert (folder.stat().st_uid, folder.stat().st_gid) == (1234, 1234)


def test_copy_chown_takes_names_from_the_images_passwd_and_group(
        built: tuple[LocalImageStore, str, list[str]]) -> None:
    store, digest, _ = built
    entries = _top_layers(store, digest, 3)
    owners = {name: (entries[name].uid, entries[name].gid)
              for name in ("srv/crew.txt", "srv/app.txt", "srv/numbers.txt")}
    # A name without a group takes the uid as gid, as Docker documents it.
    assert owners == {"srv/crew.txt": (1234, 4321), "srv/app.txt": (1234, 1234),
                      "srv/numbers.txt": (7, 8)}


def test_the_user_is_part_of_the_step_key(folder: Path) -> None:
    """The same command under another USER is another step: never served from the cache
    of the first, although the layers below are the same."""
    step = 'RUN echo "$(id -u)" > /opt/who\n'
    below = USERS + "RUN chmod 777 /opt\n"
    first: list[str] = []
    _build(_written(folder, below + "USER app\n" + step), first)
    second: list[str] = []
    store, digest = _build(_written(folder, below + "USER 1234\n" + step), second)
    assert [line for line in first if "/opt/who (as app): running in bubblewrap" in line]
    assert [line for line in second if "chmod 777 /opt (cached)" in line]
    assert [line for line in second if "/opt/who (as 1234): running in bubblewrap" in line]
    assert _top_layers(store, digest, 1)["opt/who"].pax_headers["content"] == "1234\n"


def test_a_user_step_gets_a_users_permissions_and_the_error_names_its_line(
        folder: Path) -> None:
    _written(folder, USERS + "USER app\nRUN touch /etc/app.conf\n")
    with pytest.raises(ImageError, match=r"Dockerfile:4: run 'touch /etc/app.conf' failed"
                                         r"(.|\n)*Permission denied"):
        _build(folder)


def test_a_workdir_after_user_is_made_as_that_user(folder: Path) -> None:
    """As BuildKit does (docker/cli#3346's Dockerfile): the missing folders of a WORKDIR
    written after USER are that user's, so its steps may write there; an existing folder
    keeps its owner."""
    _written(folder, USERS + "USER app\nWORKDIR /home/app/public/site\n"
             "RUN touch made && id -u > who\n")
    store, digest = _build(folder)
    entries = _top_layers(store, digest, 1)
    for name in ("home/app/public", "home/app/public/site", "home/app/public/site/made"):
        assert (entries[name].uid, entries[name].gid, entries[name].mode & 0o777) == (
            1234, 1234, 0o755 if entries[name].isdir() else entries[name].mode & 0o777), name
    assert entries["home/app/public/site/who"].pax_headers["content"] == "1234\n"
    assert "home/app" not in entries, "useradd's home was there already: left as it was"


def test_a_home_the_dockerfile_sets_is_kept_for_a_user_step(folder: Path) -> None:
    """Docker keeps an `ENV HOME` for a USER's steps (it sets HOME from /etc/passwd only
    when the environment has none, or an empty one); gosu alone would replace it."""
    _written(folder, USERS + "ENV HOME=/opt/apphome\nUSER app\nRUN echo $HOME > /tmp/home\n"
             "USER root\nENV HOME=\nUSER app\nRUN echo \"[$HOME]\" > /tmp/empty\n")
    store, digest = _build(folder)
    entries = _top_layers(store, digest, 2)
    assert entries["tmp/home"].pax_headers["content"] == "/opt/apphome\n"
    assert entries["tmp/empty"].pax_headers["content"] == "[/home/app]\n", \
        "an empty HOME is as unset: the passwd entry's, as runc does"


def test_an_unknown_chown_name_is_a_located_error(folder: Path) -> None:
    _written(folder, "FROM debian:bookworm\nCOPY --chown=ghost notes.txt /srv/\n")
    with pytest.raises(ImageError, match=r"Dockerfile:2: --chown=ghost: the image's "
                                         r"/etc/passwd has no user 'ghost'") as refused:
        _build(folder)
    assert "useradd" in str(refused.value)


def test_without_root_the_step_runs_as_the_user_bubblewrap_maps_corral_to(
        tmp_path: Path) -> None:
    """corral run by an ordinary user: bubblewrap's own namespace maps that user to the
    step's uid and gid, and the layer records the step's files as theirs."""
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("bwrap"):
        pytest.skip("needs root (to become another user), setpriv and bubblewrap")
    home = Path(tempfile.mkdtemp(prefix="corral-nonroot-"))  # /tmp: reachable by nobody
    try:
        project = _project(home / "p", "FROM scratch\nCOPY rootfs/ /\nUSER 1234:4321\n"
                           "RUN touch /made && busybox id -u > /ids && busybox id -g >> /ids\n")
        (project / "rootfs" / "bin").mkdir(parents=True)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", project / "rootfs" / "bin")
        (project / "rootfs" / "bin" / "sh").symlink_to("busybox")
        (project / "corral.toml").write_text('[project]\nname = "plain"\n\n[images.x]\n'
                                             'dockerfile = "Dockerfile"\n')
        subprocess.run(["chown", "-R", "65534:65534", str(home)], check=True)
        done = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
             sys.executable, "-m", "corral", "build", "--json"], cwd=project,
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "HOME": str(home), "CORRAL_CACHE": str(home / "cache")})
        assert done.returncode == 0, done.stderr
        store = LocalImageStore(project / ".corral")
        entries = _top_layers(store, json.loads(done.stdout)["images"]["x"], 1)
        assert {name: (e.uid, e.gid) for name, e in entries.items()} == {
            "made": (1234, 4321), "ids": (1234, 4321)}
        assert entries["ids"].pax_headers["content"] == "1234\n4321\n"
    finally:
        shutil.rmtree(home, ignore_errors=True)
