"""How the CLI shows things to humans: tables, progress lines, errors. Presentation only.

rich is imported on first use of `console` or `stderr` (it costs ~20 ms of start-up): plain
lines (`line`, `progress`) never need it, so a cached `corral build` does not load it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from corral.errors import CorralError

if TYPE_CHECKING:
    from rich.console import Console

    console: Console  # stdout, made on first use (module __getattr__)
    stderr: Console


_lines = threading.Lock()


def __getattr__(name: str) -> Any:
    if name not in ("console", "stderr"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    made = globals()
    if "console" not in made:
        from rich.console import Console

        made["console"] = Console(highlight=False)
        made["stderr"] = Console(stderr=True, highlight=False)
    return made[name]


def _stdout() -> Console:
    return __getattr__("console")  # type: ignore[no-any-return]


def _stderr() -> Console:
    return __getattr__("stderr")  # type: ignore[no-any-return]


def colour(stream: IO[str]) -> bool:
    """Whether to colour `stream`, by the conventions rich follows: FORCE_COLOR, NO_COLOR,
    TERM=dumb, else only on a terminal."""
    if os.environ.get("FORCE_COLOR"):
        return True
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def line(text: str) -> None:
    """A plain line on stdout, never wrapped (digests stay whole for copy and paste)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def error(exc: CorralError) -> None:
    stderr = _stderr()
    stderr.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True)
    problems = getattr(exc, "problems", [])
    for problem in problems:
        stderr.print(f"  {problem}", markup=False, soft_wrap=True)
    if exc.hint:
        stderr.print(f"[dim]hint:[/] {exc.hint}", soft_wrap=True)


def progress(message: str) -> None:
    """`· message` on stderr, the dot dim where colour is on; the message is printed as is
    (a whole line per write, under a lock: pushes and pulls report from several threads)."""
    dot = "\x1b[2m·\x1b[0m" if colour(sys.stderr) else "·"
    with _lines:
        sys.stderr.write(f"{dot} {message}\n")
        sys.stderr.flush()


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
    from rich.table import Table

    console = _stdout()
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
    from rich.table import Table

    table = Table(title=f"releases of {service}", box=None, pad_edge=False)
    for column in ("release", "image", "config", "git commit", "created", "live"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["release"], short(row["image"]), short(row["config"]),
                      (row["git_commit"] or "-")[:12], ago(row["created_at"]),
                      "live" if row["live"] else "")
    _stdout().print(table)
