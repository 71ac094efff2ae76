"""Capacity admission before a deployment starts anything: gathers what core/capacity.py
decides from (the release's and the live fleet's declared resources, every other live
instance's, the driver's machine) and refuses with the numbers.

It starts and stops nothing; a refusal is a DeployError raised before the deployment is
created, so no instance ever starts for a deployment that does not fit.
"""

from __future__ import annotations

from corral.core.capacity import Admission, Footprint, limits_of, peak_footprint, refusal, total
from corral.engine.fleet import Fleets
from corral.errors import DeployError
from corral.ports.driver import Driver, Measurable
from corral.ports.records import Limits, Release


def admit(driver: Driver, fleets: Fleets, release: Release, strategy: str,
          live: int | None, reserve: Footprint) -> None:
    """Raise DeployError if the machine cannot hold the deployment of `release` at its peak.
    A driver that cannot say what its machine holds is not asked (nothing is refused)."""
    if not isinstance(driver, Measurable):
        return
    service = release.spec
    new = limits_of(service)
    if new.is_empty:
        return  # nothing declared: nothing to count
    old_release = fleets.release(release.service, live) if live is not None else None
    old = limits_of(old_release.spec) if old_release is not None else Limits()
    mine = [i for i in fleets.of_service(release.service) if i.state.is_live]
    running = sum(1 for i in mine if i.release == live)
    peak = peak_footprint(strategy, service.replicas, new, running, old,
                          service.rolling.max_surge)
    starting = Footprint.of(new, service.replicas)
    others = total(_footprint(fleets, i.service, i.release)
                   for i in fleets.all() if i.service != release.service and i.state.is_live)
    why = refusal(Admission(release.service, strategy, peak, starting, others,
                            driver.capacity(), reserve))
    if why is not None:
        raise DeployError(f"capacity: {why}; nothing was started",
                          hint="lower resources or replicas, use a rolling strategy with a "
                          "smaller max_surge, stop other services, or lower [capacity] reserve")


def _footprint(fleets: Fleets, service: str, version: int) -> Footprint:
    found = fleets.release(service, version)
    return Footprint.of(limits_of(found.spec)) if found is not None else Footprint()
