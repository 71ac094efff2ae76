"""procfs.Pidfds against a real process: alive while it runs (then through its pidfd, not
/proc), not alive once it exited (a zombie included), and known by its start ticks too."""

from __future__ import annotations

import os
import resource
import subprocess

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
