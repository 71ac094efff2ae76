"""Image references for registries: `HOST[:PORT]/REPO[:TAG|@sha256:…]`, parsed and checked.

Pure parsing: no network. Also says which scheme a host gets: plain http only for loopback
hosts or when the user passed an explicit insecure flag, https otherwise.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from corral.errors import ImageError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")

_HINT = "references look like HOST[:PORT]/REPO[:TAG] or HOST[:PORT]/REPO@sha256:<64 hex>"


@dataclass(frozen=True)
class Reference:
    """One image in one registry; `tag` or `digest` (or both: the digest wins)."""

    registry: str  # host[:port], as written
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def host(self) -> str:
        host = self.registry
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rpartition(":")[0] if ":" in host else host

    @property
    def name(self) -> str:
        """The local image name: the repository's last path part."""
        return self.repository.rpartition("/")[2]

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse `HOST[:PORT]/REPO[:TAG][@sha256:…]`. The host part is required: corral never
    guesses a default registry."""
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise ImageError(f"{text!r}: {digest!r} is not a sha256 digest", hint=_HINT)
    registry, slash, path = rest.partition("/")
    if not slash or not path or not _HOST.match(registry) or (
            "." not in registry and ":" not in registry and registry != "localhost"):
        raise ImageError(f"{text!r} names no registry host", hint=_HINT)
    repository, tag = path, None
    last = path.rpartition("/")[2]
    if ":" in last:
        repository, _, tag = path.rpartition(":")
        if not _TAG.match(tag):
            raise ImageError(f"{text!r}: tag {tag!r} is not valid", hint=_HINT)
    if not _REPO.match(repository):
        raise ImageError(f"{text!r}: repository {repository!r} is not valid",
                         hint="repositories are lowercase letters, digits and . _ - /")
    if tag is None and not digest:
        tag = "latest"
    return Reference(registry, repository, tag, digest or None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scheme_for(ref: Reference, insecure: bool) -> str:
    """http for loopback or an explicit --insecure, https for everything else."""
    return "http" if insecure or is_loopback(ref.host) else "https"
