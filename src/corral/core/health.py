"""Health transitions of one instance: consecutive check results move it between states.

A starting instance becomes ready after `healthy_after` passes in a row; a ready one
becomes unhealthy after `unhealthy_after` failures in a row and ready again after
`healthy_after` passes. Draining, stopped and failed instances ignore checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.ports.records import InstanceState


@dataclass(frozen=True)
class HealthRecord:
    """Consecutive results so far; the last failure's message is kept for humans."""

    passes: int = 0
    failures: int = 0
    last_error: str | None = None


def next_health(state: InstanceState, record: HealthRecord, passed: bool, error: str | None,
                healthy_after: int, unhealthy_after: int
                ) -> tuple[InstanceState, HealthRecord]:
    """The state and record after one more check.

    Worked example with healthy_after=2, unhealthy_after=3: a starting instance passing
    twice becomes ready; a ready one failing three times in a row becomes unhealthy; one
    pass in between resets the failure count.

    >>> s, r = next_health(InstanceState.STARTING, HealthRecord(), True, None, 2, 3)
    >>> s, r.passes
    (<InstanceState.STARTING: 'starting'>, 1)
    >>> next_health(s, r, True, None, 2, 3)[0]
    <InstanceState.READY: 'ready'>
    """
    if state not in (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY):
        return state, record
    if passed:
        record = HealthRecord(passes=record.passes + 1, failures=0,
                              last_error=record.last_error)
        if state is not InstanceState.READY and record.passes >= healthy_after:
            return InstanceState.READY, record
        return state, record
    record = HealthRecord(passes=0, failures=record.failures + 1, last_error=error)
    if state is InstanceState.READY and record.failures >= unhealthy_after:
        return InstanceState.UNHEALTHY, record
    return state, record
