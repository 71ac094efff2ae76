"""What a user sees in an 80x24 terminal and in a pipe: status, releases, ledger, images and
deployments fit 80 columns, nothing is padded, digests are short in tables, a failing health
check is shown attempt by attempt, a failed canary reads in the order it happened, and hints
keep their [brackets]. Real CLI in a real pseudo-terminal; real controller, router, instances.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_project import CliProject

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SGR = re.compile(r"\x1b\[[0-9;]*[mK]")
FULL_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class Screen:
    code: int
    raw: str  # what the program wrote, control sequences and all

    @property
    def lines(self) -> list[str]:
        """The lines as a terminal shows them: a line redrawn after \\r shows its last
        drawing; colour and erase sequences take no room."""
        return [SGR.sub("", line.rsplit("\r", 1)[-1])
                for line in self.raw.replace("\r\n", "\n").split("\n")]


def in_terminal(folder: Path, *args: str, columns: int = 80,
                timeout: float = 300.0) -> Screen:
    """Run the CLI with stdout and stderr on a pseudo-terminal `columns` wide."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    process = subprocess.Popen([sys.executable, "-m", "corral", *args], cwd=folder,
                               stdin=subprocess.DEVNULL, stdout=child, stderr=child,
                               env={**env, "TERM": "xterm-256color"})
    os.close(child)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    raw = b"".join(chunks).decode()
    assert "Traceback" not in raw, raw
    return Screen(code, raw)


def assert_fits(screen: Screen, columns: int = 80) -> None:
    for line in screen.lines:
        assert len(line) <= columns, f"{len(line)} columns: {line!r}\n{screen.raw}"
        assert line == line.rstrip(), f"padded: {line!r}"


class Project(CliProject):
    pass


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """v1 live, and v2 rolled back: it never passed its health check (a long reason)."""
    project = Project(tmp_path_factory.mktemp("presented"))
    project.corral("init", "--port", str(project.port))
    project.edit(r"replicas = 3", "replicas = 2")
    project.corral("up", "-d")
    project.corral("deploy", "web")
    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2", FAIL_HEALTH = "1"')
    project.edit(r'start_timeout = "30s"', 'start_timeout = "4s"')
    yield project
    project.corral("down", check=False)


def test_a_failing_health_check_shows_each_attempt_and_the_time_left(project: Project) -> None:
    screen = in_terminal(project.folder, "deploy", "web")
    assert screen.code == 3, screen.raw
    attempts = [int(n) for n in re.findall(
        r"waiting for health\x1b\[0m +web-[\w-]+: answered 503 \(\d/4 s, attempt (\d+)\)",
        screen.raw)]
    assert len(set(attempts)) >= 2, screen.raw  # redrawn on one line, attempt by attempt
    assert attempts == sorted(attempts)
    assert "\x1b[31mrolled back\x1b[0m" in screen.raw  # the outcome in its colour
    shown = "\n".join(screen.lines)
    assert " ".join(shown.split()).count("did not pass its health check") == 1, shown
    assert "waiting for health" not in shown, shown  # the wait line gives way to the result
    assert_fits(screen)

    piped = project.corral("deploy", "web", "--force", check=False)
    assert piped.returncode == 3
    said = re.findall(r"waiting for health +web-[\w-]+: answered 503 \(\d/4 s, attempt "
                      r"(\d+)\)", piped.stderr)
    assert len(said) >= 2 and "\r" not in piped.stderr and "\x1b" not in piped.stderr


@pytest.mark.parametrize("args", [("status",), ("status", "web"), ("releases", "web"),
                                  ("ledger",), ("ledger", "verify"), ("images",), ("dora",),
                                  ("up", "-d")])
def test_each_view_fits_an_80_column_terminal(project: Project, args: tuple[str, ...]) -> None:
    screen = in_terminal(project.folder, *args)
    assert screen.code == 0, screen.raw
    assert_fits(screen)
    if args[0] in ("ledger", "images", "releases"):
        assert not FULL_DIGEST.search(screen.raw), screen.raw


def test_status_gives_each_instance_one_line(project: Project) -> None:
    instances = project.json("status", "web")["services"][0]["instances"]
    screen = in_terminal(project.folder, "status", "web")
    rows = [line for line in screen.lines if line.startswith("web-")]
    assert sorted(line.split()[0] for line in rows) == sorted(i["id"] for i in instances)


def test_piped_output_is_one_record_a_line_never_padded(project: Project) -> None:
    entries = project.json("ledger")["entries"]
    assert any(FULL_DIGEST.search(json.dumps(e["detail"])) for e in entries)
    env = {"COLUMNS": ""}
    for args in (("ledger",), ("status",), ("releases", "web"), ("images",), ("dora",)):
        out = project.corral(*args, env=env).stdout
        assert all(line == line.rstrip() for line in out.splitlines()), (args, out)
        assert "\x1b[" not in out and not FULL_DIGEST.search(out), (args, out)
    deployments = project.json("ledger", "--action", "deployment")["entries"]
    ledger = project.corral("ledger", "--action", "deployment", env=env).stdout.splitlines()
    assert len(ledger) == len(deployments) + 1  # a header, then one line per entry
    narrow = project.corral("ledger", "--action", "deployment",
                            env={"COLUMNS": "80"}).stdout.splitlines()
    assert len(narrow) == len(ledger) and max(len(line) for line in narrow) <= 80


def test_a_hint_naming_a_spec_section_keeps_its_brackets(project: Project) -> None:
    screen = in_terminal(project.folder, "deploy", "nosuch")
    assert screen.code == 1
    assert "[services." in "\n".join(screen.lines), screen.raw
    piped = project.corral("deploy", "nosuch", check=False)
    assert "[services." in piped.stderr, piped.stderr


def test_a_failed_canary_reads_in_the_order_it_happened(project: Project) -> None:
    project.edit(r'APP_VERSION = "2", FAIL_HEALTH = "1"', 'APP_VERSION = "3", FAIL_RATE = "0.5"')
    project.edit(r'strategy = "rolling"', 'strategy = "canary"\ncanary = { steps = [50, 100], '
                 'interval = "1s", min_requests = 10, analysis_deadline = "60s" }')
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                project.request()
            except OSError:
                time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        screen = in_terminal(project.folder, "deploy", "web")
    finally:
        stop.set()
        loader.join(timeout=10)
    assert screen.code == 3, screen.raw
    steps = [line[2:].split("  ")[0] for line in screen.lines if line.startswith("  ")
             and not line.startswith("   ")]
    assert "analysis 50%: fail" in steps, screen.raw
    assert steps.index("analysis 50%: fail") + 1 == steps.index("rolling back"), steps
    assert steps[-1] == "rolled back", steps
    assert all(a != b or a != "weights" for a, b in itertools.pairwise(steps))
    shown = " ".join(" ".join(screen.lines).split())
    assert len(re.findall(r"error rate \d+\.\d\d% >", shown)) == 1, shown  # the reason, once
    assert "weights v1 50% v3 50%" in shown, shown  # v1 before v3
    assert "\x1b[31manalysis 50%: fail\x1b[0m" in screen.raw
    assert_fits(screen)
