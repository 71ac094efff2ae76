"""Runtime drift: how an instance runs now, compared with what the driver launched.

Pure: the driver's facts (its launch snapshot and what it sees now) come in, a list of
human-readable differences comes out; empty means no drift. Drift is a change from outside
the release: a process that entered the instance's namespaces from outside, a mount added,
removed or changed, a uid or capabilities it was not launched with, another image. What the
program does to itself (exec, fork, setenv, argv rewrite, chdir, children) is never drift.
Drift is never repaired here or anywhere: the reconciler replaces the instance.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from corral.ports.runtime import (
    LaunchSnapshot,
    Mount,
    RuntimeFacts,
    SandboxProcess,
)


@dataclass(frozen=True)
class ExpectedRuntime:
    """What the release says about how its instances run: which image."""

    image_digest: str


def runtime_drift(expected: ExpectedRuntime, facts: RuntimeFacts) -> list[str]:
    """Every change from outside between what was launched and `facts`, most telling first.

    Worked example: an instance launched as uid 65534 with one read-only mount at `/`,
    where someone ran `nsenter … sh` as root, and where a volume was mounted afterwards:
    ["process 812 entered from outside: sh (uid 0)", "mount /data added: /srv/x (ext4, rw)"];
    its app having exec'd `httpd`, set SHLVL and forked workers adds nothing.
    """
    launched = facts.launched
    if launched is None:
        return []  # nothing recorded to compare with: the driver cannot tell
    found: list[str] = []
    if expected.image_digest and launched.image_digest \
            and launched.image_digest != expected.image_digest:
        found.append(f"it was started from image {launched.image_digest[:19]}, the "
                     f"release's image is {expected.image_digest[:19]}")
    entered = intruders(facts)
    found += [f"process {p.pid} entered from outside: {_command(p)} "
              f"(uid {p.credentials.uid})" for p in entered]
    for process in facts.processes:
        if process not in entered and not process.exec_check:
            found += _credential_drift(launched, process)
    found += mount_drift(launched.mounts, facts.mounts)
    return found


def intruders(facts: RuntimeFacts) -> list[SandboxProcess]:
    """The processes in the instance that came from outside it: their ancestry does not lead
    to the instance's init, or (when the app's own session began inside) their session
    began outside. The driver's own exec checks are not intruders."""
    sessions = facts.launched is not None and facts.launched.sessions_inside
    return [p for p in facts.processes if not p.exec_check
            and (not p.from_init or (sessions and not p.session_inside))]


def _credential_drift(launched: LaunchSnapshot, process: SandboxProcess) -> list[str]:
    was, now = launched.credentials, process.credentials
    found = []
    if now.uids != was.uids:
        found.append(f"process {process.pid} ({_command(process)}) runs as uid "
                     f"{_ids(now.uids)}, the instance was launched as {_ids(was.uids)}")
    if now.gids != was.gids:
        found.append(f"process {process.pid} ({_command(process)}) runs as gid "
                     f"{_ids(now.gids)}, the instance was launched as {_ids(was.gids)}")
    gained = now.capabilities & ~was.capabilities
    if gained and process.in_user_namespace:
        found.append(f"process {process.pid} ({_command(process)}) holds capabilities it "
                     f"was not launched with: {', '.join(capability_names(gained))}")
    return found


def mount_drift(launched: Sequence[Mount], now: Sequence[Mount]) -> list[str]:
    """Mounts added, removed or changed since launch, by target.

    >>> ro = Mount("/", "/c/roots/ab", "ext4", True)
    >>> mount_drift([ro], [Mount("/", "/c/roots/ab", "ext4", False)])
    ['mount / changed: /c/roots/ab (ext4, ro) is now /c/roots/ab (ext4, rw)']
    >>> mount_drift([ro], [ro, Mount("/data", "/srv/x", "ext4", False, ("nosuid",))])
    ['mount /data added: /srv/x (ext4, rw, nosuid)']
    >>> mount_drift([ro, ro], [ro])
    ['mount / removed: /c/roots/ab (ext4, ro)']
    """
    if tuple(launched) == tuple(now):  # the usual case, at the cost of one comparison
        return []
    removed = Counter(launched) - Counter(now)
    added = Counter(now) - Counter(launched)
    found = []
    for target in sorted({m.target for m in removed} | {m.target for m in added}):
        gone = [m for m in removed.elements() if m.target == target]
        new = [m for m in added.elements() if m.target == target]
        while gone and new:
            found.append(f"mount {target} changed: {_mount(gone.pop(0))} is now "
                         f"{_mount(new.pop(0))}")
        found += [f"mount {target} removed: {_mount(m)}" for m in gone]
        found += [f"mount {target} added: {_mount(m)}" for m in new]
    return found


def capability_names(bits: int) -> list[str]:
    """The names of the capabilities set in `bits` (as /proc/PID/status shows them).

    >>> capability_names(0x200000 | 1 << 7)
    ['cap_setuid', 'cap_sys_admin']
    """
    return [_CAPABILITIES[n] if n < len(_CAPABILITIES) else f"cap_{n}"
            for n in range(bits.bit_length()) if bits >> n & 1]


_CAPABILITIES = (
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
    "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
    "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw",
    "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot",
    "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override",
    "cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
    "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
)


def _mount(mount: Mount) -> str:
    flags = ", ".join(("ro" if mount.read_only else "rw", *mount.options))
    return f"{mount.source} ({mount.fstype}, {flags})"


def _command(process: SandboxProcess, limit: int = 120) -> str:
    text = shlex.join(process.argv) if process.argv else "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ids(ids: tuple[int, ...]) -> str:
    """One id when real, effective, saved and file-system ids agree, else all four."""
    return str(ids[0]) if len(set(ids)) == 1 else "/".join(map(str, ids))


def describe_file_drift(findings: Sequence[tuple[str, str]], limit: int = 3) -> str:
    """One line naming the drifted files of an image root.

    >>> describe_file_drift([("/app/server.py", "modified"), ("/etc/x", "added")])
    'file /app/server.py modified, /etc/x added'
    >>> describe_file_drift([("/a", "removed")] * 5, limit=2)
    'file /a removed, /a removed and 3 more'
    """
    shown = ", ".join(f"{path} {change}" for path, change in findings[:limit])
    more = len(findings) - limit
    return f"file {shown}" + (f" and {more} more" if more > 0 else "")
