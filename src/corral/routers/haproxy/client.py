"""HaproxyRouter: the Router port on HAProxy, driven through its runtime API.

corral writes haproxy.cfg (one frontend per service, one backend with server slots) and runs
HAProxy in master-worker mode, detached. Weights, new and removed backends, drains and the
preview maps (preview.py) go through the runtime API, without reloads; only a new listen
address, TLS change, removal of a service or running out of slots rewrites the configuration
and reloads (old worker finishes its connections). haproxy.json beside it maps slots to
releases and keeps the stats.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from corral.errors import RouterError
from corral.ports.records import Backend, ReleaseStats
from corral.processes import process_state
from corral.routers.builtin.stats import ReleaseCounters, release_stats_from_json
from corral.routers.drain import wait_drained
from corral.routers.haproxy.config import DEFAULT_SLOTS, backend_name
from corral.routers.haproxy.entries import ServiceEntry, Slot
from corral.routers.haproxy.preview import map_path, map_update, parse_version, preview_entries
from corral.routers.haproxy.runtime import RuntimeUnavailable, command, is_error, parse_info
from corral.routers.haproxy.state import HaproxyState, slot_rows
from corral.routers.haproxy.stats import add_delta, counters_from_json, raw_counters
from corral.routers.listen import holder_of, is_free, split_listen
from corral.sockets import HAPROXY_SOCKET_MAX, fitting
from corral.spec.model import RouterSpec

START_TIMEOUT = 10.0


class HaproxyRouter:
    def __init__(self, run_dir: Path, *, haproxy: str = "haproxy", threads: int = 0,
                 routing: Mapping[str, RouterSpec] | None = None,
                 base: Path | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.haproxy, self.threads = haproxy, threads
        self.routing = dict(routing or {})
        self.base = Path(base) if base is not None else Path.cwd()
        self.socket_path = fitting(self.run_dir / "haproxy.sock", HAPROXY_SOCKET_MAX)
        self.pid_path = self.run_dir / "haproxy.pid"
        self.log_path = self.run_dir / "haproxy.log"
        self.state = HaproxyState(self.run_dir / "haproxy.json", self.run_dir / "haproxy.cfg",
                                  str(self.socket_path), threads)

    # lifecycle
    def ensure_running(self) -> None:
        if self.is_running():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self.state.load()
            for entry in self.state.services.values():
                for slot in entry.slots:
                    slot.seen = {}  # a fresh HAProxy counts from 0
            self.state.write_config(self.haproxy)
            self.state.save()
            with open(self.log_path, "ab") as log:
                process = subprocess.Popen(
                    [self.haproxy, "-W", "-db", "-f", str(self.state.config_path),
                     "-p", str(self.pid_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    close_fds=True, cwd=str(self.run_dir))
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.is_running():
                    return
                if process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RouterError("HAProxy did not start", hint=f"see {self.log_path}: {self._tail()}")

    def is_running(self) -> bool:
        try:
            return "Pid" in parse_info(command(str(self.socket_path), "show info", 2.0))
        except RuntimeUnavailable:
            return False

    def pid(self) -> int | None:
        """The HAProxy master's pid, if that process is HAProxy."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if b"haproxy" in cmdline else None

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        # SIGUSR1 is a soft stop (in-flight requests finish). It is sent again each second:
        # one that lands while the master re-executes itself for a reload is lost.
        plan = [(signal.SIGUSR1, 1.0)] * 15 + [(signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)]
        for sig, wait in plan:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_gone(pid, wait):
                return
        raise RouterError(f"HAProxy (pid {pid}) did not stop", hint=f"kill {pid}")

    # the port
    def set_backends(self, service: str, listen: str, backends: Sequence[Backend]) -> None:
        with self._locked():
            self.state.load()
            self._check_listen(service, listen)
            tls_pem, timeouts = self._tls_pem(service), self._timeouts(service)
            entry = self.state.services.get(service)
            reload = (entry is None or entry.listen != listen or entry.tls_pem != tls_pem
                      or entry.timeouts != timeouts)
            if (entry is not None and entry.listen != listen) or entry is None:
                self._check_port_free(service, listen)
            self._collect()
            if entry is None:
                entry = ServiceEntry(listen, [Slot(f"s{i}") for i in
                                              range(max(DEFAULT_SLOTS, 2 * len(backends)))])
                self.state.services[service] = entry
            previewed = preview_entries(entry)
            entry.listen, entry.tls_pem, entry.timeouts = listen, tls_pem, timeouts
            commands, grown = self.state.assign(service, list(backends))
            if reload or grown:
                self._reload()
            else:
                self._run(commands)  # new slots are ready before the map points at them
                if (wanted := preview_entries(entry)) != previewed:
                    self._replace_preview_map(service, wanted)
            self.state.save()

    def backends(self, service: str) -> list[Backend]:
        self.state.load()
        entry = self.state.services.get(service)
        if entry is None:
            return []
        live = {row["srv_name"]: row for row in self._servers_state(service)}
        found = []
        for slot in entry.slots:
            if slot.is_free or slot.retiring or slot.name not in live:
                continue
            row = live[slot.name]
            found.append(Backend(f"{row['srv_addr']}:{row['srv_port']}",
                                 int(row["srv_uweight"]), slot.release, slot.instance))
        return found

    def listening(self) -> dict[str, str]:
        """From haproxy.json, saved only once HAProxy took a change; checked to be up."""
        self._ask("show info")
        with self._locked():
            self.state.load()
            return {name: entry.listen for name, entry in sorted(self.state.services.items())}

    def in_flight(self, service: str) -> dict[str, int]:
        with self._locked():
            self.state.load()
            entry = self.state.services.get(service)
            if entry is None:
                return {}
            rows = {r["svname"]: r for r in slot_rows(self._show_stat(), service)}
            counts: dict[str, int] = {}
            freed = []
            for slot in entry.slots:
                if slot.is_free:
                    continue
                current = int(rows.get(slot.name, {}).get("scur") or 0)
                if slot.retiring and current == 0:
                    freed.append(slot)
                    continue
                counts[slot.address] = counts.get(slot.address, 0) + current
            if freed:
                self._collect()
                self._run(self.state.free(service, freed))
                self.state.save()
            return counts

    def stats(self, service: str) -> dict[str, ReleaseStats]:
        with self._locked():
            self.state.load()
            if service not in self.state.services:
                return {}
            self._collect()
            self.state.save()
            kept = self.state.stats.get(service, {})
            return {release: release_stats_from_json(counters_from_json(data).to_json())
                    for release, data in kept.items()}

    def remove_service(self, service: str) -> None:
        with self._locked():
            self.state.load()
            if self.state.services.pop(service, None) is None:
                return
            self.state.stats.pop(service, None)
            self._collect()
            self._reload()
            self.state.save()

    # beyond the port
    def wait_drained(self, service: str, address: str, deadline_seconds: float) -> bool:
        """Poll until `address` has no request in flight; False if the deadline passed."""
        # Polled less often than the builtin router: each count is a runtime API query.
        return wait_drained(lambda: self.in_flight(service), address, deadline_seconds,
                            interval=0.05)

    # runtime API
    def _ask(self, line: str) -> str:
        try:
            return command(str(self.socket_path), line)
        except RuntimeUnavailable as exc:
            raise RouterError(str(exc), hint=f"start it with `corral up`; log {self.log_path}") \
                from exc

    def _run(self, commands: list[str]) -> None:
        for line in commands:
            answer = self._ask(line)
            if is_error(answer) and "changed from" not in answer:
                raise RouterError(f"HAProxy refused `{line}`: {answer.strip()}",
                                  hint=f"see {self.log_path}")

    def _replace_preview_map(self, service: str, entries: list[tuple[str, str]]) -> None:
        """Swap the service's preview map in one step (`prepare map`, fill, `commit map`)."""
        path = map_path(str(self.state.map_dir), service)
        answer = self._ask(f"prepare map {path}")
        version = parse_version(answer)
        if version is None and "unknown map" in answer.lower():
            self._reload()  # a HAProxy started by a corral without preview maps
            return
        if version is None:
            raise RouterError(f"HAProxy refused `prepare map {path}`: {answer.strip()}",
                              hint=f"see {self.log_path}")
        for line in map_update(path, version, entries):
            answer = self._ask(line)
            if answer.strip():
                raise RouterError(f"HAProxy refused `{line.splitlines()[0]}`: {answer.strip()}",
                                  hint=f"see {self.log_path}")

    def _show_stat(self) -> str:
        return self._ask("show stat")

    def _servers_state(self, service: str) -> list[dict[str, str]]:
        lines = self._ask(f"show servers state {backend_name(service)}").splitlines()
        header = next((ln[2:].split() for ln in lines if ln.startswith("# be_id")), [])
        return [dict(zip(header, ln.split(), strict=False)) for ln in lines
                if ln and not ln.startswith("#") and len(ln.split()) == len(header)]

    def _collect(self) -> None:
        """Fold what every slot served since the last read into its release's stats."""
        if not self.state.services:
            return
        text = self._show_stat()
        for service, entry in self.state.services.items():
            rows = {r["svname"]: r for r in slot_rows(text, service)}
            kept = self.state.stats.setdefault(service, {})
            for slot in entry.slots:
                row = rows.get(slot.name)
                if row is None:
                    continue
                now = raw_counters(row)
                if not slot.is_free:
                    counters = (counters_from_json(kept[slot.release]) if slot.release in kept
                                else ReleaseCounters())
                    add_delta(counters, now, slot.seen)
                    if counters.requests or counters.failed_connections:
                        kept[slot.release] = self.state.counters_json(counters)
                slot.seen = now

    def _reload(self) -> None:
        """Rewrite haproxy.cfg and reload; the old worker finishes its connections."""
        old = parse_info(self._ask("show info")).get("Pid")
        self.state.write_config(self.haproxy)
        master = self.pid()
        if master is None:
            raise RouterError("HAProxy's master process is gone", hint=f"see {self.log_path}")
        os.kill(master, signal.SIGUSR2)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeUnavailable):
                pid = parse_info(command(str(self.socket_path), "show info", 2.0)).get("Pid")
                if pid and pid != old:
                    for entry in self.state.services.values():
                        for slot in entry.slots:
                            slot.seen = {}  # the new worker counts from 0
                    return
            time.sleep(0.05)
        raise RouterError("HAProxy did not reload", hint=f"see {self.log_path}: {self._tail()}")

    # checks and settings
    def _check_listen(self, service: str, listen: str) -> None:
        for name, entry in self.state.services.items():
            if name != service and entry.listen == listen:
                raise RouterError(f"{listen} is already the listen address of service {name}",
                                  hint=f"give service {service} its own router.listen address")

    def _check_port_free(self, service: str, listen: str) -> None:
        """Refuse an address anything listens on: another router (of any project) or
        program. HAProxy binds without SO_REUSEPORT, so the kernel refuses later comers."""
        try:
            host, port = split_listen(listen)
        except ValueError as exc:
            raise RouterError(str(exc), hint='write it like "127.0.0.1:8080"') from exc
        deadline = time.monotonic() + 2.0  # an old worker may still be letting go of it
        while not is_free(host, port):
            if time.monotonic() > deadline:
                raise RouterError(
                    f"{listen} is already in use by {holder_of(listen)}",
                    hint=f"each router needs its own listen address: set another "
                         f"router.listen for service {service}, or stop what listens on "
                         f"{listen}")
            time.sleep(0.1)

    def _tls_pem(self, service: str) -> str | None:
        spec = self.routing.get(service)
        if spec is None or spec.tls is None:
            return None
        try:
            pem = (self.base / spec.tls.cert).read_bytes() + b"\n" + \
                (self.base / spec.tls.key).read_bytes()
        except OSError as exc:
            raise RouterError(f"cannot read the TLS certificate of service {service}: {exc}",
                              hint="check router.tls.cert and router.tls.key") from exc
        path = self.run_dir / "tls" / f"{service}.pem"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return str(path)

    def _timeouts(self, service: str) -> dict[str, float]:
        spec = self.routing.get(service)
        return spec.timeouts.as_seconds() if spec is not None and spec.timeouts else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "haproxy.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "empty log"


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = process_state(pid)
        if state is None:
            return True
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return True
        time.sleep(0.05)
    return False
