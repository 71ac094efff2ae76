"""The launcher's redactor: what an app prints reaches its log file with every secret value
replaced, even when a value arrives split across two writes, and the last line without a
newline is kept."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from corral.drivers.launcher import pump


def test_values_split_across_writes_are_redacted_and_nothing_else_changes(
        tmp_path: Path) -> None:
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT)
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    worker = threading.Thread(target=pump, args=({out_r: out, err_r: err},
                                                 [b"hunter2-long", b"hunter2"]))
    worker.start()
    os.write(out_w, b"password=hunt")
    os.write(out_w, b"er2-long ok\nplain line\nshort hunter2 and hunter2\nlast hunter2")
    os.write(err_w, b"err hunter2\n")
    os.close(out_w)
    os.close(err_w)
    worker.join(timeout=10)
    assert not worker.is_alive()
    for fd in (out, err, out_r, err_r):
        os.close(fd)
    assert out_path.read_text() == ("password=[redacted] ok\nplain line\n"
                                    "short [redacted] and [redacted]\nlast [redacted]")
    assert err_path.read_text() == "err [redacted]\n"
