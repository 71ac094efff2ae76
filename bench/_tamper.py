"""Tampering through the layer cache while corral serves (for bench/operate.py).

A file of the Debian base layer is appended to through its hardlink in
`.corral/cache/layers/<hex>/root/`, not through the root the instances run on; then the
router is asked, as fast as it answers, which instance served (the demo app names it),
until it has served only instances started after the tamper for a full second. The
figure is the time from the write to the first answer of that clean second: after it, no
instance running on the tampered inode was served again.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

TAMPERED = "etc/debian_version"  # in every Debian base layer, hardlinked into the roots


def _instance(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(json.loads(response.read())["instance"])
    except (OSError, ValueError, KeyError):
        return None


def cache_path(project: Path) -> Path | None:
    """The layer cache's link of TAMPERED, if a served root shares its inode."""
    for path in sorted((project / ".corral" / "cache" / "layers").glob(f"*/root/{TAMPERED}")):
        if path.stat().st_nlink > 1:
            return path
    return None


def tamper_to_replaced(project: Path, url: str, clean_for: float = 1.0,
                       timeout: float = 60.0) -> dict[str, float | int | str | None]:
    """Seconds from a write through the layer cache until only fresh instances serve."""
    target = cache_path(project)
    if target is None:
        return {"tamper_s": None, "error": "no layer-cache file shared with a served root"}
    before = {i for i in (_instance(url) for _ in range(90)) if i}
    began = time.monotonic()
    with open(target, "ab") as f:  # the tamper: one line more, through the cache's link
        f.write(b"tampered\n")
    clean_since: float | None = None
    answers = old_answers = 0
    while time.monotonic() - began < timeout:
        served = _instance(url)
        now = time.monotonic()
        answers += 1
        if served is None or served in before:
            old_answers += served is not None
            clean_since = None
        elif clean_since is None:
            clean_since = now
        elif now - clean_since >= clean_for:
            return {"tamper_s": round(clean_since - began, 4), "answers": answers,
                    "old_answers": old_answers, "file": f"/{TAMPERED}"}
        time.sleep(0.005)
    return {"tamper_s": None, "error": f"old instances still served after {timeout:g}s"}
