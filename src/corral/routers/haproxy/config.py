"""The HAProxy configuration corral writes: one frontend per service listen, one backend per
service with pre-allocated server slots that the runtime API fills, weights and drains.

Pure text building from the adapter's state; no I/O. The configuration always carries the
current servers and weights, so a reload (only needed for a new listen address, TLS, or more
slots) starts from what the runtime API had set. Preview routing lines come from preview.py.
"""

from __future__ import annotations

from corral.routers.haproxy.entries import ServiceEntry
from corral.routers.haproxy.preview import backend_lines, frontend_lines, map_path

DEFAULT_SLOTS = 16
IDEMPOTENT = "GET HEAD OPTIONS PUT DELETE TRACE"
_DEFAULT_TIMEOUTS = {"connect": 3.0, "first_byte": 60.0, "client_idle": 75.0, "header": 10.0}


def backend_name(service: str) -> str:
    return f"svc_{service}"


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def render_config(services: dict[str, ServiceEntry], *, socket_path: str,
                  threads: int = 0, maxconn: int = 4096, map_dir: str | None = None) -> str:
    """The whole haproxy.cfg for these services. `map_dir` holds their preview maps (by
    default, the stats socket's folder).

    >>> print(render_config({}, socket_path="/run/h.sock").splitlines()[1])
      stats socket /run/h.sock mode 600 level admin expose-fd listeners
    """
    # noreuseport: HAProxy would otherwise bind with SO_REUSEPORT, and another router of
    # this user could join its port and take part of its traffic. Reloads keep working:
    # the new worker takes the listening sockets over from the old (expose-fd listeners).
    lines = ["global",
             f"  stats socket {socket_path} mode 600 level admin expose-fd listeners",
             "  noreuseport",
             f"  maxconn {maxconn}",
             "  tune.bufsize 65536"]
    if threads:
        lines.append(f"  nbthread {threads}")
    lines += ["defaults", "  mode http", "  option http-keep-alive", "  http-reuse safe",
              "  retries 1", "  option redispatch 1", "  retry-on conn-failure empty-response",
              "  timeout tunnel 1h", ""]
    folder = map_dir if map_dir is not None else socket_path.rpartition("/")[0]
    for name, entry in sorted(services.items()):
        lines += _frontend(name, entry, map_path(folder, name)) + _backend(name, entry)
    return "\n".join(lines) + "\n"


def _frontend(name: str, entry: ServiceEntry, map_file: str) -> list[str]:
    t = {**_DEFAULT_TIMEOUTS, **entry.timeouts}
    bind = f"  bind {entry.listen}"
    if entry.tls_pem:
        bind += f" ssl crt {entry.tls_pem}"
    return [f"frontend fe_{name}", bind,
            f"  timeout client {_ms(t['client_idle'])}",
            f"  timeout http-keep-alive {_ms(t['client_idle'])}",
            f"  timeout http-request {_ms(t['header'])}",
            "  option forwardfor",
            "  http-request set-header X-Forwarded-Proto https if { ssl_fc }",
            "  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
            "  unique-id-format %{+X}o%ci%cp%fp%Ts%rt%pid",
            "  http-request set-header X-Request-Id %[unique-id] "
            "unless { req.hdr(x-request-id) -m found }",
            "  http-after-response set-header X-Request-Id %[unique-id] "
            "unless { res.hdr(x-request-id) -m found }",
            *frontend_lines(map_file),
            f"  default_backend {backend_name(name)}", ""]


def _backend(name: str, entry: ServiceEntry) -> list[str]:
    t = {**_DEFAULT_TIMEOUTS, **entry.timeouts}
    lines = [f"backend {backend_name(name)}", "  balance roundrobin",
             f"  timeout connect {_ms(t['connect'])}",
             f"  timeout server {_ms(t['first_byte'])}",
             f"  http-request disable-l7-retry unless {{ method {IDEMPOTENT} }}",
             *backend_lines(entry)]
    for slot in entry.slots:
        if slot.is_free:
            lines.append(f"  server {slot.name} 127.0.0.1:1 weight 0 disabled")
        else:
            state = " disabled" if slot.retiring else ""
            lines.append(f"  server {slot.name} {slot.address} weight {min(slot.weight, 256)}"
                         f"{state}")
    return [*lines, ""]
