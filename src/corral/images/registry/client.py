"""An OCI distribution client on httpx: blobs (HEAD, mount, upload, verified download) and
manifests, with basic and bearer auth answered from the registry's challenge.

It speaks HTTP and verifies digests; it decides nothing about what to push or pull.
Every failure a user can meet becomes an ImageError or NotFound saying which registry.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from corral.errors import ImageError, NotFound
from corral.images.registry.auth import (
    CREDENTIALS_HINT,
    Credentials,
    fetch_token,
    find_credentials,
    parse_challenge,
)
from corral.images.registry.reference import Reference, scheme_for
from corral.images.registry.tls import verifying_context
from corral.images.sink import BlobSink

# Large enough that a loopback upload is a handful of PATCHes, small enough that a failed
# chunk costs little to send again.
DEFAULT_CHUNK = 64 << 20
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_SLICE = 1 << 20


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
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0),
                                 follow_redirects=True, verify=verifying_context(),
                                 limits=httpx.Limits(max_connections=16))
        self._auth: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- transport and auth ----------------------------------------------------------------

    def send(self, method: str, url: str, *, stream: bool = False,
             body: Callable[[], Iterator[bytes]] | None = None,
             **kwargs: Any) -> httpx.Response:
        """Send, answering a 401 challenge (basic or bearer) and retrying. `body` makes a
        fresh streamed body for each attempt."""
        target = url if url.startswith(("http://", "https://")) else self.base + url
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (1, 2, 3):
            if self._auth and target.startswith(self.base + "/"):
                headers["Authorization"] = self._auth  # never to another host's location
            if body is not None:
                kwargs["content"] = body()
            request = self.http.build_request(method, target, headers=headers, **kwargs)
            response = self._transport(request)
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
            except httpx.HTTPError as exc:
                raise ImageError(f"registry {self.registry} broke off {method} "
                                 f"{url.split('?')[0]}: {exc}") from None
        return response

    def _transport(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            hint = "is the registry running, and is HOST:PORT right?"
            if self.base.startswith("https") and "SSL" in str(exc).upper():
                hint = "for a plain-http registry outside loopback, pass --insecure"
            raise ImageError(f"registry {self.registry} is unreachable: "
                             f"{type(exc).__name__}: {exc}", hint=hint) from None

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
        """Upload a blob: one PUT when it fits a chunk, else PATCH chunks then PUT."""
        if location is None:
            response = self.send("POST", f"/v2/{repository}/blobs/uploads/")
            if response.status_code != 202:
                raise self._unexpected(response, "start an upload")
            location = self._location(response)
        octets = {"Content-Type": "application/octet-stream"}
        final: Callable[[], Iterator[bytes]] = _no_body
        final_length = 0
        if size > self.chunk_size:
            for offset in range(0, size, self.chunk_size):
                length = min(self.chunk_size, size - offset)
                headers = {**octets, "Content-Length": str(length),
                           "Content-Range": f"{offset}-{offset + length - 1}"}
                response = self.send("PATCH", location, headers=headers,
                                     body=functools.partial(_slices, path, offset, length))
                if response.status_code != 202:
                    raise self._unexpected(response, f"upload a chunk of {digest[:19]}")
                location = self._location(response)
        else:
            final, final_length = functools.partial(_slices, path, 0, size), size
        url = str(httpx.URL(location).copy_merge_params({"digest": digest}))
        response = self.send("PUT", url, body=final,
                             headers={**octets, "Content-Length": str(final_length)})
        if response.status_code != 201:
            raise self._unexpected(response, f"finish the upload of {digest[:19]}")

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
                except httpx.HTTPError as exc:
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
                     media_type: str) -> httpx.Headers:
        response = self.send("PUT", f"/v2/{repository}/manifests/{reference}", content=data,
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

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise ImageError(f"registry {self.registry} gave no upload location")
        return str(response.url.join(location))

    def _unexpected(self, response: httpx.Response, what: str) -> ImageError:
        detail = ""
        with contextlib.suppress(Exception):
            errors = response.json().get("errors", [])
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        return ImageError(f"registry {self.registry}: {what} answered "
                          f"{response.status_code}{': ' + detail if detail else ''}")


def _slices(path: Path, offset: int, length: int) -> Iterator[bytes]:
    """`length` bytes of `path` from `offset`, read in slices so a chunk never sits in memory;
    a file that changed size under us is an error, never a short upload."""
    with path.open("rb") as handle:
        handle.seek(offset)
        while length > 0:
            data = handle.read(min(_SLICE, length))
            if not data:
                raise ImageError(f"{path} ended {length} bytes early during an upload")
            length -= len(data)
            yield data


def _no_body() -> Iterator[bytes]:
    return iter(())
