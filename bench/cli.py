"""`make bench-cli`: the CLI's start-up, the part of every command's latency paid before it
does anything (issue 3: cached rebuild < 0.3 s; issue 4: rollback latency).

In a scaffolded project in a temporary folder, with its controller up (nothing deployed):
median wall time of N runs of a fully cached `corral build`, `corral status --json` and
`corral rollback web --json` (answered by the controller: nothing to roll back to), against
the peer measured in the same run, the bare interpreter (`python -c pass`); and each
command's import time (sum of `-X importtime`, least of N runs). The controller is stopped
and the folder removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
CORRAL = ROOT / ".venv" / "bin" / "corral"
_TOP = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S)")


def run(argv: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=600)
    if check and done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done


def wall(argv: list[str], cwd: Path, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run(argv, cwd, check=False)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def import_ms(args: list[str], cwd: Path, runs: int) -> float:
    """Least summed top-level import time of `corral ARGS` (the least is the least noisy)."""
    best = float("inf")
    for _ in range(runs):
        done = run([str(PYTHON), "-X", "importtime", str(CORRAL), *args], cwd, check=False)
        total = sum(int(m.group(1)) for m in map(_TOP.match, done.stderr.splitlines()) if m)
        best = min(best, total / 1000)
    return best


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    commands = {"build (fully cached)": ["build"], "status --json": ["status", "--json"],
                "rollback web --json": ["rollback", "web", "--json"]}
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-cli-") as tmp:
        project = Path(tmp)
        run([str(CORRAL), "init", "--port", str(free_port())], project)
        run([str(CORRAL), "build"], project)  # warms the machine-wide debootstrap cache
        run([str(CORRAL), "up", "-d"], project)
        try:
            floor = wall([str(PYTHON), "-c", "pass"], project, runs)
            rows.append(("peer: python -c pass", f"{floor * 1000:.0f} ms", ""))
            measured = {}
            for name, args in commands.items():
                took = wall([str(CORRAL), *args], project, runs)
                measured[name] = took
                rows.append((f"corral {name}", f"{took * 1000:.0f} ms",
                             f"{took / floor:.1f}x python; imports "
                             f"{import_ms(args, project, runs):.0f} ms"))
        finally:
            run([str(CORRAL), "down"], project, check=False)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure (median of ' + str(runs) + ' runs, wall)':{width}}  {'value':>8}  note")
    for name, value, note in rows:
        print(f"{name:{width}}  {value:>8}  {note}")
    print(f"RESULT cached_build_s={measured['build (fully cached)']:.3f} "
          f"status_s={measured['status --json']:.3f} "
          f"rollback_s={measured['rollback web --json']:.3f} python_s={floor:.3f} "
          f"build_vs_python={measured['build (fully cached)'] / floor:.1f}")


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode is cached
    main()
