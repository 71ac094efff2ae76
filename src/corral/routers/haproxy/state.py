"""What the HAProxy adapter remembers between calls (haproxy.json): services, slots, stats.

HAProxy knows servers by slot name only; this maps each slot to the corral backend it holds
(address, release, instance) and keeps the per-release stats folded from HAProxy's counters.
It plans runtime API commands for a new backend set; it never talks to HAProxy itself.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path
from typing import Any

from corral.errors import RouterError
from corral.ports.records import Backend
from corral.routers.builtin.stats import ReleaseCounters
from corral.routers.haproxy.config import backend_name, render_config
from corral.routers.haproxy.entries import ServiceEntry, Slot
from corral.routers.haproxy.preview import map_path, map_text, preview_entries
from corral.routers.haproxy.runtime import parse_stat_csv
from corral.routers.haproxy.stats import counters_to_json


def slot_rows(show_stat: str, service: str) -> list[dict[str, str]]:
    """The server rows of a service's backend in `show stat` output."""
    name = backend_name(service)
    return [r for r in parse_stat_csv(show_stat)
            if r["pxname"] == name and r["svname"] not in ("FRONTEND", "BACKEND")]


class HaproxyState:
    def __init__(self, path: Path, config_path: Path, socket_path: str, threads: int) -> None:
        self.path, self.config_path = path, config_path
        # one preview map per service; absolute: the path is also its runtime API name
        self.map_dir = config_path.parent.absolute() / "maps"
        self.socket_path, self.threads = socket_path, threads
        self.services: dict[str, ServiceEntry] = {}
        self.stats: dict[str, dict[str, dict[str, Any]]] = {}  # service -> release -> counters

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        self.services = {name: ServiceEntry.from_json(e)
                         for name, e in data.get("services", {}).items()}
        self.stats = data.get("stats", {})

    def save(self) -> None:
        data = {"services": {n: e.to_json() for n, e in sorted(self.services.items())},
                "stats": self.stats}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def write_config(self, haproxy: str) -> None:
        """Write haproxy.cfg, checked by `haproxy -c` first so a bad one never goes live, and
        the preview maps it loads (HAProxy reads them only at start and reload)."""
        self._write_maps()
        text = render_config(self.services, socket_path=self.socket_path, threads=self.threads,
                             maxconn=_maxconn(), map_dir=str(self.map_dir))
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        check = subprocess.run([haproxy, "-c", "-f", str(tmp)], capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            raise RouterError(f"HAProxy rejects the configuration corral wrote: "
                              f"{(check.stderr or check.stdout).strip()[-500:]}",
                              hint=f"see {tmp}")
        os.replace(tmp, self.config_path)

    def _write_maps(self) -> None:
        self.map_dir.mkdir(exist_ok=True)
        wanted = {Path(map_path(str(self.map_dir), name)): map_text(preview_entries(entry))
                  for name, entry in self.services.items()}
        for stale in set(self.map_dir.glob("*.map")) - set(wanted):
            stale.unlink()
        for path, text in wanted.items():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)

    def assign(self, service: str, backends: list[Backend]) -> tuple[list[str], bool]:
        """Fit `backends` into the service's slots: runtime commands, and whether it grew."""
        entry = self.services[service]
        be = backend_name(service)
        wanted = {b.address: b for b in backends}
        held = {s.address: s for s in entry.slots if not s.is_free}
        commands: list[str] = []
        for slot in held.values():
            if slot.address not in wanted and not slot.retiring:
                slot.retiring, slot.weight = True, 0  # drained: in-flight requests finish
                commands += [f"set server {be}/{slot.name} weight 0",
                             f"set server {be}/{slot.name} state drain"]
        grown = False
        for address, b in wanted.items():
            found = held.get(address)
            if found is not None:
                slot = found
            else:
                slot, more = _free_slot(entry)
                grown = grown or more
                host, _, port = address.rpartition(":")
                slot.address = address
                commands.append(f"set server {be}/{slot.name} addr {host.strip('[]')} "
                                f"port {port}")
            slot.weight, slot.release, slot.instance = b.weight, b.release, b.instance
            slot.retiring = False
            commands += [f"set server {be}/{slot.name} weight {min(b.weight, 256)}",
                         f"set server {be}/{slot.name} state ready"]
        return commands, grown

    def free(self, service: str, slots: list[Slot]) -> list[str]:
        be = backend_name(service)
        commands = []
        for slot in slots:
            commands.append(f"set server {be}/{slot.name} state maint")
            slot.address, slot.weight, slot.release, slot.instance = "", 0, "", ""
            slot.retiring = False
        return commands

    @staticmethod
    def counters_json(counters: ReleaseCounters) -> dict[str, Any]:
        return counters_to_json(counters)


def _maxconn() -> int:
    """Each proxied connection holds two descriptors: stay within what HAProxy may open."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    return max(256, min(20000, (limit - 200) // 2))


def _free_slot(entry: ServiceEntry) -> tuple[Slot, bool]:
    for slot in entry.slots:
        if slot.is_free:
            return slot, False
    count = len(entry.slots)
    entry.slots += [Slot(f"s{i}") for i in range(count, 2 * count)]
    return entry.slots[count], True
