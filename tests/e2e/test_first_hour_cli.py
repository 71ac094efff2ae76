"""A new user's first hour, driven through the CLI in a fresh git work tree (issue 19 items
6, 12 and 13; issue 11 item 4): options written where users write them, one duration
grammar, clean errors for mistakes, release outcomes, and a controller start that shows only
its own log lines. Real everything: debootstrap image, bubblewrap instances, router, git."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_project import CliProject
from loopback import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=folder, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliProject]:
    project = CliProject(tmp_path_factory.mktemp("first-hour"))
    git(project.folder, "init", "-q")
    project.corral("init", "--name", "first-hour", "--port", str(project.port))
    git(project.folder, "add", "-A")
    git(project.folder, "commit", "-q", "-m", "corral init")
    project.corral("up", "-d")
    yield project
    project.corral("down", check=False)


def usage_error(project: CliProject, *args: str) -> str:
    done = project.corral(*args, check=False)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    return str(done.stderr)


def error(project: CliProject, *args: str) -> str:
    done = project.corral(*args, check=False)
    assert done.returncode == 1, (args, done.stdout, done.stderr)
    return str(done.stderr)


def releases(project: CliProject) -> dict[str, dict[str, Any]]:
    return {r["release"]: r for r in project.json("releases", "web")["releases"]}


def test_init_keeps_the_state_folder_out_of_git(project: CliProject) -> None:
    assert ".corral/" in (project.folder / ".gitignore").read_text().splitlines()
    assert (project.folder / ".corral" / "run").is_dir()  # the controller runs
    assert git(project.folder, "status", "--porcelain") == ""


def test_the_spec_file_and_json_can_be_given_before_the_command(
        project: CliProject, tmp_path: Path) -> None:
    elsewhere = CliProject(tmp_path)
    spec = str(project.folder / "corral.toml")
    for args in (("-f", spec, "validate"), ("validate", "-f", spec),
                 ("--file", spec, "validate", "--json"), ("--json", "-f", spec, "validate")):
        done = elsewhere.corral(*args)
        assert "corral.toml" in done.stdout, args
    assert json.loads(elsewhere.corral("--json", "-f", spec, "validate").stdout)["valid"]
    assert "no such spec file" in error(elsewhere, "validate")  # no spec in tmp_path itself
    failed = elsewhere.corral("--json", "validate", check=False)  # errors in JSON too
    assert json.loads(failed.stdout)["error"]["type"] == "SpecError"


def test_mistakes_on_the_command_line_are_clean_usage_errors(project: CliProject) -> None:
    for bad in ("latest", "vx"):
        said = usage_error(project, "rollback", "web", "--to", bad)
        assert f"{bad!r} is not a release" in said and "such as v3" in said
    for count in ("-1", "0"):
        assert "--kill" in usage_error(project, "chaos", "web", "--kill", count)
    said = usage_error(project, "chaos", "web", "--interval", "5 seconds")
    assert '"500ms", "10s", "15m"' in said
    assert ".py" not in project.corral("status", "--help").stdout


def test_a_misspelled_spec_key_gets_a_did_you_mean_and_a_hint_that_works_installed(
        project: CliProject) -> None:
    project.edit(r"replicas = 3", "replicsa = 3")
    try:
        said = error(project, "validate")
    finally:
        project.edit(r"replicsa = 3", "replicas = 3")
    assert "services.web.replicsa: unknown key; did you mean replicas?" in said
    assert "`corral schema`" in said


def test_a_first_deploy_from_a_clean_tree_is_live_and_not_dirty(project: CliProject) -> None:
    project.corral("deploy", "web")
    assert releases(project)["v1"] | {"outcome": "live", "dirty": False} == \
        releases(project)["v1"]
    assert project.request("/") == (200, "1")
    assert project.request("/nope")[0] == 404, "the sample app answers only / and /healthz"


def test_one_duration_grammar_for_chaos_dora_and_ledger(project: CliProject) -> None:
    done = project.corral("chaos", "web", "--kill", "1", "--interval", "5s",
                          "--duration", "1m", "--no-load")
    assert "1 of 1 restored" in done.stdout
    assert "last 1w" in project.corral("dora", "--since", "1w").stdout
    recent = project.json("ledger", "--since", "5m")["entries"]
    assert any(e["action"].startswith("deployment") for e in recent)
    assert project.json("ledger", "--since", "1ms")["entries"] == []


def test_unknown_service_names_are_errors_with_a_did_you_mean(project: CliProject) -> None:
    for args in (("logs", "wbe"), ("ledger", "--service", "wbe"),
                 ("dora", "--service", "wbe")):
        said = error(project, *args)
        assert "no service 'wbe'" in said and "did you mean web?" in said, args


def test_logs_follow_with_the_spec_file_before_the_command(
        project: CliProject, tmp_path: Path) -> None:
    follow = subprocess.Popen(
        [sys.executable, "-m", "corral", "-f", str(project.folder / "corral.toml"),
         "logs", "web", "-f", "--since", "1h"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in follow.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        line = lines.get(timeout=60)
        assert "listening on" in line, line
        assert follow.poll() is None, "logs -f must keep following"
    finally:
        follow.terminate()
        follow.wait(timeout=30)


def test_releases_show_outcomes_and_builds_from_uncommitted_changes(
        project: CliProject) -> None:
    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')  # not committed
    project.corral("deploy", "web")
    project.edit(r'APP_VERSION = "2"', 'APP_VERSION = "3", FAIL_HEALTH = "1"')
    project.edit(r'start_timeout = "30s"', 'start_timeout = "3s"')
    assert project.corral("deploy", "web", check=False).returncode == 3
    seen = releases(project)
    assert {v: (r["outcome"], r["dirty"]) for v, r in seen.items()} == {
        "v1": ("replaced", False), "v2": ("live", True), "v3": ("rolled back", True)}
    shown = {line.split()[0]: line for line in project.corral("releases", "web").stdout
             .splitlines() if line.startswith("v")}
    assert "rolled back" in shown["v3"] and "-dirty" in shown["v3"]
    assert "replaced" in shown["v1"] and "-dirty" not in shown["v1"]


def test_plan_writes_durations_as_the_spec_does(project: CliProject) -> None:
    project.edit(r'APP_VERSION = "3", FAIL_HEALTH = "1"', 'APP_VERSION = "2"')
    done = project.corral("plan", check=False)
    assert done.returncode == 2, done.stderr
    assert "health.start_timeout 30s → 3s" in done.stdout
    project.edit(r'start_timeout = "3s"', 'start_timeout = "30s"')


def test_a_controller_that_cannot_start_shows_only_this_starts_log_lines(
        project: CliProject) -> None:
    project.corral("down")
    log = project.folder / ".corral" / "run" / "controller.log"
    with open(log, "a") as earlier:
        earlier.write("an earlier run's line that must not be shown again\n")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", project.port))
        squatter.listen()
        said = error(project, "up", "-d")
    assert "already in use" in said and f"127.0.0.1:{project.port}" in said
    assert "an earlier run's line" not in said
    project.corral("up", "-d")  # the port is free again: the live release serves again
    poll(lambda: _answers(project), what="the live release to serve again")


def _answers(project: CliProject) -> bool:
    try:
        return bool(project.request("/")[0] == 200)
    except OSError:
        return False
