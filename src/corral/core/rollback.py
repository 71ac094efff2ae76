"""Which release a rollback goes back to, whether it can be a single traffic switch, the
fast path it takes when it cannot (`FastRollback`), and which releases a rollback must
still be able to reach (what `corral gc` keeps).

Pure: the engine reads deployments, releases and marks from the store and passes them in,
with the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from corral.core.delivery import Decision, Observation, Progress, Target
from corral.core.rolling import next_rolling
from corral.ports.records import Deployment, DeploymentOutcome, Release


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


def reachable_releases(releases: Sequence[Release], deployments: Iterable[Deployment],
                       live: int | None, keep_last: int, keep_for: float,
                       now: float) -> dict[int, str]:
    """The releases of one service a rollback can still go back to, each with why: the live
    one, the last `keep_last` releases besides it (counted as releases: ten releases sharing
    one image are ten), and every release live or made in the last `keep_for` seconds.

    A release was live until the succeeded deployment that moved the service off it ended,
    so "live 3 minutes ago" is read from the deployments, whatever their strategy.

    Worked example: v1…v9, v9 live since a deployment from v3 that ended 180 s ago, keep 1
    release for 600 s: v9 (live), v8 (recent), v3 (live 3m ago); the others were made long
    ago and not live since.

    >>> made = [Release("web", n, f"sha256:{n}", "c", {}, 0.0) for n in range(1, 10)]
    >>> moved = [Deployment(7, "web", "rolling", 3, 9, DeploymentOutcome.SUCCEEDED, 800.0,
    ...                     820.0)]
    >>> sorted(reachable_releases(made, moved, 9, 1, 600.0, 1000.0))
    [3, 8, 9]
    """
    cutoff = now - keep_for
    why: dict[int, str] = {}
    if live is not None:
        why[live] = "live"
    others = [release for release in releases if release.version != live]
    for release in others[-keep_last:] if keep_last > 0 else []:
        why.setdefault(release.version, "recent")
    if keep_for <= 0:
        return why
    known = {release.version for release in releases}
    for deployment in deployments:
        left = deployment.from_release
        if (deployment.outcome is DeploymentOutcome.SUCCEEDED and left in known
                and left is not None and (deployment.ended_at or now) >= cutoff):
            why.setdefault(left, f"live {_ago(now - (deployment.ended_at or now))} ago")
    for release in releases:
        if release.created_at >= cutoff:
            why.setdefault(release.version, f"made {_ago(now - release.created_at)} ago")
    return why


def _ago(seconds: float) -> str:
    """A short age: '45s', '3m', '5h', '2d'.

    >>> _ago(45.2), _ago(180), _ago(5 * 3600 + 60), _ago(3 * 86400)
    ('45s', '3m', '5h', '3d')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@dataclass(frozen=True)
class FastRollback:
    """The fast path of `corral rollback` when no warm fleet can take the traffic: every
    instance replaced at once (a surge of `replicas`, none unavailable), no analysis, no
    gate, equal weights, nothing kept warm. Its success marks the release it left bad.
    Preview routing stays what the service's own strategy says (`is_previewable`).

    Worked example, replicas=3 back to v1 from v2: three v1 start at once; once they are
    ready the three v2 are drained.

    >>> fast = FastRollback(replicas=3, is_previewable=True)
    >>> fast.name, fast.is_fast_rollback, fast.initial_weights(live=2), fast.warm_window(2, 1)
    ('rollback', True, None, 0.0)
    """

    replicas: int
    is_previewable: bool
    name: ClassVar[str] = "rollback"
    needs_router_stats: ClassVar[bool] = False
    is_fast_rollback: ClassVar[bool] = True

    def next_decision(self, target: Target, progress: Progress, obs: Observation) -> Decision:
        return next_rolling(target, max(1, self.replicas), 0, progress, obs)

    def initial_weights(self, live: int | None) -> dict[int, int] | None:
        return None

    def warm_window(self, previous: int | None, release: int) -> float:
        return 0.0
