"""An opt-in profile of the whole controller, every thread included: `CORRAL_PROFILE=path`
runs each thread under cProfile from the controller's start and writes the merged stats to
`path` (pstats format; read with `python -m pstats path`) and its top entries to
`path.txt` when the controller stops. SIGUSR1 clears what was collected so far and SIGUSR2
writes the stats at once (a later stop writes nothing), so a profile can cover only a window
(bench/idle.py sends the first once the fleet is at rest, the second when its window ends).
Time is each thread's CPU time (time.thread_time), not wall time: a thread blocked in a
wait costs nothing, so the top entries are where the CPU goes.

For finding where the controller's time goes (issue 20); it costs a lot while on, so it is
never on by default, and it changes nothing the controller does.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

ENV = "CORRAL_PROFILE"


class ThreadProfiler:
    """One cProfile.Profile per thread, started as each thread starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._written = False  # by SIGUSR2: the window is over, stopping writes nothing

    def start(self) -> None:
        threading.setprofile(self._first_call)
        self._begin()  # this thread: its later calls are profiled too
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, lambda signum, frame: self.clear())
            signal.signal(signal.SIGUSR2, lambda signum, frame: self._write_now())

    def clear(self) -> None:
        """Forget what every thread's profile collected so far (they go on collecting)."""
        with self._lock:
            for profile in self._profiles:
                profile.clear()

    def _write_now(self) -> None:
        self.dump()
        self._written = True

    def _begin(self) -> None:
        profile = cProfile.Profile(time.thread_time)
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def _first_call(self, frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        self._begin()

    def dump(self, top: int = 40) -> None:
        threading.setprofile(None)
        if self._written:
            return
        with self._lock:
            profiles = list(self._profiles)
        stats: pstats.Stats | None = None
        for profile in profiles:
            try:
                one = pstats.Stats(profile)
            except TypeError:  # a thread that made no call since the last clear
                continue
            stats = one if stats is None else stats.add(one)
        if stats is None:
            return
        stats.dump_stats(str(self.path))
        text = io.StringIO()
        pstats.Stats(str(self.path), stream=text).sort_stats("tottime").print_stats(top)
        cumulative = io.StringIO()
        pstats.Stats(str(self.path), stream=cumulative).sort_stats("cumulative").print_stats(top)
        Path(f"{self.path}.txt").write_text(text.getvalue() + cumulative.getvalue())


def profiler_from_env() -> ThreadProfiler | None:
    """A started profiler when CORRAL_PROFILE names a file, else None."""
    path = os.environ.get(ENV)
    if not path:
        return None
    profiler = ThreadProfiler(Path(path))
    profiler.start()
    return profiler
