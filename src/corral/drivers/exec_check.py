"""Exec health checks inside a sandbox (via nsenter), and the record of those in flight.

A check enters the instance's namespaces from outside, as an intruder would; what tells them
apart is this record: the pid of every check's nsenter, registered before any process of
it can be seen in the sandbox (under the lock `quiet` holds while the runtime inspection
reads /proc). A check runs as the sandbox's uid and gid, in a session of its own, and
whatever it leaves running is killed with it. It never judges drift.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

from corral.drivers import procfs
from corral.errors import DriverError

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GRACE = 2.0  # s a finished check stays exempt: its killed leftovers may still be exiting


class ExecChecks:
    """Runs exec checks and remembers those in flight, for the runtime inspection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checks: dict[int, tuple[int, float | None]] = {}  # pid -> (ticks, ended at)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[Mapping[int, int]]:
        """Hold off new checks while the caller reads /proc; yields {pid: start ticks} of
        the checks in flight (or just ended)."""
        with self._lock:
            now = time.monotonic()
            for pid, (_, ended) in list(self._checks.items()):
                if ended is not None and now - ended > _GRACE:
                    del self._checks[pid]
            yield {pid: ticks for pid, (ticks, _) in self._checks.items()}

    def run(self, app_pid: int, argv: Sequence[str], timeout: float, *, uid: int,
            gid: int) -> tuple[int, str]:
        """Run `argv` in the namespaces of `app_pid` as `uid`/`gid` (as the sandbox knows
        them); (exit code, output tail). A timeout is exit code 124, like timeout(1)."""
        nsenter = shutil.which("nsenter") or "nsenter"
        command = [nsenter, "-t", str(app_pid), "-U", "-m", "-p", "-u", "-i",
                   "-S", str(uid), "-G", str(gid), "--", *argv]
        # output to a file, not a pipe: a child it left running would hold a pipe open
        with tempfile.TemporaryFile() as output:
            try:
                with self._lock:  # registered before the /proc reader can look again
                    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                             stderr=subprocess.STDOUT, env={"PATH": _PATH},
                                             start_new_session=True)
                    self._checks[child.pid] = (procfs.start_ticks(child.pid) or -1, None)
            except OSError as exc:
                raise DriverError(f"cannot run nsenter for an exec check: {exc}",
                                  hint="install util-linux (nsenter)") from exc
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                _kill_group(child.pid)  # what it left in the sandbox goes with it
                child.wait()
                with self._lock:
                    self._checks[child.pid] = (self._checks[child.pid][0], time.monotonic())
            if code is None:
                return 124, f"timed out after {timeout:g}s"
            output.seek(0)
            return code, output.read()[-2000:].decode(errors="replace")[-500:]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
