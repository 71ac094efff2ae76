"""Commands of operate: `corral plan` (spec drift, no controller needed) and `corral chaos`
(random SIGKILLs or image-root changes, run by the controller, while traffic flows)."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from corral.cli import render
from corral.cli.main import Context, cli, command
from corral.cli.params import DURATION, POSITIVE
from corral.errors import ControllerError

_COLOURS = {"+": "green", "~": "yellow", "-": "red"}


@cli.command()
@command
@click.option("--no-driver", is_flag=True, help="Do not ask the driver which instances run.")
def plan(ctx: Context, no_driver: bool) -> None:
    """Show what corral.toml would change: + create, ~ replace (why), - destroy.

    Exit 0: nothing to do; 2: changes; 1: error."""
    from corral.engine.operate.changes import plan_workspace

    ws = ctx.workspace()
    result = plan_workspace(ws, None if ctx.as_json else render.progress,
                            ask_driver=not no_driver)
    data = {"changes": [{"op": c.op, "subject": c.subject, "reason": c.reason,
                         "detail": c.detail} for c in result.changes],
            "summary": {"create": result.count("+"), "replace": result.count("~"),
                        "destroy": result.count("-"), "text": result.summary()}}

    def human() -> None:
        for change in result.changes:
            colour = _COLOURS[change.op]
            render.console.print(f"[{colour}]{change.op} {escape(change.subject)}[/]  "
                                 f"{escape(change.reason)}", soft_wrap=True)
        render.console.print(("\n" if result.changes else "") + result.summary())

    ctx.out(data, human)
    sys.exit(2 if result.has_changes else 0)


@cli.command()
@command
@click.argument("service", required=False)
@click.option("--kill", "kills", type=POSITIVE, default=1, show_default=True,
              help="How many kills (1 or more).")
@click.option("--interval", type=DURATION, default="5s", show_default=True,
              help="Time between kills, e.g. 500ms, 5s, 1m.")
@click.option("--duration", type=DURATION, default="2m", show_default=True,
              help="Stop after this long, e.g. 30s, 2m.")
@click.option("--drift", is_flag=True, help="Change a file in an image root instead of "
              "killing: proves detection and replacement.")
@click.option("--seed", type=int, default=None, help="Repeat an earlier run's choices.")
@click.option("--no-load", is_flag=True, help="Do not send requests during the run.")
def chaos(ctx: Context, service: str | None, kills: int, interval: float, duration: float,
          drift: bool, seed: int | None, no_load: bool) -> None:
    """Kill random instances with SIGKILL while traffic flows; report restore times."""
    client = ctx.client()
    if not client.is_up():
        raise ControllerError("the controller is not running", hint="start it: corral up -d")
    # The controller kills, sends the traffic and counts its failures (engine/operate/chaos.py).
    body = {"service": service, "kill": kills, "interval": interval, "duration": duration,
            "drift": drift, "seed": seed, "load": not no_load}
    result: dict[str, Any] = {}
    for event in client.stream("/v1/chaos", body):
        if event["type"] == "result":
            result = event
        elif not ctx.as_json:
            _render_event(event)
    ctx.out(result, lambda: _render_result(result))
    sys.exit(0 if result.get("restored") == len(result.get("kills", [])) else 1)


def _render_event(event: dict[str, Any]) -> None:
    if event["type"] == "start":
        render.stderr.print(f"chaos on {', '.join(event['services'])} (seed {event['seed']})")
    elif event["type"] in ("restored", "timeout"):
        what = event.get("instance") or event.get("file") or "-"
        took = event.get("restored_s")
        render.stderr.print(f"  #{event['n']} {event['kind']} {what}: "
                            + (f"restored in {took:.2f}s" if took is not None
                               else f"[red]{escape(str(event.get('error')))}[/]"))


def _render_result(result: dict[str, Any]) -> None:
    table = Table("#", "kind", "target", "restored (s)", "requests", "failed", box=None,
                  pad_edge=False)
    for kill in result.get("kills", []):
        took = kill.get("restored_s")
        table.add_row(str(kill["n"]), kill["kind"], str(kill.get("instance") or
                                                        kill.get("file") or "-"),
                      f"{took:.2f}" if took is not None else "not restored",
                      str(kill.get("requests", "-")), str(kill.get("failed_requests", "-")))
    render.console.print(table)
    render.console.print(f"seed {result.get('seed')}: {result.get('restored', 0)} of "
                         f"{len(result.get('kills', []))} restored, "
                         f"{result.get('failed_requests', 0)} failed request(s) of "
                         f"{result.get('requests', 0)}")
