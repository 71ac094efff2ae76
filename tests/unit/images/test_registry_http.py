"""The registry client against a small scripted HTTP server: the bearer token flow, basic
challenges, broken downloads, digest checks and image indexes.

The real registry (docker-registry) is in tests/integration/test_registry.py; this server
exists for what that registry cannot show here: a token realm, and misbehaviour on demand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from corral.errors import ImageError, NotFound
from corral.images.oci.layout import Layout, canonical_json
from corral.images.registry.client import RegistryClient
from corral.images.registry.platforms import host_platform
from corral.images.registry.pull import pull_image
from corral.images.registry.reference import parse_reference

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Script:
    """What the fake serves: path → (status, headers, body); who may ask; what was asked."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(
        default_factory=lambda: {"/v2/": (200, {}, b"{}")})
    auth: str | None = None  # "basic" or "bearer": challenge every /v2/ request without it
    token_calls: list[dict[str, list[str]]] = field(default_factory=list)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    truncate: set[str] = field(default_factory=set)  # paths whose body is cut short
    address: str = ""


class Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def _answer(self) -> None:
        script = self.script
        url = urlsplit(self.path)
        authorization = self.headers.get("Authorization")
        script.seen.append((self.command, url.path, authorization))
        if url.path == "/token":
            return self._token(parse_qs(url.query), authorization)
        if script.auth == "bearer" and authorization != "Bearer good-token":
            challenge = (f'Bearer realm="http://{script.address}/token",service="fake",'
                         'scope="repository:team/web:pull"')
            return self._send(401, {"WWW-Authenticate": challenge}, b"")
        if script.auth == "basic" and authorization != "Basic " + base64.b64encode(
                b"alice:pw").decode():
            return self._send(401, {"WWW-Authenticate": 'Basic realm="fake"'}, b"")
        status, headers, body = script.routes.get(url.path, (404, {}, b"{}"))
        if url.path in script.truncate:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return None
        return self._send(status, headers, body)

    def _token(self, query: dict[str, list[str]], authorization: str | None) -> None:
        self.script.token_calls.append(query)
        if authorization != "Basic " + base64.b64encode(b"alice:pw").decode():
            return self._send(401, {}, b"")
        return self._send(200, {"Content-Type": "application/json"},
                          json.dumps({"token": "good-token"}).encode())

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture
def fake() -> Iterator[Script]:
    script = Script()
    handler = type("BoundHandler", (Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    script.address = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield script
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def serve_image(script: Script, repo: str = "team/web") -> tuple[str, bytes, list[str]]:
    """Put a two-blob image under tag 1; return (manifest digest, manifest, blob digests)."""
    layer, config = b"layer bytes" * 100, canonical_json({"rootfs": {"diff_ids": []}})
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(layer), "size": len(layer)}]})
    for blob in (layer, config):
        script.routes[f"/v2/{repo}/blobs/{sha(blob)}"] = (200, {}, blob)
    for reference in ("1", sha(manifest)):
        script.routes[f"/v2/{repo}/manifests/{reference}"] = (
            200, {"Content-Type": OCI_MANIFEST}, manifest)
    return sha(manifest), manifest, [sha(config), sha(layer)]


def client_for(script: Script, **kwargs: object) -> RegistryClient:
    return RegistryClient(parse_reference(f"{script.address}/team/web:1"), **kwargs)  # type: ignore[arg-type]


def test_the_bearer_flow_gets_a_token_from_the_realm_once_and_reuses_it(fake: Script,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_REGISTRY_USER", "alice")
    monkeypatch.setenv("CORRAL_REGISTRY_PASSWORD", "pw")
    fake.auth = "bearer"
    digest, manifest, _ = serve_image(fake)
    with client_for(fake) as client:
        client.ping()
        assert client.get_manifest("team/web", "1") == (manifest, OCI_MANIFEST)
        assert client.has_blob("team/web", digest) is False  # manifests are not blobs
    assert fake.token_calls == [{"service": ["fake"], "scope": ["repository:team/web:pull"]}]
    assert [auth for _, path, auth in fake.seen if path != "/token"][1:] == [
        "Bearer good-token"] * 3


def test_a_token_realm_that_refuses_the_credentials_is_a_clear_error(
        fake: Script, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_REGISTRY_USER", "alice")
    monkeypatch.setenv("CORRAL_REGISTRY_PASSWORD", "wrong")
    fake.auth = "bearer"
    with client_for(fake) as client, pytest.raises(ImageError, match="refused the credentials"):
        client.ping()


def test_a_basic_challenge_without_credentials_says_how_to_give_them(
        fake: Script, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CORRAL_REGISTRY_USER", raising=False)
    monkeypatch.setenv("CORRAL_REGISTRY_AUTH", str(tmp_path / "absent.json"))
    monkeypatch.setenv("HOME", str(tmp_path))
    fake.auth = "basic"
    with client_for(fake) as client, pytest.raises(ImageError) as caught:
        client.ping()
    assert "needs credentials" in caught.value.message
    assert "CORRAL_REGISTRY_USER" in (caught.value.hint or "")


def test_basic_credentials_from_the_credentials_file_answer_the_challenge(
        fake: Script, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CORRAL_REGISTRY_USER", raising=False)
    credentials = tmp_path / "registries.json"
    credentials.write_text(json.dumps(
        {"registries": {fake.address: {"username": "alice", "password": "pw"}}}))
    monkeypatch.setenv("CORRAL_REGISTRY_AUTH", str(credentials))
    fake.auth = "basic"
    with client_for(fake) as client:
        client.ping()


def test_a_download_that_breaks_off_leaves_no_file_behind(fake: Script, tmp_path: Path) -> None:
    _, _, blobs = serve_image(fake)
    fake.truncate.add(f"/v2/team/web/blobs/{blobs[1]}")
    with client_for(fake) as client, pytest.raises(ImageError, match="broke off"):
        client.fetch_blob("team/web", blobs[1], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_blob_that_does_not_match_its_digest_is_never_stored(
        fake: Script, tmp_path: Path) -> None:
    digest, _, blobs = serve_image(fake)
    fake.routes[f"/v2/team/web/blobs/{blobs[1]}"] = (200, {}, b"something else entirely")
    layout = Layout(tmp_path / "layout")
    with client_for(fake) as client, pytest.raises(ImageError, match="does not match"):
        pull_image(client, layout, parse_reference(f"{fake.address}/team/web:1"))
    assert not layout.has_blob(blobs[1]) and not layout.has_blob(digest)
    assert [p.name for p in layout.blobs.iterdir() if p.name.startswith(".tmp")] == []


def test_a_manifest_pulled_by_digest_must_have_that_digest(
        fake: Script, tmp_path: Path) -> None:
    _, manifest, _ = serve_image(fake)
    claimed = sha(b"another manifest")
    fake.routes[f"/v2/team/web/manifests/{claimed}"] = (200, {"Content-Type": OCI_MANIFEST},
                                                         manifest)
    layout = Layout(tmp_path / "layout")
    with client_for(fake) as client, pytest.raises(ImageError, match="does not match"):
        pull_image(client, layout, parse_reference(f"{fake.address}/team/web@{claimed}"))
    assert list(layout.blobs.iterdir()) == []


def test_an_unknown_tag_is_not_found(fake: Script, tmp_path: Path) -> None:
    with client_for(fake) as client, pytest.raises(NotFound, match="tag 'nope'"):
        pull_image(client, Layout(tmp_path), parse_reference(f"{fake.address}/team/web:nope"))


def test_an_image_index_resolves_to_the_host_platform(fake: Script, tmp_path: Path) -> None:
    digest, manifest, blobs = serve_image(fake)
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(b"other"), "size": 5,
         "platform": {"os": "linux", "architecture": "not-" + host_platform()}},
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
         "platform": {"os": "linux", "architecture": host_platform()}}]})
    fake.routes["/v2/team/web/manifests/multi"] = (200, {"Content-Type": OCI_INDEX}, index)
    layout = Layout(tmp_path / "layout")
    with client_for(fake) as client:
        report = pull_image(client, layout, parse_reference(f"{fake.address}/team/web:multi"))
    assert report.digest == digest and report.blobs == blobs
    assert all(layout.has_blob(b) for b in [digest, *blobs])
