"""HAProxy's runtime API (the admin stats socket): send one command, parse what comes back.

Blocking, one connection per command, as HAProxy's CLI expects in non-interactive mode.
Parsing is pure and tested with captured output.
"""

from __future__ import annotations

import csv
import io
import socket


class RuntimeUnavailable(OSError):
    """Nothing answers on the stats socket."""


def command(path: str, line: str, timeout: float = 5.0) -> str:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(line.encode() + b"\n")
            parts = []
            while chunk := sock.recv(65536):
                parts.append(chunk)
    except OSError as exc:
        raise RuntimeUnavailable(f"HAProxy does not answer on {path}: {exc}") from exc
    return b"".join(parts).decode("utf-8", "replace")


def parse_stat_csv(text: str) -> list[dict[str, str]]:
    """`show stat` CSV: a header line starting with '# ', then one row per proxy/server."""
    body = text.lstrip("# ")
    return [row for row in csv.DictReader(io.StringIO(body)) if row.get("pxname")]


def parse_info(text: str) -> dict[str, str]:
    """`show info`: 'Key: value' lines."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def is_error(answer: str) -> bool:
    """HAProxy answers a refused command with a message; success is empty or informative."""
    lowered = answer.strip().lower()
    return any(word in lowered for word in ("unknown", "no such", "require", "invalid",
                                            "not found", "cannot", "error"))
