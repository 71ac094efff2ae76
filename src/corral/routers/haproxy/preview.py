"""Preview routing on HAProxy: `X-Corral-Release: vN` reaches only release vN, whatever its weights.

Each service has a map file (release -> how many slots, "release/i" -> slot name), loaded by
the frontend and replaced at runtime in one `prepare map` / `commit map` step, so it follows
`set_backends` without a reload. Pure: map text, configuration lines and CLI commands only.
"""

from __future__ import annotations

import re

from corral.routers.haproxy.entries import ServiceEntry

# map keys are whitespace-free and "/" separates the index: a release named otherwise
# (corral's are vN) cannot be previewed
_PREVIEWABLE = re.compile(r"[\w.:-]+", re.ASCII)

# the builtin router's own 503 for the same case, word for word
_ANSWER = ('http-request return status 503 content-type "text/plain; charset=utf-8" lf-string '
           '"503 Service Unavailable: no backend of release %[var(txn.corral_release)]\\n"')


def map_path(map_dir: str, service: str) -> str:
    """The service's map file; also its name for the runtime API, so always absolute."""
    return f"{map_dir}/{service}.map"


def preview_entries(entry: ServiceEntry) -> list[tuple[str, str]]:
    """The map of one service: each release's slot count, then its slots by index.

    Every listed backend counts, weight 0 included; retiring (unlisted) ones and releases
    that cannot be map keys do not.

    >>> from corral.routers.haproxy.entries import ServiceEntry, Slot
    >>> slots = [Slot("s0", "127.0.0.1:1", 1, "v1"), Slot("s1", "127.0.0.1:2", 0, "v2"),
    ...          Slot("s2"), Slot("s3", "127.0.0.1:3", 0, "v2"),
    ...          Slot("s4", "127.0.0.1:4", 0, "v1", retiring=True),
    ...          Slot("s5", "127.0.0.1:5", 0, "no key")]
    >>> preview_entries(ServiceEntry("127.0.0.1:80", slots))
    [('v1', '1'), ('v1/0', 's0'), ('v2', '2'), ('v2/0', 's1'), ('v2/1', 's3')]
    """
    by_release: dict[str, list[str]] = {}
    for slot in entry.slots:
        if not slot.is_free and not slot.retiring and _PREVIEWABLE.fullmatch(slot.release):
            by_release.setdefault(slot.release, []).append(slot.name)
    entries = []
    for release, names in sorted(by_release.items()):
        entries.append((release, str(len(names))))
        entries += [(f"{release}/{i}", name) for i, name in enumerate(names)]
    return entries


def map_text(entries: list[tuple[str, str]]) -> str:
    """The map file HAProxy loads at start and on reload (one "key value" a line)."""
    return "".join(f"{key} {value}\n" for key, value in entries)


def frontend_lines(map_file: str) -> list[str]:
    """Pick a slot of the asked release, or answer 503 if it has none.

    A header naming no release, or one with "/" in it, finds no count or no slot and gets
    the 503. The rules sit in the frontend because `force-persist` (backend_lines) is
    decided before the backend's own http-request rules run.
    """
    return ["  http-request set-var(txn.corral_release) req.fhdr(x-corral-release) "
            "if { req.fhdr(x-corral-release) -m found }",
            f"  http-request set-var(txn.corral_count) var(txn.corral_release),map({map_file}) "
            "if { var(txn.corral_release) -m found }",
            "  http-request set-var(txn.corral_pick) rand,mod(txn.corral_count) "
            "if { var(txn.corral_count) -m found }",
            "  http-request set-var(txn.corral_slot) "
            f"var(txn.corral_release),concat(/,txn.corral_pick),map({map_file}) "
            "if { var(txn.corral_pick) -m found }",
            f"  {_ANSWER} if {{ var(txn.corral_release) -m found }} "
            "!{ var(txn.corral_slot) -m found }"]


def backend_lines(entry: ServiceEntry) -> list[str]:
    """Send a preview request to its slot whatever the slot's weight (`use-server` works on
    weight-0 and draining servers). `force-persist` keeps a failed connection from being
    redispatched to a server of another release: it fails instead."""
    return ["  force-persist if { var(txn.corral_slot) -m found }",
            *(f"  use-server {slot.name} if {{ var(txn.corral_slot) -m str {slot.name} }}"
              for slot in entry.slots)]


def map_update(map_file: str, version: int, entries: list[tuple[str, str]]) -> list[str]:
    """CLI commands that fill map version `version` (from `prepare map`) and make it live.

    >>> map_update("/run/web.map", 3, [("v2", "1"), ("v2/0", "s1")])
    ['add map @3 /run/web.map <<\\nv2 1\\nv2/0 s1\\n', 'commit map @3 /run/web.map']
    """
    commands = [f"add map @{version} {map_file} <<\n{map_text(entries)}"] if entries else []
    return [*commands, f"commit map @{version} {map_file}"]


def parse_version(answer: str) -> int | None:
    """The version `prepare map` created.

    >>> parse_version("New version created: 4\\n"), parse_version("Unknown map identifier.")
    (4, None)
    """
    head, _, number = answer.strip().rpartition(":")
    return int(number) if head == "New version created" and number.strip().isdigit() else None
