"""MountTables against a real mount namespace (unshare -rm: no root needed): a table is
read once and handed back unread while the kernel reports no change; a mount made inside
is seen at the next ask; another process under the same key is read afresh."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from corral.drivers import procfs
from corral.drivers.inspect import MountTables
from loopback import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SCRIPT = "read go; mount -t tmpfs corral-test /mnt; read done"


@pytest.fixture
def sandbox() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", SCRIPT], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ours = os.readlink("/proc/self/ns/mnt")

    def entered() -> bool:
        if proc.poll() is not None:
            pytest.skip(f"unshare -rm is not allowed here: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            return os.readlink(f"/proc/{proc.pid}/ns/mnt") != ours
        except OSError:
            return False

    poll(entered, 30, "unshare to enter its mount namespace")
    yield proc
    proc.stdin.close()  # type: ignore[union-attr]  # `read` ends: the shell exits
    proc.wait(timeout=10)


def test_a_table_is_read_again_only_after_it_changed(sandbox: subprocess.Popen[str]) -> None:
    ticks = procfs.start_ticks(sandbox.pid)
    assert ticks is not None
    tables = MountTables()
    try:
        first = tables.of("web-1", sandbox.pid, ticks)
        assert not any(m.source == "tmpfs" and m.target == "/mnt" for m in first)
        assert tables.of("web-1", sandbox.pid, ticks) is first  # no change: not read again
        sandbox.stdin.write("go\n")  # type: ignore[union-attr]
        sandbox.stdin.flush()  # type: ignore[union-attr]
        changed = poll(lambda: (t := tables.of("web-1", sandbox.pid, ticks)) is not first
                       and t, 30, "the new mount to be reported")
        assert [m.fstype for m in changed if m.target == "/mnt"][-1] == "tmpfs"
        assert tables.of("web-1", sandbox.pid, ticks) is changed
        # Another process (here: another start time) under the key: read afresh.
        assert tables.of("web-1", sandbox.pid, ticks + 1) is not changed
    finally:
        tables.close()
