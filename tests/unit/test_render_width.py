"""The CLI's renderers at 80 columns and in a pipe: every line fits, none ends in spaces,
digests are short in tables, user text keeps its brackets, a deployment reads one line per
event in the order things happened. Fed with the payloads the controller sends."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from corral.cli import progress, render, terminal
from corral.cli.observe import render_dora, render_ledger
from corral.errors import CorralError

DIGEST = "sha256:" + "3f9a1c" * 10 + "abcd"
SGR = re.compile(r"\x1b\[[0-9;]*m")
LONG_NOTE = ("instance web-5 did not pass its health check within 30s: GET /healthz: "
             "ConnectionRefusedError: [Errno 111] Connection refused")


def status_payload() -> dict[str, Any]:
    instances = [{"id": f"web-{n}c3e9f1a", "release": "v10" if n else "v8",
                  "state": "starting" if n else "ready", "address": f"127.0.0.1:4{n}211",
                  "pid": 31337 + n, "since": 1.0, "reason": LONG_NOTE if n else
                  "health check passed"} for n in range(3)]
    return {"services": [{
        "name": "web", "live_release": 8, "listen": "127.0.0.1:18701",
        "traffic": {"v10": 10.0, "v8": 90.0}, "instances": instances,
        "last_deployment": {"id": 14, "from": 8, "to": 10, "outcome": "rolled back",
                            "started_at": 1.0, "reason": LONG_NOTE}}]}


def releases_payload() -> list[dict[str, Any]]:
    return [{"release": f"v{n}", "version": n, "image": DIGEST, "config": DIGEST,
             "created_at": 1.0, "git_commit": "a" * 40, "live": n == 8}
            for n in (10, 8, 9)]


def ledger_payload() -> list[dict[str, Any]]:
    detail = {"from": 8, "to": 10, "image": DIGEST, "strategy": "canary"}
    return [{"seq": n, "at": 1.8e9 + n, "actor": "alice", "action": "deployment.start",
             "subject": "web", "detail": detail} for n in range(1, 4)]


def dora_payload() -> dict[str, Any]:
    long = ("deployments that ended succeeded per day over the window; a deployment that "
            "changed nothing is not counted, and neither is one that was rolled back")
    return {"service": None, "deployment_frequency": {"per_day": 1.5, "deployments": 3},
            "lead_time": {"median_seconds": 600.0},
            "change_failure_rate": {"rate": 0.25, "failed": 1, "changes": 4},
            "time_to_restore": {"median_seconds": 90.0, "restored": 1, "unrestored": 0},
            "definitions": {"deployment frequency": long, "lead time": long}}


def deploy_events() -> list[dict[str, Any]]:
    """A canary whose analysis failed, as the controller streams it: the rollback event
    comes before the analysis that caused it."""
    reason = "error rate 20.00% > 1.00% (stable 0.00%)"
    weights = {"type": "step", "kind": "SetWeights", "fleets": {"v10": 10, "v8": 90},
               "weights": {"v10": 10.0, "v8": 90.0}}
    return [
        {"type": "start", "deployment": 14, "service": "web", "from": 8, "to": 10,
         "strategy": "canary", "replicas": 3, "image": DIGEST},
        {"type": "step", "kind": "StartInstances", "release": 10,
         "instances": ["web-5c3e9f1a"], "weights": {"v8": 100.0}},
        {"type": "health", "instance": "web-5c3e9f1a", "result": "GET /healthz answered 503",
         "attempt": 2, "waited": 1.2, "timeout": 30.0},
        weights, dict(weights),
        {"type": "rollback", "to": 8, "reason": f"canary analysis failed at 10%: {reason}"},
        {"type": "analysis", "step": 0, "percent": 10, "result": "fail", "reason": reason,
         "numbers": {"requests": 200, "error_rate": 0.2, "p99": 0.004,
                     "stable_error_rate": 0.0}},
        {"type": "step", "kind": "SetWeights", "fleets": {"v8": 100},
         "weights": {"v8": 100.0}},
        {"type": "result", "deployment": 14, "outcome": "rolled back",
         "reason": f"canary analysis failed at 10%: {reason}", "seconds": 12.31},
    ]


def shown(text: str) -> list[str]:
    return [SGR.sub("", line) for line in text.splitlines()]


def assert_fits(lines: list[str], columns: int = 80) -> None:
    for line in lines:
        assert len(line) <= columns, f"{len(line)} columns: {line!r}"
        assert line == line.rstrip(), f"padded: {line!r}"


@pytest.fixture
def columns80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("FORCE_COLOR", raising=False)


@pytest.fixture
def piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def test_status_fits_80_columns_with_one_line_per_instance(
        columns80: None, capsys: pytest.CaptureFixture[str]) -> None:
    render.status(status_payload())
    lines = shown(capsys.readouterr().out)
    assert_fits(lines)
    rows = [line for line in lines if line.startswith("web-")]
    assert len(rows) == 3, lines  # the note is cut, not wrapped onto a second row
    assert rows[1].endswith("…") and "ready" in rows[0]
    assert lines[0].startswith("web  live v8") and "v8 90%  v10 10%" in lines[0]


def test_piped_status_is_neither_cut_nor_wrapped_nor_padded(
        piped: None, capsys: pytest.CaptureFixture[str]) -> None:
    render.status(status_payload())
    lines = shown(capsys.readouterr().out)
    assert [line for line in lines if LONG_NOTE in line][:2] and all(
        line == line.rstrip() for line in lines)
    assert sum(line.startswith("web-") for line in lines) == 3
    assert "\x1b[" not in "".join(lines)


def test_releases_are_in_natural_order_with_short_digests(
        columns80: None, capsys: pytest.CaptureFixture[str]) -> None:
    render.releases("web", releases_payload())
    lines = shown(capsys.readouterr().out)
    assert_fits(lines)
    assert [line.split()[0] for line in lines[2:]] == ["v8", "v9", "v10"]
    assert DIGEST not in "\n".join(lines) and DIGEST[7:19] in lines[2]


@pytest.mark.parametrize("mode", ["columns80", "piped"])
def test_ledger_rows_carry_12_hex_digests_and_fit(
        mode: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    request.getfixturevalue(mode)
    render_ledger(ledger_payload())
    lines = shown(capsys.readouterr().out)
    assert len(lines) == 4 and "from=8 image=3f9a1c" in lines[1]
    assert DIGEST not in "\n".join(lines)
    if mode == "columns80":
        assert_fits(lines)
    else:
        assert all(line == line.rstrip() for line in lines)
        assert lines[1].endswith("image=3f9a1c3f9a1c strategy=canary to=10")


def test_dora_definitions_wrap_at_words_under_their_name(
        columns80: None, capsys: pytest.CaptureFixture[str]) -> None:
    render_dora(dora_payload(), "30d")
    lines = shown(capsys.readouterr().out)
    assert_fits(lines)
    at = lines.index("definitions:")
    assert lines[at + 1].startswith("  deployment frequency: ")
    assert lines[at + 2].startswith("    ") and not lines[at + 2][4].isspace()


def test_a_hint_naming_a_section_keeps_its_brackets(
        columns80: None, capsys: pytest.CaptureFixture[str]) -> None:
    render.error(CorralError("no service named 'wbe' in corral.toml",
                             hint="add a [services.web] section, or an [images.web] one"))
    err = shown(capsys.readouterr().err)
    assert err == ["error: no service named 'wbe' in corral.toml",
                   "hint: add a [services.web] section, or an [images.web] one"]


def test_rich_output_through_the_cli_consoles_is_not_padded(
        columns80: None, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.table import Table

    console = render._console(lambda: __import__("sys").stdout, io.StringIO())
    table = Table("#", "target", box=None)
    table.add_row("1", "web-1")
    table.add_row("22", "web-22222222")
    console.print(table)
    console.print("a [services.web] hint", markup=False)
    assert_fits(shown(capsys.readouterr().out))


def test_a_deploy_reads_one_line_per_event_in_order(
        columns80: None, capsys: pytest.CaptureFixture[str]) -> None:
    with progress.DeployView() as view:
        for event in deploy_events():
            view.add(event)
    lines = shown(capsys.readouterr().err)
    assert_fits(lines)
    steps = [line.split("  ")[1] if line.startswith("  ") else line for line in lines]
    assert steps[0] == "deploying web v8 -> v10 (canary, 3 replicas, image 3f9a1c3f9a1c)"
    order = [s.strip() for s in steps[1:] if s.strip()]
    assert order[:7] == ["started", "waiting for health", "weights", "analysis 10%: fail",
                         "rolling back", "weights", "rolled back"], lines
    text = "\n".join(lines)
    assert text.count("> 1.00%") == 1, text  # the reason is said once
    assert "v8 90%  v10 10%" in text
    assert "web-5c3e9f1a: answered 503 (1/30 s, attempt 2)" in text


def test_deploy_states_are_coloured_on_a_terminal(
        columns80: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    with progress.DeployView() as view:
        for event in deploy_events():
            view.add(event)
    err = capsys.readouterr().err
    assert "\x1b[31mrolling back\x1b[0m" in err and "\x1b[31mrolled back\x1b[0m" in err
    assert "\x1b[31manalysis 10%: fail\x1b[0m" in err and "\x1b[36mstarted\x1b[0m" in err
    assert_fits(shown(err))


def test_an_open_progress_line_counts_seconds_and_a_wait_line_is_replaced(
        columns80: None) -> None:
    screen, now = io.StringIO(), [100.0]
    line = terminal.OpenLine(lambda: screen, lambda: now[0], tick=0)
    line.open("progress", lambda s: render.progress_text("debian:bookworm: first build, ~40 s",
                                                         s, screen))
    now[0] += 12.4
    line.redraw()
    assert screen.getvalue().rsplit("\r", 1)[-1] == \
        "· debian:bookworm: first build, ~40 s  12 s\x1b[K"
    line.open("wait", lambda s: f"waiting for health: 503 ({12 + s:.0f}/30 s)")
    line.open("wait", lambda s: f"waiting for health: 503 ({13 + s:.0f}/30 s)")
    line.settle()
    assert screen.getvalue().endswith(
        "12 s\x1b[K\n\rwaiting for health: 503 (12/30 s)\x1b[K"
        "\rwaiting for health: 503 (13/30 s)\x1b[K\r\x1b[K")


def test_piped_health_waits_show_one_line_a_second_or_when_the_answer_changes(
        piped: None, capsys: pytest.CaptureFixture[str]) -> None:
    def check(attempt: int, waited: float, result: str) -> dict[str, object]:
        return {"type": "health", "instance": "web-1", "result": result,
                "attempt": attempt, "waited": waited, "timeout": 5.0}

    with progress.DeployView() as view:
        for n, waited in enumerate([0.1, 0.2, 1.1, 1.2, 1.3, 1.4, 2.1], start=1):
            view.add(check(n, waited, "GET /healthz answered 503"))
        view.add(check(8, 2.2, "GET /healthz answered 500"))
    said = [line for line in capsys.readouterr().err.splitlines() if "waiting for health" in line]
    assert [line.split("(")[1] for line in said] == [
        "0/5 s, attempt 2)", "1/5 s, attempt 3)", "2/5 s, attempt 7)", "2/5 s, attempt 8)"], said
    assert said[-1].count("answered 500") == 1
