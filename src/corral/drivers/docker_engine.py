"""The connection to a Docker Engine API (dockerd, or podman's compatible socket), shared by
the container and Swarm drivers: where it is, opening it once, and errors a user can act on.

Every failure to reach the engine names `docker_host` and the spec key that sets it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from corral.errors import DriverError

if TYPE_CHECKING:
    import docker

DEFAULT_HOST = "unix:///var/run/docker.sock"
OWN = "dev.corral.driver."  # the drivers' own labels; never shown as the instance's
STATE = OWN + "state"  # the state folder (project) an engine object belongs to
LABELS = OWN + "labels"  # the instance's own label keys (the engine adds the image's)
T = TypeVar("T")


def resolve_host(configured: str | None) -> str:
    """`[drivers.*] docker_host`, else DOCKER_HOST, else the standard socket."""
    return configured or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


class Engine:
    """A lazily opened, pinged client of one engine; `call` turns its errors into
    DriverErrors that say which engine and which key."""

    def __init__(self, host: str, key: str, *, timeout: float = 30.0) -> None:
        self.host = host
        self._key = key  # the spec key that names the host, for messages
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = self._open()
            return self._client

    def call(self, what: str, action: Callable[[docker.DockerClient], T]) -> T:
        """Run `action` on the client; an engine error becomes a DriverError about `what`."""
        import docker.errors
        import requests

        client = self.client
        try:
            return action(client)
        except docker.errors.APIError as error:
            raise DriverError(f"{what}: the Docker engine at {self.host} refused: "
                              f"{error.explanation or error}",
                              hint=f"the engine is set by {self._key}") from None
        except (requests.exceptions.RequestException, docker.errors.DockerException) as error:
            raise self.unreachable(error) from None

    def unreachable(self, error: object) -> DriverError:
        return DriverError(f"cannot reach the Docker engine at {self.host} ({error})",
                           hint=f"start dockerd (or `podman system service`) there, or set "
                           f"{self._key} (default: DOCKER_HOST, then {DEFAULT_HOST})")

    def _open(self) -> docker.DockerClient:
        import docker
        import requests

        try:
            client = docker.DockerClient(base_url=self.host, timeout=self._timeout)
            client.ping()
        except (requests.exceptions.RequestException, docker.errors.DockerException) as error:
            raise self.unreachable(error) from None
        return client


def parse_time(text: str | None) -> float | None:
    """Unix seconds of an engine timestamp ("2026-12-07T00:28:30.002190181Z"); None for the
    zero time engines give a container that never started."""
    if not text or text.startswith("0001-"):
        return None
    main, _, rest = text.rstrip("Z").partition(".")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    fraction, zone = rest[:digits][:6] or "0", rest[digits:] or "+00:00"
    return datetime.fromisoformat(f"{main}.{fraction}{zone}").timestamp()


def with_label_keys(labels: Mapping[str, str]) -> dict[str, str]:
    """An instance's labels as written on its engine object, with the list of their keys
    (`LABELS`), so `instance_labels` can tell them from the ones the engine adds."""
    return {**labels, LABELS: json.dumps(sorted(labels))}


def instance_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The instance's own labels among an engine object's: those `with_label_keys` listed.

    >>> instance_labels(with_label_keys({"corral.service": "web"}) | {"maintainer": "x"})
    {'corral.service': 'web'}
    """
    return {k: labels[k] for k in json.loads(labels.get(LABELS, "[]")) if k in labels}
