"""The bubblewrap command line for one instance, and the reading of bwrap's own errors.

Pure functions: builds arguments (read-only image root, private /tmp, new pid/ipc/uts
namespaces, no capabilities, unprivileged uid, clean env plus PORT) and classifies stderr
text. It never runs anything; launcher.py starts the command and process.py drives both.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.ports.records import InstanceSpec

SANDBOX_UID = 65534  # "nobody": the image's own user is recorded but never used on the host
SANDBOX_GID = 65534
STATUS_FD = 3  # the launcher puts bwrap's --json-status-fd file on this descriptor


def sandbox_args(spec: InstanceSpec, *, root: str, volumes: Sequence[tuple[str, str]],
                 port: int) -> list[str]:
    """bwrap's arguments (without the program name) to run `spec.argv` over `root`.

    `root` and each volume's host path are given separately from `spec` because the launcher
    may present them at other paths (see launcher.py). Volumes are (host path, inside path).
    """
    args = [
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", spec.id,
        "--ro-bind", root, "/",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
    ]
    for host, inside in volumes:
        args += ["--bind", host, inside]
    args += [
        "--cap-drop", "ALL",
        "--new-session",
        "--json-status-fd", str(STATUS_FD),
        "--clearenv",
    ]
    for key, value in sorted(spec.env.items()):
        if key != "PORT":
            args += ["--setenv", key, value]
    args += ["--setenv", "PORT", str(port), "--chdir", spec.workdir, "--", *spec.argv]
    return args


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
