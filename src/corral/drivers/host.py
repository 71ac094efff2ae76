"""What this machine gives an instance, whatever runs it: a free TCP port on 127.0.0.1 and its
volume folders, owned by the unprivileged user instances run as. Shared by the process and
container drivers; it starts nothing."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from corral.drivers.sandbox import SANDBOX_GID, SANDBOX_UID
from corral.errors import DriverError
from corral.ports.records import InstanceSpec


def pick_free_port(taken: set[int]) -> int:
    """A TCP port free on 127.0.0.1 now and not in `taken` (ports given but not yet bound)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in taken:
            return port
    raise DriverError("no free TCP port on 127.0.0.1 for a new instance",
                      hint="stop unused instances or widen net.ipv4.ip_local_port_range")


def prepare_volumes(instance_id: str, volumes: Mapping[str, str]) -> None:
    """Create each volume's host folder, writable by the instance's user. Raises DriverError
    for a mount point that is not an absolute path below /."""
    for host, inside in volumes.items():
        if not inside.startswith("/") or not inside.strip("/"):
            raise DriverError(f"volume {host} of instance {instance_id}: mount point "
                              f"{inside!r} is not an absolute path below /",
                              hint="write it as /var/lib/app")
        Path(host).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(host, SANDBOX_UID, SANDBOX_GID)  # the instance's user must write in it


def refuse_secrets(driver: str, spec: InstanceSpec) -> None:
    """Raise DriverError for an instance that needs secrets on a driver that cannot hand them
    over without writing them into the engine's records (`docker inspect` shows a
    container's env): it must not start without them, nor leak them."""
    if spec.secret_env or spec.secret_files:
        raise DriverError(f"instance {spec.id} needs secrets, which the {driver} driver does "
                          "not pass to instances yet",
                          hint="run services with secrets on the process driver")
