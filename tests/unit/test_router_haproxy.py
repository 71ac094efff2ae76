"""The haproxy router's pure parts: the configuration it writes, slot planning, stats folding."""

from __future__ import annotations

from pathlib import Path

from corral.ports.records import Backend
from corral.routers.builtin.stats import ReleaseCounters
from corral.routers.haproxy.config import render_config
from corral.routers.haproxy.entries import ServiceEntry, Slot
from corral.routers.haproxy.runtime import is_error, parse_info, parse_stat_csv
from corral.routers.haproxy.state import HaproxyState, slot_rows
from corral.routers.haproxy.stats import add_delta, raw_counters

SHOW_STAT = (
    "# pxname,svname,scur,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,econ,eresp,"
    "ttime\n"
    "fe_web,FRONTEND,0,0,9,0,0,1,0,,,\n"
    "svc_web,s0,2,0,7,0,0,1,0,1,0,30\n"
    "svc_web,s1,0,0,2,0,0,0,0,0,0,4\n"
    "svc_web,BACKEND,2,0,9,0,0,1,0,1,0,25\n"
    "svc_api,s0,0,0,0,0,0,0,0,0,0,0\n")


def state_with(tmp_path: Path, slots: int = 2) -> HaproxyState:
    state = HaproxyState(tmp_path / "h.json", tmp_path / "h.cfg", "/run/h.sock", 0)
    state.services["web"] = ServiceEntry("127.0.0.1:8080", [Slot(f"s{i}") for i in range(slots)])
    return state


def test_the_config_has_a_frontend_per_listen_and_a_slot_per_server_line() -> None:
    entry = ServiceEntry("127.0.0.1:8080", [Slot("s0", "127.0.0.1:9001", 3, "v7"), Slot("s1")],
                         tls_pem="/run/web.pem", timeouts={"first_byte": 0.5})
    text = render_config({"web": entry}, socket_path="/run/h.sock", threads=1)
    assert "  nbthread 1" in text
    assert "  bind 127.0.0.1:8080 ssl crt /run/web.pem" in text
    assert "  server s0 127.0.0.1:9001 weight 3" in text
    assert "  server s1 127.0.0.1:1 weight 0 disabled" in text
    assert "  timeout server 500ms" in text
    assert "stats socket /run/h.sock mode 600 level admin" in text


def test_new_backends_fill_free_slots_and_unlisted_ones_are_drained(tmp_path: Path) -> None:
    state = state_with(tmp_path)
    commands, grown = state.assign("web", [Backend("127.0.0.1:9001", 2, "v1")])
    assert not grown
    assert commands == ["set server svc_web/s0 addr 127.0.0.1 port 9001",
                        "set server svc_web/s0 weight 2", "set server svc_web/s0 state ready"]
    commands, _ = state.assign("web", [Backend("127.0.0.1:9002", 1, "v2")])
    assert "set server svc_web/s0 state drain" in commands
    assert "set server svc_web/s1 addr 127.0.0.1 port 9002" in commands
    assert state.services["web"].slots[0].retiring


def test_running_out_of_slots_doubles_them_and_asks_for_a_reload(tmp_path: Path) -> None:
    state = state_with(tmp_path, slots=1)
    _, grown = state.assign("web", [Backend("127.0.0.1:9001", 1, "v1"),
                                    Backend("127.0.0.1:9002", 1, "v1")])
    assert grown and len(state.services["web"].slots) == 2


def test_a_freed_slot_goes_to_maintenance_and_can_be_reused(tmp_path: Path) -> None:
    state = state_with(tmp_path, slots=1)
    state.assign("web", [Backend("127.0.0.1:9001", 1, "v1")])
    state.assign("web", [])
    slot = state.services["web"].slots[0]
    assert state.free("web", [slot]) == ["set server svc_web/s0 state maint"]
    assert slot.is_free


def test_show_stat_rows_of_one_backend_leave_out_frontend_and_backend_totals() -> None:
    assert [r["svname"] for r in slot_rows(SHOW_STAT, "web")] == ["s0", "s1"]
    assert len(parse_stat_csv(SHOW_STAT)) == 5


def test_a_read_adds_what_a_slot_served_since_the_last_read() -> None:
    counters = ReleaseCounters()
    first = raw_counters(slot_rows(SHOW_STAT, "web")[0])
    assert first == {"requests": 8, "errors": 1, "failed_connections": 1, "ttime_ms": 30}
    add_delta(counters, first, {})
    add_delta(counters, {**first, "requests": 10}, first)
    assert (counters.requests, counters.errors, counters.failed_connections) == (10, 1, 1)
    # all ten land in the bucket of the average time, 30 ms: (0.025, 0.05]
    assert counters.bucket_counts[3] == 10 and abs(counters.latency_sum - 0.3) < 1e-9


def test_counters_lower_than_last_seen_mean_haproxy_restarted_from_zero() -> None:
    counters = ReleaseCounters()
    add_delta(counters, {"requests": 3, "errors": 0, "failed_connections": 0, "ttime_ms": 1},
              {"requests": 50, "errors": 0, "failed_connections": 0, "ttime_ms": 1})
    assert counters.requests == 3


def test_runtime_answers_are_parsed() -> None:
    assert parse_info("Name: HAProxy\nPid: 42\n")["Pid"] == "42"
    assert is_error("No such server.")
    assert not is_error("")
