"""Pipeline decisions: which commit runs next, whether a deploy stage may move an
environment, and how a run ends. Pure: git answers and the store's facts are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Queue:
    """The watcher's work: the run in progress and at most one commit waiting. A newer
    commit replaces the waiting one (which is superseded, never run)."""

    running: str | None = None
    waiting: str | None = None


def enqueue(queue: Queue, commit: str) -> tuple[Queue, str | None]:
    """`queue` with `commit` waiting, and the commit it superseded, if any.

    >>> enqueue(Queue(running="a"), "b")
    (Queue(running='a', waiting='b'), None)
    >>> enqueue(Queue(running="a", waiting="b"), "c")
    (Queue(running='a', waiting='c'), 'b')
    >>> enqueue(Queue(running="a", waiting="b"), "b")
    (Queue(running='a', waiting='b'), None)
    """
    if commit in (queue.waiting, queue.running):
        return queue, None
    return Queue(queue.running, commit), queue.waiting


def deploy_verdict(commit: str, live_commit: str | None, is_ancestor_of_live: bool,
                   rolled_back_commits: set[str]) -> str | None:
    """Why a deploy stage must not move an environment to `commit` (None: it may).

    Rollback wins over GitOps: a commit a rollback left in that environment is never
    deployed again by the pipeline; only a newer commit moves it. A commit older than the
    live one (an ancestor of it) is never deployed either.

    >>> deploy_verdict("b", "a", False, set()) is None
    True
    >>> deploy_verdict("a", "b", True, set())
    'commit a is older than b, which is live'
    >>> deploy_verdict("b", "a", False, {"b"})
    'commit b was rolled back here; only a newer commit moves this environment'
    """
    if commit in rolled_back_commits:
        return (f"commit {commit[:12]} was rolled back here; only a newer commit moves this "
                "environment")
    if live_commit is not None and commit != live_commit and is_ancestor_of_live:
        return f"commit {commit[:12]} is older than {live_commit[:12]}, which is live"
    return None


def run_outcome(outcomes: list[str]) -> str:
    """A run's outcome from its stages' (in order): the first that did not pass.

    >>> run_outcome(["passed", "passed"]), run_outcome(["passed", "failed"])
    ('succeeded', 'failed')
    >>> run_outcome(["passed", "skipped"])
    'skipped'
    """
    for outcome in outcomes:
        if outcome != "passed":
            return outcome
    return "succeeded"


def is_push_to(ref: str | None, branch: str) -> bool:
    """Whether a push webhook's `ref` concerns `branch`: its own ref, or no ref at all (a
    body without one, such as a host's ping, makes the watcher look anyway).

    >>> is_push_to("refs/heads/main", "main"), is_push_to(None, "main")
    (True, True)
    >>> is_push_to("refs/heads/dev", "main"), is_push_to("refs/tags/main", "main")
    (False, False)
    """
    return ref is None or ref == f"refs/heads/{branch}"


def is_signed_push(secret: bytes, body: bytes, headers: Mapping[str, str]) -> bool:
    """True if `body` carries a valid HMAC-SHA256 signature by `secret`, as GitHub
    (`X-Hub-Signature-256: sha256=HEX`) and Gitea/Forgejo (`X-Gitea-Signature: HEX`) send
    it. Compared in constant time; no secret, no trust.

    >>> body = b'{"ref": "refs/heads/main"}'
    >>> mac = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    >>> is_signed_push(b"k", body, {"x-hub-signature-256": "sha256=" + mac})
    True
    >>> is_signed_push(b"k", body + b" ", {"x-hub-signature-256": "sha256=" + mac})
    False
    >>> is_signed_push(b"", body, {"x-gitea-signature": mac})
    False
    """
    if not secret:
        return False
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get("x-hub-signature-256", "").removeprefix("sha256=") \
        or lowered.get("x-gitea-signature", "")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return bool(given) and hmac.compare_digest(given, expected)
