"""`backup verify` against backup files altered the ways someone with the file could:
members changed, added or removed, the manifest rewritten to match, the ledger cut short."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral.engine.recovery.archive import MANIFEST, read_archive, write_archive
from corral.engine.recovery.backup import STATE, verify_backup
from corral.errors import BackupError
from corral.ports.records import Event
from corral.stores import SqlStore

pytestmark = pytest.mark.integration


@pytest.fixture
def parts(tmp_path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A manifest and members as `corral backup` writes them, from a real store."""
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.add_release("web", "sha256:aaa", "sha256:c1", {}, 1.0,
                      Event(at=1.0, actor="ann", action="release.created", subject="web"))
    for n in range(5):
        store.append_event(Event(at=2.0 + n, actor="ann", action="note", subject="web"))
    snapshot = store.snapshot()
    store.close()
    events = snapshot.rows("events")
    manifest = {"project": "shop", "taken_at": 10.0, "store": "sqlite", "live": {},
                "schema_version": snapshot.schema_version, "releases": 1,
                "ledger": {"entries": 6, "head_seq": 6, "head_hash": events[-1]["hash"]}}
    state = {"schema_version": snapshot.schema_version, "tables": snapshot.tables}
    return manifest, {STATE: json.dumps(state).encode(), "logs.db": b"SQLite format 3\0"}


def written(tmp_path: Path, manifest: dict[str, Any], members: dict[str, bytes]) -> Path:
    path = tmp_path / "backup.tar.gz"
    write_archive(path, manifest, members)
    return path


def test_an_untouched_backup_verifies(tmp_path: Path, parts: Any) -> None:
    verified = verify_backup(written(tmp_path, *parts))
    assert verified.summary()["ledger"]["head_seq"] == 6
    assert [r["seq"] for r in verified.snapshot.rows("events")] == [1, 2, 3, 4, 5, 6]


def test_a_ledger_edited_with_a_rewritten_manifest_is_caught_by_the_chain(
        tmp_path: Path, parts: Any) -> None:
    manifest, members = parts
    state = json.loads(members[STATE])
    state["tables"]["events"][2]["actor"] = "mallory"
    members = {**members, STATE: json.dumps(state).encode()}
    with pytest.raises(BackupError, match=r"ledger does not verify: .*entry 3"):
        verify_backup(written(tmp_path, manifest, members))  # digests match: the chain not


def test_a_ledger_cut_short_with_a_rewritten_manifest_is_caught_by_the_head(
        tmp_path: Path, parts: Any) -> None:
    manifest, members = parts
    state = json.loads(members[STATE])
    del state["tables"]["events"][-1]
    members = {**members, STATE: json.dumps(state).encode()}
    with pytest.raises(BackupError, match="ends at entry 5, not at the head"):
        verify_backup(written(tmp_path, manifest, members))


def test_a_member_added_or_removed_after_writing_is_refused(tmp_path: Path,
                                                            parts: Any) -> None:
    path = written(tmp_path, *parts)
    archive = read_archive(path)
    listed = archive.manifest
    extra = tmp_path / "extra.tar.gz"
    write_archive(extra, listed, {**archive.members, "evil.sh": b"rm -rf /"})
    # write_archive lists what it writes: put the original list back, as a forger would
    _swap_manifest(extra, listed)
    with pytest.raises(BackupError, match=r"evil\.sh not listed"):
        verify_backup(extra)
    missing = tmp_path / "missing.tar.gz"
    write_archive(missing, listed, {STATE: archive.members[STATE]})
    _swap_manifest(missing, listed)
    with pytest.raises(BackupError, match=r"logs\.db is listed but missing"):
        verify_backup(missing)


def _swap_manifest(path: Path, manifest: dict[str, Any]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "r:gz") as tar:
        members = {i.name: tar.extractfile(i).read() for i in tar}  # type: ignore[union-attr]
    members[MANIFEST] = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("content", [b"", b"not a tar at all", b"\x1f\x8b\x08\x00garbage"])
def test_a_file_that_is_no_backup_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(content)
    with pytest.raises(BackupError, match="truncated or is not a corral backup"):
        verify_backup(path)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="does not exist"):
        verify_backup(tmp_path / "nope.tar.gz")
