"""The controller's background loops: one thread that repeats a step until stopped, and the
timer it waits on.

Every loop (health, reconcile, drift, logs, warm keeper) is this one helper: it waits
`period` on its `Timer`, runs its step, logs and survives any exception, and stops when
told. A `FakeTimer` holds virtual time that only a test moves, so a test says "one period
passed" instead of sleeping. It decides nothing about what the steps do.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# A step returns None to wait its loop's period next, or the seconds to wait instead.
Step = Callable[[], float | None]


def name_os_thread(thread: threading.Thread) -> None:
    """Give a started thread of this process its name in the kernel too (the first 15
    bytes: what `top -H` and /proc/PID/task/TID/comm show), so each loop's CPU can be read
    from outside (bench/idle.py does); Python 3.11 names threads only for itself. Done
    from the starting thread, so the new one loses no time to it. Best effort."""
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{thread.native_id}/comm").write_text(thread.name[:15])


class Timer(Protocol):
    """A clock that can also be waited on: what a loop needs of time."""

    def __call__(self) -> float: ...

    def wait(self, seconds: float, event: threading.Event) -> bool:
        """Wait until `seconds` have passed or `event` is set; whether it was set."""
        ...


class WallTimer:
    """Real time: `time.monotonic`, and the event's own wait."""

    def __call__(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, event: threading.Event) -> bool:
        return event.wait(seconds)


WALL = WallTimer()


class FakeTimer:
    """Virtual time for tests: it moves only by `advance`; waits end when it reaches them.

    e.g. a loop of period 5 waits until `advance(5)`; `advance(2)` twice does not wake it,
    a third `advance(2)` does (6 >= 5).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._moved = threading.Condition()

    def __call__(self) -> float:
        with self._moved:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._moved:
            self._now += seconds
            self._moved.notify_all()

    def wait(self, seconds: float, event: threading.Event) -> bool:
        with self._moved:
            deadline = self._now + seconds
            # The short real timeout only lets a set event be seen: no virtual time passes.
            while not event.is_set() and self._now < deadline:
                self._moved.wait(0.005)
            return event.is_set()


class BackgroundLoop:
    """Runs `step` on a daemon thread every `period` (on `timer`) until `stop`.

    `wake` runs the next step at once. With `immediately`, the first step runs at start.
    An exception in a step is logged as `what failed` and the loop waits `retry` (default:
    its period) before the next one.
    """

    def __init__(self, name: str, step: Step, period: float, *, timer: Timer = WALL,
                 what: str = "", immediately: bool = False, retry: float | None = None,
                 ) -> None:
        self.name = name
        self._step = step
        self._period = period
        self._timer = timer
        self._what = what or name
        self._immediately = immediately
        self._retry = period if retry is None else retry
        self._signal = threading.Event()  # stop or wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.passes = 0  # steps run, failed ones included

    def start(self) -> None:
        self._thread.start()
        name_os_thread(self._thread)

    def stop(self, timeout: float = 10.0, interrupt: Callable[[], None] | None = None) -> None:
        """Stop and join; `interrupt` unblocks a step that waits on something else."""
        self._stopping.set()
        self._signal.set()
        if interrupt is not None:
            interrupt()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def wake(self) -> None:
        self._signal.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        pause = 0.0 if self._immediately else self._period
        while not self._stopping.is_set():
            if pause > 0:
                self._timer.wait(pause, self._signal)
            if self._stopping.is_set():
                return
            self._signal.clear()
            pause = self._run_step()

    def _run_step(self) -> float:
        try:
            asked = self._step()
        except Exception:  # the loop must outlive any one bad step
            log.exception("%s failed", self._what)
            return self._retry
        finally:
            self.passes += 1
        return self._period if asked is None else asked
