"""The current shape of the state database, as SQLAlchemy Core tables (no ORM).

Queries in sql.py use these objects; migrations.py creates and changes the real tables.
Types are generic (Text, Integer, Double) so the same schema serves SQLite and PostgreSQL;
JSON is kept as TEXT written by rules.dump_json, so it reads back the same everywhere.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
)

# Insert-only: migrations add triggers that abort any UPDATE or DELETE.
releases = Table(
    "releases", metadata,
    Column("service", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("image_digest", Text, nullable=False),
    Column("config_digest", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("git_commit", Text),
    Column("git_commit_time", Double),
    PrimaryKeyConstraint("service", "version"),
)

services = Table(
    "services", metadata,
    Column("name", Text, primary_key=True),
    Column("live_release", Integer),
    ForeignKeyConstraint(["name", "live_release"], ["releases.service", "releases.version"]),
)

instances = Table(
    "instances", metadata,
    Column("id", Text, primary_key=True),
    Column("service", Text, nullable=False, index=True),
    Column("release", Integer, nullable=False),
    Column("image_digest", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("pid", Integer),
    Column("ended_at", Double),
    Column("reason", Text),
)

deployments = Table(
    "deployments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", Text, nullable=False, index=True),
    Column("strategy", Text, nullable=False),
    Column("from_release", Integer),
    Column("to_release", Integer, nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double),
    Column("reason", Text),
)

deployment_steps = Table(
    "deployment_steps", metadata,
    Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", Double, nullable=False),
    PrimaryKeyConstraint("deployment_id", "seq"),
)

# The ledger. seq is the primary key, so two writers can never both append entry N.
events = Table(
    "events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Double, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False, unique=True),
)

locks = Table(
    "locks", metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", Double, nullable=False),
)

# Schema 4: the controller lease (ports/lease.py); epoch is the fencing token.
leases = Table(
    "leases", metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("expires_at", Double, nullable=False),
)
