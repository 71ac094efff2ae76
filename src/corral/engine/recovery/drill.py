"""`corral drill restore`: recovery tested, not hoped for. A backup of the running project is
taken, verified and restored into a scratch folder with its own SQLite store; one instance
of every live release is started there from images pulled by digest, on ports of its own,
and must pass its health check; the restored ledger must verify. The measured recovery
time (backup to every live release serving) is recorded in the project's ledger.

The drill never touches what runs: the scratch project has its own state folder, store,
driver folder and ports, and starts no router (the live router owns the listen addresses).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.engine.delivery.instances import Instances
from corral.engine.fleet import Fleets
from corral.engine.observe.ledger import verify
from corral.engine.operate.health import check_http, check_tcp
from corral.engine.recovery.backup import take_backup
from corral.engine.recovery.restore import restore_backup
from corral.engine.workspace import Workspace, current_actor
from corral.errors import CorralError
from corral.ports.records import Event, Instance, Release

if TYPE_CHECKING:
    from corral.ports.store import Store


@dataclass
class ScratchWorkspace(Workspace):
    """The project's spec over a scratch state folder and a scratch SQLite store."""

    scratch: Path = Path()

    @property
    def state_dir(self) -> Path:
        return self.scratch / ".corral"

    @cached_property
    def store(self) -> Store:
        from corral.engine.workspace import sqlite_store

        return sqlite_store(self.state_dir)


def drill_restore(ws: Workspace, *, insecure: bool = False,
                  timeout: float = 120.0) -> dict[str, Any]:
    """Run the drill; return its report (`ok`, `rto_seconds`, per service what it saw)."""
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="corral-drill-"))
    drill = ScratchWorkspace(ws.loaded, scratch=scratch)
    started: list[Instance] = []
    try:
        backup = take_backup(ws, scratch / "drill.tar.gz")
        restored = restore_backup(drill, Path(backup["file"]), insecure=insecure)
        services = {name: _serves(drill, name, started, timeout) for name in restored["live"]}
        rto = round(time.monotonic() - began, 3)
        verdict = verify(drill.store)
    finally:
        for instance in started:
            drill.driver.stop(instance.id, grace=1.0)
        drill.store.close()
        shutil.rmtree(scratch, ignore_errors=True)
    ok = verdict.ok and all(seen == "serves" for seen in services.values())
    report = {"ok": ok, "rto_seconds": rto, "services": services,
              "ledger": {"ok": verdict.ok, "checked": verdict.checked,
                         "problem": verdict.problem},
              "images": restored["images"], "backup_bytes": backup["bytes"]}
    ws.store.append_event(Event(at=time.time(), actor=current_actor(), action="drill.restore",
                                subject=ws.loaded.spec.project.name,
                                detail={k: report[k] for k in ("ok", "rto_seconds",
                                                               "services")}))
    return report


def _serves(drill: Workspace, service: str, started: list[Instance], timeout: float) -> str:
    """"serves", or what kept the live release of `service` from serving in the drill."""
    version = drill.store.live_release(service)
    release = drill.store.get_release(service, version) if version is not None else None
    if release is None:
        return "no live release in the backup"
    instances = Instances(drill.driver, None, drill.images,
                          Fleets(drill.store, None, time.time, current_actor()), time.time,
                          drill.state_dir / "volumes")
    try:
        instance = instances.start(release)
    except CorralError as exc:
        return f"could not start {release.label}: {exc.message}"
    started.append(instance)
    return _healthy(instance, release, timeout)


def _healthy(instance: Instance, release: Release, timeout: float) -> str:
    health = release.spec.health
    deadline = time.monotonic() + timeout
    problem: str | None = "not checked"
    while time.monotonic() < deadline:
        problem = (check_http(instance.address, health.path, health.timeout)
                   if health.kind == "http" else check_tcp(instance.address, health.timeout))
        if problem is None:
            return "serves"
        time.sleep(0.1)
    return f"{release.label} did not pass its health check in {timeout:.0f} s: {problem}"
