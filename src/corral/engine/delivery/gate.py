"""The gate an environment's `require_passed` + `min_soak` puts on every deploy to it:
the image must have been live and healthy, long enough, in each environment named.

Each environment keeps its own store (engine/workspace.py); this reads the others' stores
and ledgers, read-only, and decides with core/soak.py.
"""

from __future__ import annotations

import time

from corral.core.soak import live_periods, soak_refusal
from corral.engine.workspace import Workspace, other_environment, store_if_any
from corral.errors import DeployError
from corral.ports.ledger import EventFilter


def refuse_unpassed(ws: Workspace, service: str, digest: str, now: float | None = None) -> None:
    """Raise DeployError naming every environment of `require_passed` whose ledger does not
    show `digest` live and healthy for `min_soak`; nothing for an environment without it."""
    if ws.env is None:
        return
    environment = ws.loaded.spec.environments[ws.env]
    at = time.time() if now is None else now
    refusals = [reason for other in environment.require_passed
                if (reason := _refusal(other_environment(ws, other), service, digest,
                                       environment.min_soak, at)) is not None]
    if refusals:
        raise DeployError(
            f"{ws.qualified(service)} refuses image {digest[:19]}…: it "
            + "; it ".join(refusals),
            hint=f"environments.{ws.env}.require_passed = "
            f"{list(environment.require_passed)}: deploy it there first and let it soak "
            f"(corral promote {service} --from {environment.require_passed[0]} --to {ws.env})")


def _refusal(source: Workspace, service: str, digest: str, min_soak: float,
             now: float) -> str | None:
    store = store_if_any(source)
    if store is None:
        return f"was never live and healthy in {source.env} (nothing was deployed there)"
    releases = {r.version: r.image_digest for r in store.list_releases(service)}
    changes = [(e.at, int(e.detail["release"])) for e in store.find_events(
        EventFilter(service=service, action="release.live")) if e.subject == service]
    bad = {releases[v]: why for v, why in store.bad_releases(service).items() if v in releases}
    return soak_refusal(str(source.env), digest, live_periods(changes, releases), bad,
                        min_soak, now)
