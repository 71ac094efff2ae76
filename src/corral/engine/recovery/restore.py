"""`corral restore FILE`: a verified backup brought back into an empty project folder (or
an empty PostgreSQL database), on this machine or a new one.

The store is loaded exactly, so the ledger verifies and continues the same chain; the
instances the backup lists ran on the machine it came from, so they are recorded as left
behind, and the reconcile loop of the next `corral up` starts the live releases' instances
anew from images pulled by digest. Nothing running is touched.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from corral.engine.images.registry import LOCATIONS_FILE, pull, pull_references
from corral.engine.observe.logview import LOGS_DB
from corral.engine.recovery.backup import KEYS, VerifiedBackup, snapshot_store, verify_backup
from corral.engine.workspace import SECRETS_DB, Workspace, current_actor
from corral.errors import BackupError, CorralError, ImageError, NotFound
from corral.ports.records import DeploymentOutcome, Event, InstanceState

LEFT_BEHIND = "left on the machine the backup was taken on"


def restore_backup(ws: Workspace, path: Path, *, insecure: bool = False) -> dict[str, Any]:
    """Verify `path`, load it into `ws`'s empty store, put its files back, pull the images
    of the live releases; return what was restored. `corral up` then starts instances."""
    began = time.monotonic()
    backup = verify_backup(path)
    snapshot_store(ws.store).load_snapshot(backup.snapshot)
    _put_files_back(ws.state_dir, backup)
    left = _forget_instances(ws)
    images = _fetch_images(ws, insecure)
    report = {"file": str(path), "project": backup.manifest["project"],
              "taken_at": backup.manifest["taken_at"], "live": backup.manifest["live"],
              "releases": backup.manifest["releases"], "ledger": backup.manifest["ledger"],
              "instances_left_behind": left, "images": images}
    ws.store.append_event(Event(at=time.time(), actor=current_actor(),
                                action="backup.restored", subject=backup.manifest["project"],
                                detail={"file": str(path), "taken_at": report["taken_at"],
                                        "ledger_head": backup.manifest["ledger"]["head_seq"],
                                        "instances_left_behind": len(left),
                                        "images": images}))
    return {**report, "seconds": round(time.monotonic() - began, 3)}


def _put_files_back(state_dir: Path, backup: VerifiedBackup) -> None:
    """The log store, sealed secrets, public keys and registry locations, where nothing is
    yet (an empty database the workspace pre-created 0600 counts as nothing)."""
    for name, data in backup.archive.members.items():
        if name in (LOGS_DB, SECRETS_DB, LOCATIONS_FILE) or name.startswith(KEYS):
            target = state_dir / name
            if target.exists() and target.stat().st_size > 0:
                raise BackupError(f"cannot restore into {state_dir}: {target} exists",
                                  hint="restore into a new, empty project folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _forget_instances(ws: Workspace) -> list[str]:
    """Mark the backup's live instances as ended: none of them runs here."""
    now = time.time()
    left = ws.store.list_instances(live_only=True)
    for instance in left:
        ws.store.put_instance(replace(instance, state=InstanceState.STOPPED, ended_at=now,
                                      reason=LEFT_BEHIND))
    return [i.id for i in left]


def _fetch_images(ws: Workspace, insecure: bool) -> dict[str, str]:
    """digest -> "present" | "pulled from REF" | why it could not be, for the image of
    every live release and of every deployment's target still running (it resumes); a
    missing image is reported, not fatal (it can be pulled later)."""
    wanted = [(s, ws.store.live_release(s)) for s in ws.store.services()]
    wanted += [(d.service, d.to_release) for d in ws.store.list_deployments()
               if d.outcome is DeploymentOutcome.RUNNING]
    outcome: dict[str, str] = {}
    for service, version in wanted:
        release = ws.store.get_release(service, version) if version is not None else None
        if release is not None and release.image_digest not in outcome:
            outcome[release.image_digest] = _fetch(ws, release.image_digest, insecure)
    return outcome


def _fetch(ws: Workspace, digest: str, insecure: bool) -> str:
    try:
        ws.images.config(digest)
        return "present"
    except (NotFound, ImageError):
        pass
    problems = []
    for ref in pull_references(ws.state_dir, digest):
        try:
            pull(ws.state_dir, ref, insecure=insecure)
            return f"pulled from {ref}"
        except CorralError as exc:
            problems.append(f"{ref}: {exc.message}")
    return "missing: " + ("; ".join(problems) or "it was never pushed to a registry")
