"""The builtin router: an asyncio + uvloop + httptools reverse proxy in its own process.

`BuiltinRouter` (client.py) is the Router port the controller uses; the process itself is
`python -m corral.routers.builtin` (see __main__.py, control.py for the socket protocol).
"""

from __future__ import annotations

from corral.routers.builtin.client import BuiltinRouter

__all__ = ["BuiltinRouter"]
