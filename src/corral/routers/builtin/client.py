"""BuiltinRouter: the Router port, driving the builtin router process over its control socket.

Starts the process detached (its own session) so it outlives the controller, and reuses
one that already answers. It holds no routing state itself: the process is the truth.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import corral
from corral.errors import RouterError
from corral.ports.records import Backend, ReleaseStats
from corral.processes import process_state
from corral.routers.builtin.control import call
from corral.routers.builtin.stats import release_stats_from_json
from corral.routers.drain import wait_drained
from corral.sockets import fitting
from corral.spec.model import RouterSpec

START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


class BuiltinRouter:
    """`workers`: processes sharing each port (0: one per core), read when it starts.
    `routing`: per service, the spec's router settings (TLS, timeouts) sent with each change;
    relative TLS paths are taken from `base`."""

    def __init__(self, run_dir: Path, python: str = sys.executable, *, workers: int = 0,
                 routing: Mapping[str, RouterSpec] | None = None,
                 base: Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.python = python
        self.workers = workers
        self.routing = dict(routing or {})
        self.base = Path(base) if base is not None else Path.cwd()
        self.socket_path = fitting(self.run_dir / "router.sock")
        self.pid_path = self.run_dir / "router.pid"
        self.state_path = self.run_dir / "router.json"
        self.log_path = self.run_dir / "router.log"
        self._process: subprocess.Popen[bytes] | None = None

    # lifecycle
    def ensure_running(self) -> None:
        if self.is_running():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._process = self._spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.is_running():
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        raise RouterError(f"the router did not start (control socket {self.socket_path})",
                          hint=f"see {self.log_path}: {self._log_tail()}")

    def is_running(self) -> bool:
        try:
            return call(str(self.socket_path), {"op": "ping"}, timeout=2.0).get("ok") is True
        except (OSError, ValueError):
            return False

    def pid(self) -> int | None:
        """The router's pid from its pid file, if that process is a corral router."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # a stale pid file may name a pid the kernel gave to something else since
        return pid if b"corral.routers.builtin" in cmdline else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        # The child may be another interpreter: make sure it imports this same corral.
        src = str(Path(corral.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [self.python, "-m", "corral.routers.builtin", "--control", str(self.socket_path),
                 "--state", str(self.state_path), "--pid-file", str(self.pid_path),
                 "--workers", str(self.workers)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True, close_fds=True, cwd=str(self.run_dir))

    def stop(self) -> None:
        pid = self.pid()
        with contextlib.suppress(RouterError):  # not answering: fall through to signals
            self._request({"op": "shutdown"})
        if pid is None:
            return
        for sig, wait in ((None, STOP_TIMEOUT), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None and self._is_alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
            if self._wait_gone(pid, wait):
                return
        raise RouterError(f"the router (pid {pid}) did not stop", hint=f"kill {pid}")

    def _wait_gone(self, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._is_alive(pid):
                return True
            time.sleep(0.02)
        return not self._is_alive(pid)

    def _is_alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # a zombie is gone for our purposes (its parent just has not reaped it)
        return process_state(pid) not in (None, "Z")

    # the port
    def set_backends(self, service: str, listen: str, backends: Sequence[Backend]) -> None:
        request: dict[str, Any] = {
            "op": "set_backends", "service": service, "listen": listen,
            "backends": [{"address": b.address, "weight": b.weight, "release": b.release,
                          "instance": b.instance} for b in backends]}
        spec = self.routing.get(service)
        if spec is not None:
            if spec.tls is not None:
                request["tls"] = {"cert": str(self.base / spec.tls.cert),
                                  "key": str(self.base / spec.tls.key)}
            if spec.timeouts is not None:
                request["timeouts"] = spec.timeouts.as_seconds()
        self._request(request)

    def backends(self, service: str) -> list[Backend]:
        rows = self._request({"op": "backends", "service": service})
        return [Backend(address=r["address"], weight=int(r["weight"]), release=r["release"],
                        instance=r.get("instance", "")) for r in rows]

    def listening(self) -> dict[str, str]:
        status = self._request({"op": "ping"})
        return {str(name): str(listen) for name, listen in status.get("listen", {}).items()}

    def in_flight(self, service: str) -> dict[str, int]:
        return {a: int(n) for a, n in self._request({"op": "in_flight",
                                                     "service": service}).items()}

    def stats(self, service: str) -> dict[str, ReleaseStats]:
        raw = self._request({"op": "stats", "service": service})
        return {release: release_stats_from_json(data) for release, data in raw.items()}

    def remove_service(self, service: str) -> None:
        self._request({"op": "remove_service", "service": service})

    # beyond the port
    def wait_drained(self, service: str, address: str, deadline_seconds: float) -> bool:
        """Poll until `address` has no request in flight; False if the deadline passed."""
        return wait_drained(lambda: self.in_flight(service), address, deadline_seconds)

    def _request(self, request: dict[str, Any]) -> Any:
        try:
            reply = call(str(self.socket_path), request, timeout=30.0)
        except (OSError, ValueError) as exc:
            raise RouterError(f"the router does not answer on {self.socket_path}: {exc}",
                              hint="start it with `corral up`; its log is "
                                   f"{self.log_path}") from exc
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise RouterError(str(error.get("message", "the router refused the request")),
                          hint=error.get("hint"))

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "empty log"
