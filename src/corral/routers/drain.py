"""Waiting for a backend to drain: the one loop every router client shares.

A backend has drained when its router counts no request in flight to it. This module only
polls the count it is given (a router's `in_flight`); it never changes weights or backends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


def wait_drained(in_flight: Callable[[], Mapping[str, int]], address: str,
                 deadline_seconds: float, interval: float = 0.02) -> bool:
    """Poll `in_flight()` every `interval` seconds until `address` has no request in flight
    (True), or until `deadline_seconds` passed (False). Checked at least once, so a zero
    deadline answers whether it is drained now."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        if in_flight().get(address, 0) == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
