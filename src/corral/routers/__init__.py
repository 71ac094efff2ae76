"""Routers: the traffic entry point of each service (the data plane).

`builtin` is a separate asyncio process driven over a unix control socket; `fake` is the
in-memory twin for tests. Nothing here decides weights: the controller states them.
"""

from __future__ import annotations
