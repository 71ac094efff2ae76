"""How the CLI shows things to humans: tables, progress lines, errors. Presentation only.

Everything fits the screen (cli/terminal.py): tables cut their widest free-text column with
an ellipsis on a terminal, prose wraps at words, and piped output is never wrapped, cut or
padded. Text from users, specs and the engine is printed as is: never read as rich markup
(a hint naming `[services.web]` must keep its brackets).

rich is imported on first use of `console` or `stderr` (it costs ~20 ms of start-up): plain
lines (`line`, `progress`) never need it, so a cached `corral build` does not load it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from corral.cli import terminal
from corral.cli.terminal import Cell, colour, open_line, paint, wrap
from corral.errors import CorralError
from corral.spec.size import format_size

if TYPE_CHECKING:
    from rich.console import Console

    console: Console  # stdout, made on first use (module __getattr__)
    stderr: Console

STATE_STYLES = {"ready": "green", "live": "green", "succeeded": "green", "starting": "yellow",
                "draining": "dim", "stopped": "dim", "unhealthy": "red", "failed": "red",
                "bad": "red", "rolled back": "red", "aborted": "yellow"}
_DIGEST = re.compile(r"sha256:([0-9a-f]{12})[0-9a-f]{52}")


def __getattr__(name: str) -> Any:
    if name not in ("console", "stderr"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    made = globals()
    if "console" not in made:
        made["console"] = _console(lambda: sys.stdout, sys.stdout)
        made["stderr"] = _console(lambda: sys.stderr, sys.stderr)
    return made[name]


def _console(target: Any, stream: IO[str]) -> Console:
    """A rich console that wraps only where there is a width (a terminal, or COLUMNS)."""
    from rich.console import Console

    columns = terminal.width(stream)
    return Console(file=terminal.Settling(target), highlight=False,  # type: ignore[arg-type]
                   width=columns or 100_000, soft_wrap=columns is None,
                   force_terminal=colour(stream) or None, no_color=not colour(stream))


def write(lines: Iterable[str], stream: IO[str] | None = None) -> None:
    """Whole lines (already fitted) on `stream` (stdout by default), after the open line."""
    out = stream or sys.stdout
    with open_line.lock:
        open_line.settle()
        for text in lines:
            out.write(text.rstrip() + "\n")
        out.flush()


def line(text: str) -> None:
    """A plain line on stdout, never wrapped (digests stay whole for copy and paste)."""
    write([text])


def say(text: str, stream: IO[str] | None = None, indent: str = "  ") -> None:
    """Prose on `stream`: wrapped at words to the width when there is one."""
    out = stream or sys.stdout
    write([part for piece in text.split("\n") for part in wrap(piece, out, indent)], out)


def error(exc: CorralError) -> None:
    """`error: message`, each problem, `hint: …`; all text as is (brackets kept)."""
    err = sys.stderr
    lines = wrap(f"error: {exc.message}", err, "  ")
    lines[0] = paint("error:", "bold red", err) + lines[0][len("error:"):]
    for problem in getattr(exc, "problems", []):
        lines += wrap(f"  {problem}", err, "    ")
    if exc.hint:
        hint = wrap(f"hint: {exc.hint}", err, "  ")
        lines += [paint("hint:", "dim", err) + hint[0][len("hint:"):], *hint[1:]]
    write(lines, err)


def progress(message: str) -> None:
    """`· message` on stderr, the dot dim where colour is on. On a terminal the line stays
    open and counts the seconds until the next line (a first debian build takes ~40 s);
    elsewhere a whole line per write, under a lock (pushes and pulls report from several
    threads)."""
    err = sys.stderr
    columns = terminal.width(err)
    # A line too long to stay open with its counter is written whole, wrapped at words.
    if not terminal.is_terminal(err) or columns is None or len(message) + 10 >= columns:
        lines = wrap(f"· {message}", err, "  ")
        write([progress_text(lines[0][2:], 0.0, err), *lines[1:]], err)
        return
    open_line.open("progress", lambda seconds: progress_text(message, seconds, err))


def progress_text(message: str, seconds: float, stream: IO[str]) -> str:
    """`· message`, and from two seconds on how long it has been running: `· … 12 s`."""
    return (f"{paint('·', 'dim', stream)} {message}"
            + (paint(f"  {seconds:.0f} s", "dim", stream) if seconds >= 2 else ""))


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


def shorten(text: str) -> str:
    """Every full sha256 digest in `text` as its first 12 hex (whole ones are in --json).

    >>> shorten("image=sha256:" + "ab" * 32)
    'image=abababababab'
    """
    return _DIGEST.sub(r"\1", text)


def one_line(text: str) -> str:
    """A text of several lines (a reason ending in an instance's last output) as one line
    of a table or record, its lines joined by ' | ' (as written in --json).

    >>> one_line("failed: exited with code 1\\n  stderr  Traceback…")
    'failed: exited with code 1 | stderr  Traceback…'
    """
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


def state(text: str) -> Cell:
    """A state word with its colour (green ready, yellow starting, red failed, …)."""
    return text, STATE_STYLES.get(text.split(" (")[0])


def status(data: dict[str, Any]) -> None:
    out = sys.stdout
    controller = data.get("controller") or {}
    if controller.get("note"):  # engine/operate/status.py: what runs without a controller
        say(controller["note"])
    limits = controller.get("limits")
    if limits and not limits["enforced"]:  # say what runs unlimited, and why
        say(f"note: {limits['how']}")
    if not data["services"]:
        say("no services deployed yet: run `corral deploy`")
    for service in data["services"]:
        live = service["live_release"]
        traffic = "  ".join(f"{label} {share:g}%" for label, share in
                            sorted(service["traffic"].items(), key=by_release)) or "none"
        head = wrap(f"{service['name']}  live {f'v{live}' if live else '-'}  listen "
                    f"{service['listen'] or '-'}  traffic: {traffic}", out, "  ")
        head[0] = paint(service["name"], "bold", out) + head[0][len(service["name"]):]
        if service.get("note"):  # the router's listen differs from what releases ask
            head += wrap(f"note: {service['note']}", out, "  ")
        # Under 100 columns the pid (in --json and `status --instance`) leaves its room to
        # the note.
        pid = (terminal.width(out) or 100) >= 100
        # memory and cpu against their limits, when the driver measures them
        used = any(i.get("usage") for i in service["instances"])
        rows = [[i["id"], i["release"], state(i["state"]), i["address"],
                 *([str(i["pid"] or "-")] if pid else []), ago(i["since"]),
                 *(usage_cells(i.get("usage")) if used else []),
                 shorten(one_line(i["reason"] or ""))] for i in service["instances"]]
        headers = ("instance", "release", "state", "address", *(("pid",) if pid else ()),
                   "started", *(("memory", "cpu") if used else ()), "note")
        lines = head + terminal.table(headers, rows, out, shrink=(len(headers) - 1, 3, 0))
        last = service.get("last_deployment")
        if last:
            was = f"v{last['from']}" if last["from"] else "nothing"
            lines += wrap(f"last deployment #{last['id']}: {was} -> v{last['to']} "
                          f"{last['outcome']} {ago(last['started_at'])}"
                          + (f" ({one_line(last['reason'])})" if last["reason"] else ""),
                          out, "  ")
        write([*lines, ""])


def usage_cells(usage: dict[str, Any] | None) -> list[str]:
    """(memory, cpu) of one instance against its limits, as `status` prints them.

    >>> usage_cells({"memory": 31 << 20, "memory_limit": 64 << 20, "cpu_seconds": 1.25,
    ...              "cpus": 0.5})
    ['31M/64M', '1.2s (max 0.5)']
    >>> usage_cells({"memory": 1 << 20, "memory_limit": None, "cpu_seconds": None,
    ...              "cpus": None}), usage_cells(None)
    (['1M/-', '-'], ['-', '-'])
    """
    if not usage:
        return ["-", "-"]
    memory = "-" if usage["memory"] is None else format_size(usage["memory"])
    limit = "-" if usage["memory_limit"] is None else format_size(usage["memory_limit"])
    cpu = "-" if usage["cpu_seconds"] is None else f"{usage['cpu_seconds']:.1f}s"
    if usage["cpus"] is not None:
        cpu += f" (max {usage['cpus']:g})"
    return [f"{memory}/{limit}", cpu]


def releases(service: str, rows: list[dict[str, Any]]) -> None:
    out = sys.stdout
    table = [[row["release"], short(row["image"]), short(row["config"]),
              (row["git_commit"] or "-")[:12] + ("-dirty" if row.get("dirty") else ""),
              ago(row["created_at"]),
              state(row.get("outcome") or ("live" if row["live"] else ""))]
             for row in sorted(rows, key=lambda r: r.get("version") or 0)]
    write([f"releases of {service}", *terminal.table(
        ("release", "image", "config", "git commit", "created", "outcome"), table, out,
        shrink=(5,))])


def by_release(item: tuple[str, Any]) -> tuple[int, str]:
    """Natural order of (release label, …) pairs: v8 before v10.

    >>> sorted([("v10", 1), ("v8", 2)], key=by_release)
    [('v8', 2), ('v10', 1)]
    """
    label = item[0]
    return (int(label[1:]), label) if label[1:].isdigit() else (1 << 62, label)
