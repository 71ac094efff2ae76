"""Observe commands: `corral logs`, `corral ledger [verify] [--export]`, `corral dora`,
`corral cost`, and the instance view behind `corral status SERVICE --instance ID`.

They read .corral/ through the engine, so they work with or without a running controller.
Parsing and rendering only.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from corral.cli import render, terminal
from corral.cli.main import Context, cli, command, following_command
from corral.cli.params import DURATION, check_service

LEDGER_BROKEN_EXIT = 4


@cli.command()
@following_command
@click.argument("service")
@click.option("--release", default=None, help="Only this release, e.g. v7.")
@click.option("--instance", default=None, help="Only this instance (alive or gone).")
@click.option("--since", type=DURATION, default=None,
              help="Only lines newer than this, e.g. 10m, 2h, 7d, 1w.")
@click.option("--grep", default=None, help="Only lines matching this regular expression.")
@click.option("--stream", type=click.Choice(["stdout", "stderr"]), default=None)
@click.option("-n", "--lines", "limit", default=100, show_default=True,
              help="How many of the newest matching lines to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they arrive.")
def logs(ctx: Context, service: str, release: str | None, instance: str | None,
         since: float | None, grep: str | None, stream: str | None, limit: int,
         follow: bool) -> None:
    """Show a service's logs from the central log store, also of instances that are gone."""
    if ctx.server:
        _remote_logs(ctx, {"service": service, "release": release, "instance": instance,
                           "grep": grep, "stream": stream, "limit": limit,
                           "since": None if since is None else f"{since}s"}, follow)
        return
    from dataclasses import replace

    from corral.engine.observe.logview import follow as follow_lines
    from corral.engine.observe.logview import line_view, log_query, open_log_store

    ws = ctx.workspace()
    check_service(service, known_services(ws))
    if not ctx.client().is_up():
        from corral.engine.observe.telemetry import collect_without_controller

        collect_without_controller(ws)  # lines written since the collector stopped
    store = open_log_store(ws.state_dir)
    query = log_query(service, release=release, instance=instance, grep=grep,
                      stream=stream, limit=limit)
    if since is not None:
        query = replace(query, since=time.time() - since)
    lines = follow_lines(store, query) if follow else iter(store.query(query))
    for line in lines:
        view = line_view(line)
        if ctx.as_json:
            click.echo(json.dumps(view))
        else:
            click.echo(render_line(view), err=False)


def _remote_logs(ctx: Context, filters: dict[str, Any], follow: bool) -> None:
    """`logs` against a remote controller (--server): its /v1/logs, polled to follow."""
    client = ctx.client()
    params = {k: v for k, v in filters.items() if v is not None}
    after = 0
    while True:
        lines = client.get("/v1/logs", **params, after=after)["lines"]
        for view in lines:
            click.echo(json.dumps(view) if ctx.as_json else render_line(view))
        after = lines[-1]["id"] if lines else after
        if not follow:
            return
        params.pop("since", None)
        time.sleep(0.5)  # a pace for following, not a wait for an effect


def known_services(ws: Any) -> set[str]:
    """Services the spec names or the store has records of (removed ones keep their logs)."""
    return set(ws.loaded.spec.services) | set(ws.store.services())


def render_line(view: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(view["at"]))
    millis = int((view["at"] % 1) * 1000)
    marker = "!" if view["stream"] == "stderr" else " "
    return f"{stamp}.{millis:03d} {view['release']:>4} {view['instance']}{marker} " \
           f"{view['message']}"


@cli.command()
@command
@click.argument("verify", required=False, type=click.Choice(["verify"]))
@click.option("--service", default=None, help="Only entries about this service.")
@click.option("--action", default=None, help="Only this action or family, e.g. deployment.")
@click.option("--actor", default=None, help="Only entries by this actor.")
@click.option("--since", type=DURATION, default=None,
              help="Only entries newer than this, e.g. 5m, 24h, 30d, 1w.")
@click.option("-n", "--limit", default=None, type=int, help="Only the newest N entries.")
@click.option("--export", is_flag=True, help="Print every entry as a JSON line, hashes included.")
def ledger(ctx: Context, verify: str | None, service: str | None, action: str | None,
           actor: str | None, since: float | None, limit: int | None, export: bool) -> None:
    """Show the ledger (who did what, when), verify its hash chain, or export it."""
    if ctx.server:  # a remote controller's ledger, through its API
        if export:
            from corral.errors import CorralError

            raise CorralError("--export reads the ledger where the controller runs",
                              hint="run `corral ledger --export` on the controller's machine")
        client = ctx.client()
        if verify:
            _verify(ctx, client.get("/v1/ledger/verify"))
            return
        params = {"service": service, "action": action, "actor": actor, "limit": limit,
                  "since": None if since is None else f"{since}s"}
        rows = client.get("/v1/ledger", **{k: v for k, v in params.items() if v is not None})[
            "entries"]
        ctx.out({"entries": rows}, lambda: render_ledger(rows))
        return
    from corral.engine.observe import ledger as engine_ledger
    from corral.ports.ledger import EventFilter

    ws = ctx.workspace()
    check_service(service, known_services(ws))
    store = ws.store
    if verify:
        _verify(ctx, engine_ledger.verdict_view(engine_ledger.verify(store)))
        return
    if export:
        for text in engine_ledger.export_lines(store):
            click.echo(text)
        return
    where = EventFilter(service=service, action=action, actor=actor,
                        since=None if since is None else time.time() - since,
                        limit=limit if limit is not None else (None if ctx.as_json else 200))
    rows = [engine_ledger.entry_view(e, ws.env) for e in engine_ledger.entries(store, where)]

    ctx.out({"entries": rows}, lambda: render_ledger(rows))


def render_ledger(rows: list[dict[str, Any]]) -> None:
    """One entry a line, digests cut to 12 hex (whole ones in --json and --export); on a
    terminal the detail, then the subject, is cut to fit."""
    # On a screen of known width the year goes (it is in --json): room for the detail.
    stamp = "%m-%d %H:%M:%S" if terminal.width(sys.stdout) else "%Y-%m-%d %H:%M:%S"
    table = []
    for row in rows:
        detail = " ".join(f"{k}={_compact(v)}" for k, v in sorted(row["detail"].items())
                          if v is not None)
        table.append((str(row["seq"]), time.strftime(stamp, time.localtime(row["at"])),
                      row["actor"], row["action"], row["subject"], render.shorten(detail)))
    render.write(terminal.table(("seq", "at", "actor", "action", "subject", "detail"), table,
                                sys.stdout, shrink=(5, 4, 2), right=(0,)))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) \
        else render.one_line(str(value))


def _verify(ctx: Context, view: dict[str, Any]) -> None:
    def human() -> None:
        if view["ok"]:
            render.say(f"ledger verified: {view['checked']} entries, head entry "
                       f"{view['head_seq']} (hash {render.short(view['head_hash'])})")
        else:
            head = f"ledger broken at entry {view['first_bad']}:"
            render.say(f"{terminal.paint(head, 'bold red', sys.stderr)} {view['problem']}\n"
                       f"{view['checked']} entries before it verified", sys.stderr)

    ctx.out(view, human)
    if not view["ok"]:
        sys.exit(LEDGER_BROKEN_EXIT)


@cli.command()
@command
@click.option("--since", "window", type=DURATION, default="30d", show_default=True,
              help="Window: deployments that ended within this long before now (e.g. 1w).")
@click.option("--service", default=None, help="Only this service.")
def dora(ctx: Context, window: float, service: str | None) -> None:
    """DORA metrics from the ledger, with their definitions."""
    from corral.spec.duration import format_duration

    if ctx.server:  # a remote controller's figures, through its API
        params = {"since": f"{window}s", **({"service": service} if service else {})}
        remote = ctx.client().get("/v1/dora", **params)
        ctx.out(remote, lambda: render_dora(remote, format_duration(window)))
        return
    from corral.engine.observe.dora import dora_report

    ws = ctx.workspace()
    check_service(service, known_services(ws))
    now = time.time()
    report = dora_report(ws.store, since=now - window, until=now, service=service)
    ctx.out(report, lambda: render_dora(report, format_duration(window)))


@cli.command()
@command
@click.option("--since", "window", type=DURATION, default="30d", show_default=True,
              help="Window: resource-hours within this long before now (e.g. 1w).")
@click.option("--service", default=None, help="Only this service.")
def cost(ctx: Context, window: float, service: str | None) -> None:
    """Resource-hours reserved and used per service and release, and what they were spent on."""
    from corral.engine.observe.cost import cost_report
    from corral.spec.duration import format_duration

    ws = ctx.workspace()
    check_service(service, known_services(ws))
    now = time.time()
    report = cost_report(ws.store, since=now - window, until=now, service=service)
    ctx.out(report, lambda: render_cost(report, format_duration(window)))


def render_cost(report: dict[str, Any], window: str) -> None:
    def pct(share: float | None) -> str:
        return "-" if share is None else f"{share * 100:.1f}%"

    def row(name: str, release: str, hours: dict[str, Any]) -> list[str]:
        figures = [f"{hours[key]:.4g}" for key in ("memory_gib_hours", "used_memory_gib_hours",
                                                   "core_hours", "used_core_hours")]
        return [name, release, *figures, pct(hours["idle_share"]),
                pct(hours["surge_share"]), pct(hours["warm_share"]),
                pct(hours["failed_share"])]
    rows = [row(r["service"], r["release"], r) for r in report["releases"]]
    rows.append(row("all", "", report["total"]))
    out = [f"resource-hours reserved and used, last {window}"]
    out += terminal.table(("service", "release", "GiB-h", "used", "core-h", "used", "idle",
                           "surge", "warm", "failed"), rows, sys.stdout)
    out += terminal.wrap(f"note: {report['note']}", sys.stdout, "  ")
    render.write(out)


def render_dora(report: dict[str, Any], window: str) -> None:
    freq = report["deployment_frequency"]
    cfr = report["change_failure_rate"]
    ttr = report["time_to_restore"]
    rate = "-" if cfr["rate"] is None else f"{cfr['rate'] * 100:.1f}%"
    rows = [
        ("deployment frequency", f"{freq['per_day']:.2f}/day ({freq['deployments']} in {window})"),
        ("lead time for changes", _duration(report["lead_time"]["median_seconds"])),
        ("change failure rate", f"{rate} ({cfr['failed']} of {cfr['changes']})"),
        ("time to restore", f"{_duration(ttr['median_seconds'])} "
                            f"({ttr['restored']} restored, {ttr['unrestored']} open)"),
    ]
    scope = f" for {report['service']}" if report["service"] else ""
    out = [f"DORA metrics{scope}, last {window}"]
    out += [f"  {name:<22} {value}" for name, value in rows]
    out += ["", "definitions:"]
    for name, text in report["definitions"].items():
        out += terminal.wrap(f"  {name}: {text}", sys.stdout, "    ")
    render.write(out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def show_instance(ctx: Context, service: str, instance_id: str) -> None:
    """`corral status SERVICE --instance ID` (called by cli/project.py's status)."""
    from corral.engine.observe.instance_report import instance_report
    from corral.engine.observe.logview import open_log_store

    ws = ctx.workspace()
    report = instance_report(ws.store, open_log_store(ws.state_dir), service, instance_id)
    ctx.out(report, lambda: render_instance(report))


def render_instance(report: dict[str, Any]) -> None:
    """The instance in depth; prose wrapped to the screen, the image digest cut to 12 hex
    (whole in --json), log lines as written."""
    state = report["state"] + ("" if report["live"] else f" ({report['exit_reason']})")
    out = [f"instance {report['id']} of {report['service']} {report['release']}: {state}",
           f"  image      {render.short(report['image'])}",
           f"  git commit {report['git_commit'] or '-'}",
           f"  address    {report['address']} pid {report['pid'] or '-'}",
           f"  started    {render.ago(report['started_at'])}, ended "
           f"{render.ago(report['ended_at'])}"]
    replaced = report["replaced"]
    if replaced["replaced_by"] or replaced["replaces"]:
        out.append(f"  replaced by {replaced['replaced_by'] or '-'} "
                   f"({replaced['cause'] or '-'}); replaced {replaced['replaces'] or '-'} — "
                   "never restarted in place")
    out.append("health history:")
    for item in report["health_history"]:
        stamp = time.strftime("%H:%M:%S", time.localtime(item["at"]))
        out.append(f"  {stamp} {item['event']:<20} {item['reason'] or ''}")
    out.append(f"last {len(report['last_lines'])} log lines:")
    lines = [part for text in out for part in terminal.wrap(text, sys.stdout, "    ")]
    render.write(lines + ["  " + render_line(view) for view in report["last_lines"]])
