"""The process driver's files for one instance, under `.corral/run/instances/ID/`.

instance.json (what was started: pid and start time, address, argv, labels, and the launch
snapshot that runtime drift is measured from), stdout.log, stderr.log and status.json
(bwrap's --json-status-fd output: child-pid, then exit-code).
These files are the driver's whole memory, so a new controller re-adopts instances from
them. Logs outlive the instance: retiring moves them to `.corral/logs/ID/`.
It reads and writes files only; it never starts or signals a process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from corral.errors import DriverError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # also used as the sandbox's hostname


@dataclass(frozen=True)
class InstanceRecord:
    """What the driver started, as written to instance.json."""

    id: str
    pid: int  # the outer bwrap process, reparented to init
    start_ticks: int  # /proc/PID/stat field 22, guards against pid reuse
    address: str
    port: int
    argv: list[str]
    env: dict[str, str]
    rootfs: str
    started_at: float
    service: str = ""
    release: int = 0
    image_digest: str = ""
    image_user: str | None = None  # the image's user; the sandbox runs as 65534 regardless
    stop_signal: str | None = None  # the image's STOPSIGNAL, sent first by stop()
    volumes: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    # what the sandbox was launched as (drivers/snapshot.py), taken once its app ran
    launched: dict[str, Any] | None = None
    cgroup_version: int = 0  # 0: no group (no usable cgroup layout)
    cgroups: dict[str, str] = field(default_factory=dict)  # hierarchy -> the instance's group


@dataclass(frozen=True)
class SandboxStatus:
    """What bwrap reported on its status fd so far."""

    init_pid: int | None = None  # the sandbox's pid-namespace init, as a host pid
    exit_code: int | None = None


class InstanceDirs:
    """Paths and files of every instance under one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "run" / "instances"
        self._root = str(self.root)
        self.logs = state_dir / "logs"
        self._loaded: dict[str, tuple[tuple[int, int, int], InstanceRecord]] = {}
        self._statuses: dict[str, tuple[tuple[int, int, int], SandboxStatus]] = {}

    def path(self, instance_id: str) -> Path:
        return Path(self._folder(instance_id))

    def _folder(self, instance_id: str) -> str:
        """The instance's folder as a string: records and statuses are read for every
        instance each second, and pathlib would cost more than the stat that follows."""
        if not _ID.match(instance_id):
            raise DriverError(f"instance id {instance_id!r} is not usable as a folder name and "
                              "hostname", hint="use letters, digits, '.', '_' and '-' (max 63)")
        return os.path.join(self._root, instance_id)

    def ids(self) -> list[str]:
        """The instances with a record."""
        return [name for name in self.names()
                if os.path.isfile(os.path.join(self._root, name, "instance.json"))]

    def names(self) -> list[str]:
        """Every instance folder, sorted, whether its record is written yet or not (`load`
        says None for those): the controller lists every instance each second, so plain
        strings, not pathlib, and no stat per folder."""
        try:
            with os.scandir(self.root) as entries:
                return sorted(e.name for e in entries if _ID.match(e.name))
        except FileNotFoundError:
            return []

    def create(self, instance_id: str) -> Path:
        path = self.path(instance_id)
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            raise DriverError(f"instance {instance_id} already exists in {self.root}",
                              hint="instance ids must be unique; stop the old one first") from None
        return path

    def save(self, record: InstanceRecord) -> None:
        target = self.path(record.id) / "instance.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1, sort_keys=True))
        os.replace(tmp, target)  # atomic: a reader never sees half a record

    def load(self, instance_id: str) -> InstanceRecord | None:
        path = os.path.join(self._folder(instance_id), "instance.json")
        try:
            # A record is replaced whole (save), never edited: the same inode, size and
            # mtime is the same record, so listing every instance each second parses none.
            stat = os.stat(path)
            version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            cached = self._loaded.get(instance_id)
            if cached is not None and cached[0] == version:
                return cached[1]
            with open(path, encoding="utf-8") as file:
                raw: dict[str, Any] = json.load(file)
        except (FileNotFoundError, json.JSONDecodeError):
            self._loaded.pop(instance_id, None)
            return None
        known = {f.name for f in fields(InstanceRecord)}
        record = InstanceRecord(**{k: v for k, v in raw.items() if k in known})
        self._loaded[instance_id] = (version, record)
        return record

    def status(self, instance_id: str) -> SandboxStatus:
        """Parse status.json: one JSON document per line, as bwrap writes them (parsed
        again only when the file grew or changed: a drift pass asks for every instance)."""
        init_pid = exit_code = None
        path = os.path.join(self._folder(instance_id), "status.json")
        try:
            stat = os.stat(path)
            version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            cached = self._statuses.get(instance_id)
            if cached is not None and cached[0] == version:
                return cached[1]
            with open(path, encoding="utf-8") as file:
                lines = file.read().splitlines()
        except FileNotFoundError:
            self._statuses.pop(instance_id, None)
            return SandboxStatus()
        for line in lines:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            init_pid = doc.get("child-pid", init_pid)
            exit_code = doc.get("exit-code", exit_code)
        status = SandboxStatus(init_pid=init_pid, exit_code=exit_code)
        self._statuses[instance_id] = (version, status)
        return status

    def log_paths(self, instance_id: str) -> tuple[Path, Path]:
        """stdout and stderr logs: in the instance folder while it exists, then in logs/ID."""
        live = self.path(instance_id)
        base = live if live.is_dir() else self.logs / instance_id
        return base / "stdout.log", base / "stderr.log"

    def retire(self, instance_id: str) -> None:
        """Move the logs to logs/ID and remove the instance folder."""
        live = self.path(instance_id)
        self._loaded.pop(instance_id, None)
        self._statuses.pop(instance_id, None)
        if not live.is_dir():
            return
        kept = self.logs / instance_id
        kept.mkdir(parents=True, exist_ok=True)
        for name in ("stdout.log", "stderr.log"):
            if (live / name).exists():
                os.replace(live / name, kept / name)
        shutil.rmtree(live, ignore_errors=True)
