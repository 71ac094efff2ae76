"""`corral status SERVICE --instance ID`: everything known about one instance, alive or gone.

Release and digest from the store, health history and replacements from the ledger, last
lines from the log store, and how it ended. Reads only; works without a controller.
"""

from __future__ import annotations

from typing import Any

from corral.engine.observe.logview import line_view
from corral.errors import NotFound
from corral.ports.ledger import EventFilter
from corral.ports.logs import LogQuery, LogStore
from corral.ports.records import Event
from corral.ports.store import Store


def instance_report(store: Store, logs: LogStore, service: str, instance_id: str, *,
                    lines: int = 20) -> dict[str, Any]:
    instance = store.get_instance(instance_id)
    if instance is None or instance.service != service:
        raise NotFound(f"service {service!r} has no instance {instance_id!r}",
                       hint=f"`corral status {service}` lists its live instances; "
                            f"`corral ledger --service {service} --action instance` all of them")
    release = store.get_release(service, instance.release)
    subject = f"{service}/{instance_id}"
    related = [e for e in store.find_events(EventFilter(service=service))
               if e.subject == subject or e.detail.get("replaces") == instance_id]
    history = [{"at": e.at, "event": e.action, "reason": e.detail.get("reason")}
               for e in related if e.subject == subject and e.action.startswith("instance.")]
    return {
        "id": instance.id, "service": service, "release": f"v{instance.release}",
        "image": instance.image_digest, "git_commit": release.git_commit if release else None,
        "address": instance.address, "pid": instance.pid, "state": instance.state.value,
        "live": instance.state.is_live, "started_at": instance.created_at,
        "ended_at": instance.ended_at, "exit_reason": None if instance.state.is_live
        else instance.reason, "health_history": history,
        "replaced": _replacements(related, subject, instance_id),
        "last_lines": [line_view(line) for line in
                       logs.query(LogQuery(instance=instance_id, limit=lines))],
    }


def _replacements(related: list[Event], subject: str, instance_id: str) -> dict[str, Any]:
    """Restarts avoided: the reconciler replaced this instance instead of restarting it
    (`replaced_by`), or started it to replace another one (`replaces`)."""
    by = [e.detail.get("new") for e in related if e.action == "reconcile.replace"
          and e.detail.get("replaces") == instance_id]
    of = [e.detail.get("replaces") for e in related if e.action == "reconcile.replace"
          and e.subject == subject and e.detail.get("replaces")]
    return {"replaced_by": by[0] if by else None, "replaces": of[0] if of else None,
            "cause": next((e.detail.get("cause") for e in related
                           if e.action == "reconcile.replace"
                           and e.detail.get("replaces") == instance_id), None)}
