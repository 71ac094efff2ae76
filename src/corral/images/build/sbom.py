"""An SPDX 2.3 JSON SBOM of an image: every file (path, SHA-1, SHA-256) and the packages
found in it (dpkg's status file, Python dist-info METADATA).

Each layer is scanned once (keyed by diff_id, cached machine-wide); an image's SBOM merges
its layers with whiteouts applied. The document has no clock in it (`created` is
SOURCE_DATE_EPOCH), so the same image gives the same SBOM. It reads layers; it never unpacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from corral import __version__
from corral.images.build.layer import source_date_epoch
from corral.images.oci.layout import hex_of
from corral.images.roots.unpack import OPAQUE, WHITEOUT, safe_name

DPKG_STATUS = "var/lib/dpkg/status"
_CHUNK = 1 << 20


@dataclass
class LayerScan:
    files: dict[str, list[str]] = field(default_factory=dict)  # path -> [sha1, sha256]
    whiteouts: list[str] = field(default_factory=list)
    dpkg_status: str | None = None
    python: dict[str, list[str]] = field(default_factory=dict)  # METADATA path -> [name, ver]


def scan_layer(blob: Path, diff_id: str, cache: Path) -> LayerScan:
    """The files and package records of one layer, read once and cached under its diff_id."""
    cached = cache / f"{hex_of(diff_id)}.json"
    try:
        return LayerScan(**json.loads(cached.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        pass
    scan = LayerScan()
    with tarfile.open(blob, "r:*") as tar:
        for member in tar:
            _scan_member(tar, member, scan)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
    with os.fdopen(fd, "w") as out:
        json.dump(scan.__dict__, out, separators=(",", ":"))
    os.rename(tmp, cached)
    return scan


class LayerScans:
    """Layer scans for SBOMs, the slow ones started early. A base layer this machine has not
    seen takes seconds to scan (every file hashed twice): the build starts it in a thread as
    soon as the base is in the layout, and the SBOM at the end waits only for what is left.
    Threads are daemons, so a failed build does not wait for a scan nobody needs (the cache
    file is written by rename: never half-written); a scan that failed is run again in the
    caller, where its error belongs."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self._started: dict[str, tuple[threading.Thread, list[LayerScan]]] = {}

    def start(self, blob: Path, diff_id: str) -> None:
        if diff_id in self._started or (self.cache / f"{hex_of(diff_id)}.json").is_file():
            return
        done: list[LayerScan] = []

        def scan() -> None:
            with contextlib.suppress(Exception):  # `scan` below runs it again, and raises
                done.append(scan_layer(blob, diff_id, self.cache))

        thread = threading.Thread(target=scan, name=f"sbom-{hex_of(diff_id)[:12]}", daemon=True)
        thread.start()
        self._started[diff_id] = (thread, done)

    def scan(self, blob: Path, diff_id: str) -> LayerScan:
        """The layer's scan: the one started early, else (or if it failed) one made now."""
        started = self._started.pop(diff_id, None)
        if started is not None:
            started[0].join()
            if started[1]:
                return started[1][0]
        return scan_layer(blob, diff_id, self.cache)


def _scan_member(tar: tarfile.TarFile, member: tarfile.TarInfo, scan: LayerScan) -> None:
    name = safe_name(member.name)
    if name is None:
        return
    if posixpath.basename(name).startswith(WHITEOUT):
        scan.whiteouts.append(name)
        return
    if member.islnk():
        target = safe_name(member.linkname)
        if target in scan.files:
            scan.files[name] = scan.files[target]
        return
    if not member.isreg():
        return
    content = tar.extractfile(member)
    assert content is not None
    sha1, sha256 = hashlib.sha1(usedforsecurity=False), hashlib.sha256()
    keep = name == DPKG_STATUS or _is_metadata(name)
    kept = bytearray()
    while chunk := content.read(_CHUNK):
        sha1.update(chunk)
        sha256.update(chunk)
        if keep:
            kept += chunk
    scan.files[name] = [sha1.hexdigest(), sha256.hexdigest()]
    if name == DPKG_STATUS:
        scan.dpkg_status = kept.decode(errors="replace")
    elif keep:
        headers = HeaderParser().parsestr(kept.decode(errors="replace"), headersonly=True)
        if headers.get("Name") and headers.get("Version"):
            scan.python[name] = [str(headers["Name"]), str(headers["Version"])]


def _is_metadata(name: str) -> bool:
    parent, base = posixpath.split(name)
    return base == "METADATA" and parent.endswith(".dist-info")


def merge(scans: list[LayerScan]) -> LayerScan:
    """The view of the whole image: upper layers win, whiteouts hide what is below them."""
    image = LayerScan()
    for scan in scans:
        for whiteout in scan.whiteouts:
            parent, base = posixpath.split(whiteout)
            hidden = parent if base == OPAQUE else posixpath.join(parent, base[len(WHITEOUT):])
            prefix = hidden + "/" if hidden else ""
            for table in (image.files, image.python):
                for path in [p for p in table if p.startswith(prefix) or p == hidden]:
                    del table[path]
            if DPKG_STATUS.startswith(prefix) or hidden == DPKG_STATUS:
                image.dpkg_status = None
        image.files.update(scan.files)
        image.python.update(scan.python)
        if scan.dpkg_status is not None:
            image.dpkg_status = scan.dpkg_status
    return image


def dpkg_packages(status: str | None) -> list[tuple[str, str, str]]:
    """(name, version, architecture) of the installed packages in a dpkg status file."""
    found = []
    for paragraph in (status or "").split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") and "installed" in fields.get("Status", "").split():
            found.append((fields["Package"], fields.get("Version", ""),
                          fields.get("Architecture", "")))
    return sorted(found)


def spdx_document(image_digest: str, name: str, image: LayerScan) -> dict[str, Any]:
    """SPDX 2.3 JSON: the image as the described package, its packages and its files."""
    created = datetime.fromtimestamp(source_date_epoch(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    packages: list[dict[str, Any]] = [{
        "SPDXID": "SPDXRef-Image", "name": name, "versionInfo": image_digest,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose":
        "CONTAINER", "checksums": [{"algorithm": "SHA256", "checksumValue": hex_of(image_digest)}],
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    for number, (package, version, arch) in enumerate(dpkg_packages(image.dpkg_status)):
        purl = f"pkg:deb/debian/{package}@{version}" + (f"?arch={arch}" if arch else "")
        packages.append(_package(f"SPDXRef-deb-{number}", package, version, purl))
    python = sorted(set(map(tuple, image.python.values())))
    for number, (package, version) in enumerate(python):
        packages.append(_package(f"SPDXRef-python-{number}", package, version,
                                 f"pkg:pypi/{package.lower()}@{version}"))
    relationships += [{"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                       "relatedSpdxElement": p["SPDXID"]} for p in packages[1:]]
    files = [{"fileName": f"./{path}", "SPDXID": f"SPDXRef-File-{number}",
              "checksums": [{"algorithm": "SHA1", "checksumValue": sha1},
                            {"algorithm": "SHA256", "checksumValue": sha256}]}
             for number, (path, (sha1, sha256)) in enumerate(sorted(image.files.items()))]
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}@{image_digest}",
        "documentNamespace": f"https://corral.invalid/spdx/{hex_of(image_digest)}",
        "creationInfo": {"created": created, "creators": [f"Tool: corral-{__version__}"]},
        "packages": packages, "files": files, "relationships": relationships,
    }


def _package(spdx_id: str, name: str, version: str, purl: str) -> dict[str, Any]:
    return {"SPDXID": spdx_id, "name": name, "versionInfo": version,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl}]}
