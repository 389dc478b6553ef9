"""batch creation and the batched queue

Revision ID: 0013_batched_queue
Revises: 0010_events_webhooks
Create Date: 2026-12-05

`idempotency_keys.job_ids`: the jobs a batch (POST /api/jobs/batch/) created, so that a
repeated request returns them all.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013_batched_queue"
down_revision = "0010_events_webhooks"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def upgrade() -> None:
    op.add_column(
        "idempotency_keys", sa.Column("job_ids", postgresql.ARRAY(sa.BigInteger()), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("idempotency_keys", "job_ids")
