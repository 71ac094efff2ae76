"""How the CLI shows things to humans: tables, progress lines, errors. Presentation only."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from corral.errors import CorralError

console = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def error(exc: CorralError) -> None:
    stderr.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True)
    problems = getattr(exc, "problems", [])
    for problem in problems:
        stderr.print(f"  {problem}", markup=False, soft_wrap=True)
    if exc.hint:
        stderr.print(f"[dim]hint:[/] {exc.hint}", soft_wrap=True)


def progress(message: str) -> None:
    stderr.print(f"[dim]·[/] {message}", soft_wrap=True)


def ago(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"


def status(data: dict[str, Any]) -> None:
    if not data["services"]:
        console.print("no services deployed yet: run `corral deploy`")
    for service in data["services"]:
        live = service["live_release"]
        traffic = "  ".join(f"{label} {share:g}%" for label, share in
                            sorted(service["traffic"].items())) or "none"
        console.print(f"[bold]{service['name']}[/]  live v{live}  listen "
                      f"{service['listen'] or '-'}  traffic: {traffic}")
        table = Table(box=None, pad_edge=False)
        for column in ("instance", "release", "state", "address", "pid", "started", "note"):
            table.add_column(column)
        for instance in service["instances"]:
            table.add_row(instance["id"], instance["release"], instance["state"],
                          instance["address"], str(instance["pid"] or "-"),
                          ago(instance["since"]), instance["reason"] or "")
        console.print(table)
        last = service.get("last_deployment")
        if last:
            console.print(f"last deployment #{last['id']}: v{last['from']} -> v{last['to']} "
                          f"{last['outcome']} {ago(last['started_at'])}"
                          + (f" ({last['reason']})" if last["reason"] else ""))
        console.print()


def releases(service: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"releases of {service}", box=None, pad_edge=False)
    for column in ("release", "image", "config", "git commit", "created", "live"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["release"], short(row["image"]), short(row["config"]),
                      (row["git_commit"] or "-")[:12], ago(row["created_at"]),
                      "live" if row["live"] else "")
    console.print(table)
