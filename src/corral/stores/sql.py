"""SqlStore: the Store port on SQLAlchemy 2 Core over SQLite (WAL) or PostgreSQL, shared
by processes.

Every write runs in one serialized transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
advisory lock) that also appends its ledger event, so two processes (controller, CLI) never
fork the chain. Queries stay portable SQL; only engine setup is database-specific
(engines.py). No business rules here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update
from sqlalchemy import exc as sa_exc

from corral.errors import NotFound, StoreError
from corral.ports.lease import Lease
from corral.ports.ledger import EventFilter, RawEvent
from corral.ports.records import (
    Deployment,
    DeploymentOutcome,
    DeploymentStep,
    Event,
    Instance,
    InstanceState,
    Release,
    UsageTally,
)
from corral.ports.snapshot import StoreSnapshot
from corral.stores import rows
from corral.stores.delivery_tables import deployment_progress, release_marks, service_traffic
from corral.stores.engines import describe, open_engine
from corral.stores.migrations import is_current, migrate
from corral.stores.rules import (
    as_json_data,
    describe_lock_holder,
    dump_json,
    fenced_error,
    grant_lease,
    is_same_lease,
    link_event,
    with_detail,
)
from corral.stores.snapshot import read_snapshot, write_snapshot
from corral.stores.sqlite import WRITE_OPTION
from corral.stores.tables import (
    deployment_steps,
    deployments,
    events,
    instances,
    leases,
    locks,
    releases,
    services,
)
from corral.stores.usage_tables import instance_usage

_LIVE_STATES = [s.value for s in InstanceState if s.is_live]
_UNUSABLE_HINTS = {
    "sqlite": "check that the file is readable and writable, that the disk is not full, "
              "and that no other program holds it locked",
    "postgresql": "check that the PostgreSQL server is running and reachable at that URL, "
                  "that the user may connect to the database, and that no other program "
                  "holds corral's write lock for long",
}


class SqlStore:
    """The state database at `url`, e.g. "sqlite:////abs/project/.corral/state.db" or
    "postgresql://corral@db.example/corral".

    Opening migrates the schema. `busy_timeout` is how long a write waits for another
    process holding the database lock before failing with StoreError.
    """

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        self._engine = open_engine(url, busy_timeout)
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
        self._where = describe(self._engine)
        self._fence: Lease | None = None
        with self._read() as conn:
            up_to_date = is_current(conn, self._where)
        if not up_to_date:
            with self._write() as conn:
                migrate(conn, self._where)

    # -- transactions ----------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A serialized write transaction, refused (Fenced) once this store's fence lease
        has passed to another holder: checked inside the transaction, so no write of a
        controller that lost its lease lands after its successor's first."""
        with self._write_unfenced() as conn:
            if self._fence is not None:
                stored = _read_lease(conn, self._fence.name)
                if not is_same_lease(stored, self._fence):
                    raise fenced_error(stored, self._fence)
            yield conn

    @contextmanager
    def _write_unfenced(self) -> Iterator[Connection]:
        with self._failures_explained(), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._failures_explained(), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _failures_explained(self) -> Iterator[None]:
        try:
            yield
        except sa_exc.OperationalError as exc:
            raise StoreError(
                f"the state database {self._where} cannot be used: {exc.orig}",
                hint=_UNUSABLE_HINTS[self._engine.dialect.name]) from exc
        except sa_exc.DatabaseError as exc:
            raise StoreError(
                f"the state database {self._where} is unreadable: {exc.orig}",
                hint="it may not be a corral state database; move it aside to start a "
                     "new one") from exc

    def _append(self, conn: Connection, event: Event) -> Event:
        last = conn.execute(select(events.c.seq, events.c.hash)
                            .order_by(events.c.seq.desc()).limit(1)).first()
        linked = link_event(event, last.seq if last else 0, last.hash if last else None)
        conn.execute(insert(events).values(rows.event_values(linked)))
        return linked

    # -- releases ----------------------------------------------------------------------
    def add_release(self, service: str, image_digest: str, config_digest: str,
                    config: dict[str, Any], created_at: float, event: Event,
                    git_commit: str | None = None,
                    git_commit_time: float | None = None) -> Release:
        with self._write() as conn:
            highest = conn.scalar(select(func.max(releases.c.version))
                                  .where(releases.c.service == service))
            release = Release(service=service, version=(highest or 0) + 1,
                              image_digest=image_digest, config_digest=config_digest,
                              config=as_json_data(config), created_at=created_at,
                              git_commit=git_commit, git_commit_time=git_commit_time)
            conn.execute(insert(releases).values(
                service=service, version=release.version, image_digest=image_digest,
                config_digest=config_digest, config=dump_json(release.config),
                created_at=created_at, git_commit=git_commit, git_commit_time=git_commit_time))
            self._append(conn, with_detail(event, "version", release.version))
        return release

    def find_release(self, service: str, image_digest: str,
                     config_digest: str) -> Release | None:
        query = (select(releases).where(releases.c.service == service,
                                        releases.c.image_digest == image_digest,
                                        releases.c.config_digest == config_digest)
                 .order_by(releases.c.version.desc()).limit(1))
        with self._read() as conn:
            row = conn.execute(query).first()
        return rows.release(row) if row else None

    def get_release(self, service: str, version: int) -> Release | None:
        query = select(releases).where(releases.c.service == service,
                                       releases.c.version == version)
        with self._read() as conn:
            row = conn.execute(query).first()
        return rows.release(row) if row else None

    def list_releases(self, service: str) -> list[Release]:
        query = (select(releases).where(releases.c.service == service)
                 .order_by(releases.c.version))
        with self._read() as conn:
            return [rows.release(r) for r in conn.execute(query)]

    # -- service: which release is live ---------------------------------------------
    def set_live_release(self, service: str, version: int | None, event: Event) -> None:
        with self._write() as conn:
            if version is not None and conn.scalar(
                    select(func.count()).select_from(releases).where(
                        releases.c.service == service, releases.c.version == version)) == 0:
                raise NotFound(f"service {service!r} has no release v{version}",
                               hint=f"`corral releases {service}` lists its releases")
            changed = conn.execute(update(services).where(services.c.name == service)
                                   .values(live_release=version)).rowcount
            if not changed:
                conn.execute(insert(services).values(name=service, live_release=version))
            self._append(conn, event)

    def live_release(self, service: str) -> int | None:
        with self._read() as conn:
            version = conn.scalar(select(services.c.live_release)
                                  .where(services.c.name == service))
        return int(version) if version is not None else None

    def services(self) -> list[str]:
        with self._read() as conn:
            return list(conn.scalars(select(releases.c.service).distinct()
                                     .order_by(releases.c.service)))

    # -- instances -------------------------------------------------------------------
    def put_instance(self, instance: Instance, event: Event | None = None) -> None:
        values = rows.instance_values(instance)
        with self._write() as conn:
            changed = conn.execute(update(instances).where(instances.c.id == instance.id)
                                   .values(values)).rowcount
            if not changed:
                conn.execute(insert(instances).values(values))
            if event is not None:
                self._append(conn, event)

    def get_instance(self, instance_id: str) -> Instance | None:
        with self._read() as conn:
            row = conn.execute(select(instances).where(instances.c.id == instance_id)).first()
        return rows.instance(row) if row else None

    def list_instances(self, service: str | None = None, *,
                       live_only: bool = True) -> list[Instance]:
        query = select(instances).order_by(instances.c.created_at, instances.c.id)
        if service is not None:
            query = query.where(instances.c.service == service)
        if live_only:
            query = query.where(instances.c.state.in_(_LIVE_STATES))
        with self._read() as conn:
            return [rows.instance(r) for r in conn.execute(query)]

    # -- deployments -----------------------------------------------------------------
    def create_deployment(self, service: str, strategy: str, from_release: int | None,
                          to_release: int, replicas: int, started_at: float,
                          event: Event) -> Deployment:
        with self._write() as conn:
            deployment_id = conn.execute(insert(deployments).values(
                service=service, strategy=strategy, from_release=from_release,
                to_release=to_release, replicas=replicas,
                outcome=DeploymentOutcome.RUNNING.value, started_at=started_at,
            ).returning(deployments.c.id)).scalar_one()
            self._append(conn, with_detail(event, "deployment", deployment_id))
        return Deployment(id=deployment_id, service=service, strategy=strategy,
                          from_release=from_release, to_release=to_release,
                          outcome=DeploymentOutcome.RUNNING, started_at=started_at,
                          replicas=replicas)

    def finish_deployment(self, deployment_id: int, outcome: DeploymentOutcome,
                          ended_at: float, reason: str | None, event: Event) -> Deployment:
        with self._write() as conn:
            changed = conn.execute(
                update(deployments).where(deployments.c.id == deployment_id)
                .values(outcome=DeploymentOutcome(outcome).value, ended_at=ended_at,
                        reason=reason)).rowcount
            if not changed:
                raise _no_deployment(deployment_id)
            self._append(conn, event)
            row = conn.execute(select(deployments)
                               .where(deployments.c.id == deployment_id)).one()
        return rows.deployment(row)

    def add_step(self, deployment_id: int, kind: str, detail: dict[str, Any],
                 at: float) -> DeploymentStep:
        with self._write() as conn:
            if conn.scalar(select(deployments.c.id)
                           .where(deployments.c.id == deployment_id)) is None:
                raise _no_deployment(deployment_id)
            highest = conn.scalar(select(func.max(deployment_steps.c.seq))
                                  .where(deployment_steps.c.deployment_id == deployment_id))
            step = DeploymentStep(deployment_id=deployment_id, seq=(highest or 0) + 1,
                                  kind=kind, detail=as_json_data(detail), at=at)
            conn.execute(insert(deployment_steps).values(
                deployment_id=deployment_id, seq=step.seq, kind=kind,
                detail=dump_json(step.detail), at=at))
        return step

    def get_deployment(self, deployment_id: int) -> Deployment | None:
        with self._read() as conn:
            row = conn.execute(select(deployments)
                               .where(deployments.c.id == deployment_id)).first()
        return rows.deployment(row) if row else None

    def list_deployments(self, service: str | None = None) -> list[Deployment]:
        query = select(deployments).order_by(deployments.c.id.desc())
        if service is not None:
            query = query.where(deployments.c.service == service)
        with self._read() as conn:
            return [rows.deployment(r) for r in conn.execute(query)]

    def list_steps(self, deployment_id: int) -> list[DeploymentStep]:
        query = (select(deployment_steps)
                 .where(deployment_steps.c.deployment_id == deployment_id)
                 .order_by(deployment_steps.c.seq))
        with self._read() as conn:
            return [rows.step(r) for r in conn.execute(query)]

    # -- progressive delivery ----------------------------------------------------------
    def save_progress(self, deployment_id: int, progress: dict[str, Any], at: float) -> None:
        with self._write() as conn:
            if conn.scalar(select(deployments.c.id)
                           .where(deployments.c.id == deployment_id)) is None:
                raise _no_deployment(deployment_id)
            conn.execute(delete(deployment_progress)
                         .where(deployment_progress.c.deployment_id == deployment_id))
            conn.execute(insert(deployment_progress).values(
                deployment_id=deployment_id, progress=dump_json(progress), at=at))

    def get_progress(self, deployment_id: int) -> dict[str, Any] | None:
        with self._read() as conn:
            text = conn.scalar(select(deployment_progress.c.progress)
                               .where(deployment_progress.c.deployment_id == deployment_id))
        return json.loads(text) if text else None

    def set_traffic(self, service: str, traffic: dict[str, Any] | None, event: Event) -> None:
        with self._write() as conn:
            conn.execute(delete(service_traffic).where(service_traffic.c.service == service))
            if traffic is not None:
                conn.execute(insert(service_traffic).values(service=service,
                                                            traffic=dump_json(traffic)))
            self._append(conn, event)

    def get_traffic(self, service: str) -> dict[str, Any] | None:
        with self._read() as conn:
            text = conn.scalar(select(service_traffic.c.traffic)
                               .where(service_traffic.c.service == service))
        return json.loads(text) if text else None

    def set_release_mark(self, service: str, version: int, bad: str | None,
                         event: Event) -> None:
        with self._write() as conn:
            if conn.scalar(select(releases.c.version).where(
                    releases.c.service == service, releases.c.version == version)) is None:
                raise NotFound(f"release {service} v{version} does not exist",
                               hint=f"`corral releases {service}` lists them")
            conn.execute(delete(release_marks).where(release_marks.c.service == service,
                                                     release_marks.c.version == version))
            if bad is not None:
                conn.execute(insert(release_marks).values(service=service, version=version,
                                                          bad=bad))
            self._append(conn, event)

    def bad_releases(self, service: str) -> dict[int, str]:
        with self._read() as conn:
            found = conn.execute(select(release_marks.c.version, release_marks.c.bad)
                                 .where(release_marks.c.service == service))
            return {int(r.version): str(r.bad) for r in found}

    # -- locks -----------------------------------------------------------------------
    def acquire_lock(self, name: str, holder: str, now: float, ttl: float) -> str | None:
        with self._write() as conn:
            current = conn.execute(select(locks).where(locks.c.name == name)).first()
            if current is None:
                conn.execute(insert(locks).values(name=name, holder=holder,
                                                  expires_at=now + ttl))
                return None
            if current.holder != holder and current.expires_at > now:
                return describe_lock_holder(current.holder, current.expires_at)
            conn.execute(update(locks).where(locks.c.name == name)
                         .values(holder=holder, expires_at=now + ttl))
            return None

    def release_lock(self, name: str, holder: str) -> None:
        with self._write() as conn:
            conn.execute(delete(locks).where(locks.c.name == name, locks.c.holder == holder))

    # -- the controller lease (ports/lease.py) ---------------------------------------
    def acquire_lease(self, name: str, holder: str, now: float, ttl: float, *,
                      replacing: Lease | None = None) -> Lease | None:
        with self._write_unfenced() as conn:
            granted = grant_lease(_read_lease(conn, name), name, holder, now, ttl, replacing)
            if granted is not None:
                _store_lease(conn, granted)
            return granted

    def renew_lease(self, lease: Lease, now: float, ttl: float) -> Lease | None:
        with self._write_unfenced() as conn:
            stored = _read_lease(conn, lease.name)
            if not is_same_lease(stored, lease) or stored is None or stored.expires_at <= now:
                return None
            renewed = Lease(lease.name, lease.holder, lease.epoch, now + ttl)
            _store_lease(conn, renewed)
            return renewed

    def release_lease(self, lease: Lease) -> None:
        with self._write_unfenced() as conn:
            conn.execute(delete(leases).where(leases.c.name == lease.name,
                                              leases.c.holder == lease.holder,
                                              leases.c.epoch == lease.epoch))

    def current_lease(self, name: str) -> Lease | None:
        with self._read() as conn:
            return _read_lease(conn, name)

    def fence(self, lease: Lease | None) -> None:
        self._fence = lease

    # -- sampled usage -----------------------------------------------------------------
    def add_usage(self, tallies: list[UsageTally]) -> None:
        if not tallies:
            return
        with self._write() as conn:
            for tally in tallies:
                _add_tally(conn, tally)

    def list_usage(self, since: float, until: float,
                   service: str | None = None) -> list[UsageTally]:
        u = instance_usage.c
        query = select(instance_usage).where(u.hour >= since, u.hour < until)
        if service is not None:
            query = query.where(u.service == service)
        with self._read() as conn:
            return [rows.usage_tally(r)
                    for r in conn.execute(query.order_by(u.hour, u.instance_id))]

    # -- ledger ----------------------------------------------------------------------
    def append_event(self, event: Event) -> Event:
        with self._write() as conn:
            return self._append(conn, event)

    def events(self, since_seq: int = 0, limit: int | None = None) -> list[Event]:
        query = select(events).where(events.c.seq > since_seq).order_by(events.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [rows.event(r) for r in conn.execute(query)]

    def find_events(self, where: EventFilter) -> list[Event]:
        query = select(events)
        if where.service is not None:
            query = query.where(or_(events.c.subject == where.service,
                                    events.c.subject.startswith(where.service + "/",
                                                                autoescape=True)))
        if where.action is not None:
            query = query.where(or_(events.c.action == where.action,
                                    events.c.action.startswith(where.action + ".",
                                                               autoescape=True)))
        if where.actor is not None:
            query = query.where(events.c.actor == where.actor)
        if where.since is not None:
            query = query.where(events.c.at >= where.since)
        if where.until is not None:
            query = query.where(events.c.at < where.until)
        query = query.order_by(events.c.seq.desc())
        if where.limit is not None:
            query = query.limit(where.limit)
        with self._read() as conn:
            return [rows.event(r) for r in conn.execute(query)][::-1]

    def raw_events(self, since_seq: int = 0, limit: int | None = None) -> list[RawEvent]:
        # The plain DB-API cursor: verifying 100,000 entries spends most of its time reading
        # them, and SQLAlchemy's row objects would double that.
        mark = "?" if self._engine.dialect.name == "sqlite" else "%s"
        sql = ("SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM events "
               f"WHERE seq > {mark} ORDER BY seq" + (f" LIMIT {mark}" if limit is not None
                                                     else ""))
        params = (since_seq,) if limit is None else (since_seq, limit)
        with self._read() as conn:
            cursor = conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]
            return [RawEvent(*r) for r in cursor.fetchall()]

    # -- snapshots (backup, restore) ---------------------------------------------------
    def snapshot(self) -> StoreSnapshot:
        reader = self._engine
        if reader.dialect.name == "postgresql":  # one snapshot for every table's query
            reader = reader.execution_options(isolation_level="REPEATABLE READ")
        with self._failures_explained(), reader.begin() as conn:
            return read_snapshot(conn)

    def load_snapshot(self, snapshot: StoreSnapshot) -> None:
        with self._write() as conn:
            write_snapshot(conn, snapshot, self._where)

    def close(self) -> None:
        self._engine.dispose()


def _read_lease(conn: Connection, name: str) -> Lease | None:
    row = conn.execute(select(leases).where(leases.c.name == name)).first()
    return Lease(row.name, row.holder, row.epoch, row.expires_at) if row else None


def _store_lease(conn: Connection, lease: Lease) -> None:
    values = {"holder": lease.holder, "epoch": lease.epoch, "expires_at": lease.expires_at}
    if not conn.execute(update(leases).where(leases.c.name == lease.name)
                        .values(values)).rowcount:
        conn.execute(insert(leases).values(name=lease.name, **values))


def _add_tally(conn: Connection, tally: UsageTally) -> None:
    """Sum `tally` into its (instance, hour) row, or start that row: portable SQL (an
    UPDATE, then an INSERT when it matched nothing) inside the caller's serialized write."""
    u = instance_usage.c
    summed = conn.execute(
        update(instance_usage)
        .where(u.instance_id == tally.instance_id, u.hour == tally.hour)
        .values(samples=u.samples + tally.samples, seconds=u.seconds + tally.seconds,
                memory_byte_seconds=u.memory_byte_seconds + tally.memory_byte_seconds,
                cpu_seconds=u.cpu_seconds + tally.cpu_seconds))
    if summed.rowcount == 0:
        conn.execute(insert(instance_usage).values(
            instance_id=tally.instance_id, hour=tally.hour, service=tally.service,
            release=tally.release, samples=tally.samples, seconds=tally.seconds,
            memory_byte_seconds=tally.memory_byte_seconds, cpu_seconds=tally.cpu_seconds))


def _no_deployment(deployment_id: int) -> NotFound:
    return NotFound(f"deployment {deployment_id} does not exist",
                    hint="`corral status` lists the deployments of each service")
