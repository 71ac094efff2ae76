"""The controller's usage sampler: every `period` (60 s by default) it reads what each
instance in the fleets uses (the driver's `Measurable.usage`: cgroups for the process
driver), turns it into per-hour tallies (core/cost.py `tally`) and adds them to the store,
so `corral cost` can report used hours beside reserved ones.

Cheap by design: one usage read per instance and one store write per pass, no ledger
entry (usage is a measurement, not a change). It decides nothing about instances.
"""

from __future__ import annotations

from collections.abc import Callable

from corral.core.cost import Reading, tally
from corral.engine.fleet import Clock, Fleets
from corral.engine.loop import WALL, BackgroundLoop, Timer
from corral.engine.settings import seconds_from_env
from corral.ports.records import Usage, UsageTally
from corral.ports.store import UsageStore

DEFAULT_PERIOD = 60.0


def sample_period() -> float:
    """Seconds between samples: CORRAL_USAGE_PERIOD (tests shorten it), else 60."""
    return seconds_from_env("CORRAL_USAGE_PERIOD", DEFAULT_PERIOD)


class UsageSampler:
    """A controller Loop; `sample` is one pass (tests call it with a FakeTimer as clock)."""

    def __init__(self, store: UsageStore, fleets: Fleets, usage: Callable[[str], Usage | None],
                 clock: Clock, *, period: float | None = None, timer: Timer = WALL) -> None:
        self._store = store
        self._fleets = fleets
        self._usage = usage
        self._clock = clock
        self.period = sample_period() if period is None else period
        self._last: dict[str, Reading] = {}
        self._loop = BackgroundLoop("usage-sampler", self.sample, self.period, timer=timer,
                                    what="usage sampling")

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def sample(self) -> None:
        """Read every instance once and store what it used since its last sample."""
        at = self._clock()
        tallies: list[UsageTally] = []
        readings: dict[str, Reading] = {}
        for instance in self._fleets.all():
            used = self._usage(instance.id)
            if used is None or used.memory is None:  # not measurable (or gone meanwhile)
                continue
            found, readings[instance.id] = tally(instance, used.memory, used.cpu_seconds, at,
                                                 self._last.get(instance.id), self.period)
            tallies.append(found)
        self._last = readings  # instances that left the fleets are forgotten
        if tallies:
            self._store.add_usage(tallies)
