"""The registry client's TLS: trust anchors load on the first https connection, and
verification is as strict as httpx's default (chain and host name checked)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images.registry import RegistryClient, parse_reference
from corral.images.registry.tls import LazyTrustContext
from loopback import self_signed


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/v2/", cert
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def client() -> RegistryClient:
    return RegistryClient(parse_reference("registry.invalid/team/web:1"), timeout=30)


def trust_of(registry: RegistryClient) -> LazyTrustContext:
    context = registry.http.tls
    assert isinstance(context, LazyTrustContext)
    return context


def test_a_new_client_has_loaded_no_certificates_yet() -> None:
    with client() as registry:
        context = trust_of(registry)
        assert context.cert_store_stats()["x509_ca"] == 0
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_unknown_certificate_is_refused_after_the_anchors_load(
        https: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = https
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with client() as registry, pytest.raises(ImageError, match="unreachable"):
        registry.send("GET", url)
    with client() as registry:
        context = trust_of(registry)
        with pytest.raises(ImageError):
            registry.send("GET", url)
        assert context.cert_store_stats()["x509_ca"] > 0


def test_a_certificate_from_ssl_cert_file_is_trusted(
        https: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert = https
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with client() as registry:
        assert registry.send("GET", url).status_code == 200
