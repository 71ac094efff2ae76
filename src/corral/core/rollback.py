"""Which release a rollback goes back to, and whether it can be a single traffic switch.

Pure: the engine reads deployments, releases and marks from the store and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from corral.ports.records import Deployment, DeploymentOutcome


def previous_release(live: int, deployments: Iterable[Deployment], retained: Sequence[int],
                     bad: Iterable[int]) -> int | None:
    """The release a service was on before its live one: the `from` of the deployment that
    made the live release live, else the newest retained release below it not marked bad.

    Worked example: live v5 came from v3 (v4 was rolled back), so the answer is 3; with no
    such deployment on record, and v4 marked bad, it is also 3 (the newest below 5 not bad).

    >>> previous_release(5, [], [1, 2, 3, 4, 5], bad={4})
    3
    """
    for deployment in deployments:
        if (deployment.to_release == live and deployment.outcome is DeploymentOutcome.SUCCEEDED
                and deployment.from_release not in (None, live)):
            return int(deployment.from_release or 0)
    excluded = set(bad)
    older = [version for version in retained if version < live and version not in excluded]
    return older[-1] if older else None


def is_warm_switch_possible(warm_release: int | None, to: int, ready_in_warm_fleet: int,
                            replicas: int) -> bool:
    """A rollback can be one router update when the fleet still warm is the target's and
    its ready instances can carry the whole load.

    >>> is_warm_switch_possible(3, 3, 3, 3), is_warm_switch_possible(3, 3, 2, 3)
    (True, False)
    """
    return warm_release == to and ready_in_warm_fleet >= replicas
