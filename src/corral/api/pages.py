"""The dashboard's HTML: pages and fragments rendered from the engine's views (the same
dicts the JSON API answers), every value escaped. No decisions: what a caller may do
arrives as `can_act`; the routes (api/dashboard.py) choose what to show.

Pages work without JavaScript; htmx (vendored, api/static/VENDORED.md) adds live updates
over server-sent events and the confirm-then-post buttons. No inline script or style, so
the Content-Security-Policy can forbid both.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import urlencode

ASSETS = ("htmx-2.0.4.min.js", "htmx-ext-sse-2.2.2.js", "corral.css")
NAV = (("/", "Services"), ("/ui/ledger", "Ledger"), ("/ui/dora", "DORA"), ("/ui/logs", "Logs"))


def page(title: str, body: str, *, here: str, actor: str | None, role: str | None) -> str:
    """A whole page: head with the pinned assets, navigation, `body`."""
    nav = "".join(f'<a href="{href}"{" class=here" if href == here else ""}>{name}</a>'
                  for href, name in NAV)
    who = "" if actor is None else (
        f'<span class="who">{escape(actor)} · {escape(role or "")} '
        '<form method="post" action="/ui/signout"><button type="submit">Sign out</button>'
        "</form></span>")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false}\'>'
        f"<title>{escape(title)} · corral</title>"
        f'<link rel="stylesheet" href="/ui/static/{ASSETS[2]}">'
        f'<script src="/ui/static/{ASSETS[0]}" defer></script>'
        f'<script src="/ui/static/{ASSETS[1]}" defer></script></head><body>'
        f'<header><span class="brand">corral</span>{nav if actor else ""}{who}</header>'
        f"<main>{body}</main></body></html>")


def signin(error: str | None) -> str:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return (
        '<div class="card signin"><h1>Sign in</h1>'
        "<p class=muted>Paste an API token (an admin makes one with "
        "<code>corral token create NAME --role viewer</code>).</p>"
        f'{message}<form method="post" action="/ui/signin">'
        '<label for="token">Token</label>'
        '<input id="token" name="token" type="password" autocomplete="off" required>'
        '<button class="primary" type="submit">Sign in</button></form></div>')


# -- services ------------------------------------------------------------------------
def services_page(fragment: str) -> str:
    return ('<h1>Services</h1><div id="flash" role="status"></div>'
            '<div id="services" hx-ext="sse" sse-connect="/ui/events" sse-swap="services">'
            f"{fragment}</div>")


def services_fragment(status: dict[str, Any], steps: dict[str, list[dict[str, Any]]],
                      can_act: bool, now: float) -> str:
    """Every service: live release, traffic split, deployment steps, buttons, instances."""
    services = status.get("services", [])
    if not services:
        return '<p class="card muted">No service has been deployed yet.</p>'
    return "".join(_service(s, steps.get(s["name"], []), can_act, now) for s in services)


def _service(service: dict[str, Any], steps: list[dict[str, Any]], can_act: bool,
             now: float) -> str:
    name = escape(service["name"])
    live = service["live_release"]
    listen = service.get("listen")
    deployment = service.get("last_deployment")
    head = (f'<h2><a href="/ui/services/{name}">{name}</a>'
            f'<span class="badge ok" data-testid="live-{name}">live v{live}</span>'
            + (f'<span class="muted">{escape(listen)}</span>' if listen else "") + "</h2>")
    if service.get("note"):
        head += f'<p class="warn">{escape(service["note"])}</p>'
    return (f'<section class="card service" id="service-{name}">{head}'
            f"{traffic_split(name, service.get('traffic', {}))}"
            f"{_deployment(deployment, steps)}"
            f"{_actions(name, deployment, live, can_act)}"
            f"{_instances(service.get('instances', []), now)}</section>")


def _release_class(label: str) -> str:
    """The same release keeps its colour on every page: v1 r1, v7 r1, …"""
    digits = "".join(c for c in label if c.isdigit())
    return f"r{int(digits) % 6 if digits else 5}"


def traffic_split(service: str, shares: dict[str, float]) -> str:
    """A bar of each release's share of new requests, and a legend with the figures."""
    ordered = sorted(shares.items(), key=lambda kv: int("0" + kv[0].lstrip("v")))
    x, rects, legend = 0.0, [], []
    for label, share in ordered:
        cls = _release_class(label)
        if share > 0:
            rects.append(f'<rect class="{cls}" x="{x:.2f}" y="0" width="{share:.2f}" '
                         'height="10"/>')
        x += share
        legend.append(f'<li><i class="{cls}"></i>{escape(label)} '
                      f'<b data-testid="traffic-{service}-{escape(label)}">{share:g}%</b></li>')
    summary = ", ".join(f"{label} {share:g}%" for label, share in ordered) or "no traffic"
    return ('<svg class="split" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
            f'aria-label="traffic: {escape(summary)}">{"".join(rects)}</svg>'
            f'<ul class="legend">{"".join(legend) or "<li class=muted>no router entry</li>"}'
            "</ul>")


def _deployment(deployment: dict[str, Any] | None, steps: list[dict[str, Any]]) -> str:
    if deployment is None:
        return ""
    outcome = deployment["outcome"]
    cls = {"running": "warn", "succeeded": "ok"}.get(outcome, "bad")
    items = "".join(_step(s) for s in steps)
    return (f'<div class="deployment"><b>deployment #{deployment["id"]}</b> '
            f'{escape(deployment["strategy"])} v{deployment["from"] or "-"} → '
            f'v{deployment["to"]} <span class="badge {cls}" '
            f'data-testid="outcome-{deployment["id"]}">{escape(outcome)}</span>'
            + (f' <span class="muted">{escape(deployment["reason"])}</span>'
               if deployment.get("reason") else "")
            + (f'<ol class="steps">{items}</ol>' if items else "") + "</div>")


def _step(step: dict[str, Any]) -> str:
    """One executed step; an analysis verdict is marked pass or fail."""
    detail = step["detail"]
    cls = ""
    if step["kind"] == "RecordAnalysis":
        cls = {"pass": " class=analysis-pass", "fail": " class=analysis-fail"}.get(
            str(detail.get("result")), "")
    shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(detail.items()) if v is not None)
    return (f"<li{cls}><span class=muted>{time.strftime('%H:%M:%S', time.localtime(step['at']))}"
            f"</span> {escape(step['kind'])} <span class=muted>{escape(shown)}</span></li>")


def _short(value: Any) -> str:
    text = str(value)
    return text[:60] + "…" if len(text) > 60 else text


def _actions(name: str, deployment: dict[str, Any] | None, live: int | None,
             can_act: bool) -> str:
    if not can_act:
        return ""
    running = deployment is not None and deployment["outcome"] == "running"
    buttons = []
    if running:
        buttons += [_button(name, "promote", "Promote", f"Promote {name}: switch all traffic "
                            "to the new release?", "primary"),
                    _button(name, "abort", "Abort", f"Abort the deployment of {name}: all "
                            "traffic back to the previous release?", "danger")]
    if live is not None and live > 1 and not running:
        buttons.append(_button(name, "rollback", "Roll back", f"Roll {name} back from "
                               f"v{live} to the release before it?", "danger"))
    return f'<div class="actions">{"".join(buttons)}</div>' if buttons else ""


def _button(service: str, action: str, text: str, confirm: str, cls: str) -> str:
    return (f'<button type="button" class="{cls}" data-testid="{action}-{service}" '
            f'hx-post="/ui/services/{service}/{action}" hx-confirm="{escape(confirm)}" '
            f'hx-target="#flash" hx-swap="innerHTML">{text}</button>')


def _instances(instances: list[dict[str, Any]], now: float) -> str:
    if not instances:
        return '<p class="muted">no instances</p>'
    rows = "".join(
        f'<tr><td><code>{escape(i["id"])}</code></td><td>{escape(i["release"])}</td>'
        f'<td class="{_state_class(i["state"])}">{escape(i["state"])}</td>'
        f'<td class="hide-narrow"><code>{escape(str(i.get("address") or "-"))}</code></td>'
        f"<td>{age(now - i['since'])}</td></tr>" for i in instances)
    return ('<div class="table-wrap"><table><thead><tr><th>instance</th><th>release</th>'
            '<th>health</th><th class="hide-narrow">address</th><th>age</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _state_class(state: str) -> str:
    return {"ready": "ok", "starting": "warn", "draining": "warn"}.get(state, "bad")


def age(seconds: float) -> str:
    """An age as people read it, coarse enough not to change every second for long.

    >>> age(5), age(125), age(7300), age(200000)
    ('5s', '2m', '2h', '2d')
    """
    if seconds < 60:
        return f"{max(0, int(seconds))}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds // 3600)}h" if seconds < 86400 else f"{int(seconds // 86400)}d"


def flash(message: str, ok: bool) -> str:
    return f'<span class="{"ok" if ok else "bad"}" data-testid="flash">{escape(message)}</span>'


# -- releases, ledger, DORA, logs ----------------------------------------------------
def releases_page(service: str, rows: list[dict[str, Any]], deployers: dict[int, str]) -> str:
    body = "".join(
        f'<tr><td>{escape(r["release"])}{" <span class=badge>live</span>" if r["live"] else ""}'
        f'</td><td><code title="{escape(r["image"])}">{escape(r["image"][7:19])}</code></td>'
        f'<td><code>{escape((r.get("git_commit") or "-")[:10])}</code>'
        f'{" <span class=warn>dirty</span>" if r.get("dirty") else ""}</td>'
        f'<td>{escape(deployers.get(r["version"], "-"))}</td>'
        f'<td class="hide-narrow">{_when(r["created_at"])}</td>'
        f'<td class="{"bad" if r.get("bad_reason") else ""}">{escape(str(r["outcome"] or "-"))}'
        f'</td></tr>' for r in reversed(rows))
    logs = f"/ui/logs?{urlencode({'service': service})}"
    return (f'<h1>{escape(service)}: releases</h1><p><a href="{logs}">logs of {escape(service)}'
            '</a></p><div class="card table-wrap"><table><thead><tr><th>release</th>'
            "<th>image</th><th>commit</th><th>deployed by</th><th class=hide-narrow>created</th>"
            f"<th>outcome</th></tr></thead><tbody>{body}</tbody></table></div>")


def ledger_page(entries: list[dict[str, Any]], verdict: dict[str, Any]) -> str:
    state = ('<span class="badge ok" data-testid="ledger-verify">verified: '
             f'{verdict["checked"]} entries, chain intact</span>' if verdict["ok"] else
             '<span class="badge bad" data-testid="ledger-verify">BROKEN at entry '
             f'{verdict["first_bad"]}: {escape(str(verdict["problem"]))}</span>')
    rows = "".join(
        f'<tr><td>{e["seq"]}</td><td>{_when(e["at"])}</td><td>{escape(e["actor"])}</td>'
        f'<td>{escape(e["action"])}</td><td>{escape(e["subject"])}</td>'
        f'<td class="wrap hide-narrow">{escape(_detail(e["detail"]))}</td></tr>'
        for e in reversed(entries))
    return (f"<h1>Ledger</h1><p>{state}</p><div class='card table-wrap'><table><thead><tr>"
            "<th>seq</th><th>at</th><th>actor</th><th>action</th><th>subject</th>"
            f"<th class=hide-narrow>detail</th></tr></thead><tbody>{rows}</tbody></table></div>")


def _detail(detail: dict[str, Any]) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in sorted(detail.items()) if v is not None)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def dora_page(report: dict[str, Any], days: list[tuple[str, int, int]]) -> str:
    """The four figures over the report's window, and deployments per day (failed ones
    stacked in red) over `days` (label, deployments, failed)."""
    frequency = report["deployment_frequency"]
    lead = report["lead_time"]["median_seconds"]
    failure = report["change_failure_rate"]
    restore = report["time_to_restore"]["median_seconds"]
    figures = [("Deployment frequency", f"{frequency['per_day']:g}/day",
                f"{frequency['deployments']} deployments"),
               ("Lead time for changes", "-" if lead is None else age(lead), "median"),
               ("Change failure rate", "-" if failure["rate"] is None
                else f"{failure['rate'] * 100:.0f}%", f"{failure['failed']} of "
                f"{failure['changes']} changes"),
               ("Time to restore", "-" if restore is None else age(restore), "median")]
    cards = "".join(f'<div class="card figure"><span class=muted>{t}</span><b>{escape(v)}</b>'
                    f"<span class=muted>{escape(n)}</span></div>" for t, v, n in figures)
    return (f"<h1>DORA, last 30 days</h1><div class='figures'>{cards}</div>"
            f"<div class='card'><h2>Deployments per day</h2>{_chart(days)}</div>")


def _chart(days: list[tuple[str, int, int]]) -> str:
    top = max([d[1] for d in days] + [1])
    width = 100 / max(1, len(days))
    bars = []
    for n, (label, count, failed) in enumerate(days):
        x = n * width + width * 0.15
        h, hf = 40 * count / top, 40 * failed / top
        bars.append(f'<rect x="{x:.2f}" y="{40 - h:.2f}" width="{width * 0.7:.2f}" '
                    f'height="{h:.2f}"><title>{escape(label)}: {count} deployments, '
                    f"{failed} failed</title></rect>")
        if failed:
            bars.append(f'<rect class="failed" x="{x:.2f}" y="{40 - hf:.2f}" '
                        f'width="{width * 0.7:.2f}" height="{hf:.2f}"/>')
    first, last = (days[0][0], days[-1][0]) if days else ("", "")
    return (f'<svg class="chart" viewBox="0 0 100 40" preserveAspectRatio="none" role="img" '
            f'aria-label="deployments per day">{"".join(bars)}</svg>'
            f'<p class="muted">{escape(first)} … {escape(last)}</p>')


def logs_page(filters: dict[str, str], services: Iterable[str], lines: list[dict[str, Any]],
              follow_url: str | None) -> str:
    options = "".join(f'<option{" selected" if s == filters.get("service") else ""}>'
                      f"{escape(s)}</option>" for s in services)
    form = ('<form class="filters" method="get" action="/ui/logs">'
            f'<label>service<select name="service"><option value="">all</option>{options}'
            "</select></label>"
            f'<label>release<input name="release" value="{escape(filters.get("release", ""))}"'
            ' size="5" placeholder="v3"></label>'
            f'<label>instance<input name="instance" value="'
            f'{escape(filters.get("instance", ""))}" size="14"></label>'
            f'<label><span>follow</span><input type="checkbox" name="follow" value="1"'
            f'{" checked" if follow_url else ""}></label>'
            '<button type="submit">Show</button></form>')
    live = (f' hx-ext="sse" sse-connect="{escape(follow_url)}" sse-swap="line" '
            'hx-swap="beforeend"' if follow_url else "")
    empty = "" if lines or follow_url else "<p class=muted>No line matches.</p>"
    return (f"<h1>Logs</h1>{form}{empty}<ol class='logs' id='log-lines'{live}>"
            f"{''.join(log_line(line) for line in lines)}</ol>")


def log_line(line: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(line["at"]))
    return (f'<li class="{escape(line["stream"])}" data-release="{escape(line["release"])}">'
            f'{stamp} {escape(line["release"])} {escape(line["instance"])} '
            f'{escape(line["message"])}</li>')
