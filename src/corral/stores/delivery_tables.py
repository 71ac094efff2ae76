"""Tables of progressive delivery (schema 2): a deployment's saved progress, each service's
traffic policy (fleet weights, the warm previous fleet) and the releases marked bad.

Declared on tables.metadata so the stores query them like the others; migrations.py
creates them. Releases stay insert-only: a bad mark lives beside them, never on them.
"""

from __future__ import annotations

from sqlalchemy import Column, Double, ForeignKey, Integer, PrimaryKeyConstraint, Table, Text

from corral.stores.tables import metadata

deployment_progress = Table(
    "deployment_progress", metadata,
    Column("deployment_id", Integer, ForeignKey("deployments.id"), primary_key=True,
           autoincrement=False),
    Column("progress", Text, nullable=False),  # JSON: core.delivery.Progress
    Column("at", Double, nullable=False),
)

service_traffic = Table(
    "service_traffic", metadata,
    Column("service", Text, primary_key=True),
    Column("traffic", Text, nullable=False),  # JSON: fleet weights, replicas, warm fleet
)

release_marks = Table(
    "release_marks", metadata,
    Column("service", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("bad", Text, nullable=False),  # why it was marked bad
    PrimaryKeyConstraint("service", "version"),
)
