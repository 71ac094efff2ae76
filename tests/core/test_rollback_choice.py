"""Which release a rollback goes back to, as a table."""

from __future__ import annotations

import pytest

from corral.core.rollback import is_warm_switch_possible, previous_release, reachable_releases
from corral.ports.records import Deployment, DeploymentOutcome, Release

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


def made(version: int, image: str, at: float = 0.0) -> Release:
    return Release("web", version, f"sha256:{image}", f"c{version}", {}, at)


def moved(number: int, came_from: int, to: int, ended: float,
          outcome: DeploymentOutcome = OK) -> Deployment:
    return Deployment(number, "web", "rolling", came_from, to, outcome, ended - 5, ended)


# v1..v9 made long ago (t=0); now t=10_000; v5..v9 share image "b".
RELEASES = [made(n, "a" if n < 5 else "b") for n in range(1, 10)]
REACHABLE = [
    ("the live release and the last N besides it, counted as releases, not images",
     RELEASES, [], 9, 2, 0.0, {9: "live", 8: "recent", 7: "recent"}),
    ("a release live 3 minutes ago is kept however many came after it",
     RELEASES, [moved(12, 3, 9, 9_820.0)], 9, 1, 600.0,
     {9: "live", 8: "recent", 3: "live 3m ago"}),
    ("a release left before the window is not",
     RELEASES, [moved(12, 3, 9, 9_000.0)], 9, 1, 600.0, {9: "live", 8: "recent"}),
    ("a deployment away from it that did not succeed left it live: no evidence",
     RELEASES, [moved(12, 3, 4, 9_820.0, BACK)], 9, 0, 600.0, {9: "live"}),
    ("releases made within the window are kept even if never live",
     [*RELEASES[:8], made(9, "c", 9_900.0)], [], 8, 0, 600.0,
     {8: "live", 9: "made 1m ago"}),
    ("no live release: only the count and the window",
     RELEASES[:3], [], None, 1, 0.0, {3: "recent"}),
]


@pytest.mark.parametrize(("releases", "deployments", "live", "keep_last", "keep_for",
                          "expected"), [c[1:] for c in REACHABLE], ids=[c[0] for c in REACHABLE])
def test_reachable_releases(releases: list[Release], deployments: list[Deployment],
                            live: int | None, keep_last: int, keep_for: float,
                            expected: dict[int, str]) -> None:
    assert reachable_releases(releases, deployments, live, keep_last, keep_for,
                              10_000.0) == expected
