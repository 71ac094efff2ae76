"""The table of sampled usage (schema 5): what each instance used per clock hour.

Declared on tables.metadata so the stores query it like the others; migrations.py creates
it. One row per instance and hour, summed as samples arrive: at 60 instances that is 1440
rows a day, small enough to keep and to read for a 30-day `corral cost`.
"""

from __future__ import annotations

from sqlalchemy import Column, Double, Index, Integer, PrimaryKeyConstraint, Table, Text

from corral.stores.tables import metadata

instance_usage = Table(
    "instance_usage", metadata,
    Column("instance_id", Text, nullable=False),
    Column("hour", Double, nullable=False),
    Column("service", Text, nullable=False),
    Column("release", Integer, nullable=False),
    Column("samples", Integer, nullable=False),
    Column("seconds", Double, nullable=False),
    Column("memory_byte_seconds", Double, nullable=False),
    Column("cpu_seconds", Double, nullable=False),
    PrimaryKeyConstraint("instance_id", "hour"),
    Index("instance_usage_hour", "hour"),
)
