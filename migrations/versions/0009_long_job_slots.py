"""long-job slots and requeues within quotas

Revision ID: 0009_long_job_slots
Revises: 0007_fetch_by_queue
Create Date: 2026-12-04

`job_retries`: one row per failed job sent back to the queue, so that a retry counts
against the owner's `jobs_per_day` as a new job does (jobboard/quotas.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_long_job_slots"
down_revision = "0007_fetch_by_queue"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "job_retries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column(
            "retried_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_retries_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_job_retries_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_retries")),
    )
    op.create_index("ix_job_retries_owner_retried", "job_retries", ["owner_id", "retried_at"])


def downgrade():
    op.drop_table("job_retries")
