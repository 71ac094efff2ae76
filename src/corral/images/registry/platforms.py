"""Which image of a multi-platform index this machine runs: a small module of its own, so
a build on a base already pulled and pinned decides it without loading the HTTP client."""

from __future__ import annotations

import platform
from typing import Any

from corral.errors import NotFound
from corral.images.registry.reference import Reference

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def platform_child(index: dict[str, Any], ref: Reference) -> str:
    arch = host_platform()
    for descriptor in index.get("manifests", []):
        wanted = descriptor.get("platform", {})
        if wanted.get("architecture") == arch and wanted.get("os", "linux") == "linux":
            return str(descriptor["digest"])
    raise NotFound(f"{ref} has no image for linux/{arch}")
