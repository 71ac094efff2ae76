"""`make demo`: corral end to end, as a user would type it, under live traffic.

Scaffolds a sample app in demo-work/, starts corral, deploys v1 (3 instances behind the
router), rolls to v2 while a load generator keeps requests flowing, then tries a bad v3
whose health check never passes (corral refuses it and v2 keeps serving), and ends with
one summary line. Everything it started is stopped unless --keep (or KEEP=1) is given.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "demo-work"
CORRAL = [str(ROOT / ".venv" / "bin" / "corral")]
PORT = int(os.environ.get("DEMO_PORT", "18080"))


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def corral(*args: str, check: bool = True, quiet: bool = False
           ) -> subprocess.CompletedProcess[str]:
    say("$ corral " + " ".join(args))
    done = subprocess.run([*CORRAL, *args], cwd=WORK, text=True, stdout=subprocess.PIPE)
    if done.stdout.strip() and not quiet:
        print(done.stdout.rstrip(), flush=True)
    if check and done.returncode != 0:
        raise SystemExit(f"demo: `corral {' '.join(args)}` failed (exit {done.returncode})")
    return done


def set_spec(version: str, fail_health: bool = False) -> None:
    spec = WORK / "corral.toml"
    text = spec.read_text()
    env = f'APP_VERSION = "{version}"' + (', FAIL_HEALTH = "1"' if fail_health else "")
    text = re.sub(r"env = \{ APP_VERSION = [^}]*\}", f"env = {{ {env} }}", text)
    # The bad release gets a short start timeout so the demo does not wait 30 s for it.
    timeout = '"5s"' if fail_health else '"30s"'
    text = re.sub(r'start_timeout = "[^"]*"', f"start_timeout = {timeout}", text)
    spec.write_text(text)


@dataclass
class Load:
    """Keep-alive clients sending GET / to the router; every answer is recorded."""

    clients: int = 4
    results: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, version)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
        while not self.stop.is_set():
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                response.read()
                version = response.getheader("X-App-Version", "?")
                self.results.append((time.time(), response.status, version))
            except (OSError, http.client.HTTPException) as exc:
                self.results.append((time.time(), 0, type(exc).__name__))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            time.sleep(0.002)

    def failed(self, since: float = 0.0) -> int:
        return sum(1 for t, status, _ in self.results if t >= since and status != 200)

    def last_of(self, version: str) -> float | None:
        times = [t for t, status, v in self.results if status == 200 and v == version]
        return max(times) if times else None


def prepare() -> None:
    if (WORK / ".corral").exists():
        subprocess.run([*CORRAL, "down"], cwd=WORK, capture_output=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    corral("init", "--name", "demo", "--port", str(PORT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", default=os.environ.get("KEEP") == "1",
                        help="leave corral and the app running at the end")
    keep = parser.parse_args().keep
    prepare()
    try:
        summary, ok = run_demo()
    finally:
        if keep:
            say(f"still running (KEEP): curl http://127.0.0.1:{PORT}/ ; "
                f"stop with: cd {WORK} && ../.venv/bin/corral down")
        else:
            corral("down", check=False)
    print(summary, flush=True)  # the last line, always
    return 0 if ok else 1


def run_demo() -> tuple[str, bool]:
    say("building the v1 image (the first build makes a Debian root with debootstrap, "
        "about a minute; later builds are cached)")
    corral("build")
    corral("up", "-d")
    corral("deploy", "web")
    corral("status")

    load = Load()
    load.start()
    time.sleep(1.0)
    say("live traffic is flowing; rolling to v2")
    set_spec("2")
    started = time.time()
    corral("deploy", "web")
    deployed = time.time()
    time.sleep(1.0)
    last_v1 = load.last_of("1")
    switch = max(0.0, (last_v1 or started) - started)
    say(f"v2 deployed in {deployed - started:.1f}s; the last v1 answer came "
        f"{switch:.2f}s after `corral deploy` began")

    say("now a bad v3 whose health check never passes")
    set_spec("3", fail_health=True)
    bad_started = time.time()
    outcome = corral("deploy", "web", check=False)
    time.sleep(0.5)
    load.finish()
    stray_v3 = sum(1 for t, _, v in load.results if t >= bad_started and v == "3")
    say(f"v3 refused (exit {outcome.returncode}); answers from v3 while it tried: {stray_v3}; "
        f"v2 kept serving")
    corral("status")
    releases = json.loads(corral("releases", "web", "--json", quiet=True).stdout)["releases"]
    say(f"releases recorded: {', '.join(r['release'] for r in releases)}")

    requests = len(load.results)
    failed = load.failed()
    summary = f"demo: v1 -> v2 requests={requests} failed={failed} switch_seconds={switch:.2f}"
    return summary, failed == 0 and outcome.returncode != 0 and stray_v3 == 0


if __name__ == "__main__":
    sys.exit(main())
