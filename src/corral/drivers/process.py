"""The `process` driver: each instance is a bubblewrap sandbox over a read-only image root.

Starts sandboxes detached (they outlive the controller), remembers them only in files under
`.corral/run/instances/` so any later ProcessDriver re-adopts them, and stops them with
SIGTERM to the app's process group, then SIGKILL to the sandbox's pid-namespace init.
It never decides what should run: it starts, reports and stops what it is told.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from corral.drivers import inspect, procfs, snapshot
from corral.drivers.cgroups import Cgroups
from corral.drivers.confinement import SECCOMP_FD, Confined, Confinement
from corral.drivers.exec_check import ExecChecks
from corral.drivers.host import pick_free_port, prepare_volumes
from corral.drivers.image_root import EXEC_DEFAULT_PATH, explain_exec_failure, explain_workdir
from corral.drivers.instance_dir import InstanceDirs, InstanceRecord
from corral.drivers.sandbox import (
    HOST_FILES,
    SANDBOX_GID,
    SANDBOX_UID,
    is_namespace_failure,
    plan_layout,
    sandbox_args,
    sandbox_errors,
    secret_file_paths,
)
from corral.errors import DriverError, SandboxUnavailable
from corral.ports.records import Capacity, InstanceSpec, Observed, Usage, signal_number
from corral.ports.runtime import LaunchSnapshot, RuntimeFacts, SandboxProcess

LAUNCHER = Path(__file__).with_name("launcher.py")
STAGE_DIR = "/run"  # shadowed only inside the launcher's private mount namespace


class ProcessDriver:
    """Runs instances as bubblewrap sandboxes; state lives in `state_dir` (`.corral/`).

    Observed.pid is the outer bwrap process (reparented to init); the app itself runs as
    pid 2 of the sandbox's pid namespace, under bwrap's namespace init.
    """

    name = "process"

    def __init__(self, state_dir: Path, *, bwrap: str = "bwrap",
                 start_timeout: float = 10.0, cgroups: Cgroups | None = None,
                 seccomp: bool = True) -> None:
        self._dirs = InstanceDirs(Path(state_dir))
        self.confinement = Confinement(Path(state_dir), layout=cgroups, use_seccomp=seccomp)
        self._bwrap = bwrap
        self._start_timeout = start_timeout
        self._lock = threading.Lock()  # port choice + folder creation, for concurrent starts
        self._ports_given: set[int] = set()  # by this object, before their records exist
        self._exec_checks = ExecChecks()  # in flight: not intruders to the runtime check
        self._namespaces: tuple[float, dict[int, dict[str, int | None]],
                                dict[tuple[str, int | None], set[int]]] | None = None
        self._apps = procfs.ChildMemo()  # sandbox init -> its app, without a /proc scan
        self._mounts = inspect.MountTables()  # read again only when the kernel says changed
        self._levels: dict[tuple[int, int], int] = {}  # sandbox init -> its pid ns depth
        self._alive = procfs.Pidfds()  # outer bwraps: alive is a poll, not a /proc read
        self._known_members: dict[str, tuple[object, tuple[SandboxProcess, ...]]] = {}

    # -- the Driver port ---------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> Observed:
        bwrap = self._bwrap_path()
        if not Path(spec.rootfs).is_dir():
            raise DriverError(f"cannot start instance {spec.id}: image root {spec.rootfs} "
                              "is not a folder", hint="unpack the image first (corral pull)")
        with self._lock:
            self._dirs.create(spec.id)
            port = self._free_port()
        confined = Confined()
        try:
            prepare_volumes(spec.id, spec.volumes)
            confined = self.confinement.confine(spec)
            pid = self._launch(bwrap, spec, port, confined)
            record = self._record(spec, pid, port, confined)
            self._dirs.save(record)
            self._await_exec(record, spec)
            record = self._take_snapshot(record, "start")
        except BaseException:
            self.stop(spec.id, grace=0)
            self.confinement.release(confined.cgroups)
            raise
        finally:
            with self._lock:
                self._ports_given.discard(port)  # from now on the record (or nothing) holds it
        return self._observe(record)

    def list(self) -> list[Observed]:
        records = (self._dirs.load(i) for i in self._dirs.names())
        return [self._observe(r) for r in records if r is not None]

    def inspect(self, instance_id: str) -> Observed | None:
        record = self._load(instance_id)
        return self._observe(record) if record else None

    def stop(self, instance_id: str, grace: float) -> None:
        try:
            folder = self._dirs.path(instance_id)
        except DriverError:
            return  # no instance can have such an id
        self._mounts.forget(instance_id)
        self._known_members.pop(instance_id, None)
        record = self._dirs.load(instance_id)
        if record is not None and self._has_processes(record):
            self._terminate(record, grace)
        if record is not None:
            self._alive.forget(record.pid, record.start_ticks)
            self.confinement.release(record.cgroups)
        if folder.is_dir():
            self._dirs.retire(instance_id)

    # -- abilities beyond the port -----------------------------------------------------

    def on_exit(self, hook: Callable[[], None]) -> None:
        """The NoticesExits ability: `hook` runs when an outer bwrap this driver started or
        adopted exits (its pidfd becomes readable)."""
        self._alive.on_exit(hook)

    def exec_in(self, instance_id: str, argv: Sequence[str],
                timeout: float) -> tuple[int, str]:
        """Optional capability (exec health checks): run `argv` inside the instance's
        sandbox, in its namespaces as its uid, via nsenter; (exit code, output tail).
        A timeout is exit code 124, like timeout(1). Raises DriverError if it is not running.
        The runtime check knows these from intruders (exec_check.py)."""
        record = self._load(instance_id)
        init = self._sandbox_init(record) if record else None
        app = self._apps.child(init, _first_app) if init else None
        if record is None or app is None:
            raise DriverError(f"instance {instance_id} is not running: cannot exec in it")
        return self._exec_checks.run(app.pid, argv, timeout, uid=SANDBOX_UID, gid=SANDBOX_GID)

    def log_paths(self, instance_id: str) -> tuple[Path, Path]:
        """(stdout, stderr) of an instance; still readable after it was stopped or forgotten."""
        return self._dirs.log_paths(instance_id)

    def forget(self, instance_id: str) -> None:
        """Remove an exited instance's folder, keeping its logs. Unknown ids are ignored."""
        record = self._load(instance_id)
        if record is not None and self._is_running(record):
            raise DriverError(f"instance {instance_id} is still running (pid {record.pid})",
                              hint="stop it instead of forgetting it")
        self.stop(instance_id, grace=0)

    def runtime(self, instance_id: str) -> RuntimeFacts | None:
        """How the instance really runs, read from /proc (the Inspectable ability): its
        app's argv, env and ids, its mount table, every process in its namespaces, and the
        snapshot taken when it was launched. None if it is not running."""
        record = self._load(instance_id)
        if record is None or not self._alive.is_alive(record.pid, record.start_ticks):
            return None
        if record.launched is None:  # started by a driver that took no snapshot
            record = self._take_snapshot(record, "adopted")
        init = self._sandbox_init(record)
        app = self._apps.child(init, _first_app) if init else None
        if init is None or app is None or record.launched is None:
            return None
        launched = snapshot.from_json(record.launched)
        try:
            argv = tuple(inspect.read_nul_list(f"/proc/{app.pid}/cmdline"))
            env = inspect.read_env(app.pid)
            uid, gid = inspect.read_ids(app.pid)
            mounts = self._mounts.of(instance_id, init.pid, init.start_ticks)
            with self._exec_checks.quiet() as checks:
                processes = self._members(instance_id, launched, init, checks)
        except (OSError, KeyError, ValueError):
            return None  # it exited while being read
        return RuntimeFacts(
            instance_id=instance_id, pid=app.pid, argv=argv, env=env, uid=uid, gid=gid,
            root=record.rootfs, mounts=mounts, launched=launched, processes=processes)

    def usage(self, instance_id: str) -> Usage | None:
        """What the instance uses now against its limits, from its cgroup (the Measurable
        ability); None if it has no group (no usable cgroup layout) or is unknown."""
        record = self._load(instance_id)
        if record is None:
            return None
        return self.confinement.usage(record.cgroup_version, record.cgroups)

    def enforcement(self) -> tuple[bool, str]:
        layout = self.confinement.layout
        return layout.is_usable, layout.describe()

    def capacity(self) -> Capacity:
        """This machine's memory (/proc/meminfo) and the cores this process may use."""
        return procfs.machine_capacity()

    def kill(self, instance_id: str) -> bool:
        """SIGKILL the app inside the sandbox, as an OOM kill would (the Killable ability,
        for chaos): the sandbox ends and the instance is listed as exited, not forgotten."""
        facts = self.runtime(instance_id)
        if facts is None:
            return False
        _send(facts.pid, signal.SIGKILL)
        return True

    # -- starting ----------------------------------------------------------------------

    def _bwrap_path(self) -> str:
        found = shutil.which(self._bwrap)
        if found is None:
            raise SandboxUnavailable(
                f"bubblewrap ({self._bwrap}) is not installed or not executable; the process "
                "driver needs it to sandbox instances",
                hint="install it: apt-get install bubblewrap")
        return found

    def _free_port(self) -> int:
        """A TCP port free on 127.0.0.1 now and not given to another instance of this driver."""
        taken = {r.port for r in map(self._dirs.load, self._dirs.ids()) if r is not None}
        port = pick_free_port(taken | self._ports_given)
        self._ports_given.add(port)
        return port

    def _launch(self, bwrap: str, spec: InstanceSpec, port: int, confined: Confined) -> int:
        """Run launcher.py, which detaches bwrap and prints its pid."""
        folder = self._dirs.path(spec.id)
        as_root = os.geteuid() == 0
        host_files = [path for path in HOST_FILES if os.path.isfile(path)]
        try:
            plan = plan_layout(spec, host_files, STAGE_DIR if as_root else None)
        except OSError as exc:
            raise DriverError(f"cannot start instance {spec.id}: cannot read the image root "
                              f"{spec.rootfs}: {exc}", hint="unpack the image again "
                              "(corral pull) or fix the root's permissions") from exc
        fd = SECCOMP_FD if confined.seccomp else None
        args = sandbox_args(spec, plan.layout, port=port, seccomp_fd=fd)
        overlay = None
        if as_root:  # the root whole in one mount (an overlay if it lacks something)
            whole = sandbox_args(spec, plan.whole(STAGE_DIR), port=port, seccomp_fd=fd)
            if plan.skeleton:
                overlay = {"skeleton": sorted(plan.skeleton.items()), "args": whole}
            else:
                args = whole
        config = {
            "bwrap": bwrap, "args": args, "overlay": overlay,
            "stdout": str(folder / "stdout.log"), "stderr": str(folder / "stderr.log"),
            "status": str(folder / "status.json"), "stage_dir": STAGE_DIR, "stage": plan.stage,
            "uid": SANDBOX_UID if as_root else None, "gid": SANDBOX_GID if as_root else None,
            "secrets": bool(spec.secret_env or spec.secret_files),
            **confined.launcher_config(),
        }
        # Secret values go through the launcher's stdin, never its argv or a file.
        secrets = json.dumps({"env": spec.secret_env, "files": [
            spec.secret_files[p] for p in secret_file_paths(spec)]}) if config["secrets"] else ""
        done = subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config)],
                              input=secrets, capture_output=True, text=True, timeout=30,
                              check=False)
        if done.returncode != 0 or not done.stdout.strip().isdigit():
            raise DriverError(f"cannot start instance {spec.id}: {done.stderr.strip()}",
                              hint="the driver must run as root, or as a user allowed to "
                              "create user namespaces")
        return int(done.stdout)

    def _record(self, spec: InstanceSpec, pid: int, port: int,
                confined: Confined) -> InstanceRecord:
        return InstanceRecord(
            id=spec.id, pid=pid, start_ticks=procfs.start_ticks(pid) or -1,
            address=f"127.0.0.1:{port}", port=port, argv=list(spec.argv), env=dict(spec.env),
            rootfs=spec.rootfs, started_at=time.time(), service=spec.service,
            release=spec.release, image_digest=spec.image_digest, image_user=spec.user,
            stop_signal=spec.stop_signal,
            volumes=dict(spec.volumes), labels=dict(spec.labels),
            cgroup_version=confined.cgroup_version, cgroups=dict(confined.cgroups))

    def _await_exec(self, record: InstanceRecord, spec: InstanceSpec) -> None:
        """Wait until the app replaced bwrap in the sandbox, or the sandbox ended.

        Raises DriverError with bwrap's message if bwrap failed (bad root, argv[0] missing).
        An app that ran and exited by itself is not an error: it is observed as exited.
        """
        deadline = time.monotonic() + self._start_timeout
        delay = 0.002
        while True:
            if not procfs.is_alive(record.pid, record.start_ticks):
                self._raise_if_sandbox_failed(record, spec)
                return
            init_pid = self._dirs.status(record.id).init_pid
            if init_pid and any(c.comm != "bwrap" for c in procfs.children_of(init_pid)):
                return
            if time.monotonic() > deadline:
                raise DriverError(
                    f"instance {record.id} did not start within {self._start_timeout:g} s",
                    hint=f"read {self._dirs.logs / record.id / 'stderr.log'}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _members(self, instance_id: str, launched: LaunchSnapshot,
                 init: procfs.ProcStat, checks: Mapping[int, int],
                 ) -> tuple[SandboxProcess, ...]:
        """The sandbox's processes, read again only when the pids sharing its namespaces or
        the exec checks changed: a process that enters from outside is a new pid, and one
        inside cannot change its ids or capabilities (no privileges, no_new_privs), so
        unchanged pids need no read (a drift pass asks for every instance)."""
        index, inverted = self._index()
        pids = snapshot.sharing(launched, init, index, inverted)
        key = (init.pid, init.start_ticks, frozenset(pids), frozenset(checks.items()))
        known = self._known_members.get(instance_id)
        if known is not None and known[0] == key:
            return known[1]
        processes = tuple(snapshot.members(launched, init, checks, index, inverted,
                                           level=self._level_of(init), pids=pids))
        self._known_members[instance_id] = (key, processes)
        return processes

    def _level_of(self, init: procfs.ProcStat) -> int:
        """The sandbox init's pid namespace depth, read once per init (it never changes)."""
        key = (init.pid, init.start_ticks)
        level = self._levels.get(key)
        if level is None:
            if len(self._levels) >= 4096:  # inits long gone: start over
                self._levels.clear()
            level = self._levels[key] = snapshot.pid_level(init.pid)
        return level

    def _index(self) -> tuple[dict[int, dict[str, int | None]],
                              dict[tuple[str, int | None], set[int]]]:
        """Every host process's namespaces, read at most every 1.5 s: one /proc scan
        serves a whole drift pass (a pass of 60 instances on a loaded machine takes longer
        than 0.25 s, and each scan reads 3 links of every host process). A process that
        enters a sandbox after the scan is seen by the next pass. Called under the exec
        checks' lock, whose grace after a check ends (2 s) outlasts the index."""
        now = time.monotonic()
        if self._namespaces is None or now - self._namespaces[0] > 1.5:
            index = snapshot.namespace_index()
            self._namespaces = (now, index, snapshot.by_namespace(index))
        return self._namespaces[1], self._namespaces[2]

    def _take_snapshot(self, record: InstanceRecord, taken: str) -> InstanceRecord:
        """Record what the sandbox was launched as (drift is measured from it); the record
        unchanged if the sandbox is not running."""
        init = self._sandbox_init(record)
        app = _app_of(init) if init else None
        launched = snapshot.take(init.pid, app.pid, record.image_digest, taken) \
            if init and app else None
        if launched is None:
            return record
        record = replace(record, launched=snapshot.to_json(launched))
        with contextlib.suppress(OSError):  # stopped meanwhile: its folder is gone
            self._dirs.save(record)
        return record

    def _raise_if_sandbox_failed(self, record: InstanceRecord, spec: InstanceSpec) -> None:
        status = self._dirs.status(record.id)
        stderr = self._dirs.log_paths(record.id)[1].read_text(errors="replace")
        errors = sandbox_errors(stderr)
        # bwrap writes exit-code only once the app ran, so its absence means bwrap failed
        if status.exit_code is not None and not errors:
            return
        message = "\n".join(errors) or stderr.strip()[-2000:] or "no message"
        if is_namespace_failure(errors):
            raise SandboxUnavailable(
                f"bubblewrap cannot create namespaces for instance {record.id}: {message}",
                hint="allow unprivileged user namespaces (sysctl "
                "kernel.unprivileged_userns_clone=1; in a container, allow unshare)")
        cause, hint = _start_failure(spec, message)
        raise DriverError(f"cannot start instance {record.id} ({' '.join(spec.argv)}): "
                          f"{cause} ({message})", hint=hint)

    # -- observing and stopping --------------------------------------------------------

    def _load(self, instance_id: str) -> InstanceRecord | None:
        try:
            return self._dirs.load(instance_id)
        except DriverError:
            return None  # not a valid id, so never one of ours

    def _is_running(self, record: InstanceRecord) -> bool:
        """The outer bwrap runs, or (if it alone was killed) the sandbox it started still
        does. Once bwrap recorded the exit of the instance's command, the instance has
        exited, as a container ends with its PID 1, even if processes the command left
        behind still run in the sandbox (a shell-form CMD's server when its shell was
        killed): those are ended when the instance is stopped."""
        if self._alive.is_alive(record.pid, record.start_ticks):
            return True
        return (self._dirs.status(record.id).exit_code is None
                and self._sandbox_init(record) is not None)

    def _has_processes(self, record: InstanceRecord) -> bool:
        """Anything of the instance still runs: its outer bwrap or its sandbox."""
        return (self._alive.is_alive(record.pid, record.start_ticks)
                or self._sandbox_init(record) is not None)

    def _observe(self, record: InstanceRecord) -> Observed:
        running = self._is_running(record)
        exit_code = None if running else self._dirs.status(record.id).exit_code
        oom = not running and self.confinement.is_oom_killed(record.cgroup_version,
                                                             record.cgroups)
        return Observed(id=record.id, pid=record.pid, address=record.address, running=running,
                        exit_code=exit_code, labels=dict(record.labels),
                        started_at=record.started_at, oom_killed=oom)

    def _sandbox_init(self, record: InstanceRecord) -> procfs.ProcStat | None:
        """The sandbox's pid-namespace init, if it still runs under this instance's bwrap."""
        init_pid = self._dirs.status(record.id).init_pid
        stat = procfs.read_stat(init_pid) if init_pid else None
        if stat is None or not stat.is_running:
            return None
        if stat.ppid == record.pid:
            return stat
        # The outer bwrap died and the init was reparented: it is still this instance's if it
        # is a bwrap started just after the outer one (a reused pid starts later or differs).
        started_after = stat.start_ticks - record.start_ticks
        if stat.comm == "bwrap" and 0 <= started_after <= _INIT_WINDOW_TICKS:
            return stat
        return None

    def _terminate(self, record: InstanceRecord, grace: float) -> None:
        init = self._sandbox_init(record)
        if init is not None and grace > 0:
            # the init ignores signals from outside its namespace; the app's group gets the
            # image's STOPSIGNAL (SIGTERM unless the image says otherwise)
            first = signal_number(record.stop_signal)
            for group in {c.pgrp for c in procfs.children_of(init.pid)}:
                _send(group, first, group=True)
            if self._wait_gone(record, grace):
                return
        if init is not None and procfs.is_alive(init.pid, init.start_ticks):
            _send(init.pid, signal.SIGKILL)  # ends the whole pid namespace
            if self._wait_gone(record, 2.0):
                return
        if procfs.is_alive(record.pid, record.start_ticks):
            _send(record.pid, signal.SIGKILL)
            self._wait_gone(record, 2.0)

    def _wait_gone(self, record: InstanceRecord, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while self._has_processes(record):
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return True


_INIT_WINDOW_TICKS = 30 * os.sysconf("SC_CLK_TCK")


def _start_failure(spec: InstanceSpec, said: str) -> tuple[str, str]:
    """(the cause, what to do) of a sandbox that never ran its app; `said` is bwrap's words.
    The image root is looked at before argv[0] or the workdir is blamed."""
    if "execvp" in said:
        search = spec.env.get("PATH", EXEC_DEFAULT_PATH)
        cause = explain_exec_failure(spec.rootfs, spec.argv[0], search, spec.workdir,
                                     denied="Permission denied" in said)
        if cause is not None:
            return cause, ("fix the image's entrypoint/cmd or the service's command "
                           f"(the image root is {spec.rootfs})")
        return "the program could not be run", "read bwrap's message above"
    if "chdir" in said:
        return (explain_workdir(spec.rootfs, spec.workdir),
                "fix the image's workdir: it must be a folder")
    return ("the sandbox could not be set up",
            f"bwrap's message names the path; the image root is {spec.rootfs}, the volumes "
            f"{', '.join(spec.volumes) or '(none)'}")


def _app_of(init: procfs.ProcStat) -> procfs.ProcStat | None:
    """The app: the first process the sandbox's init started (the init forks only it)."""
    return _first_app(procfs.children_of(init.pid))


def _first_app(children: list[procfs.ProcStat]) -> procfs.ProcStat | None:
    apps = [c for c in children if c.comm != "bwrap"]
    return min(apps, key=lambda c: c.pid) if apps else None


def _send(pid: int, sig: int, *, group: bool = False) -> None:
    """Send a signal, ignoring a process that exited in between."""
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(pid, sig)
