"""corral push/pull against Debian's docker-registry, read and written by skopeo and umoci.

Every registry here is a real `docker-registry` process on loopback with its own storage
folder; corral runs as a user runs it (the CLI in a subprocess).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

for _tool in ("docker-registry", "skopeo"):
    if shutil.which(_tool) is None:
        pytest.skip(f"{_tool} is not installed", allow_module_level=True)

SPEC = """[project]
name = "reg"

[images.small]
base = "{base}"
copy = [{{ src = "app/", dest = "/app" }}]
entrypoint = ["/app/hello.sh"]
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Registry:
    address: str
    storage: Path
    log: Path

    def requests(self, method: str, needle: str = "") -> list[str]:
        """Access-log lines (combined format) of `method` requests whose URI holds `needle`."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines
                if line.startswith("127.0.0.1 - ") and f'"{method} ' in line and needle in line]

    def blob_file(self, digest: str) -> Path:
        hexpart = digest.partition(":")[2]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


@pytest.fixture
def start_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Registry]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(htpasswd: Path | None = None) -> Registry:
        folder = tmp_path_factory.mktemp("registry")
        address = f"127.0.0.1:{free_port()}"
        auth = (f"auth:\n  htpasswd:\n    realm: corral-test\n    path: {htpasswd}\n"
                if htpasswd else "")
        (folder / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: {address}\n{auth}")
        log = folder / "registry.log"
        with log.open("wb") as out:
            process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
                                       stdout=out, stderr=subprocess.STDOUT)
        started.append(process)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{address}/v2/", timeout=1).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "docker-registry did not answer in 30 s"
            time.sleep(0.1)
        return Registry(address, folder / "storage", log)

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Project:
    def __init__(self, folder: Path, base: str = "scratch", payload: bytes = b"") -> None:
        self.folder = folder
        (folder / "app").mkdir(parents=True)
        (folder / "app" / "hello.sh").write_text("#!/bin/sh\necho hello\n")
        (folder / "app" / "payload.bin").write_bytes(payload or os.urandom(64 << 10))
        (folder / "corral.toml").write_text(SPEC.format(base=base))

    def corral(self, *args: str, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "corral", *args], cwd=self.folder,
                              capture_output=True, text=True, timeout=240,
                              env={**os.environ, **(env or {})})
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, f"corral {args}: {done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
        return json.loads(self.corral(*args, "--json", env=env).stdout)

    @property
    def layout(self) -> Path:
        return self.folder / ".corral" / "images"

    def blobs(self) -> set[str]:
        folder = self.layout / "blobs" / "sha256"
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"skopeo {args}: {done.stderr}"
    return done.stdout


def blobs_of(project: Project, digest: str) -> tuple[set[str], list[str]]:
    """The distinct blobs a push of `digest` carries (image and referrers), and the
    referrers (the builder attaches an SBOM to every image)."""
    from corral.images.oci.layout import Layout
    from corral.images.oci.referrers import referrers_of

    layout = Layout(project.layout)
    referrers = [r["digest"] for r in referrers_of(layout, digest)]
    blobs: set[str] = set()
    for manifest in [digest, *referrers]:
        content = layout.read_json(manifest)
        blobs |= {d["digest"] for d in [content["config"], *content["layers"]]}
    return blobs, referrers


def built(folder: Path, **kwargs: object) -> tuple[Project, str]:
    project = Project(folder, **kwargs)  # type: ignore[arg-type]
    return project, str(project.json("build", "small")["images"]["small"])


def test_skopeo_inspects_and_copies_what_corral_pushed(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry()
    project, digest = built(tmp_path / "p")
    report = project.json("push", f"{registry.address}/team/small:1")
    blobs, referrers = blobs_of(project, digest)
    assert report["digest"] == digest and report["uploaded"] == len(blobs)
    assert report["referrers"] == referrers
    inspected = json.loads(skopeo("inspect", "--tls-verify=false",
                                  f"docker://{registry.address}/team/small:1"))
    assert inspected["Digest"] == digest
    # Without the flag skopeo gzips plain tar layers on their way into an OCI layout.
    skopeo("copy", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers",
           f"docker://{registry.address}/team/small:1", f"oci:{tmp_path / 'copy'}:small")
    ours = json.loads((project.layout / "blobs/sha256" / digest[7:]).read_text())
    copied_index = json.loads((tmp_path / "copy" / "index.json").read_text())
    copied_digest = copied_index["manifests"][0]["digest"]
    copied = json.loads((tmp_path / "copy/blobs/sha256" / copied_digest[7:]).read_text())
    assert [x["digest"] for x in copied["layers"]] == [x["digest"] for x in ours["layers"]]
    assert copied_digest == digest


def test_corral_pulls_what_skopeo_pushed_with_the_same_digest(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry()
    source, _ = built(tmp_path / "source")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{source.layout}:small:latest",
           f"docker://{registry.address}/skopeo/small:7")
    expected = json.loads(skopeo("inspect", "--tls-verify=false",
                                 f"docker://{registry.address}/skopeo/small:7"))["Digest"]
    target = Project(tmp_path / "target")
    report = target.json("pull", f"{registry.address}/skopeo/small:7")
    assert report["digest"] == expected and report["local"] == "small:7"
    listed = target.json("images")["images"]
    assert [(i["names"], i["digest"]) for i in listed] == [(["small:7"], expected)]
    by_digest = Project(tmp_path / "by-digest")
    assert by_digest.json("pull", f"{registry.address}/skopeo/small@{expected}")[
        "digest"] == expected


def test_umoci_unpacks_an_image_corral_pulled(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed")
    registry = start_registry()
    source, _ = built(tmp_path / "source")
    source.corral("push", f"{registry.address}/team/small:1")
    target = Project(tmp_path / "target")
    target.corral("pull", f"{registry.address}/team/small:1")
    bundle = tmp_path / "bundle"
    done = subprocess.run(["umoci", "unpack", "--rootless", "--image",
                           f"{target.layout}:small:1", str(bundle)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (bundle / "rootfs/app/hello.sh").read_text() == "#!/bin/sh\necho hello\n"
    assert (bundle / "rootfs/app/payload.bin").read_bytes() == (
        source.folder / "app/payload.bin").read_bytes()


def test_a_second_repository_gets_the_blobs_by_cross_repository_mount(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry()
    project, digest = built(tmp_path / "p")
    project.corral("push", f"{registry.address}/team/small:1")
    uploads_before = len(registry.requests("PUT", "/blobs/uploads/"))
    report = project.json("push", f"{registry.address}/other/small:1")
    assert report["mounted"] >= 2 and report["uploaded"] == 0
    mounts = [line for line in registry.requests("POST", "mount=") if '" 201 ' in line]
    assert len(mounts) == report["mounted"]
    assert len(registry.requests("PUT", "/blobs/uploads/")) == uploads_before
    again = project.json("push", f"{registry.address}/other/small:1")
    assert (again["mounted"], again["uploaded"]) == (0, 0)
    assert again["present"] >= len(blobs_of(project, digest)[0])


def test_a_large_blob_goes_up_in_chunks_and_skopeo_reads_it_back(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry()
    project, digest = built(tmp_path / "p", payload=os.urandom(3 << 20))
    project.corral("push", f"{registry.address}/big/small:1", "--chunk-size", "1")
    assert len(registry.requests("PATCH", "/v2/big/small/blobs/uploads/")) >= 3
    skopeo("copy", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers",
           f"docker://{registry.address}/big/small:1", f"oci:{tmp_path / 'copy'}:small")
    assert json.loads((tmp_path / "copy/index.json").read_text())["manifests"][0][
        "digest"] == digest


def test_a_corrupted_blob_is_rejected_and_nothing_is_stored(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry()
    project, digest = built(tmp_path / "p")
    project.corral("push", f"{registry.address}/team/small:1")
    manifest = json.loads((project.layout / "blobs/sha256" / digest[7:]).read_text())
    layer = manifest["layers"][0]["digest"]
    data = registry.blob_file(layer)
    tampered = bytearray(data.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    data.write_bytes(bytes(tampered))
    target = Project(tmp_path / "target")
    done = target.corral("pull", f"{registry.address}/team/small:1", check=False)
    assert done.returncode == 1
    assert "does not match its digest" in done.stderr
    assert layer[7:] not in target.blobs() and digest[7:] not in target.blobs()
    assert not [name for name in target.blobs() if name.startswith(".tmp")]
    index = target.layout / "index.json"
    assert not index.exists() or json.loads(index.read_text())["manifests"] == []


def _htpasswd(folder: Path, user: str, password: str) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            pytest.skip("no bcrypt implementation (crypt module) to write an htpasswd file")
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.skip("this libcrypt cannot make bcrypt hashes")
    path = folder / "htpasswd"
    path.write_text(f"{user}:{hashed}\n")
    return path


def test_basic_auth_against_a_registry_with_htpasswd(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry(htpasswd=_htpasswd(tmp_path, "alice", "s3cret"))
    project, digest = built(tmp_path / "p")
    ref = f"{registry.address}/team/small:1"
    anonymous = project.corral("push", ref, check=False,
                               env={"CORRAL_REGISTRY_AUTH": str(tmp_path / "none.json"),
                                    "HOME": str(tmp_path)})
    assert anonymous.returncode == 1 and "needs credentials" in anonymous.stderr
    wrong = project.corral("push", ref, check=False, env={
        "CORRAL_REGISTRY_USER": "alice", "CORRAL_REGISTRY_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "refused the credentials" in wrong.stderr
    good = {"CORRAL_REGISTRY_USER": "alice", "CORRAL_REGISTRY_PASSWORD": "s3cret"}
    assert project.json("push", ref, env=good)["digest"] == digest
    credentials = tmp_path / "registries.json"
    credentials.write_text(json.dumps(
        {"registries": {registry.address: {"username": "alice", "password": "s3cret"}}}))
    target = Project(tmp_path / "target")
    pulled = target.json("pull", ref, env={"CORRAL_REGISTRY_AUTH": str(credentials)})
    assert pulled["digest"] == digest
    inspected = skopeo("inspect", "--tls-verify=false", "--creds", "alice:s3cret",
                       f"docker://{ref}")
    assert json.loads(inspected)["Digest"] == digest


def test_referrers_travel_with_the_image_through_the_fallback_tag(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    from corral.images.oci.layout import MANIFEST_MEDIA_TYPE, Layout
    from corral.images.oci.referrers import add_referrer, artifact_blob, referrers_of

    registry = start_registry()
    project, digest = built(tmp_path / "p")
    layout = Layout(project.layout)
    subject = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest,
               "size": len(layout.read_blob(digest))}
    signature = add_referrer(layout, subject, "application/vnd.corral.test.signature",
                             b"not really a signature")["digest"]
    expected = [r["digest"] for r in referrers_of(layout, digest)]
    assert signature in expected and len(expected) >= 2  # the builder's SBOM, and this one
    report = project.json("push", f"{registry.address}/team/small:1")
    assert report["referrers"] == expected
    listed = json.loads(skopeo("inspect", "--raw", "--tls-verify=false",
                               f"docker://{registry.address}/team/small:"
                               f"sha256-{digest[7:]}"))
    assert sorted(m["digest"] for m in listed["manifests"]) == expected
    assert "application/vnd.corral.test.signature" in {m["artifactType"]
                                                       for m in listed["manifests"]}
    target = Project(tmp_path / "target")
    pulled = target.json("pull", f"{registry.address}/team/small:1")
    assert sorted(pulled["referrers"]) == expected
    found = referrers_of(Layout(target.layout), digest)
    assert [r["digest"] for r in found] == expected
    mine = next(r for r in found if r["digest"] == signature)
    assert artifact_blob(Layout(target.layout), mine) == b"not really a signature"


def test_an_oci_base_is_pulled_pinned_in_corral_lock_and_then_built_offline(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry()
    source, base_digest = built(tmp_path / "source")
    source.corral("push", f"{registry.address}/base/small:1")
    base = f"oci:{registry.address}/base/small:1"
    child = Project(tmp_path / "child", base=base)
    first = child.json("build", "small")["images"]["small"]
    lock = json.loads((child.folder / "corral.lock").read_text())
    assert lock["bases"] == {base: base_digest}
    child_manifest = json.loads((child.layout / "blobs/sha256" / first[7:]).read_text())
    base_manifest = json.loads((source.layout / "blobs/sha256" / base_digest[7:]).read_text())
    assert child_manifest["layers"][:1] == base_manifest["layers"]
    # The tag moves on the registry; the pin keeps the build where it was, without asking.
    other, _ = built(tmp_path / "other")
    other.corral("push", f"{registry.address}/base/small:1")
    gets = len(registry.requests("GET", "/v2/base/small/manifests/"))
    assert child.json("build", "small")["images"]["small"] == first
    assert len(registry.requests("GET", "/v2/base/small/manifests/")) == gets
    # Deleting the pin re-resolves the tag.
    (child.folder / "corral.lock").unlink()
    assert child.json("build", "small")["images"]["small"] != first


@pytest.mark.parametrize("size", [1, (64 << 10) - 1, 64 << 10, (64 << 10) + 1, 3 << 17])
def test_an_upload_of_any_size_around_the_chunk_size_arrives_whole(
        start_registry: Callable[..., Registry], tmp_path: Path, size: int) -> None:
    from corral.images.registry import RegistryClient, parse_reference

    registry = start_registry()
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(size))
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    ref = parse_reference(f"{registry.address}/chunks/blob:1")
    with RegistryClient(ref, chunk_size=64 << 10) as client:
        client.upload(ref.repository, blob, digest, size, None)
        assert client.has_blob(ref.repository, digest)
        fetched, length = client.fetch_blob(ref.repository, digest, tmp_path)
    assert (length, fetched.read_bytes()) == (size, blob.read_bytes())
    patches = len(registry.requests("PATCH", "/v2/chunks/blob/blobs/uploads/"))
    assert patches == (0 if size <= 64 << 10 else -(-size // (64 << 10)))


def test_push_and_pull_report_their_transfer_time_and_need_no_valid_spec(
        start_registry: Callable[..., Registry], tmp_path: Path) -> None:
    registry = start_registry()
    project, digest = built(tmp_path / "p")
    (project.folder / "corral.toml").write_text("[project]\nno_such_key = 1\n")
    pushed = project.json("push", f"{registry.address}/team/small:1", "--image", digest)
    target = Project(tmp_path / "target")
    (target.folder / "corral.toml").write_text("not even toml [")
    pulled = target.json("pull", f"{registry.address}/team/small:1")
    assert pulled["digest"] == pushed["digest"] == digest
    assert 0 < pushed["seconds"] < 240 and 0 < pulled["seconds"] < 240
    missing = target.corral("pull", f"{registry.address}/team/small:1", "-f", "absent.toml",
                            check=False)
    assert missing.returncode == 1 and "no such spec file" in missing.stderr
