"""The bubblewrap command line for one instance, and the reading of bwrap's own errors.

Builds arguments (the image root read-only as `/`, bound whole or entry by entry on a `/`
of bwrap's own, with /proc, /dev, /sys, a private /tmp, the host's resolv.conf and hosts,
and volumes mounted over it, new pid/ipc/uts namespaces, no capabilities, unprivileged uid,
clean env plus PORT), and classifies stderr text. It reads the image root (through
image_root.py) to plan the layout but never runs anything; launcher.py starts the command,
process.py drives both. See docs/adr/0009-the-runtime-supplies-mount-points.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from corral.drivers.image_root import Entry, lacking, place_mounts, plan_root
from corral.ports.records import InstanceSpec

SANDBOX_UID = 65534  # "nobody": the image's own user is recorded but never used on the host
SANDBOX_GID = 65534
STATUS_FD = 3  # the launcher puts bwrap's --json-status-fd file on this descriptor
FIRST_SECRET_FD = 5  # … secret files (memfds) on this one and the next (4: the seccomp filter)
RUNTIME_FOLDERS = ("/proc", "/dev", "/sys", "/tmp")  # what docker and podman supply too
HOST_FILES = ("/etc/resolv.conf", "/etc/hosts")  # instances share the host's network


@dataclass(frozen=True)
class Layout:
    """The sandbox's file system, every source named as bwrap will see it."""

    root: str  # the image root
    entries: Sequence[Entry]  # what of the root makes `/` (image_root.plan_root)
    volumes: Sequence[tuple[str, str]] = ()  # (source, path inside), read-write
    host_files: Sequence[tuple[str, str]] = ()  # (source, path inside), read-only
    secret_files: Sequence[tuple[int, str]] = ()  # (descriptor, path inside), mode 0400


@dataclass(frozen=True)
class SandboxPlan:
    """How to assemble one sandbox's file system, with or without the launcher's help."""

    layout: Layout  # the root's entries bound one by one: needs no privilege
    stage: dict[str, str]  # name -> host path, for the launcher to stage (as root)
    skeleton: dict[str, bool]  # what the root lacks, path -> is a folder (image_root.lacking)

    def whole(self, stage_dir: str) -> Layout:
        """The layout when the launcher, as root, gives the root whole: the staged root itself
        if it lacks nothing, else `stage_dir/merged`, a read-only overlay of the skeleton on
        the root (launcher.py): one mount instead of one per entry."""
        root = f"{stage_dir}/merged" if self.skeleton else f"{stage_dir}/root"
        return replace(self.layout, root=root, entries=[Entry("/", "bind")])


def plan_layout(spec: InstanceSpec, host_files: Sequence[str],
                stage_dir: str | None) -> SandboxPlan:
    """The sandbox plan for `spec`, reading its root.

    With `stage_dir` (the driver runs as root) every source is staged under it, name ->
    host path: root can open folders that the sandbox's uid cannot reach (see launcher.py).
    """
    points = {**dict.fromkeys(RUNTIME_FOLDERS, True), **dict.fromkeys(host_files, False),
              **dict.fromkeys(spec.volumes.values(), True),
              **dict.fromkeys(spec.secret_files, False)}
    placed = place_mounts(spec.rootfs, points)
    mount_points = {placed[p]: is_dir for p, is_dir in points.items()}
    stage: dict[str, str] = {}

    def source(name: str, path: str) -> str:
        if stage_dir is None:
            return path
        stage[name] = path
        return f"{stage_dir}/{name}"

    layout = Layout(
        root=source("root", spec.rootfs),
        entries=plan_root(spec.rootfs, mount_points, [spec.workdir]),
        volumes=[(source(f"volume{n}", host), placed[inside])
                 for n, (host, inside) in enumerate(spec.volumes.items())],
        host_files=[(source(f"host{n}", path), placed[path])
                    for n, path in enumerate(host_files)],
        secret_files=[(FIRST_SECRET_FD + n, placed[path])
                      for n, path in enumerate(secret_file_paths(spec))])
    return SandboxPlan(layout, stage, lacking(spec.rootfs, mount_points, [spec.workdir]))


def sandbox_args(spec: InstanceSpec, layout: Layout, *, port: int,
                 seccomp_fd: int | None = None) -> list[str]:
    """bwrap's arguments (without the program name) to run `spec.argv` in `layout`, under
    the seccomp filter on `seccomp_fd` if given (bwrap also sets no_new_privs)."""
    args = [
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", spec.id,
    ]
    for entry in layout.entries:
        if entry.kind == "dir":
            args += ["--dir", entry.path]
        elif entry.kind == "symlink":
            args += ["--symlink", entry.link, entry.path]
        else:
            args += ["--ro-bind", layout.root + entry.path, entry.path]
    args += _mount_args(layout)
    args += [
        "--remount-ro", "/",
        "--cap-drop", "ALL",
        "--new-session",
        "--json-status-fd", str(STATUS_FD),
    ]
    # With secret env the launcher execs bwrap with exactly those variables (never on a
    # command line): clearing would drop them. Either way the app sees no other variable.
    args += [] if spec.secret_env else ["--clearenv"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    for key, value in sorted(spec.env.items()):
        if key != "PORT":
            args += ["--setenv", key, value]
    args += ["--setenv", "PORT", str(port), "--chdir", spec.workdir, "--", *spec.argv]
    return args


def _mount_args(layout: Layout) -> list[str]:
    """The runtime's mounts, a folder's before those below it (a volume may be in /tmp)."""
    mounts = [(["--proc"], "/proc"), (["--dev"], "/dev"), (["--ro-bind", "/sys"], "/sys"),
              (["--tmpfs"], "/tmp")]
    mounts += [(["--ro-bind", source], inside) for source, inside in layout.host_files]
    mounts += [(["--bind", source], inside) for source, inside in layout.volumes]
    # bwrap copies each memfd into its own tmpfs: mode 0400, owned by the sandbox's user
    mounts += [(["--perms", "0400", "--ro-bind-data", str(fd)], inside)
               for fd, inside in layout.secret_files]
    mounts.sort(key=lambda mount: mount[1].rstrip("/").count("/"))
    return [arg for how, inside in mounts for arg in (*how, inside)]


def secret_file_paths(spec: InstanceSpec) -> list[str]:
    """The secret files in the order their descriptors follow FIRST_SECRET_FD."""
    return sorted(spec.secret_files)


def sandbox_errors(stderr: str) -> list[str]:
    """The lines bwrap or the launcher wrote about their own failure (not the app's output)."""
    return [line for line in stderr.splitlines()
            if line.startswith(("bwrap:", "corral launcher:"))]


def is_namespace_failure(errors: list[str]) -> bool:
    """True if bwrap could not create its namespaces: the host, not the image, is at fault.

    bwrap 0.8 says e.g. "bwrap: No permissions to creating new namespace, likely because the
    kernel does not allow non-privileged user namespaces" or "bwrap: setting up uid map:
    Permission denied".
    """
    markers = ("new namespace", "uid map", "gid map", "Creating new namespace failed")
    return any(marker in line for line in errors for marker in markers)
