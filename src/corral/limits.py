"""Process limits corral's long-lived processes raise for themselves at start."""

from __future__ import annotations

import contextlib
import resource


def raise_open_file_limit() -> None:
    """The soft limit on open files up to the hard one. The router holds two sockets per
    proxied request, the controller a few descriptors per instance (a pidfd, a mount table,
    log files): the usual soft limit of 1024 is low for either at a few hundred."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
