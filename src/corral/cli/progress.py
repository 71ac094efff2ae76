"""How a deployment's event stream looks to a human: one line per event, in the order things
happened, the state word coloured, the detail wrapped to the screen (piped: never wrapped).
Waits that change every second (health checks, a canary short of traffic) redraw one open
line on a terminal instead of printing a line each. Presentation only.

    deploying web v8 -> v10 (canary, 3 replicas, image 0123456789ab)
      started                web-5f3a
      weights                v10 10%  v8 90%
      analysis 10%: fail     error rate 20.00% > 1.00% (stable 0.00%) over 200 requests
      rolling back           to v8
      rolled back            deployment #14 in 12.3 s
"""

from __future__ import annotations

import re
import sys
from types import TracebackType
from typing import Any

from corral.cli import render
from corral.cli.terminal import cut, is_terminal, open_line, paint, width, wrap

WHAT = 21  # the width of the state column: "waiting for promotion"
_VERBS = {"StartInstances": ("started", "cyan"), "DrainAndStop": ("drained and stopped", "dim"),
          "StopInstances": ("stopped", "dim"), "SetWeights": ("weights", "cyan")}
_ANSWERED = re.compile(r"^GET \S+ answered ")
_OUTCOMES = {"succeeded": "green", "rolled back": "red", "aborted": "yellow", "failed": "red"}


def shares(weights: dict[str, float]) -> str:
    """Traffic shares in release order (v8 before v10).

    >>> shares({"v10": 10, "v8": 90.0})
    'v8 90%  v10 10%'
    """
    return "  ".join(f"{k} {float(v):g}%" for k, v in
                     sorted(weights.items(), key=render.by_release)) or "-"


def health_line(event: dict[str, Any], later: float = 0.0) -> str:
    """'web-3f2a: answered 503 (12/30 s, attempt 9)': the last check's result, the seconds
    spent of those allowed (`later` seconds after the event) and the attempt.

    >>> health_line({"instance": "web-1", "result": "GET /healthz answered 503",
    ...              "attempt": 9, "waited": 11.6, "timeout": 30.0})
    'web-1: answered 503 (12/30 s, attempt 9)'
    """
    waited = min(event["waited"] + later, event["timeout"])
    result = _ANSWERED.sub("answered ", event["result"] or "no answer yet")
    return (f"{event['instance']}: {result} "
            f"({waited:.0f}/{event['timeout']:g} s, attempt {event['attempt']})")


class DeployView:
    """Context manager rendering deploy events; `add(event)` for each."""

    def __init__(self) -> None:
        self._out = sys.stderr
        self._said: list[str] = []  # reasons already shown: each is said once
        self._traffic = ""  # the traffic last shown
        self._last = ""  # the last line, to drop a repeat
        self._health_seen: dict[str, tuple[int, str]] = {}  # instance -> (second, result)
        self._held: dict[str, Any] | None = None  # a rollback, shown after its analysis

    def __enter__(self) -> DeployView:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._release_held()
        with open_line.lock:
            open_line.settle()

    def add(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "rollback":
            # The engine says it turns back before it records the analysis that made it:
            # show the cause first.
            self._release_held()
            self._held = event
            return
        if kind == "analysis":
            self._analysis(event)
        self._release_held()
        if kind == "start":
            self._start(event)
        elif kind == "step":
            self._step(event)
        elif kind == "health":
            self._health(event)
        elif kind == "gate":
            self._row("waiting for promotion", "yellow",
                      f"v{event['release']} is previewable; {event['hint']}")
        elif kind == "wait":
            self._row("waiting", "yellow", event["why"])
        elif kind == "fast-path":
            self._row("fast path", "yellow", event["why"])
        elif kind == "result":
            self._result(event)
        elif kind != "analysis":
            self._row(kind, None, "")

    def _start(self, event: dict[str, Any]) -> None:
        was = f"v{event['from']}" if event["from"] else "nothing"
        text = (f"deploying {event['service']} {was} -> v{event['to']} ({event['strategy']}, "
                f"{event['replicas']} replicas, image {render.short(event['image'])})")
        lines = wrap(text, self._out, "  ")
        lines[0] = lines[0].replace(event["service"], paint(event["service"], "bold",
                                                            self._out), 1)
        render.write(lines, self._out)

    def _step(self, event: dict[str, Any]) -> None:
        what, style = _VERBS.get(event["kind"], (event["kind"], None))
        traffic = shares(event.get("weights") or {})
        if event["kind"] == "SetWeights":
            detail = traffic
        else:
            detail = ", ".join(event.get("instances", []))
            if traffic != self._traffic:
                detail += f"; traffic {traffic}"
        if "switched_ms" in event:
            detail += f" (switched in {event['switched_ms']} ms)"
        self._traffic = traffic
        self._row(what, style, detail)

    def _analysis(self, event: dict[str, Any]) -> None:
        result = event["result"]
        style = {"pass": "green", "fail": "red"}.get(result, "yellow")
        what = f"analysis {event['percent']}%: {result}"
        detail = event["reason"]  # it names the numbers that decided
        if "request" not in detail:
            detail += f" over {event['numbers']['requests']} requests"
        if result == "wait" and is_terminal(self._out):
            open_line.open("wait", lambda _: self._line(what, style, detail)[0])
            return
        self._said.append(event["reason"])
        self._row(what, style, detail)

    def _health(self, event: dict[str, Any]) -> None:
        if is_terminal(self._out):
            open_line.open("wait", lambda later: self._line(
                "waiting for health", "yellow", health_line(event, later))[0])
        elif event["attempt"] >= 2:  # a first miss while the app starts is the rule
            # piped: one line a second per instance, or when the answer changes
            seen = (int(event["waited"]), event["result"])
            if self._health_seen.get(event["instance"]) != seen:
                self._health_seen[event["instance"]] = seen
                self._row("waiting for health", "yellow", health_line(event))

    def _release_held(self) -> None:
        event, self._held = self._held, None
        if event is not None:
            self._row("rolling back", "red", (f"to v{event['to']}" if event["to"] else "")
                      + self._unsaid(event.get("reason")))

    def _result(self, event: dict[str, Any]) -> None:
        outcome = event["outcome"]
        self._row(outcome, _OUTCOMES.get(outcome, "red"),
                  f"deployment #{event['deployment']} in {event['seconds']:.1f} s"
                  + self._unsaid(event.get("reason")))
        if outcome != "succeeded":
            render.write(wrap("the previous release keeps serving; see `corral status` for "
                              "the instances", self._out, "  "), self._out)

    def _unsaid(self, reason: str | None) -> str:
        """': reason' unless an earlier line said it (the analysis a rollback came from)."""
        if not reason or any(said and said in reason for said in self._said):
            return ""
        self._said.append(reason)
        return f": {reason}"

    def _row(self, what: str, style: str | None, detail: str) -> None:
        # A reason may end with an indented block (an instance's last lines): kept as
        # written, each line cut to the screen rather than wrapped into one paragraph.
        detail, *block = detail.split("\n")
        room = width(self._out)
        lines = self._line(what, style, detail) + [
            cut(line.rstrip(), room) if room else line.rstrip() for line in block]
        if lines[0] == self._last:
            return  # the same step twice in a row says nothing new
        self._last = lines[0]
        render.write(lines, self._out)

    def _line(self, what: str, style: str | None, detail: str) -> list[str]:
        lines = wrap(f"  {what:<{WHAT}}  {detail}", self._out, " " * (WHAT + 4))
        lines[0] = "  " + paint(what, style, self._out) + lines[0][2 + len(what):]
        return lines
