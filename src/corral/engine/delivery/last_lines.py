"""The last lines an instance wrote, for the message that says it failed.

A deployment that fails because an instance exited says why in the instance's own words,
as flyctl and Kamal do: the reason is followed by the last lines of its stdout and stderr,
read from the driver's files (complete: the process has exited). It reads the ends of two
files and formats them; it stores nothing (the log collector keeps every line).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from corral.ports.records import Instance

COUNT = 10  # lines shown, stderr first in the choice (it usually holds the cause)
TAIL_BYTES = 16 << 10  # read at most this much of the end of each file
WIDTH = 200  # longer lines are cut, so one huge line cannot flood the message

PathsOf = Callable[[str], tuple[Path, Path]]


def file_tail(path: Path, count: int) -> list[str]:
    """The last `count` non-empty lines of the file (its end only), [] if it is missing."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - TAIL_BYTES))
            data = file.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES and lines:
        lines = lines[1:]  # the first one is cut
    kept = [line.rstrip("\r") for line in lines if line.strip() and "\0" not in line]
    return kept[-count:] if count else []


def last_lines(paths: tuple[Path, Path], count: int = COUNT) -> list[tuple[str, str]]:
    """Up to `count` (stream, line) pairs: stdout's last lines, then stderr's.

    The files carry no times, so the two streams cannot be interleaved; stderr gets the
    larger share, since a crash writes its cause there.
    """
    stderr = file_tail(paths[1], count)
    stdout = file_tail(paths[0], count - len(stderr))
    return [("stdout", line) for line in stdout] + [("stderr", line) for line in stderr]


def describe_last_lines(instance: Instance, lines: Sequence[tuple[str, str]]) -> str:
    """The indented block appended to a failure message.

    >>> from corral.ports.records import InstanceState
    >>> i = Instance("web-v2-ab12cd", "web", 2, "sha256:0", "127.0.0.1:1",
    ...              InstanceState.FAILED, 0.0)
    >>> print(describe_last_lines(i, [("stderr", "ImportError: no module named x")]))
      last lines (`corral logs web --instance web-v2-ab12cd`):
        stderr  ImportError: no module named x
    >>> print(describe_last_lines(i, []))
      web-v2-ab12cd wrote nothing to stdout or stderr
    """
    if not lines:
        return f"  {instance.id} wrote nothing to stdout or stderr"
    head = f"  last lines (`corral logs {instance.service} --instance {instance.id}`):"
    body = [f"    {stream}  {_cut(line)}" for stream, line in lines]
    return "\n".join([head, *body])


def with_last_lines(reason: str | None, instances: Sequence[Instance],
                    paths_of: PathsOf | None) -> str | None:
    """`reason`, followed by the last lines of the instance it names (one that exited, or
    never passed its health check), if any of `instances` is named.

    A deployment that failed for another cause (a canary analysis, an abort) keeps its
    reason as it is; so does one on a driver without log files (`paths_of` None).
    """
    if reason is None or paths_of is None:
        return reason
    for instance in instances:
        if instance.id in reason:
            return f"{reason}\n{describe_last_lines(instance, last_lines(paths_of(instance.id)))}"
    return reason


def _cut(line: str) -> str:
    return line if len(line) <= WIDTH else line[:WIDTH - 1] + "…"
