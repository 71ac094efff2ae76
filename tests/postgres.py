"""A throwaway PostgreSQL cluster for tests: initdb and pg_ctl in a temporary folder, on a
unix socket in that folder (no TCP port), stopped by its postmaster's pid. PostgreSQL
refuses to run as root, so as root the cluster runs as the `postgres` system user."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from loopback import poll

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "corral"


def _tool(name: str) -> str | None:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


def is_installed() -> bool:
    return _tool("initdb") is not None and _tool("pg_ctl") is not None


class PostgresCluster:
    """One cluster, its superuser `corral` trusted on the socket; a database per caller."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="corral-pg-"))
        self.data = self.folder / "data"
        self._as: list[str] = []
        self._numbers = itertools.count(1)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def start(self) -> PostgresCluster:
        self._run(_tool("initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        # fsync off: the cluster is thrown away, its durability is not under test.
        options = (f"-k {self.folder} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(_tool("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"),
                  "-o", options, "-w", "-t", "60", "start")
        return self

    def _run(self, *argv: str | None) -> None:
        subprocess.run([*self._as, *(a for a in argv if a)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@/{database}?host={self.folder}"

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`); returns its URL."""
        name = f"t{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(f"host={self.folder} user={USER} dbname=postgres",
                             autocommit=True) as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{clause}")  # type: ignore[arg-type]
        return self.url(name)

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Immediate shutdown by the postmaster's pid, then the folder is removed."""
        try:
            pid = self.pid
        except (OSError, ValueError):
            pid = None
        if pid is not None:
            os.kill(pid, signal.SIGQUIT)  # immediate: nothing here needs a checkpoint
            poll(lambda: not _is_running(pid), 60, "postgres to stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
