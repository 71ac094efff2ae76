"""An OCI distribution client: blobs (HEAD, mount, upload, verified download) and
manifests, with basic and bearer auth answered from the registry's challenge.

It speaks HTTP and verifies digests; it decides nothing about what to push or pull.
Every failure a user can meet becomes an ImageError or NotFound saying which registry.
"""

from __future__ import annotations

import contextlib
import json
import threading
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from corral.errors import ImageError, NotFound
from corral.images.oci.sink import BlobSink
from corral.images.registry.auth import (
    CREDENTIALS_HINT,
    Credentials,
    fetch_token,
    find_credentials,
    parse_challenge,
)
from corral.images.registry.http import (
    Body,
    FileSlice,
    HttpClient,
    Response,
    TransportError,
    with_query,
)
from corral.images.registry.reference import Reference, scheme_for
from corral.images.registry.tls import verifying_context

# Each chunk costs a round trip in which the registry stores its hash state (~20 ms on
# loopback, 7% of a 200 MB push in 64 MiB chunks), so most layers go in one request; larger
# blobs go in chunks, and a registry or proxy that refuses a body that large (413) gets the
# blob again in smaller chunks, down to MIN_CHUNK.
DEFAULT_CHUNK = 256 << 20
MIN_CHUNK = 1 << 20
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def manifest_media_type(data: bytes, fallback: str) -> str:
    """A manifest's own mediaType, else the Content-Type it came with, else OCI's."""
    try:
        value = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        value = None
    return str(value or fallback or MANIFEST_TYPES[0])


class RegistryClient:
    """One registry (host[:port]); safe to share between threads."""

    def __init__(self, ref: Reference, *, insecure: bool = False,
                 credentials: Credentials | None = None, chunk_size: int = DEFAULT_CHUNK,
                 timeout: float = 120.0) -> None:
        self.registry = ref.registry
        self.base = f"{scheme_for(ref, insecure)}://{ref.registry}"
        self.credentials = credentials or find_credentials(ref.registry)
        self.chunk_size = chunk_size
        self.http = HttpClient(timeout=timeout, tls=verifying_context())
        self._auth: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport and auth ----------------------------------------------------------------

    def send(self, method: str, url: str, *, stream: bool = False, body: Body = None,
             headers: dict[str, str] | None = None,
             params: dict[str, str] | None = None) -> Response:
        """Send, answering a 401 challenge (basic or bearer) and retrying. The body is read
        whole unless `stream`."""
        target = url if url.startswith(("http://", "https://")) else self.base + url
        if params:
            target = with_query(target, params)
        headers = dict(headers or {})
        for attempt in (1, 2, 3):
            if self._auth and target.startswith(self.base + "/"):
                headers["Authorization"] = self._auth  # never to another host's location
            response = self._transport(method, target, headers, body)
            if response.status_code != 401 or attempt == 3:
                break
            challenge_header = response.headers.get("www-authenticate", "")
            response.close()
            self._answer(challenge_header, sent=headers.get("Authorization"))
        if response.status_code in (401, 403):
            response.close()
            what = "refused the credentials" if self.credentials else "needs credentials"
            if response.status_code == 403:
                what = "denied access"
            raise ImageError(f"registry {self.registry} {what} for {method} {url.split('?')[0]}"
                             f" ({response.status_code})", hint=CREDENTIALS_HINT)
        if not stream:
            try:
                response.read()
            except TransportError as exc:
                raise ImageError(f"registry {self.registry} broke off {method} "
                                 f"{url.split('?')[0]}: {exc}") from None
        return response

    def _transport(self, method: str, url: str, headers: dict[str, str],
                   body: Body) -> Response:
        try:
            return self.http.request(method, url, headers=headers, body=body)
        except TransportError as exc:
            hint = "is the registry running, and is HOST:PORT right?"
            if self.base.startswith("https") and "SSL" in str(exc).upper():
                hint = "for a plain-http registry outside loopback, pass --insecure"
            raise ImageError(f"registry {self.registry} is unreachable: {exc}",
                             hint=hint) from None

    def _answer(self, header: str, sent: str | None) -> None:
        challenge = parse_challenge(header)
        if challenge is None:
            raise ImageError(f"registry {self.registry} wants an unsupported auth scheme: "
                             f"{header or '(none)'}", hint=CREDENTIALS_HINT)
        with self._lock:
            if self._auth != sent:
                return  # another thread already answered a challenge; retry with its answer
            if challenge.scheme == "basic":
                if self.credentials is None:
                    raise ImageError(f"registry {self.registry} needs credentials",
                                     hint=CREDENTIALS_HINT)
                self._auth = self.credentials.basic()
            else:
                self._auth = "Bearer " + fetch_token(self.http, challenge, self.credentials,
                                                     self.registry)

    # -- the API ---------------------------------------------------------------------------

    def ping(self) -> None:
        response = self.send("GET", "/v2/")
        if response.status_code != 200:
            raise ImageError(f"{self.base} does not speak the OCI distribution API "
                             f"(GET /v2/ answered {response.status_code})")

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self.send("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code in (200, 307):
            return True
        if response.status_code == 404:
            return False
        raise self._unexpected(response, f"HEAD blob {digest[:19]}")

    def mount(self, repository: str, digest: str, source: str) -> str | None:
        """Cross-repository mount; None when mounted, else the upload location to use."""
        response = self.send("POST", f"/v2/{repository}/blobs/uploads/",
                             params={"mount": digest, "from": source})
        if response.status_code == 201:
            return None
        if response.status_code == 202:
            return self._location(response)
        raise self._unexpected(response, f"mount {digest[:19]} from {source}")

    def upload(self, repository: str, path: Path, digest: str, size: int,
               location: str | None = None) -> None:
        """Upload a blob: one PUT when it fits a chunk, else PATCH chunks then PUT. When a
        request is refused as too large (413), the upload starts over in chunks a quarter
        the size."""
        chunk = self.chunk_size
        while True:
            if location is None:
                response = self.send("POST", f"/v2/{repository}/blobs/uploads/")
                if response.status_code != 202:
                    raise self._unexpected(response, "start an upload")
                location = self._location(response)
            response = self._send_blob(location, path, digest, size, chunk)
            if response.status_code == 201:
                return
            if response.status_code != 413 or chunk <= MIN_CHUNK:
                raise self._unexpected(response, f"upload {digest[:19]}")
            self._abandon(location)
            chunk, location = max(MIN_CHUNK, min(chunk, size) // 4), None

    def _send_blob(self, location: str, path: Path, digest: str, size: int,
                   chunk: int) -> Response:
        """The PATCHes and the closing PUT of one upload session; the first answer that is
        not a success, else the PUT's."""
        octets = {"Content-Type": "application/octet-stream"}
        final: FileSlice | None = None
        if size > chunk:
            for offset in range(0, size, chunk):
                length = min(chunk, size - offset)
                headers = {**octets, "Content-Range": f"{offset}-{offset + length - 1}"}
                response = self.send("PATCH", location, headers=headers,
                                     body=FileSlice(path, offset, length))
                if response.status_code != 202:
                    return response
                location = self._location(response)
        else:
            final = FileSlice(path, 0, size)
        return self.send("PUT", with_query(location, {"digest": digest}), body=final,
                         headers=octets)

    def _abandon(self, location: str) -> None:
        """Cancel an upload session (best effort: the registry expires it anyway)."""
        with contextlib.suppress(ImageError):
            self.send("DELETE", location)

    def fetch_blob(self, repository: str, digest: str, folder: Path) -> tuple[Path, int]:
        """Download a blob into a temporary file in `folder`, verified against `digest` and
        durable on disk. A mismatching or broken download is deleted and rejected; the caller
        renames a good one."""
        response = self.send("GET", f"/v2/{repository}/blobs/{digest}", stream=True)
        with contextlib.closing(response):
            if response.status_code == 404:
                raise NotFound(f"blob {digest} is not in {self.registry}/{repository}")
            if response.status_code != 200:
                raise self._unexpected(response, f"GET blob {digest[:19]}")
            with BlobSink(folder) as sink:
                try:
                    for chunk in response.iter_raw():
                        sink.write(chunk)
                except TransportError as exc:
                    raise ImageError(f"download of blob {digest[:19]} from {self.registry} "
                                     f"broke off after {sink.size} bytes: {exc}",
                                     hint="nothing was stored; run the pull again") from None
                if sink.digest != digest:
                    raise ImageError(f"blob {digest[:19]} from {self.registry}/{repository} "
                                     f"does not match its digest (got {sink.digest[:19]})",
                                     hint="the registry served corrupt content; nothing was "
                                     "stored")
        return sink.path, sink.size

    def get_manifest(self, repository: str, reference: str,
                     accept: tuple[str, ...] = MANIFEST_TYPES) -> tuple[bytes, str] | None:
        """(bytes, media type) of a manifest, or None when the registry does not know it."""
        response = self.send("GET", f"/v2/{repository}/manifests/{reference}",
                             headers={"Accept": ", ".join(accept)})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unexpected(response, f"GET manifest {reference}")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return response.content, media_type

    def put_manifest(self, repository: str, reference: str, data: bytes,
                     media_type: str) -> Message:
        response = self.send("PUT", f"/v2/{repository}/manifests/{reference}", body=data,
                             headers={"Content-Type": media_type})
        if response.status_code != 201:
            raise self._unexpected(response, f"PUT manifest {reference}")
        return response.headers

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """Descriptors from the referrers API, or None when the registry has no such API."""
        response = self.send("GET", f"/v2/{repository}/referrers/{digest}",
                             headers={"Accept": MANIFEST_TYPES[1]})
        if response.status_code != 200 or not response.headers.get(
                "content-type", "").startswith(MANIFEST_TYPES[1]):
            return None
        manifests = response.json().get("manifests", [])
        return [m for m in manifests if isinstance(m, dict)]

    # -- helpers ---------------------------------------------------------------------------

    def _location(self, response: Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise ImageError(f"registry {self.registry} gave no upload location")
        return urljoin(response.url, location)

    def _unexpected(self, response: Response, what: str) -> ImageError:
        detail = ""
        with contextlib.suppress(Exception):
            errors = response.json().get("errors", [])
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        return ImageError(f"registry {self.registry}: {what} answered "
                          f"{response.status_code}{': ' + detail if detail else ''}")
