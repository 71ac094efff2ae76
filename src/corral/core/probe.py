"""When an instance is due for a readiness or liveness check: pure timing rules.

A check is never run before the spec's start grace has passed since the instance started.
Starting instances are probed often (the sooner one is seen ready, the sooner it serves);
others keep their interval.
"""

from __future__ import annotations

import math

STARTING_PROBE = 0.1  # seconds between readiness checks of an instance that is not ready yet


def next_check_at(now: float, created_at: float, start_grace: float, interval: float,
                  starting: bool) -> float:
    """When the check after one run at `now` is due.

    >>> next_check_at(10.0, 0.0, 0.0, 1.0, starting=True)
    10.1
    >>> next_check_at(10.0, 0.0, 30.0, 1.0, starting=False)
    30.0
    """
    step = min(interval, STARTING_PROBE) if starting else interval
    return max(now + step, created_at + start_grace)


def is_in_grace(now: float, created_at: float, start_grace: float) -> bool:
    return now < created_at + start_grace


def on_grid(due: float, batch: float) -> float:
    """When a check due at `due` runs: the next multiple of `batch` at or after it, so the
    checks of instances already up fall on a few times a second and run together, never
    before their interval (`batch` 0: exactly when due).

    >>> on_grid(10.1, 0.25), on_grid(10.25, 0.25), on_grid(10.1, 0)
    (10.25, 10.25, 10.1)
    """
    return math.ceil(due / batch) * batch if batch > 0 else due


def plan_check(now: float, created_at: float, start_grace: float, interval: float, *,
               starting: bool, waits_ready: bool, busy: bool, resolution: float,
               batch: float) -> tuple[float, bool]:
    """A due check of one instance: (when it is next due, whether it runs now).

    A busy instance (a check in flight) is looked at again after `resolution`; one in its
    start grace when the grace ends; a liveness check of an instance not ready yet
    (`waits_ready`) runs not, and is looked at again an interval later, on the grid.
    Otherwise the check runs, and the next is due at the pace of a starting instance's
    readiness check (`starting`, core.probe's `next_check_at`) or an interval later on the
    grid of `batch` seconds.

    >>> plan_check(10.0, 0.0, 0.0, 1.0, starting=False, waits_ready=False, busy=False,
    ...            resolution=0.1, batch=0.25)
    (11.0, True)
    >>> plan_check(10.0, 0.0, 0.0, 1.0, starting=True, waits_ready=False, busy=False,
    ...            resolution=0.1, batch=0.25)
    (10.1, True)
    >>> plan_check(10.0, 0.0, 30.0, 1.0, starting=True, waits_ready=False, busy=False,
    ...            resolution=0.1, batch=0.25)
    (30.0, False)
    """
    if busy:  # one check at a time
        return now + resolution, False
    if is_in_grace(now, created_at, start_grace):
        return created_at + start_grace, False
    if waits_ready:
        return on_grid(now + interval, batch), False
    if starting:
        return next_check_at(now, created_at, start_grace, interval, starting=True), True
    return on_grid(now + interval, batch), True
