"""Runtime drift: how an instance really runs, compared with what its release says.

Pure: the expected runtime (from the release and its image) and the driver's facts come
in, a list of human-readable differences comes out; empty means no drift. Drift is never
repaired here or anywhere: the reconciler replaces the instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from corral.ports.runtime import RuntimeFacts


@dataclass(frozen=True)
class ExpectedRuntime:
    """How an instance of a release must run."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    root: str  # host path of the release image's unpacked root
    volumes: Mapping[str, str] = field(default_factory=dict)  # inside path -> host path


def runtime_drift(expected: ExpectedRuntime, facts: RuntimeFacts) -> list[str]:
    """Every difference between `expected` and `facts`, most telling first.

    Worked example: a release with env {"MODE": "safe"} whose instance runs with MODE=debug
    and an extra TOKEN gives ["env MODE is 'debug', the release says 'safe'",
    "env TOKEN is set but not in the release"]; variables the driver sets itself (PORT)
    are not drift.
    """
    found: list[str] = []
    if facts.root != expected.root:
        found.append(f"image root is {facts.root}, the release's image is at {expected.root}")
    if facts.argv != tuple(expected.argv):
        found.append(f"argv is {list(facts.argv)}, the release says {list(expected.argv)}")
    found += _env_drift(expected.env, facts.env, facts.driver_env)
    if facts.driver_uid is not None and facts.uid != facts.driver_uid:
        found.append(f"runs as uid {facts.uid}, the driver runs instances as "
                     f"{facts.driver_uid}")
    found += _mount_drift(expected, facts)
    return found


def _env_drift(expected: Mapping[str, str], seen: Mapping[str, str],
               driver_env: Sequence[str]) -> list[str]:
    found = []
    for key in sorted(expected):
        if key in driver_env:
            continue
        if key not in seen:
            found.append(f"env {key} is missing, the release sets it")
        elif seen[key] != expected[key]:
            found.append(f"env {key} is {seen[key]!r}, the release says {expected[key]!r}")
    for key in sorted(set(seen) - set(expected) - set(driver_env)):
        found.append(f"env {key} is set but not in the release")
    return found


def _mount_drift(expected: ExpectedRuntime, facts: RuntimeFacts) -> list[str]:
    found = []
    mounts = {m.target: m for m in facts.mounts}
    root = mounts.get("/")
    if root is not None and not root.read_only:
        found.append("the image root is mounted read-write")
    for inside, host in sorted(expected.volumes.items()):
        mount = mounts.get(inside)
        if mount is None:
            found.append(f"volume {inside} is not mounted")
        elif mount.source != host:
            found.append(f"volume {inside} comes from {mount.source}, the release says {host}")
    for target in sorted(mounts):
        if target == "/" or target in expected.volumes or _is_under(target,
                                                                    facts.driver_mounts):
            continue
        found.append(f"unexpected mount {target} from {mounts[target].source}")
    return found


def _is_under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


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
