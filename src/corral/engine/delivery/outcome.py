"""Wait for a deployment to end and name its outcome (`corral abort` waits with it).

Reads the deployment's record, which the deployer finishes when the deployment ends; it
never signals, changes or ends a deployment itself. The controller runs the wait, so the
CLI only asks and renders. Time is passed in (`now`, `wait`), so tests drive a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from corral.errors import NotFound
from corral.ports.records import DeploymentOutcome
from corral.ports.store import Store

WAIT_LIMIT = 300.0  # seconds `corral abort` waits by default before saying "running"
POLL = 0.1  # seconds between two reads of the record


def await_outcome(store: Store, deployment_id: int, timeout: float = WAIT_LIMIT, *,
                  now: Callable[[], float] = time.monotonic,
                  wait: Callable[[float], bool | None] = time.sleep) -> DeploymentOutcome:
    """The outcome of deployment `deployment_id` once it has ended, or RUNNING if it has
    not within `timeout` seconds. `wait(s)` pauses; it may return True to stop waiting
    early (pass a stopping Event's `wait`: a controller shutting down answers at once)."""
    deployment = store.get_deployment(deployment_id)
    if deployment is None:
        raise NotFound(f"no deployment #{deployment_id}",
                       hint="`corral status SERVICE` shows the last deployment")
    deadline = now() + timeout
    while deployment.outcome == DeploymentOutcome.RUNNING:
        left = deadline - now()
        if left <= 0 or wait(min(POLL, left)):
            break
        deployment = store.get_deployment(deployment_id) or deployment
    return deployment.outcome
