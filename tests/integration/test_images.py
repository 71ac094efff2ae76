"""Real images: a debootstrap base with python3, checked by tools nobody here wrote."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.spec.model import ImageSpec

pytestmark = pytest.mark.integration

# Machine-wide like the real default (~/.cache/corral): the first run pays for debootstrap.
MACHINE_CACHE = Path(os.environ.get("CORRAL_TEST_CACHE",
                                    Path.home() / ".cache" / "corral-tests")) / "corral-cache"

PYTHON_IMAGE = ImageSpec.model_validate({
    "base": "debian:bookworm",
    "packages": ["python3"],
    "copy": [{"src": "app/", "dest": "/app"}],
    "workdir": "/app",
    "entrypoint": ["python3", "/app/server.py"],
})


def _project(folder: Path) -> Path:
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "server.py").write_text("import sys\nprint('hello from', sys.version)\n")
    return folder


def _needs(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def _needs_debootstrap() -> None:
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        pytest.skip("debootstrap is not installed")
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")


@pytest.fixture(scope="module")
def python_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalImageStore, str]:
    _needs_debootstrap()
    project = _project(tmp_path_factory.mktemp("one"))
    store = LocalImageStore(project / ".corral", cache_dir=MACHINE_CACHE)
    return store, store.build("web", PYTHON_IMAGE, project)


def test_a_debian_python_image_unpacks_with_python3(
        python_image: tuple[LocalImageStore, str]) -> None:
    store, digest = python_image
    root = store.unpack(digest)
    assert (root / "usr" / "bin" / "python3").exists()
    assert (root / "app" / "server.py").exists()
    # The driver provides /dev; the image keeps its symlinks (dev/fd) but no device node.
    modes = [p.lstat().st_mode for p in root.glob("dev/*")]
    assert not [m for m in modes if stat.S_ISCHR(m) or stat.S_ISBLK(m)]


def test_the_base_layer_is_the_machine_caches_file_linked_read_only(
        python_image: tuple[LocalImageStore, str]) -> None:
    store, digest = python_image
    base = store.layout.read_json(digest)["layers"][0]["digest"]
    blob = store.layout.blob_path(base)
    cached = list((MACHINE_CACHE / "bases").glob("*/layer.tar"))
    assert blob.stat().st_ino in {c.stat().st_ino for c in cached}
    assert blob.stat().st_mode & 0o777 == 0o444


def test_the_unpacked_root_runs_python_in_bubblewrap(
        python_image: tuple[LocalImageStore, str]) -> None:
    _needs("bwrap")
    store, digest = python_image
    root = store.unpack(digest)
    done = subprocess.run(
        ["bwrap", "--ro-bind", str(root), "/", "--dev", "/dev", "--proc", "/proc",
         "--tmpfs", "/tmp", "--unshare-all", "--unshare-user", "--uid", "65534",
         "--chdir", "/app", "/usr/bin/python3", "/app/server.py"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hello from 3.")


def test_the_same_spec_in_another_folder_gives_the_same_digest(
        python_image: tuple[LocalImageStore, str], tmp_path: Path) -> None:
    _, digest = python_image
    project = _project(tmp_path / "two")
    other = LocalImageStore(project / ".corral", cache_dir=MACHINE_CACHE)
    messages: list[str] = []
    assert other.build("web", PYTHON_IMAGE, project, progress=messages.append) == digest
    assert not any("first build" in m for m in messages)  # no second debootstrap


def test_a_rebuild_with_no_change_writes_no_new_blob(
        python_image: tuple[LocalImageStore, str]) -> None:
    store, digest = python_image
    before = sorted(p.name for p in store.layout.blobs.iterdir())
    project = store.state_dir.parent
    assert store.build("web", PYTHON_IMAGE, project) == digest
    assert sorted(p.name for p in store.layout.blobs.iterdir()) == before


def test_skopeo_reads_the_debian_image(python_image: tuple[LocalImageStore, str]) -> None:
    _needs("skopeo")
    store, digest = python_image
    done = subprocess.run(["skopeo", "inspect", f"oci:{store.layout.root}:web:latest"],
                          capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert seen["Digest"] == digest
    assert seen["Os"] == "linux" and len(seen["Layers"]) == 2


@pytest.fixture
def scratch_image(tmp_path: Path) -> tuple[LocalImageStore, str]:
    project = _project(tmp_path / "p")
    (project / "app" / "data").mkdir()
    (project / "app" / "data" / "x.txt").write_text("x\n")
    (project / "app" / "link").symlink_to("server.py")
    spec = ImageSpec.model_validate({"copy": [{"src": "app/", "dest": "/app"}],
                                     "entrypoint": ["/app/server.py"], "ports": [8000]})
    store = LocalImageStore(project / ".corral", cache_dir=tmp_path / "cache")
    return store, store.build("web", spec, project)


def test_umoci_unpacks_the_layout(scratch_image: tuple[LocalImageStore, str],
                                  tmp_path: Path) -> None:
    _needs("umoci")
    store, _ = scratch_image
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image",
                    f"{store.layout.root}:web:latest", str(bundle)],
                   capture_output=True, text=True, timeout=60, check=True)
    assert (bundle / "rootfs" / "app" / "data" / "x.txt").read_text() == "x\n"
    assert os.readlink(bundle / "rootfs" / "app" / "link") == "server.py"


def test_a_layout_written_by_skopeo_serves_as_a_base(
        scratch_image: tuple[LocalImageStore, str], tmp_path: Path) -> None:
    _needs("skopeo")
    store, _ = scratch_image
    copied = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", f"oci:{store.layout.root}:web:latest",
                    f"oci:{copied}:base"], capture_output=True, text=True, timeout=60,
                   check=True)
    project = tmp_path / "next"
    (project / "extra").mkdir(parents=True)
    (project / "extra" / "y.txt").write_text("y\n")
    spec = ImageSpec.model_validate({"base": f"layout:{copied}:base",
                                     "copy": [{"src": "extra/", "dest": "/extra"}]})
    built = LocalImageStore(project / ".corral", cache_dir=tmp_path / "cache")
    digest = built.build("next", spec, project)
    root = built.unpack(digest)
    assert (root / "app" / "data" / "x.txt").exists() and (root / "extra" / "y.txt").exists()
    assert built.config(digest).entrypoint == ("/app/server.py",)


RUN_IMAGE = PYTHON_IMAGE.model_copy(update={"run": (
    "python3 -m compileall -q /app",
    "rm -rf /usr/share/doc/python3.11",
    "python3 -c \"import socket; socket.create_connection(('deb.debian.org', 80), 3)\" "
    "|| echo offline > /app/network.txt",
)})


@pytest.fixture(scope="module")
def run_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalImageStore, str]:
    _needs_debootstrap()
    _needs("bwrap")
    project = _project(tmp_path_factory.mktemp("run"))
    store = LocalImageStore(project / ".corral", cache_dir=MACHINE_CACHE)
    return store, store.build("web", RUN_IMAGE, project)


def test_run_steps_add_their_changes_as_layers(run_image: tuple[LocalImageStore, str]) -> None:
    store, digest = run_image
    root = store.unpack(digest)
    assert list((root / "app" / "__pycache__").glob("server.cpython-*.pyc"))
    assert not (root / "usr" / "share" / "doc" / "python3.11").exists()
    assert (root / "usr" / "share" / "doc").is_dir()
    assert (root / "app" / "network.txt").read_text() == "offline\n"  # network off by default
    assert not (root / "tmp").exists() or not list((root / "tmp").iterdir())


def test_run_steps_are_reproducible_across_folders(run_image: tuple[LocalImageStore, str],
                                                    tmp_path: Path) -> None:
    _, digest = run_image
    project = _project(tmp_path / "again")
    other = LocalImageStore(project / ".corral", cache_dir=MACHINE_CACHE)
    assert other.build("web", RUN_IMAGE, project) == digest


def test_a_failing_run_step_says_which_and_how(python_image: tuple[LocalImageStore, str]) -> None:
    _needs("bwrap")
    store, _ = python_image
    failing = PYTHON_IMAGE.model_copy(update={"run": ("echo about to fail; exit 3",)})
    with pytest.raises(ImageError) as caught:
        store.build("broken", failing, store.state_dir.parent)
    assert "exit 3" in caught.value.message and "about to fail" in caught.value.message
