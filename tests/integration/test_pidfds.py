"""procfs.Pidfds against a real process: alive while it runs (then through its pidfd, not
/proc), not alive once it exited (a zombie included), and known by its start ticks too."""

from __future__ import annotations

import os
import resource
import subprocess
import threading

import pytest

from corral.drivers import procfs
from loopback import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_a_process_is_alive_until_it_exits() -> None:
    pids = procfs.Pidfds()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        ticks = procfs.start_ticks(sleeper.pid)
        assert ticks is not None
        assert pids.is_alive(sleeper.pid, ticks)
        assert pids.is_alive(sleeper.pid, ticks)  # now through its pidfd
        assert not pids.is_alive(sleeper.pid, ticks + 1)  # another process with that pid
        sleeper.kill()  # not waited for yet: a zombie, which has exited all the same
        poll(lambda: not pids.is_alive(sleeper.pid, ticks), 30, "the exit to be seen")
    finally:
        sleeper.kill()
        sleeper.wait()
        pids.close()
    assert not pids.is_alive(sleeper.pid, ticks)


def test_on_exit_calls_the_hook_when_a_watched_process_exits() -> None:
    """The notice comes from the exit itself: no listing runs while the test waits for it.
    Processes seen before the hook was added are watched, and so are those seen after."""
    pids = procfs.Pidfds()
    first, second = (subprocess.Popen(["sleep", "30"]) for _ in range(2))
    notices = threading.Semaphore(0)
    try:
        first_ticks, second_ticks = procfs.start_ticks(first.pid), procfs.start_ticks(second.pid)
        assert first_ticks is not None and second_ticks is not None
        assert pids.is_alive(first.pid, first_ticks)
        pids.on_exit(notices.release)
        assert pids.is_alive(second.pid, second_ticks)
        assert not notices.acquire(timeout=0)  # both run: nothing noticed yet
        for sleeper, ticks in ((first, first_ticks), (second, second_ticks)):
            sleeper.kill()
            assert notices.acquire(timeout=30), "no exit notice within 30 s"
            assert not pids.is_alive(sleeper.pid, ticks)  # the notice was about this exit
    finally:
        for sleeper in (first, second):
            sleeper.kill()
            sleeper.wait()
        pids.close()


def test_a_pidfd_numbered_past_1024_works_too() -> None:
    """A controller with a few hundred instances holds more than 1024 descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1200:
        pytest.skip(f"the open file limit ({soft}) is too low to reach descriptor 1024")
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    pids = procfs.Pidfds()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        ticks = procfs.start_ticks(sleeper.pid)
        assert ticks is not None
        assert pids.is_alive(sleeper.pid, ticks)
        assert pids.is_alive(sleeper.pid, ticks)  # through a pidfd numbered past 1024
        sleeper.kill()
        poll(lambda: not pids.is_alive(sleeper.pid, ticks), 30, "the exit to be seen")
    finally:
        sleeper.kill()
        sleeper.wait()
        pids.close()
        for fd in filler:
            os.close(fd)
