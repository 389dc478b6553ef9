"""operations: paused queues, the admin audit log, worker starts

Revision ID: 0012_operations
Revises: 0011_job_attempts
Create Date: 2026-12-05

`queue_pauses`: one row per paused queue. Procrastinate's fetch (`procrastinate_fetch_job_v2`)
becomes a wrapper that leaves paused queues out and calls the fetch in force before, kept as
`jobboard_fetch_job_unpaused` (operations_0012.sql).

`admin_actions`: every change an admin makes through /api/admin/ (pause, resume, bulk
actions), who, what, when and how many jobs; kept.

`worker_starts`: when each Procrastinate worker registered (a trigger on its table), and
indexes for the operations console: jobs by status and by creation, the queue's open and
failed entries, the entries started and finished in the last hours.

The downgrade drops them and puts the earlier fetch back under Procrastinate's name.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012_operations"
down_revision = "0011_job_attempts"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    op.create_table(
        "queue_pauses",
        sa.Column("queue_name", sa.String(length=128), nullable=False),
        sa.Column(
            "paused_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("paused_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["paused_by"],
            ["users.id"],
            name=op.f("fk_queue_pauses_paused_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("queue_name", name=op.f("pk_queue_pauses")),
    )
    op.create_table(
        "admin_actions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=True),
        sa.Column("admin_email", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=True),
        sa.Column("changed", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["users.id"],
            name=op.f("fk_admin_actions_admin_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_actions")),
    )
    op.create_index("ix_admin_actions_created", "admin_actions", ["created_at"])
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.create_index("ix_jobs_created_id", "jobs", ["created_at", "id"])
    _run((SQL_DIR / "operations_0012.sql").read_text())


def downgrade() -> None:
    _run(
        """
        DROP FUNCTION IF EXISTS procrastinate_fetch_job_v2(character varying[], bigint);
        ALTER FUNCTION jobboard_fetch_job_unpaused(character varying[], bigint)
            RENAME TO procrastinate_fetch_job_v2;
        DROP INDEX IF EXISTS jobboard_events_timed_idx;
        DROP INDEX IF EXISTS jobboard_queue_failed_idx;
        DROP INDEX IF EXISTS jobboard_queue_open_idx;
        DROP TRIGGER IF EXISTS jobboard_worker_started ON procrastinate_workers;
        DROP FUNCTION IF EXISTS jobboard_worker_started();
        DROP TABLE IF EXISTS worker_starts;
        """
    )
    op.drop_index("ix_jobs_created_id", table_name="jobs")
    op.drop_index("ix_jobs_status_id", table_name="jobs")
    op.drop_index("ix_admin_actions_created", table_name="admin_actions")
    op.drop_table("admin_actions")
    op.drop_table("queue_pauses")
