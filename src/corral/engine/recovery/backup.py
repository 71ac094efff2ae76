"""`corral backup` and `corral backup verify`: a consistent snapshot of a project's state
taken while its controller runs, and the checks that prove a backup file whole.

A backup holds the store's snapshot (releases, deployments, traffic, the ledger), the log
store, the signing public keys and where images were pushed (to pull them back by digest).
It never holds a private key or an image: images live in the registry, pinned by digest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral import __version__
from corral.core.ledger import ChainPosition, verify_chain
from corral.engine.adapters import copy_sqlite_database
from corral.engine.images.registry import LOCATIONS_FILE
from corral.engine.images.trust import default_key_path
from corral.engine.observe.logview import LOGS_DB
from corral.engine.recovery.archive import Archive, read_archive, write_archive
from corral.engine.workspace import SECRETS_DB, Workspace, current_actor, store_url
from corral.errors import BackupError, StoreError
from corral.ports.ledger import RawEvent
from corral.ports.records import Event
from corral.ports.snapshot import SnapshotStore, StoreSnapshot
from corral.ports.store import Store

STATE = "state.json"
KEYS = "keys/"


@dataclass(frozen=True)
class VerifiedBackup:
    """A backup file whose every member matched the manifest and whose ledger verified."""

    path: Path
    manifest: dict[str, Any]
    snapshot: StoreSnapshot
    archive: Archive

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {"file": str(self.path), "project": m["project"], "taken_at": m["taken_at"],
                "store": m["store"], "schema_version": m["schema_version"],
                "ledger": m["ledger"], "live": m["live"], "releases": m["releases"],
                "members": sorted(m["members"])}


def snapshot_store(store: Store) -> SnapshotStore:
    if not isinstance(store, SnapshotStore):
        raise StoreError("this store cannot take or load snapshots",
                         hint="backups need the SQLite or PostgreSQL store")
    return store


def take_backup(ws: Workspace, out: Path | None, *, now: float | None = None) -> dict[str, Any]:
    """Write a backup of `ws` to `out` (default .corral/backups/PROJECT-TIME.tar.gz) and
    record it in the ledger; return what was written."""
    began = time.monotonic()
    taken_at = time.time() if now is None else now
    snapshot = snapshot_store(ws.store).snapshot()
    members = {STATE: _state_bytes(snapshot), **_files_beside(ws.state_dir)}
    manifest = _manifest(ws, snapshot, taken_at)
    path = out or default_backup_path(ws, taken_at)
    digest = write_archive(path, manifest, members)
    ws.store.append_event(Event(at=time.time(), actor=current_actor(), action="backup.taken",
                                subject=ws.loaded.spec.project.name, detail={
                                    "file": str(path), "sha256": digest,
                                    "ledger_head": manifest["ledger"]["head_seq"]}))
    return {"file": str(path), "sha256": digest, "bytes": path.stat().st_size,
            "seconds": round(time.monotonic() - began, 3), **_counts(manifest)}


def default_backup_path(ws: Workspace, taken_at: float) -> Path:
    return ws.state_dir / "backups" / default_backup_name(ws, taken_at)


def default_backup_name(ws: Workspace, taken_at: float) -> str:
    """PROJECT-20240501T120000123456Z.tar.gz: names sort in time order."""
    stamp = datetime.fromtimestamp(taken_at, tz=UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{ws.loaded.spec.project.name}-{stamp}.tar.gz"


def _state_bytes(snapshot: StoreSnapshot) -> bytes:
    return json.dumps({"schema_version": snapshot.schema_version, "tables": snapshot.tables},
                      sort_keys=True, separators=(",", ":")).encode()


def _files_beside(state_dir: Path) -> dict[str, bytes]:
    """The log store and the secrets (each copied as of one moment; secrets stay sealed:
    their key is never in a backup), the public keys, the registry locations."""
    members = {}
    for database in (LOGS_DB, SECRETS_DB):
        if (state_dir / database).exists():
            members[database] = copy_sqlite_database(state_dir / database)
    if (state_dir / LOCATIONS_FILE).exists():
        members[LOCATIONS_FILE] = (state_dir / LOCATIONS_FILE).read_bytes()
    publics = [default_key_path().with_suffix(".pub"), *sorted((state_dir / "keys").glob("*.pub"))]
    for public in publics:
        if public.is_file():
            members.setdefault(KEYS + public.name, public.read_bytes())
    return members


def _manifest(ws: Workspace, snapshot: StoreSnapshot, taken_at: float) -> dict[str, Any]:
    events = snapshot.rows("events")
    head = events[-1] if events else None
    live = {row["name"]: row["live_release"] for row in snapshot.rows("services")
            if row["live_release"] is not None}
    return {"project": ws.loaded.spec.project.name, "taken_at": taken_at,
            "corral": __version__,
            "store": store_url(ws.state_dir, ws.loaded.spec.project.store).split(":")[0],
            "schema_version": snapshot.schema_version, "live": live,
            "releases": len(snapshot.rows("releases")),
            "ledger": {"entries": len(events), "head_seq": head["seq"] if head else 0,
                       "head_hash": head["hash"] if head else None}}


def _counts(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"releases": manifest["releases"], "live": manifest["live"],
            "ledger_entries": manifest["ledger"]["entries"]}


def verify_backup(path: Path) -> VerifiedBackup:
    """The backup at `path`, read whole and checked: every member against the manifest's
    sha256, the snapshot's schema, and its ledger chain up to the head the manifest names.
    Raises BackupError naming the first problem."""
    archive = read_archive(path)
    manifest = archive.manifest
    snapshot = _snapshot(path, archive)
    rows = [RawEvent(**row) for row in snapshot.rows("events")]
    verdict = verify_chain(rows)
    if not verdict.ok:
        raise BackupError(f"backup {path}: its ledger does not verify: {verdict.problem}",
                          hint="the backup was altered before its manifest was written; "
                               "use another backup")
    ledger = manifest.get("ledger") or {}
    named = (ledger.get("head_seq"), ledger.get("head_hash") or ChainPosition().hash)
    if (verdict.head.seq, verdict.head.hash) != named:
        raise BackupError(f"backup {path}: its ledger ends at entry {verdict.head.seq}, "
                          f"not at the head its manifest names ({ledger.get('head_seq')})",
                          hint="the backup was altered; use another backup")
    return VerifiedBackup(path, manifest, snapshot, archive)


def _snapshot(path: Path, archive: Archive) -> StoreSnapshot:
    try:
        data = json.loads(archive.members[STATE])
        return StoreSnapshot(schema_version=int(data["schema_version"]),
                             tables=dict(data["tables"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise BackupError(f"backup {path}: {STATE} is missing or unreadable ({exc})",
                          hint="it is not a corral backup, or a damaged one") from None
