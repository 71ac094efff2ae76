"""Shipping to Loki's push API, against a small local HTTP server that checks each request the
way Loki does (path, JSON content type, streams of string labels, [ns-string, line] values).

Debian 12's `loki` package is an unrelated genetics program, so no real Loki runs here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from corral.observe.loki import PUSH_PATH, LokiSink
from corral.ports.logs import LogLine, LogSource

pytestmark = pytest.mark.integration

SRC = LogSource("web-a1", "web", 3, "sha256:" + "a" * 64, "c0ffee")


class FakeLoki(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.status = 204


class _Handler(BaseHTTPRequestHandler):
    server: FakeLoki

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        problems = _validate(self.path, self.headers.get("Content-Type", ""), body)
        self.server.problems += problems
        if not problems:
            self.server.received.append(json.loads(body))
        self.send_response(400 if problems else self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _validate(path: str, content_type: str, body: bytes) -> list[str]:
    if path != PUSH_PATH:
        return [f"path {path}"]
    if not content_type.startswith("application/json"):
        return [f"content type {content_type}"]
    doc = json.loads(body)
    problems = []
    for stream in doc["streams"]:
        labels, values = stream["stream"], stream["values"]
        if not labels or not all(isinstance(v, str) for v in labels.values()):
            problems.append(f"labels {labels}")
        for value in values:
            if not (len(value) == 2 and value[0].isdigit() and isinstance(value[1], str)):
                problems.append(f"value {value}")
    return problems


@pytest.fixture
def loki() -> Iterator[FakeLoki]:
    server = FakeLoki()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: FakeLoki) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_lines_arrive_as_streams_labelled_by_service_release_instance_and_stream(
        loki: FakeLoki) -> None:
    sink = LokiSink(url(loki), labels={"project": "shop"})
    sink.ship([LogLine(1700000000.25, SRC, "stdout", "hello"),
               LogLine(1700000000.5, SRC, "stderr", "oops"),
               LogLine(1700000001.0, SRC, "stdout", "bye")])
    assert sink.flush(timeout=30)
    sink.close()
    assert loki.problems == []
    [push] = loki.received
    streams = {s["stream"]["stream"]: s for s in push["streams"]}
    assert streams["stdout"]["stream"] == {"service": "web", "release": "v3",
                                           "instance": "web-a1", "stream": "stdout",
                                           "git_commit": "c0ffee", "project": "shop"}
    assert streams["stdout"]["values"] == [["1700000000250000000", "hello"],
                                           ["1700000001000000000", "bye"]]
    assert sink.sent_lines == 3 and sink.dropped_lines == 0


def test_a_refusing_or_absent_loki_costs_lines_but_never_blocks_the_caller(
        loki: FakeLoki) -> None:
    loki.status = 500
    sink = LokiSink(url(loki))
    started = time.monotonic()
    for n in range(5):
        sink.ship([LogLine(float(n), SRC, "stdout", f"line {n}")])
    assert time.monotonic() - started < 5  # shipping is queued, never awaited
    assert sink.flush(timeout=30)
    sink.close()
    assert sink.dropped_lines == 5 and sink.failures == 5 and sink.sent_lines == 0
    gone = LokiSink("http://127.0.0.1:9", timeout=1)
    gone.ship([LogLine(1.0, SRC, "stdout", "x")])
    assert gone.flush(timeout=30)
    gone.close()
    assert gone.dropped_lines == 1
