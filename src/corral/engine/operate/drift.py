"""The drift watch: finds instances that no longer run what their release says.

Files: every image root in use is verified against the image's file list when first seen
and periodically, and watched between (inotify on every file's inode, so a write through
any hardlink counts); a drifted root is quarantined, the layer cache under it repaired from
the blobs and a fresh root composed (images.guard), then every instance using the drifted
root is condemned. Runtime: what each instance's driver sees now (processes in its
namespaces, its mounts, ids and capabilities) is compared with what it launched, and its
image with its release's (core.drift). It only reports to the reconciler, which replaces;
nothing is ever repaired in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from corral.core.drift import ExpectedRuntime, describe_file_drift, intruders, runtime_drift
from corral.engine.adapters import root_guard, root_watcher
from corral.engine.fleet import Clock, Fleets
from corral.engine.loop import WALL, BackgroundLoop, Timer
from corral.engine.settings import seconds_from_env
from corral.errors import CorralError
from corral.ports.driver import Driver
from corral.ports.image_roots import RootGuard, RootVerifier, RootWatcher
from corral.ports.images import ImageStore
from corral.ports.records import Event, Instance, InstanceState
from corral.ports.runtime import Inspectable
from corral.ports.store import Store

log = logging.getLogger(__name__)

Condemn = Callable[[str, str], None]
STANDBY = "standby:"  # watcher key prefix of a digest's spare root


def guard_for(images: ImageStore) -> RootGuard | None:
    """The root guard of an image store with local roots (ports.image_roots.HasImageRoots);
    None for a store without them: file drift is then not checked."""
    return root_guard(images)


RUNTIME_PERIOD = 10.0


def runtime_drift_period() -> float:
    """Seconds between runtime drift reads: CORRAL_DRIFT_PERIOD (shorter finds an entered
    process sooner, at the cost of a /proc read of every instance each time), else 10."""
    return seconds_from_env("CORRAL_DRIFT_PERIOD", RUNTIME_PERIOD)


class DriftWatch:
    """A background thread; `check_files` and `check_runtime` are usable from tests."""

    def __init__(self, store: Store, fleets: Fleets, images: ImageStore, driver: Driver,
                 condemn: Condemn, clock: Clock, actor: str, *,
                 verify_period: float = 60.0, runtime_period: float = RUNTIME_PERIOD,
                 guard: RootGuard | None = None, watcher: RootWatcher | None = None,
                 timer: Timer = WALL) -> None:
        self._store = store
        self._fleets = fleets
        self._images = images
        self._driver = driver
        self._condemn = condemn
        self._clock = clock
        self._actor = actor
        self._verify_period = verify_period
        self._runtime_period = runtime_period
        self.guard = guard if guard is not None else guard_for(images)
        self._watcher = watcher
        self._verifiers: dict[str, RootVerifier] = {}  # digest -> verifier of the root in use
        self._timer = timer
        self._next_full = self._next_runtime = float("-inf")
        self.runtime_passes = 0  # runtime checks done (tests wait for passes, not time)
        self._loop = BackgroundLoop("drift-watch", self._pass, 0.0, timer=timer,
                                    what="drift check", immediately=True, retry=1.0)
        self.found: list[dict[str, Any]] = []  # every drift seen, newest last (for status)

    def start(self) -> None:
        if self.guard is not None and self._watcher is None:
            self._watcher = root_watcher()
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop(timeout=10)
        if self._watcher is not None:
            self._watcher.close()

    def _pass(self) -> float:
        """Files every pass (a full verify each `verify_period`), the runtime each
        `runtime_period`; without a watcher to wait on, a pause of 0.5 s between passes."""
        now = self._timer()
        full = now >= self._next_full
        self.check_files(full=full, wait=0.5)  # a change reported ends the wait at once
        if full:
            self._next_full = now + self._verify_period
        if now >= self._next_runtime:
            self.check_runtime()
            self.runtime_passes += 1
            self._next_runtime = now + self._runtime_period
        return 0.5 if self._watcher is None else 0.0

    # -- files -------------------------------------------------------------------------
    def check_files(self, full: bool = False, wait: float = 0.2) -> list[str]:
        """Adopt new roots, read the watcher's report, verify; the digests found drifted."""
        if self.guard is None:
            return []
        in_use = {i.image_digest for i in self._fleets.all() if i.state.is_live}
        for digest in sorted(in_use - set(self._verifiers)):
            self._adopt(digest)
        for digest in sorted(set(self._verifiers) - in_use):
            self._forget(digest)
            self.guard.discard_standby(digest)
        report = self._watcher.poll(wait) if self._watcher is not None else {}
        drifted = []
        for digest, verifier in list(self._verifiers.items()):
            if report.get(STANDBY + digest):  # someone changed the spare: never use it
                self._unwatch(STANDBY + digest)
                self.guard.discard_standby(digest)
            if full and not self.guard.standby_of(digest).is_dir():
                self._make_standby(digest)  # before the checks: its links change ctimes
            paths = report.get(digest)
            if not full and not paths:
                continue
            changes = verifier.verify(None if full or "*" in (paths or ()) else paths)
            if changes:
                self._files_drifted(digest, changes)
                drifted.append(digest)
        return drifted

    def _adopt(self, digest: str) -> None:
        assert self.guard is not None
        root = self.guard.root_of(digest)
        if root is None:
            return  # not unpacked (yet): the next pass looks again
        self._make_standby(digest)
        if self._watcher is not None:  # first: a change made during the checks is reported
            self._watcher.add(digest, root)
        verifier = self.guard.verifier(digest)
        if verifier is None:
            self._forget(digest)
            return  # quarantined meanwhile: the next pass looks again
        self._verifiers[digest] = verifier
        changes = verifier.verify()
        if changes:
            self._files_drifted(digest, changes)

    def _make_standby(self, digest: str) -> None:
        """A spare root, so a drifted one is replaced by a rename (images.guard); its
        folders are watched, its files are the served root's inodes, watched there."""
        assert self.guard is not None
        try:
            standby = self.guard.make_standby(digest)
        except (OSError, CorralError) as exc:
            log.warning("image %s: no standby root (%s): a drifted root is composed anew",
                        digest[:19], exc)
            return
        if self._watcher is not None:
            self._watcher.add(STANDBY + digest, standby, files=False)

    def _forget(self, digest: str) -> None:
        self._verifiers.pop(digest, None)
        self._unwatch(digest)
        self._unwatch(STANDBY + digest)

    def _unwatch(self, key: str) -> None:
        if self._watcher is not None:
            self._watcher.remove(key)

    def _files_drifted(self, digest: str, changes: list[tuple[str, str]]) -> None:
        self._unwatch(STANDBY + digest)  # it is about to become the root: not a change
        assert self.guard is not None
        # The cache is repaired and a fresh root composed BEFORE anyone is condemned: a
        # replacement started earlier could link the tampered inode again.
        began = time.perf_counter()
        try:
            done = self.guard.replace_root(digest, changes)
        except Exception:  # the instances must be replaced all the same
            log.exception("image %s: making a fresh root failed", digest[:19])
            done = None
        what = describe_file_drift(changes)
        victims = [i for i in self._fleets.all()
                   if i.image_digest == digest and i.state.is_live
                   and i.state is not InstanceState.DRAINING]
        self._record("drift.files", digest, {
            "image": digest, "changes": [list(c) for c in changes[:50]],
            "count": len(changes),
            "quarantined": str(done.quarantined) if done and done.quarantined else None,
            "repaired": {layer[:12]: paths[:20] for layer, paths in done.repaired.items()}
            if done else {},
            "extracted": [layer[:12] for layer in done.extracted] if done else [],
            "instances": [i.id for i in victims]})
        log.warning("image root %s drifted (%s); layer cache repaired at %d path(s), %d "
                    "layer(s) extracted again, fresh root in %.3f s; replacing %d "
                    "instance(s)", digest[:19], what,
                    sum(len(p) for p in done.repaired.values()) if done else 0,
                    len(done.extracted) if done else 0, time.perf_counter() - began,
                    len(victims))
        for instance in victims:
            self._condemn(instance.id, f"{what} in the root of image {digest[:19]}")
        self._forget(digest)  # after condemning: thousands of watches to remove

    # -- runtime -----------------------------------------------------------------------
    def check_runtime(self) -> dict[str, list[str]]:
        """Compare every running instance with what its driver launched; condemn those
        changed from outside (a process that entered it, a mount, a uid, capabilities)."""
        if not isinstance(self._driver, Inspectable):
            return {}
        found: dict[str, list[str]] = {}
        for instance in self._fleets.all():
            if instance.state not in (InstanceState.READY, InstanceState.UNHEALTHY):
                continue
            facts = self._driver.runtime(instance.id)
            expected = self._expected(instance)
            if facts is None or expected is None:
                continue
            differences = runtime_drift(expected, facts)
            if differences:
                found[instance.id] = differences
                self._record("drift.runtime", f"{instance.service}/{instance.id}", {
                    "instance": instance.id, "differences": differences,
                    "entered": [{"pid": p.pid, "argv": list(p.argv), "uid": p.credentials.uid}
                                for p in intruders(facts)],
                    "launched": facts.launched.taken if facts.launched else None})
                self._condemn(instance.id, "runtime: " + "; ".join(differences[:3]))
        return found

    def _expected(self, instance: Instance) -> ExpectedRuntime | None:
        release = self._fleets.release(instance.service, instance.release)  # cached: no query
        return ExpectedRuntime(image_digest=release.image_digest) if release else None

    def _record(self, action: str, subject: str, detail: dict[str, Any]) -> None:
        self.found.append({"action": action, "subject": subject, **detail})
        del self.found[:-100]
        self._store.append_event(Event(at=self._clock(), actor=self._actor, action=action,
                                       subject=subject, detail=detail))
