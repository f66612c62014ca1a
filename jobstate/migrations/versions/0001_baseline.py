"""Baseline: the schema of release 0.1.0 with one job per (user, idempotency key).

Revision ID: 0001
Revises:
Create Date: 2026-12-01

A database made by release 0.1.0 (tables, no version) is brought here by `jobstate.migrate`
(its duplicate keys given up, the index made unique) and stamped; this revision creates the
same schema in an empty database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("output_key", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("external_id", sa.String(256), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_jobs_user_created", "jobs", ["user_id", "created_at", "job_id"])
    op.create_index("ix_jobs_status_updated", "jobs", ["status", "updated_at"])
    op.create_index("ux_jobs_user_idempotency", "jobs", ["user_id", "idempotency_key"], unique=True)
    op.create_table(
        "job_events",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("output_key", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("external_id", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
