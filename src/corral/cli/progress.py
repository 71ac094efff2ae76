"""How a deployment's event stream looks to a human: a live rich table on a terminal
(steps, fleet weights, analysis numbers), plain lines otherwise. Presentation only."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.cli import render

_VERBS = {"StartInstances": "started", "DrainAndStop": "drained and stopped",
          "StopInstances": "stopped", "SetWeights": "weights", "RecordAnalysis": "analysis"}


def shares(weights: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:g}%" for k, v in sorted(weights.items())) or "-"


def describe(event: dict[str, Any]) -> tuple[str, str, str]:
    """(what, detail, traffic) of one event, for a table row or a line."""
    kind = event["type"]
    if kind == "step":
        detail = ", ".join(event.get("instances", [])) or shares(
            {k: float(v) for k, v in event.get("fleets", {}).items()})
        if "switched_ms" in event:
            detail += f"  (switched in {event['switched_ms']}ms)"
        return _VERBS.get(event["kind"], event["kind"]), detail, shares(event["weights"])
    if kind == "analysis":
        n = event["numbers"]
        p99 = "-" if n.get("p99") is None else f"{n['p99'] * 1000:.0f}ms"
        numbers = (f"{n['requests']} req, {n['error_rate']:.2%} errors, p99 {p99}"
                   f" | stable {n['stable_error_rate']:.2%}")
        return f"analysis {event['percent']}%: {event['result']}", numbers, event["reason"]
    if kind == "gate":
        return "waiting for promotion", f"v{event['release']} is previewable", event["hint"]
    if kind == "wait":
        return "waiting", event["why"], ""
    if kind == "rollback":
        return "[red]rolling back[/]", f"to v{event['to']}" if event["to"] else "", \
            event.get("reason") or ""
    if kind == "fast-path":
        return "fast path", event["why"], ""
    return kind, "", ""


class DeployView:
    """Context manager rendering deploy events; `add(event)` for each."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, str, str]] = []
        self._title = ""
        self._live: Live | None = None
        if render.stderr.is_terminal:
            self._live = Live(self._render(), console=render.stderr, refresh_per_second=8,
                              transient=False)

    def __enter__(self) -> DeployView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)

    def add(self, event: dict[str, Any]) -> None:
        if event["type"] == "start":
            was = f"v{event['from']}" if event["from"] else "nothing"
            self._title = (f"deploying [bold]{event['service']}[/] {was} -> v{event['to']} "
                           f"({event['strategy']}, {event['replicas']} replicas, image "
                           f"{render.short(event['image'])})")
        elif event["type"] == "result":
            colour = "green" if event["outcome"] == "succeeded" else "red"
            self._rows.append((f"[{colour}]{event['outcome']}[/]",
                               f"deployment #{event['deployment']} in {event['seconds']:.1f}s",
                               event.get("reason") or ""))
        else:
            self._rows.append(describe(event))
        if self._live is not None:
            self._live.update(self._render())
        else:
            self._line(event)

    def _render(self) -> Group:
        table = Table(box=None, pad_edge=False, show_header=True)
        for column in ("step", "detail", "traffic / reason"):
            table.add_column(column)
        for row in self._rows[-30:]:
            table.add_row(*row)
        return Group(Text.from_markup(self._title or "deploying…"), table)

    def _line(self, event: dict[str, Any]) -> None:
        if event["type"] == "start":
            render.stderr.print(self._title)
            return
        what, detail, traffic = self._rows[-1]
        render.stderr.print(f"  {what}  {detail}   {traffic}".rstrip(), soft_wrap=True)
