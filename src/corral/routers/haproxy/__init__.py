"""The `haproxy` router: HAProxy as the data plane, driven through its runtime API.

`HaproxyRouter` (client.py) is the Router port; config.py renders haproxy.cfg, runtime.py
speaks the stats socket, state.py maps server slots to releases, stats.py builds ReleaseStats.
"""

from __future__ import annotations

from corral.routers.haproxy.client import HaproxyRouter

__all__ = ["HaproxyRouter"]
