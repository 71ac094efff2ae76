"""The controller's telemetry: log collection, retention, Loki shipping and metrics.

Wires the log collector to the fleets (what to read), the driver (where the files are) and
the store (each release's git commit), and the metrics registry to the workspace's ports.
One Loop for the controller, given the workspace, fleets and clock it reads (never the
controller itself); it decides nothing about instances.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from corral.engine.adapters import loki_sink, metrics_server
from corral.engine.fleet import Clock, Fleets
from corral.engine.observe.logs import LogCollector, Watched
from corral.engine.observe.logview import open_log_store
from corral.engine.observe.metrics import CorralCollector, metrics_registry, metrics_text
from corral.engine.workspace import Workspace
from corral.ports.driver import HasLogPaths, Measurable
from corral.ports.logs import LogSource
from corral.ports.records import Instance

log = logging.getLogger(__name__)

PRUNE_EVERY = 60.0  # seconds between retention passes


class Telemetry:
    """Started after the other loops' owners exist; stopped after they stop."""

    def __init__(self, ws: Workspace, fleets: Fleets, clock: Clock) -> None:
        self._ws = ws
        self._fleets = fleets
        self._clock = clock
        self.settings = ws.loaded.spec.observe
        self.logs = open_log_store(ws.state_dir)
        self._sinks: list[Any] = []
        if self.settings.logs.loki:
            self._sinks.append(loki_sink(self.settings.logs.loki,
                                         self.settings.logs.loki_labels))
        self._commit_of = lru_cache(maxsize=512)(self._load_commit)
        # Instances added since the last pass: one that exits (and leaves the fleet)
        # before the collector's next pass is still read, to the end of its files.
        self._arrived: deque[Instance] = deque()
        fleets.on_add.append(self._arrived.append)
        self.collector = LogCollector(
            self.logs, self._watched, self._paths_of, clock,
            backlog=self._backlog, sinks=self._sinks, on_tick=self._retention)
        measured = ws.driver if isinstance(ws.driver, Measurable) else None
        self.registry = metrics_registry(CorralCollector(
            ws.store, ws.router, fleets, self._log_counts,
            measured.usage if measured is not None else None))
        self._last_prune = 0.0
        self._http: Any = None
        listen = os.environ.get("CORRAL_METRICS_LISTEN") or self.settings.metrics_listen
        if listen:
            self._http = metrics_server(listen, self.registry)

    # -- Loop ---------------------------------------------------------------------------
    def start(self) -> None:
        self.collector.start()
        if self._http is not None:
            self._http.start()
            log.info("metrics on http://%s:%d/metrics", self._http.host, self._http.port)

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
        self.collector.stop()
        for sink in self._sinks:
            sink.close()

    def metrics(self) -> tuple[str, bytes]:
        return metrics_text(self.registry)

    # -- what the collector reads ---------------------------------------------------------
    def _source(self, instance: Instance) -> LogSource:
        return LogSource(instance=instance.id, service=instance.service,
                         release=instance.release, image_digest=instance.image_digest,
                         git_commit=self._commit_of(instance.service, instance.release))

    def _watched(self) -> list[Watched]:
        found = {i.id: i for i in self._fleets.all()}
        while self._arrived:  # after the snapshot: an instance added in between is in both
            arrived = self._arrived.popleft()
            found.setdefault(arrived.id, arrived)
        return [Watched(self._source(i)) for i in found.values()]

    def _backlog(self) -> list[Watched]:
        """Instances that ended while no controller was collecting (read to the end once)."""
        oldest = self._clock() - self.settings.logs.max_age
        return [Watched(self._source(i), ended_at=i.ended_at or i.created_at)
                for i in self._ws.store.list_instances(live_only=False)
                if not i.state.is_live and (i.ended_at or i.created_at) >= oldest]

    def _paths_of(self, instance_id: str) -> tuple[Path, Path]:
        driver = self._ws.driver
        if not isinstance(driver, HasLogPaths):  # no files (fake, remote): nothing to read
            missing = self._ws.state_dir / "logs" / instance_id
            return missing / "stdout.log", missing / "stderr.log"
        return driver.log_paths(instance_id)

    def _load_commit(self, service: str, version: int) -> str | None:
        release = self._ws.store.get_release(service, version)
        return release.git_commit if release else None

    # -- upkeep --------------------------------------------------------------------------
    def _retention(self) -> None:
        now = self._clock()
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        logs = self.settings.logs
        result = self.logs.prune(now - logs.max_age, logs.max_lines,
                                 logs.max_mb * (1 << 20) if logs.max_mb else None)
        if result.deleted:
            log.info("log retention: deleted %d lines, %d kept", result.deleted, result.kept)

    def _log_counts(self) -> dict[str, int]:
        counts = {"log_lines_stored": self.collector.lines_stored}
        for sink in self._sinks:
            counts["log_lines_shipped"] = counts.get("log_lines_shipped", 0) + sink.sent_lines
            counts["log_lines_dropped"] = counts.get("log_lines_dropped", 0) + sink.dropped_lines
        return counts


def collect_without_controller(ws: Workspace) -> int:
    """One collection pass from the CLI when no controller runs (e.g. after `corral down`,
    which stops instances after the controller's collector stopped): instances that ended
    are read to the end, running ones up to now. Returns the lines stored. Only safe while
    no controller collects at the same time; `corral logs` checks that first.
    """
    store = open_log_store(ws.state_dir)
    commits: dict[tuple[str, int], str | None] = {}

    def source(instance: Instance) -> LogSource:
        key = (instance.service, instance.release)
        if key not in commits:
            release = ws.store.get_release(*key)
            commits[key] = release.git_commit if release else None
        return LogSource(instance.id, instance.service, instance.release,
                         instance.image_digest, commits[key])

    oldest = time.time() - ws.loaded.spec.observe.logs.max_age
    known = ws.store.list_instances(live_only=False)
    running = [Watched(source(i)) for i in known if i.state.is_live]
    ended = [Watched(source(i), ended_at=i.ended_at or i.created_at) for i in known
             if not i.state.is_live and (i.ended_at or i.created_at) >= oldest]
    driver = ws.driver
    paths = driver.log_paths if isinstance(driver, HasLogPaths) else _no_files(ws)
    collector = LogCollector(store, lambda: running, paths, time.time)
    stored = collector.drain(ended) + collector.tick()
    collector.stop()  # reads nothing new; closes the files
    store.close()
    return stored


def _no_files(ws: Workspace) -> Callable[[str], tuple[Path, Path]]:
    def paths(instance_id: str) -> tuple[Path, Path]:
        missing = ws.state_dir / "logs" / instance_id
        return missing / "stdout.log", missing / "stderr.log"
    return paths
