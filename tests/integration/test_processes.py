"""corral.processes against real processes: state, running (a zombie has exited) and parent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from corral.processes import is_running, parent_of, process_state
from loopback import poll

pytestmark = pytest.mark.integration


def test_a_child_runs_until_it_exits_and_a_zombie_counts_as_exited() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert is_running(child.pid)
        assert parent_of(child.pid) == os.getpid()
        child.kill()  # not waited for yet: a zombie
        poll(lambda: process_state(child.pid) == "Z", 30, "the child to become a zombie")
        assert not is_running(child.pid)
    finally:
        child.kill()
        child.wait()
    assert process_state(child.pid) is None and parent_of(child.pid) is None


def test_a_command_name_with_spaces_and_parentheses_is_read_past() -> None:
    child = subprocess.Popen(["python3", "-c", "import ctypes, time; "
                              "ctypes.CDLL(None).prctl(15, b'a (b) c', 0, 0, 0); time.sleep(30)"])
    try:
        comm = Path(f"/proc/{child.pid}/comm")
        poll(lambda: "(b)" in comm.read_text(), 30, "the new name")
        assert process_state(child.pid) in ("S", "R")
        assert parent_of(child.pid) == os.getpid()
    finally:
        child.kill()
        child.wait()
