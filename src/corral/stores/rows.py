"""Rows of the state database to records and back, exactly: JSON text to dicts, text to
InstanceState/DeploymentOutcome. Pure conversions: no queries, no connections.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Row

from corral.ports.records import (
    Deployment,
    DeploymentOutcome,
    DeploymentStep,
    Event,
    Instance,
    InstanceState,
    Release,
    UsageTally,
)
from corral.stores.rules import dump_json


def release(row: Row[Any]) -> Release:
    return Release(service=row.service, version=row.version, image_digest=row.image_digest,
                   config_digest=row.config_digest, config=json.loads(row.config),
                   created_at=row.created_at, git_commit=row.git_commit,
                   git_commit_time=row.git_commit_time)


def instance(row: Row[Any]) -> Instance:
    return Instance(id=row.id, service=row.service, release=row.release,
                    image_digest=row.image_digest, address=row.address,
                    state=InstanceState(row.state), created_at=row.created_at, pid=row.pid,
                    ended_at=row.ended_at, reason=row.reason)


def instance_values(item: Instance) -> dict[str, Any]:
    return {"id": item.id, "service": item.service, "release": item.release,
            "image_digest": item.image_digest, "address": item.address,
            "state": InstanceState(item.state).value, "created_at": item.created_at,
            "pid": item.pid, "ended_at": item.ended_at, "reason": item.reason}


def deployment(row: Row[Any]) -> Deployment:
    return Deployment(id=row.id, service=row.service, strategy=row.strategy,
                      from_release=row.from_release, to_release=row.to_release,
                      outcome=DeploymentOutcome(row.outcome), started_at=row.started_at,
                      ended_at=row.ended_at, reason=row.reason, replicas=row.replicas)


def step(row: Row[Any]) -> DeploymentStep:
    return DeploymentStep(deployment_id=row.deployment_id, seq=row.seq, kind=row.kind,
                          detail=json.loads(row.detail), at=row.at)


def event(row: Row[Any]) -> Event:
    return Event(at=row.at, actor=row.actor, action=row.action, subject=row.subject,
                 detail=json.loads(row.detail), seq=row.seq, prev_hash=row.prev_hash,
                 hash=row.hash)


def event_values(item: Event) -> dict[str, Any]:
    return {"seq": item.seq, "at": item.at, "actor": item.actor, "action": item.action,
            "subject": item.subject, "detail": dump_json(item.detail),
            "prev_hash": item.prev_hash, "hash": item.hash}


def usage_tally(row: Row[Any]) -> UsageTally:
    return UsageTally(instance_id=row.instance_id, service=row.service, release=row.release,
                      hour=row.hour, seconds=row.seconds,
                      memory_byte_seconds=row.memory_byte_seconds,
                      cpu_seconds=row.cpu_seconds, samples=row.samples)
