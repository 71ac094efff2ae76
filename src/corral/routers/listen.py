"""One router per listen address on this machine: claim it, check it is free, name who has it.

Routers bind with SO_REUSEPORT (builtin workers share a port; HAProxy does by default), and
the kernel lets any socket of the same user with that option join: two projects' routers on
one `router.listen` would split its traffic between two apps. So before a router serves an
address it takes a claim (an abstract unix socket named after the address: one per address
per network namespace, freed by the kernel when its holder dies) and probes the address with
a plain bind, which fails while anything listens there. When either fails, `holder_of` names
who has the address, from /proc. This module decides nothing about routing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import socket
from pathlib import Path

from corral.processes import parent_of

_CLAIM_PREFIX = "corral-router-listen:"
_WILDCARDS = {"0.0.0.0", "::", ""}


def split_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8080' -> ('127.0.0.1', 8080); '[::1]:8080' -> ('::1', 8080); ':80' ->
    ('0.0.0.0', 80). Raises ValueError for anything else.

    >>> split_listen('[::1]:8080')
    ('::1', 8080)
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {listen!r} is not HOST:PORT")
    return (host.strip("[]") or "0.0.0.0"), int(port)


class ListenClaims:
    """The claims one router process holds, by listen address."""

    def __init__(self) -> None:
        self._held: dict[str, socket.socket] = {}

    def held(self) -> set[str]:
        return set(self._held)

    def take(self, listen: str) -> str | None:
        """Claim `listen` and check nothing else listens there; None when it is ours now,
        else who has it (see holder_of). Taking a claim already held is a no-op."""
        if listen in self._held:
            return None
        host, port = split_listen(listen)
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            claim.bind(_claim_name(host, port))
        except OSError as exc:
            claim.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            return holder_of(listen)
        if not is_free(host, port):
            claim.close()
            return holder_of(listen)
        self._held[listen] = claim
        return None

    def drop(self, listen: str) -> None:
        claim = self._held.pop(listen, None)
        if claim is not None:
            claim.close()

    def keep_only(self, wanted: set[str]) -> None:
        for listen in self.held() - wanted:
            self.drop(listen)


def is_free(host: str, port: int) -> bool:
    """Can a socket listen on host:port without SO_REUSEPORT? False while any socket listens
    on it (or on an overlapping wildcard), whatever options that one set."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError:
        return True  # an unresolvable host fails at bind, with its own message
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
                probe.listen(1)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                # any other error (not a local address, no permission): the real bind says it
    return True


def holder_of(listen: str) -> str:
    """Who has `listen`, in words: 'the corral router of project /srv/shop (pid 812)',
    'another program: nginx (pid 77)', or 'another program' when /proc cannot tell."""
    host, port = split_listen(listen)
    claim = _unix_inode(_claim_name(host, port)[1:].decode())
    pids = _pids_of(claim) if claim else []
    if claim and not pids:  # /proc hides another user's descriptors
        return "the corral router of another user"
    uid = None
    if not pids:
        sockets = _tcp_listeners(host, port)
        for inode, owner in sockets:
            pids = _pids_of(inode)
            uid = owner
            if pids:
                break
    if pids:
        return _describe(min(pids))
    if uid is not None and uid != os.getuid():
        with contextlib.suppress(KeyError):
            return f"another program, of user {pwd.getpwuid(uid).pw_name}"
        return f"another program, of uid {uid}"
    return "another program"


def project_of(run_dir: Path) -> Path:
    """The project folder of a router that runs in `run_dir` (.corral/run by default)."""
    if run_dir.name == "run" and run_dir.parent.name == ".corral":
        return run_dir.parent.parent
    return run_dir


def _claim_name(host: str, port: int) -> bytes:
    host = "0.0.0.0" if host in _WILDCARDS else host
    return f"\0{_CLAIM_PREFIX}{host}:{port}".encode()


def _describe(pid: int) -> str:
    args = _cmdline(pid)
    # a builtin router's worker, or HAProxy's worker: name the process users start and stop
    parent = _parent(pid)
    if parent is not None and _is_router(_cmdline(parent)) and _is_router(args):
        pid, args = parent, _cmdline(parent)
    if _is_router(args):
        try:
            run_dir = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return f"a corral router (pid {pid})"
        kind = " (HAProxy)" if "haproxy" in Path(args[0]).name else ""
        return f"the corral router{kind} of project {project_of(run_dir)} (pid {pid})"
    name = Path(args[0]).name if args else "?"
    if name.startswith("python") and len(args) > 1:  # the script or module says more
        name = " ".join([name, *args[1:3]])
    name = " ".join(name.split())  # `python -c` code spans lines
    return f"another program: {name[:60]}{'…' if len(name) > 60 else ''} (pid {pid})"


def _is_router(args: list[str]) -> bool:
    if "corral.routers.builtin" in args:
        return True
    # HAProxy started by corral runs from its run dir on a haproxy.cfg there
    return bool(args) and "haproxy" in Path(args[0]).name and any(
        a.endswith("haproxy.cfg") for a in args)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _parent(pid: int) -> int | None:
    try:
        return parent_of(pid)
    except ValueError:
        return None


def _unix_inode(name: str) -> int | None:
    """The inode of the abstract unix socket `name`, from /proc/net/unix."""
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == "@" + name:
            return int(fields[6])
    return None


def _tcp_listeners(host: str, port: int) -> list[tuple[int, int]]:
    """(inode, uid) of the TCP sockets listening on `port` at `host` or a wildcard
    overlapping it, exact matches first."""
    found: list[tuple[bool, int, int]] = []
    for table, decode in (("/proc/net/tcp", _ipv4), ("/proc/net/tcp6", _ipv6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port:
                continue
            local = decode(address)
            if local == host or local in _WILDCARDS or host in _WILDCARDS:
                found.append((local != host, int(fields[9]), int(fields[7])))
    return [(inode, uid) for _, inode, uid in sorted(found)]


def _ipv4(hex_address: str) -> str:
    return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_address)[::-1])


def _ipv6(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    text = socket.inet_ntop(socket.AF_INET6, words)
    return text.removeprefix("::ffff:") if text.startswith("::ffff:") and "." in text else text


def _pids_of(inode: int) -> list[int]:
    """The processes holding socket `inode` (only those /proc lets this user read)."""
    target = f"socket:[{inode}]"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    pids.append(int(entry))
                    break
    return pids
