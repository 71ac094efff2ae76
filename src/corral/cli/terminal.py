"""What the screen takes: its width, colour, tables that fit it, prose wrapped at words, and
the one open line (a progress line with an elapsed counter, a health wait) on a terminal.

Rules: a width only on a terminal (or when COLUMNS says so); with no width nothing is
wrapped, truncated or padded, so piped output is one record a line. No line ever ends in
spaces. Plain str in, plain str out: no rich here (it costs start-up time).
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

_ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
_SGR = re.compile(r"\x1b\[[0-9;]*m")
GAP = "  "


def width(stream: IO[str]) -> int | None:
    """Columns to fit: COLUMNS when set (the user's word, also for a pipe), else the
    terminal's, else None: not a terminal, so never wrap nor cut."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
        if columns > 0:
            return columns
    except ValueError:
        pass
    if not is_terminal(stream):
        return None
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (OSError, ValueError):
        return None


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def colour(stream: IO[str]) -> bool:
    """Whether to colour `stream`, by the conventions rich follows: FORCE_COLOR, NO_COLOR,
    TERM=dumb, else only on a terminal."""
    if os.environ.get("FORCE_COLOR"):
        return True
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def paint(text: str, style: str | None, stream: IO[str]) -> str:
    """`text` in `style` ("bold red", "green", …) when `stream` takes colour."""
    if not style or not colour(stream):
        return text
    codes = ";".join(_ANSI[word] for word in style.split() if word in _ANSI)
    return f"\x1b[{codes}m{text}\x1b[0m" if codes else text


def visible(text: str) -> int:
    return len(_SGR.sub("", text))


def cut(text: str, room: int) -> str:
    """`text` in at most `room` characters, an ellipsis marking what was cut."""
    if len(text) <= room:
        return text
    return text[:max(0, room - 1)] + "…" if room > 0 else ""


def wrap(text: str, stream: IO[str], indent: str = "") -> list[str]:
    """`text` (already indented by its first line) as lines that fit `stream`, continued
    under `indent`; words are never broken (a digest or path longer than the width stays
    whole). Without a width: one line."""
    columns = width(stream)
    if columns is None or len(text) <= columns:
        return [text.rstrip()]
    lines = textwrap.wrap(text, columns, subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False, drop_whitespace=True)
    return [line.rstrip() for line in lines] or [""]


Cell = str | tuple[str, str | None]  # text, or (text, style)


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], stream: IO[str],
          shrink: Sequence[int] = (), right: Sequence[int] = ()) -> list[str]:
    """Rows aligned in columns, two spaces apart, the last one never padded; `right`
    columns (indexes) aligned right. When a width is known and the rows are wider, the
    `shrink` columns (the first given shrinks first) are cut with an ellipsis until they
    fit.

    >>> import io
    >>> print("\\n".join(table(("a", "size"), [("x", "1 MB"), ("yy", "10 MB")], io.StringIO(),
    ...                         right=(1,))))
    a    size
    x    1 MB
    yy  10 MB
    """
    texts = [[c if isinstance(c, str) else c[0] for c in row] for row in rows]
    styles = [[None if isinstance(c, str) else c[1] for c in row] for row in rows]
    sizes = [max([len(h)] + [len(r[n]) for r in texts]) for n, h in enumerate(headers)]
    columns = width(stream)
    if columns is not None:
        over = sum(sizes) + len(GAP) * (len(sizes) - 1) - columns
        for n in shrink:
            if over <= 0:
                break
            take = min(over, sizes[n] - max(4, len(headers[n])))
            if take > 0:
                sizes[n] -= take
                over -= take
    lines = [_row(list(headers), [None] * len(headers), sizes, stream, right, "dim")]
    lines += [_row(t, s, sizes, stream, right) for t, s in zip(texts, styles, strict=True)]
    return lines


def _row(texts: list[str], styles: Sequence[str | None], sizes: list[int], stream: IO[str],
         right: Sequence[int], style_all: str | None = None) -> str:
    cells = []
    for n, (text, style) in enumerate(zip(texts, styles, strict=True)):
        shown = cut(text, sizes[n])
        pad = " " * (sizes[n] - len(shown))
        painted = paint(shown, style or style_all, stream)
        cells.append(pad + painted if n in right else
                     painted + ("" if n == len(texts) - 1 else pad))
    return GAP.join(cells).rstrip()


class OpenLine:
    """The last line on a terminal's stderr, left open to be redrawn: a progress line gains
    an elapsed counter after two seconds; a wait line is replaced by the next one. Any other
    output settles it first (a newline ends it, as it was last drawn)."""

    def __init__(self, stream: Callable[[], IO[str]] = lambda: sys.stderr,
                 clock: Callable[[], float] = time.monotonic, tick: float = 0.5) -> None:
        self.lock = threading.RLock()
        self._stream = stream
        self._clock = clock
        self._tick = tick
        self._draw: Callable[[float], str] | None = None
        self._kind = ""
        self._since = 0.0
        self._shown = ""
        self._ticker: threading.Thread | None = None

    def open(self, kind: str, draw: Callable[[float], str]) -> None:
        """Show draw(seconds since opened), redrawn every tick; a line of the same kind
        "wait" is replaced, any other is settled."""
        with self.lock:
            if self._draw is not None and (kind != "wait" or self._kind != kind):
                self.settle()
            self._draw, self._kind, self._since = draw, kind, self._clock()
            self._shown = ""
            self.redraw()
            if self._ticker is None and self._tick > 0:
                atexit.register(self.settle)
                self._ticker = threading.Thread(target=self._run, name="open-line",
                                                daemon=True)
                self._ticker.start()

    def settle(self) -> None:
        """End the open line: a progress line stays as last drawn, a wait line goes (what
        it waited for is told by the line that follows)."""
        with self.lock:
            if self._draw is not None:
                self._draw = None
                out = self._stream()
                out.write("\r\x1b[K" if self._kind == "wait" else "\n")
                out.flush()

    def redraw(self) -> None:
        with self.lock:
            if self._draw is None:
                return
            out = self._stream()
            text = self._draw(self._clock() - self._since)
            columns = width(out) or 80
            # Never reach the last column: a wrapped line cannot be redrawn with \r.
            if visible(text) >= columns:
                text = cut(_SGR.sub("", text), columns - 1)
            if text == self._shown:
                return
            self._shown = text
            out.write(f"\r{text}\x1b[K")
            out.flush()

    def _run(self) -> None:
        while True:
            time.sleep(self._tick)
            self.redraw()


open_line = OpenLine()


class Settling:
    """A text stream for rich that settles the open line before writing and strips the
    spaces rich pads lines with (tables, wrapped prose)."""

    _PADDED = re.compile(r" +((?:\x1b\[[0-9;]*m)*)\n")

    def __init__(self, target: Callable[[], IO[str]]) -> None:
        self._target = target

    def write(self, text: str) -> int:
        with open_line.lock:
            open_line.settle()
            self._target().write(self._PADDED.sub(r"\1\n", text))
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return is_terminal(self._target())

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"
