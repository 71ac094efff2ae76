"""`make bench-observe`: log ingest, log queries and ledger verification, each against a peer
measured in the same run.

1. Ingest: 10 writer processes (plain Python, not sandboxed) each append LINES lines as fast
   as they can to their own stdout file, as the process driver's instances do; the real
   LogCollector + SqliteLogStore read them into a fresh logs.db. Throughput is lines stored
   per second from the writers' start to the last line stored, checked for loss (every line
   of every writer, in order). Peer: `cat` of the same 10 files into one file.
2. Query: 1,000,000 lines in a logs.db; a filtered query (service, release, last 10 minutes,
   a regular expression, newest 100) through LogStore.query. Peer: `grep -c` of the same
   expression over the same lines as a flat file.
3. Verify: a state.db ledger of 100,000 chained entries checked by engine.ledger.verify.
   Peer: reading the same rows without checking them (the I/O floor).
Everything runs in a temporary folder and every process started is waited for.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corral.engine.observe.ledger import verify
from corral.engine.observe.logs import LogCollector, Watched
from corral.observe.logstore import SqliteLogStore
from corral.ports.logs import LogLine, LogQuery, LogSource
from corral.ports.records import Event
from corral.stores import SqlStore
from corral.stores.rules import link_event

WRITER = r"""
import sys
n, name = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
for i in range(n):
    out.write(f"2024-05-01T12:00:00Z {name} GET /api/items/{i % 977} status=200 "
              f"dur_ms={i % 89} seq={i}\n")
out.flush()
"""


def ingest(folder: Path, writers: int, lines: int) -> dict[str, float]:
    files = [folder / f"w{n}" / "stdout.log" for n in range(writers)]
    for file in files:
        file.parent.mkdir(parents=True)
        file.with_name("stderr.log").touch()
    store = SqliteLogStore(folder / "logs.db")
    sources = [LogSource(f"w{n}", "web", 1, "sha256:" + "a" * 64, "c0ffee")
               for n in range(writers)]
    live = {s.instance: s for s in sources}
    collector = LogCollector(store, lambda: [Watched(s) for s in live.values()],
                             lambda i: (folder / i / "stdout.log", folder / i / "stderr.log"),
                             time.time, interval=0.05, settle=0.0)
    started = time.perf_counter()
    procs = []
    for n, file in enumerate(files):
        with open(file, "wb") as out:
            procs.append(subprocess.Popen([sys.executable, "-c", WRITER, str(lines), f"w{n}"],
                                          stdout=out))
    collector.start()
    for proc in procs:
        proc.wait()
    live.clear()  # the instances are gone: the collector drains and closes their files
    expected = writers * lines
    while collector.lines_stored < expected and time.perf_counter() - started < 600:
        time.sleep(0.02)  # (not store.count(): counting 2M rows would itself slow ingest)
    elapsed = time.perf_counter() - started
    collector.stop()
    lost = _check_order(store, writers, lines)
    store.close()
    cat_s = _time([["sh", "-c", f"cat {' '.join(map(str, files))} > {folder / 'all.log'}"]])
    rate = expected / elapsed
    return {"lines": expected, "seconds": elapsed, "rate": rate, "lost": lost,
            "cat_rate": expected / cat_s, "cat_s": cat_s}


def _check_order(store: SqliteLogStore, writers: int, lines: int) -> int:
    lost = 0
    for n in range(writers):
        got = store.query(LogQuery(instance=f"w{n}", stream="stdout", limit=lines + 10))
        numbers = [int(line.message.rsplit("seq=", 1)[1]) for line in got]
        lost += lines - len(numbers) if numbers == list(range(len(numbers))) else lines
    return lost


def _time(commands: list[list[str]]) -> float:
    started = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True)
    return time.perf_counter() - started


def query(folder: Path, total: int) -> dict[str, float]:
    store = SqliteLogStore(folder / "query.db")
    now = time.time()
    rng = random.Random(7)
    flat = open(folder / "flat.log", "w")  # noqa: SIM115
    services = [("web", 3), ("api", 2), ("worker", 2), ("auth", 1), ("search", 2)]
    batch: list[LogLine] = []
    for i in range(total):
        service, releases = services[i % len(services)]
        release = 1 + (i // 7) % releases
        source = LogSource(f"{service}-{release}-{i % 3}", service, release,
                           "sha256:" + "b" * 64, None)
        status = 500 if rng.random() < 0.01 else 200
        message = f"GET /api/items/{i % 977} status={status} dur_ms={i % 89} seq={i}"
        at = now - 3600 + 3600 * i / total
        batch.append(LogLine(at, source, "stdout", message))
        flat.write(f"{at:.3f} {service} v{release} {message}\n")
        if len(batch) == 50_000:
            store.append(batch)
            batch = []
    store.append(batch)
    flat.close()
    wanted = LogQuery(service="web", release=2, since=now - 600, grep=r"status=5\d\d", limit=100)
    runs = []
    for _ in range(7):
        started = time.perf_counter()
        found = store.query(wanted)
        runs.append((time.perf_counter() - started) * 1000)
    plain = LogQuery(service="web", release=2, since=now - 600, limit=100)
    plain_runs = []
    for _ in range(7):
        started = time.perf_counter()
        store.query(plain)
        plain_runs.append((time.perf_counter() - started) * 1000)
    store.close()
    grep_ms = _time([["sh", "-c", f"grep -cE 'status=5[0-9][0-9]' {folder / 'flat.log'} "
                                  "> /dev/null"]]) * 1000
    return {"lines": total, "ms": statistics.median(runs), "found": len(found),
            "plain_ms": statistics.median(plain_runs), "grep_ms": grep_ms}


def ledger(folder: Path, entries: int) -> dict[str, float]:
    store = SqlStore(f"sqlite:///{folder / 'state.db'}")
    store.close()
    import sqlite3

    conn = sqlite3.connect(folder / "state.db")
    last_seq, last_hash, rows = 0, None, []
    for n in range(entries):
        event = link_event(Event(at=1_700_000_000.0 + n, actor="ann", action="instance.ready",
                                 subject=f"web/web-{n % 50}",
                                 detail={"reason": "health check passed", "n": n}),
                           last_seq, last_hash)
        last_seq, last_hash = event.seq, event.hash
        rows.append((event.seq, event.at, event.actor, event.action, event.subject,
                     f'{{"n":{n},"reason":"health check passed"}}', event.prev_hash,
                     event.hash))
    with conn:
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    store = SqlStore(f"sqlite:///{folder / 'state.db'}")
    started = time.perf_counter()
    verdict = verify(store)
    verify_s = time.perf_counter() - started
    started = time.perf_counter()
    read = 0
    after = 0
    while True:
        chunk = store.raw_events(since_seq=after, limit=20_000)
        read += len(chunk)
        if len(chunk) < 20_000:
            break
        after = chunk[-1].seq
    read_s = time.perf_counter() - started
    store.close()
    assert verdict.ok and verdict.checked == entries and read == entries, verdict
    return {"entries": entries, "verify_s": verify_s, "read_s": read_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="lines per writer")
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-observe-") as tmp:
        folder = Path(tmp)
        (folder / "ingest").mkdir()
        print("bench: ingest (10 writer processes → collector → logs.db) …", flush=True)
        got = ingest(folder / "ingest", 10, args.lines)
        print(f"bench: query over {args.stored:,} stored lines …", flush=True)
        asked = query(folder, args.stored)
        print(f"bench: ledger verify over {args.entries:,} entries …", flush=True)
        checked = ledger(folder, args.entries)
    rows = [
        ("log ingest, 10 writers", f"{got['rate']:,.0f} lines/s", f"{got['lines']:,} lines, "
         f"{got['lost']} lost", f"cat: {got['cat_rate']:,.0f} lines/s",
         f"{got['rate'] / got['cat_rate']:.3f}"),
        ("filtered query, grep", f"{asked['ms']:.1f} ms", f"{asked['found']} found",
         f"grep -c: {asked['grep_ms']:.0f} ms", f"{asked['ms'] / asked['grep_ms']:.3f}"),
        ("filtered query, no grep", f"{asked['plain_ms']:.1f} ms", "100 newest", "", ""),
        ("ledger verify", f"{checked['verify_s']:.2f} s", f"{checked['entries']:,} entries",
         f"read only: {checked['read_s']:.2f} s",
         f"{checked['verify_s'] / checked['read_s']:.2f}"),
    ]
    print(f"\n{'measure':<26}{'corral':>18}  {'detail':<24}{'peer':<28}{'ratio':>7}")
    for name, value, detail, peer, ratio in rows:
        print(f"{name:<26}{value:>18}  {detail:<24}{peer:<28}{ratio:>7}")
    print("goals: ingest >= 50,000 lines/s without loss; query < 200 ms; verify 100k < 1 s")
    print(f"RESULT ingest_lines_per_s={got['rate']:.0f} lost={got['lost']} "
          f"cat_ratio={got['rate'] / got['cat_rate']:.4f} query_ms={asked['ms']:.1f} "
          f"query_grep_ratio={asked['ms'] / asked['grep_ms']:.3f} "
          f"verify_100k_s={checked['verify_s']:.3f}")


if __name__ == "__main__":
    main()
