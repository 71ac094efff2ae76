"""Verifying the ledger's hash chain: which entry, if any, is the first one not to be trusted.

Each entry's hash covers its own fields and the previous entry's hash, and entries are
numbered 1, 2, 3, …. So an edited entry no longer matches its hash, a deleted one leaves a
gap in the numbers, and an inserted or reordered one no longer follows its predecessor's
hash. Pure: rows in, verdict out; reading the rows is the engine's job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from json.encoder import encode_basestring_ascii as _quote

from corral.ports.ledger import RawEvent
from corral.ports.records import Event

GENESIS_HASH = "0" * 64
"""The prev_hash of entry 1 (the same constant as stores.rules.GENESIS_HASH)."""


@dataclass(frozen=True)
class ChainPosition:
    """Where verification stands: the last good entry's number and hash."""

    seq: int = 0
    hash: str = GENESIS_HASH


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int  # entries found good
    head: ChainPosition  # the last good entry
    first_bad: int | None = None  # seq of the first entry that cannot be trusted
    problem: str | None = None  # what is wrong with it, for humans


def is_sound_fast(row: RawEvent, previous_hash: str) -> bool:
    """The common case in one step: `row` follows `previous_hash` and its stored text hashes
    to its hash. Event.compute_hash serialises with sorted keys and compact separators, the
    same way stores write `detail`, so the body is rebuilt around the stored text without
    parsing it. False means "look closer" (check_entry), not necessarily "bad".
    """
    if row.prev_hash != previous_hash:
        return False
    body = (f'{{"action":{_quote(row.action)},"actor":{_quote(row.actor)},'
            f'"at":{float.__repr__(row.at) if isinstance(row.at, float) else row.at},'
            f'"detail":{row.detail},"prev":{_quote(row.prev_hash)},"seq":{row.seq},'
            f'"subject":{_quote(row.subject)}}}')
    return hashlib.sha256(body.encode()).hexdigest() == row.hash


def check_entry(row: RawEvent, previous: ChainPosition) -> str | None:
    """What is wrong with `row` as the entry after `previous`, or None if it is sound.

    >>> first = Event(at=1.0, actor="ann", action="a", subject="web").chained(1, GENESIS_HASH)
    >>> raw = RawEvent(1, 1.0, "ann", "a", "web", "{}", GENESIS_HASH, first.hash)
    >>> check_entry(raw, ChainPosition()) is None
    True
    >>> check_entry(RawEvent(1, 1.0, "bob", "a", "web", "{}", GENESIS_HASH, first.hash),
    ...             ChainPosition())
    'entry 1 was edited: its content does not match its hash'
    """
    expected = previous.seq + 1
    if row.seq != expected:
        if row.seq > expected:
            missing = (f"entry {expected} was" if row.seq == expected + 1
                       else f"entries {expected}-{row.seq - 1} were")
            return f"{missing} deleted: entry {row.seq} comes after entry {previous.seq}"
        return f"entry {row.seq} comes after entry {previous.seq}: inserted or reordered"
    if row.prev_hash != previous.hash:
        return (f"entry {row.seq} does not follow entry {previous.seq} (its prev_hash "
                f"{row.prev_hash[:12]}… is not {previous.hash[:12]}…): an entry was "
                "inserted, replaced or reordered here")
    try:
        detail = json.loads(row.detail)
    except ValueError:
        return f"entry {row.seq} was edited: its detail is not JSON any more"
    if not isinstance(detail, dict):
        return f"entry {row.seq} was edited: its detail is not a JSON object any more"
    event = Event(at=row.at, actor=row.actor, action=row.action, subject=row.subject,
                  detail=detail, seq=row.seq, prev_hash=row.prev_hash)
    if event.compute_hash() != row.hash and not _hashed_with_whole_seconds(event, row.hash):
        return f"entry {row.seq} was edited: its content does not match its hash"
    return None


def _hashed_with_whole_seconds(event: Event, expected: str) -> bool:
    """An entry appended with an int time (a test clock) was hashed as `10`, but a REAL
    column reads it back as `10.0`; both spell the same instant."""
    at = event.at
    return float(at).is_integer() and replace(event, at=int(at)).compute_hash() == expected


def verify_chain(rows: Iterable[RawEvent], start: ChainPosition | None = None) -> Verdict:
    """Check `rows` (in seq order) as the continuation of the chain at `start`.

    Stops at the first bad entry: everything after it cannot be trusted either.
    A chain cut short at its end, or extended with correctly chained entries, verifies:
    compare `head` with a copy kept elsewhere to detect that.
    """
    first = start or ChainPosition()
    seq, last_hash = first.seq, first.hash  # plain locals: this loop runs 100,000s of times
    checked = 0
    for row in rows:
        if row.seq != seq + 1 or not is_sound_fast(row, last_hash):
            position = ChainPosition(seq, last_hash)
            problem = check_entry(row, position)
            if problem is not None:
                return Verdict(ok=False, checked=checked, head=position,
                               first_bad=seq + 1 if row.seq > seq + 1 else row.seq,
                               problem=problem)
        seq, last_hash = row.seq, row.hash
        checked += 1
    return Verdict(ok=True, checked=checked, head=ChainPosition(seq, last_hash))
