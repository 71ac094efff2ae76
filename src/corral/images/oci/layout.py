"""An OCI image layout on disk: content-addressed blobs, `oci-layout`, and `index.json` tags.

Responsible for storing blobs atomically with their digest verified, and for the tag table
(`org.opencontainers.image.ref.name` annotations). It knows nothing of how images are built.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from corral.errors import ImageError, NotFound
from corral.images.oci.sink import BlobSink

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
PLAIN_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """The one JSON encoding of manifests and configs, so equal content has an equal digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hex_of(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef"
                                                               for c in hexpart):
        raise ImageError(f"{digest!r} is not a sha256 digest",
                         hint="digests look like sha256:<64 hex digits>")
    return hexpart


class Layout:
    """One OCI image layout folder (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def ensure(self) -> None:
        if (self.root / "oci-layout").exists():
            return
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._write_atomic(self.root / "index.json", canonical_json(self._empty_index()))
        self._write_atomic(self.root / "oci-layout",
                           canonical_json({"imageLayoutVersion": "1.0.0"}))

    # -- blobs ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hex_of(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the image layout {self.root}",
                           hint="run `corral build` to (re)create the image") from None

    def read_json(self, digest: str) -> dict[str, Any]:
        data = self.read_blob(digest)
        if digest_of(data) != digest:
            raise ImageError(f"blob {digest} in {self.root} does not match its digest",
                             hint="delete the blob and run `corral build` again")
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ImageError(f"blob {digest} is not a JSON object")
        return value

    def write_blob(self, data: bytes, expected: str | None = None) -> tuple[str, int]:
        """Store `data`; return (digest, size). Refuses data that does not match `expected`."""
        digest = digest_of(data)
        if expected is not None and digest != expected:
            raise ImageError(f"content does not match its digest {expected} (got {digest})")
        if not self.has_blob(digest):
            self.ensure()
            self._write_atomic(self.blob_path(digest), data)
        return digest, len(data)

    def ingest_file(self, source: Path, expected: str) -> int:
        """Copy `source` in as blob `expected`, hashing while copying; return its size."""
        if self.has_blob(expected):
            return self.blob_path(expected).stat().st_size
        self.ensure()
        with source.open("rb") as reader:
            return self._stream_in(reader, expected)

    def link_in(self, source: Path, expected: str) -> int:
        """Take `source`, a read-only file already verified to be blob `expected`, as a
        hardlink (a copy across file systems); return its size. The inode is then shared:
        nothing may write it in place, which its 0444 mode says."""
        if self.has_blob(expected):
            return self.blob_path(expected).stat().st_size
        self.ensure()
        tmp = self.blobs / f".tmp-link-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.link(source, tmp)
            os.rename(tmp, self.blob_path(expected))
        except OSError:  # another file system, links refused, a gc in between: copy
            tmp.unlink(missing_ok=True)
            return self.ingest_file(source, expected)
        return self.blob_path(expected).stat().st_size

    def _stream_in(self, reader: BinaryIO, expected: str) -> int:
        target = self.blob_path(expected)
        with BlobSink(self.blobs) as sink:  # removes its file if this block raises
            while chunk := reader.read(_CHUNK):
                sink.write(chunk)
            if sink.digest != expected:
                raise ImageError(f"content does not match its digest {expected}",
                                 hint="the source is corrupt; rebuild or pull it again")
        try:  # durable now: only then does it get its name
            os.chmod(sink.path, 0o644)
            os.rename(sink.path, target)
        except BaseException:
            sink.path.unlink(missing_ok=True)
            raise
        return sink.size

    def adopt_file(self, tmp: Path, digest: str) -> None:
        """Move a file whose digest the caller computed while writing it into the blobs."""
        if self.has_blob(digest):
            tmp.unlink()
            return
        self.ensure()
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.blob_path(digest))

    # -- index.json ----------------------------------------------------------------------

    def read_index(self) -> dict[str, Any]:
        try:
            index = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return self._empty_index()
        except ValueError as exc:
            raise ImageError(f"{self.root / 'index.json'} is not valid JSON: {exc}",
                             hint="restore it, or delete the layout and rebuild") from None
        if not isinstance(index, dict):
            raise ImageError(f"{self.root / 'index.json'} is not an OCI index")
        return index

    def descriptors(self) -> list[dict[str, Any]]:
        manifests = self.read_index().get("manifests", [])
        return [m for m in manifests if isinstance(m, dict)]

    def find_tag(self, ref: str) -> dict[str, Any] | None:
        for descriptor in self.descriptors():
            if descriptor.get("annotations", {}).get(REF_NAME) == ref:
                return descriptor
        return None

    def tag(self, ref: str, descriptor: dict[str, Any]) -> None:
        """Point `ref` at `descriptor`; an image that loses its last tag stays, untagged."""
        if self.find_tag(ref) == {**descriptor, "annotations": {REF_NAME: ref}}:
            return  # already so: a no-change rebuild writes nothing
        self.ensure()
        with self._locked():
            index = self.read_index()
            kept: list[dict[str, Any]] = []
            for old in index.get("manifests", []):
                if old.get("annotations", {}).get(REF_NAME) == ref:
                    old = {k: v for k, v in old.items() if k != "annotations"}
                kept.append(old)
            kept.append({**descriptor, "annotations": {REF_NAME: ref}})
            tagged = {d["digest"] for d in kept if REF_NAME in d.get("annotations", {})}
            kept = [d for d in kept
                    if REF_NAME in d.get("annotations", {}) or d["digest"] not in tagged]
            index["manifests"] = _without_duplicates(kept)
            self._write_atomic(self.root / "index.json", canonical_json(index))

    def add_descriptor(self, descriptor: dict[str, Any]) -> None:
        """List an untagged manifest (a referrer) in index.json, once."""
        if descriptor in self.descriptors():
            return
        self.ensure()
        with self._locked():
            index = self.read_index()
            index["manifests"] = _without_duplicates([*index.get("manifests", []), descriptor])
            self._write_atomic(self.root / "index.json", canonical_json(index))

    def drop_descriptors_unlocked(self, digests: set[str]) -> None:
        """Remove every index entry (tagged or not) pointing at one of `digests`; the caller
        holds `locked()`."""
        index = self.read_index()
        index["manifests"] = [d for d in index.get("manifests", [])
                              if d.get("digest") not in digests]
        self._write_atomic(self.root / "index.json", canonical_json(index))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """gc's hold on the layout: no index writer, and no build in progress (builds hold
        `building()`, shared), so nothing half-written can look unreferenced."""
        self.ensure()
        with (self.root / ".gc.lock").open("a") as gc_lock:
            fcntl.flock(gc_lock, fcntl.LOCK_EX)
            with self._locked():
                yield

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Held (shared) while a build or a pull writes blobs that nothing references yet."""
        self.ensure()
        with (self.root / ".gc.lock").open("a") as gc_lock:
            fcntl.flock(gc_lock, fcntl.LOCK_SH)
            yield

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @staticmethod
    def _empty_index() -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}

    @staticmethod
    def _write_atomic(target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _without_duplicates(descriptors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    unique = []
    for descriptor in descriptors:
        key = canonical_json(descriptor).decode()
        if key not in seen:
            seen.add(key)
            unique.append(descriptor)
    return unique


def copy_tree_blob(source: Layout, target: Layout, digest: str) -> int:
    """Copy one blob between layouts, verifying it; return its size."""
    path = source.blob_path(digest)
    if not path.is_file():
        raise ImageError(f"blob {digest} is missing from the layout {source.root}",
                         hint="the base layout is incomplete; export it again")
    return target.ingest_file(path, digest)


__all__ = ["Layout", "canonical_json", "copy_tree_blob", "digest_of", "hex_of"]
