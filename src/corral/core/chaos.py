"""Chaos arithmetic: how many requests each kill's window saw, and how many failed.

Pure: the traffic records (wall time, HTTP status, 0 for a connection failure) and the
moment the run ended are passed in. The engine kills and sends the traffic
(engine/operate/chaos.py, engine/operate/chaos_traffic.py); this only counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Record = tuple[float, int]  # (wall time of the answer, HTTP status; 0: no answer)


def is_failure(status: int) -> bool:
    """A request failed when it got no answer (0) or one that is not 2xx/3xx."""
    return not 200 <= status < 400


def count_between(records: Sequence[Record], start: float, end: float) -> tuple[int, int]:
    """(requests, failures) answered in [start, end).

    >>> count_between([(1.0, 200), (2.0, 503), (3.0, 200)], 1.0, 3.0)
    (2, 1)
    """
    window = [status for at, status in records if start <= at < end]
    return len(window), sum(1 for status in window if is_failure(status))


def tally_requests(kills: Sequence[dict[str, Any]], records: Sequence[Record],
                   end: float) -> dict[str, Any]:
    """The kills, each with the requests and failures of its window, and the run's totals.

    A kill's window runs from its `at` to the next kill's `at`, the last one's to `end`.
    A kill that never happened (no `at`: nothing to kill) gets no counts.

    >>> records = [(1.0, 200), (2.5, 502), (3.0, 0), (4.0, 200)]
    >>> kills = [{"n": 1, "at": 2.0}, {"n": 2, "at": 3.5}, {"n": 3, "at": None}]
    >>> tally = tally_requests(kills, records, end=5.0)
    >>> [(k.get("requests"), k.get("failed_requests")) for k in tally["kills"]]
    [(2, 2), (1, 0), (None, None)]
    >>> tally["requests"], tally["failed_requests"], tally["failed_statuses"]
    (4, 2, {'0': 1, '502': 1})
    """
    counted = []
    for n, kill in enumerate(kills):
        if kill.get("at") is None:
            counted.append(dict(kill))
            continue
        following = kills[n + 1].get("at") if n + 1 < len(kills) else None
        requests, failed = count_between(records, kill["at"], following or end)
        counted.append({**kill, "requests": requests, "failed_requests": failed})
    failures = sorted(status for _, status in records if is_failure(status))
    return {"kills": counted, "requests": len(records), "failed_requests": len(failures),
            "failed_statuses": {str(s): failures.count(s) for s in sorted(set(failures))}}
