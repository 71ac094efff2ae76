"""FakeImageStore: the ImageStore port in memory, for tests of code that uses images.

Builds copy files into memory and derive the digest from the inputs (spec, file contents,
labels), so equal inputs give equal digests. It unpacks into a tmp folder; no tar, no OCI.
`run` steps count in the digest but are not executed (a scratch image has no shell).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ImageError, NotFound
from corral.images.build.config import DEFAULT_PATH
from corral.images.build.context import copy_entries
from corral.images.build.provenance import provenance_labels
from corral.ports.images import Progress
from corral.ports.records import ImageConfig, ImageSummary
from corral.spec.model import ImageSpec


@dataclass(frozen=True)
class _File:
    kind: str
    mode: int
    content: bytes = b""
    linkname: str = ""


@dataclass(frozen=True)
class _Image:
    config: ImageConfig
    files: dict[str, _File]
    size: int


class FakeImageStore:
    """Images kept in dicts; `builds` counts build calls for tests that care."""

    def __init__(self) -> None:
        self.images: dict[str, _Image] = {}
        self.tags: dict[str, str] = {}
        self.builds = 0
        self._roots: dict[str, Path] = {}

    def build(self, name: str, image: ImageSpec, context: Path, *,
              labels: dict[str, str] | None = None, progress: Progress | None = None,
              dry: bool = False, update_bases: bool = False, insecure: bool = False) -> str:
        if image.dockerfile:
            raise ImageError("Dockerfile builds are not supported yet", hint="(fake store)")
        if image.run and image.base == "scratch":
            raise ImageError("run steps need a shell: the image has no /bin/sh",
                             hint="run steps need a shell: use a debian base")
        if image.base != "scratch" and not image.base.startswith("debian:"):
            raise ImageError(f"base {image.base!r} is not supported by the fake image store")
        self.builds += 1
        files: dict[str, _File] = {}
        for step in image.copy_:
            for entry in copy_entries(step, context):
                content = entry.source.read_bytes() if entry.source is not None else b""
                files[entry.name] = _File(entry.kind, entry.mode, content, entry.linkname)
        digest = "sha256:" + hashlib.sha256(json.dumps(
            [image.model_dump(mode="json", by_alias=True), labels or {},
             sorted((k, f.kind, f.mode, hashlib.sha256(f.content).hexdigest(), f.linkname)
                    for k, f in files.items())], sort_keys=True).encode()).hexdigest()
        env = {"PATH": DEFAULT_PATH, **image.env}
        config = ImageConfig(digest=digest, entrypoint=image.entrypoint or (),
                             cmd=image.cmd or (), env=env, workdir=image.workdir or "/",
                             user=image.user, ports=tuple(sorted(image.ports)),
                             labels={**image.labels, **provenance_labels(image, context),
                                     **(labels or {})})
        size = sum(len(f.content) for f in files.values())
        self.images[digest] = _Image(config, files, size)
        if not dry:
            self.tags[f"{name}:latest"] = digest
        if progress:
            progress(f"fake build {name}: {len(files)} entries")
        return digest

    def resolve(self, ref: str) -> str:
        if ref.startswith("sha256:"):
            if ref in self.images:
                return ref
            raise NotFound(f"image {ref} is not in the fake store", hint="run `corral build`")
        full = ref if ":" in ref else f"{ref}:latest"
        if full not in self.tags:
            raise NotFound(f"no image named {full!r}", hint=f"run `corral build {ref}` first")
        return self.tags[full]

    def config(self, digest: str) -> ImageConfig:
        return self._image(digest).config

    def unpack(self, digest: str) -> Path:
        image = self._image(digest)
        if digest in self._roots and self._roots[digest].is_dir():
            return self._roots[digest]
        root = Path(tempfile.mkdtemp(prefix="corral-fake-root-"))
        for name, item in sorted(image.files.items()):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if item.kind == "dir":
                path.mkdir(exist_ok=True)
                os.chmod(path, item.mode)
            elif item.kind == "symlink":
                path.symlink_to(item.linkname)
            else:
                path.write_bytes(item.content)
                os.chmod(path, item.mode)
        self._roots[digest] = root
        return root

    def list(self) -> list[ImageSummary]:
        names: dict[str, list[str]] = {d: [] for d in self.images}
        for ref, digest in self.tags.items():
            names[digest].append(ref)
        return sorted((ImageSummary(digest=d, names=tuple(sorted(n)), size=self.images[d].size,
                                    created=0.0) for d, n in names.items()),
                      key=lambda s: (s.names, s.digest))

    def close(self) -> None:
        """Remove the tmp roots made by unpack."""
        for root in self._roots.values():
            shutil.rmtree(root, ignore_errors=True)
        self._roots.clear()

    def _image(self, digest: str) -> _Image:
        if digest not in self.images:
            raise NotFound(f"image {digest} is not in the fake store", hint="run `corral build`")
        return self.images[digest]
