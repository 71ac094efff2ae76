"""TLS for the registry client, with its certificate store loaded on the first https
connection instead of when the client is made: a push to a loopback registry (plain http)
never pays the ~30 ms of parsing a CA bundle.

It must never weaken verification: every https connection checks the certificate chain and
the host name against SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle (what httpx's
default would load).
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
from typing import Any

_LOADING = threading.Lock()


class LazyTrustContext(ssl.SSLContext):
    """A client context (CERT_REQUIRED, host names checked) that loads its trust anchors
    before the first socket or BIO it wraps."""

    _anchors_loaded = False

    def load_anchors(self) -> None:
        with _LOADING:
            if self._anchors_loaded:
                return
            if os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._anchors_loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.load_anchors()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self.load_anchors()
        return super().wrap_bio(*args, **kwargs)


def verifying_context() -> ssl.SSLContext:
    """A verifying client context (as httpx's `verify=True`) that loads its anchors late."""
    context = LazyTrustContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context
