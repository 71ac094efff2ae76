"""Which release a rollback goes back to, as a table."""

from __future__ import annotations

import pytest

from corral.core.rollback import is_warm_switch_possible, previous_release
from corral.ports.records import Deployment, DeploymentOutcome

OK, BACK = DeploymentOutcome.SUCCEEDED, DeploymentOutcome.ROLLED_BACK


def deployed(number: int, came_from: int | None, to: int, outcome: DeploymentOutcome
             ) -> Deployment:
    return Deployment(number, "web", "rolling", came_from, to, outcome, float(number))


CASES = [
    ("the deployment that made the live release live names where it came from",
     5, [deployed(2, 3, 5, OK), deployed(1, 2, 3, OK)], [1, 2, 3, 4, 5], set(), 3),
    ("a rolled-back deployment to the live release does not count",
     5, [deployed(2, 4, 5, BACK)], [1, 2, 3, 4, 5], set(), 4),
    ("without a record, the newest older release that is not bad",
     5, [], [1, 2, 3, 4, 5], {4}, 3),
    ("a first release has nothing to go back to",
     1, [deployed(1, None, 1, OK)], [1], set(), None),
]


@pytest.mark.parametrize(("live", "deployments", "retained", "bad", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_previous_release(live: int, deployments: list[Deployment], retained: list[int],
                          bad: set[int], expected: int | None) -> None:
    assert previous_release(live, deployments, retained, bad) == expected


def test_a_warm_switch_needs_the_targets_fleet_with_enough_ready_instances() -> None:
    assert is_warm_switch_possible(3, 3, 3, 3)
    assert not is_warm_switch_possible(3, 3, 2, 3)
    assert not is_warm_switch_possible(4, 3, 3, 3)
    assert not is_warm_switch_possible(None, 3, 3, 3)
