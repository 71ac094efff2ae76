"""Observe as a user meets it: logs of instances that are gone, one instance in depth, the
ledger and its verification, DORA, and /metrics scraped by a real Prometheus server.
Real everything: debootstrap image, bubblewrap instances, router, controller, Prometheus."""

from __future__ import annotations

import json
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import Project  # the e2e folder is on sys.path (rootdir mode)

from loopback import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def until(check: Callable[[], Any], timeout: float = 90.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("observed"))
    project.corral("init", "--name", "observed", "--port", str(project.port))
    project.metrics_port = free_port()  # type: ignore[attr-defined]
    with open(project.folder / "corral.toml", "a") as spec:
        spec.write(f'\n[observe]\nmetrics_listen = "127.0.0.1:{project.metrics_port}"\n')  # type: ignore[attr-defined]
    project.corral("up", "-d")
    project.corral("deploy", "web")
    project.edit(r'APP_VERSION = "1"', 'APP_VERSION = "2"')
    project.corral("deploy", "web")
    for _ in range(30):
        assert project.get()[0] == 200
    yield project
    project.corral("down", check=False)


def logs(project: Project, *args: str) -> list[dict[str, Any]]:
    done = project.corral("logs", "web", "--json", *args)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_the_last_lines_of_stopped_instances_are_kept_with_their_source(shop: Project) -> None:
    def stopped_lines() -> list[dict[str, Any]]:
        found = logs(shop, "--release", "v1", "--grep", "^app stopped$")
        return found if len(found) == 3 else []

    lines = until(stopped_lines, what="the 'app stopped' line of the 3 v1 instances")
    assert {line["release"] for line in lines} == {"v1"}
    assert len({line["instance"] for line in lines}) == 3
    assert all(line["image"].startswith("sha256:") and line["stream"] == "stdout"
               for line in lines)
    started = logs(shop, "--release", "v1", "--grep", "listening on")
    assert len(started) == 3


def test_status_of_one_instance_shows_its_life_after_it_is_gone(shop: Project) -> None:
    instance = logs(shop, "--release", "v1", "--grep", "^app stopped$")[0]["instance"]
    report = shop.json("status", "web", "--instance", instance)
    assert report["release"] == "v1" and report["state"] == "stopped" and not report["live"]
    assert report["exit_reason"]
    events = [item["event"] for item in report["health_history"]]
    assert events[:2] == ["instance.start", "instance.ready"] and "instance.stopped" in events
    assert report["last_lines"][-1]["message"] == "app stopped"
    human = shop.corral("status", "web", "--instance", instance).stdout
    assert "health history" in human and "app stopped" in human


def test_following_prints_lines_as_they_arrive(shop: Project) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "corral", "logs", "web", "-f", "-n", "0", "--grep", "listening"],
        cwd=shop.folder, stdout=subprocess.PIPE, text=True)
    printed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [printed.put(line) for line in follower.stdout or []],
                     daemon=True).start()
    try:
        time.sleep(1.0)
        shop.edit(r'APP_VERSION = "2"', 'APP_VERSION = "3"')
        shop.corral("deploy", "web")
        first = printed.get(timeout=60)
        assert " v3 " in first and "app v3 listening" in first
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def test_the_ledger_lists_filters_exports_and_verifies(shop: Project) -> None:
    entries = shop.json("ledger", "--service", "web", "--action", "deployment")["entries"]
    assert [e["action"] for e in entries].count("deployment.succeeded") == 3
    assert all(e["subject"] == "web" for e in entries)
    exported = shop.corral("ledger", "--export").stdout.splitlines()
    assert len(exported) >= len(entries) and json.loads(exported[0])["seq"] == 1
    verdict = shop.json("ledger", "verify")
    assert verdict["ok"] and verdict["checked"] == len(exported)


def test_dora_figures_come_with_their_definitions(shop: Project) -> None:
    report = shop.json("dora", "--since", "1d")
    assert report["deployment_frequency"]["deployments"] == 3
    assert report["change_failure_rate"]["rate"] == 0.0
    human = shop.corral("dora").stdout
    assert "deployment frequency" in human and "definitions:" in human


def test_a_real_prometheus_scrapes_the_controller_metrics(shop: Project, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                      "  - job_name: corral\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{shop.metrics_port}']\n")  # type: ignore[attr-defined]
    server = subprocess.Popen([binary, f"--config.file={config}",
                               f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def query(expr: str) -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
                {"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    result: list[dict[str, Any]] = json.load(answer)["data"]["result"]
                    return result
            except OSError:
                return []

        requests = until(lambda: query('corral_requests_total{service="web"}'), 120,
                         "prometheus to scrape corral_requests_total")
        assert sum(float(r["value"][1]) for r in requests) >= 30
        until(lambda: sum(float(r["value"][1]) for r in query(
            'corral_instances{service="web",release="v3",state="ready"}')) == 3, 60,
            "corral_instances to show the 3 ready v3 instances")
        deployments = until(lambda: query('corral_deployments_total{outcome="succeeded"}'),
                            60, "corral_deployments_total")
        assert deployments[0]["metric"]["strategy"] == "rolling"
        assert until(lambda: query("corral_builds_total"), 60, "corral_builds_total")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_verify_names_the_first_entry_edited_behind_corrals_back(shop: Project) -> None:
    database = shop.folder / ".corral" / "state.db"
    conn = sqlite3.connect(database)
    with conn:
        conn.execute("DROP TRIGGER events_no_update")  # the ledger refuses edits otherwise
        conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 3")
    conn.close()
    done = shop.corral("ledger", "verify", check=False)
    assert done.returncode == 4
    assert "ledger broken at entry 3" in done.stderr and "edited" in done.stderr


def test_after_down_the_last_lines_are_still_collected_and_readable(shop: Project) -> None:
    shop.corral("down")
    lines = logs(shop, "--release", "v3", "--grep", "^app stopped$")
    assert len(lines) == 3, "corral logs without a controller reads what `down` left"
    again = logs(shop, "--release", "v3", "--grep", "^app stopped$")
    assert len(again) == 3, "a second read stores nothing twice"
    report = shop.json("status", "web", "--instance", lines[0]["instance"])
    assert report["state"] == "stopped" and report["exit_reason"] == "corral down"
