"""long-job slots, and requeues within quotas

Revision ID: 0009_long_job_slots
Revises: 0008_account_hardening
Create Date: 2026-12-04

Long jobs (kinds whose time limit is over 10 s) hold at most LONG_JOB_SLOTS of a worker's
slots: long_job_slots_0009.sql replaces the fair fetch of revision 0007 with one that
applies the rule (the rule is written at the top of that file), adds
`queue_owners.next_short_at` to the triggers' bookkeeping and two indexes of short
entries. Entries already queued for a long kind are marked long.

`job_retries`: one row per failed job sent back to the queue, so that a retry counts
against the owner's `jobs_per_day` as a new job does (jobboard/quotas.py).

The downgrade puts revision 0007's fetch and revision 0004's bookkeeping back, and takes
the mark off the entries (the earlier `process_job` does not take it).
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0009_long_job_slots"
down_revision = "0008_account_hardening"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def _long_kinds() -> list[str]:
    """The kinds installed now whose time limit makes them long (workers/processors.py)."""
    from workers.processors import processors

    return sorted(kind for kind, entry in processors().items() if entry.long)


def _previous_bookkeeping() -> str:
    text = (SQL_DIR / "fair_queue_0004.sql").read_text()
    match = re.search(r"CREATE FUNCTION jobboard_refresh_queue_owner\(.*?\n\$\$;", text, re.S)
    assert match is not None, "jobboard_refresh_queue_owner not found in fair_queue_0004.sql"
    return match.group(0).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade():
    op.get_bind().execute(
        sa.text(
            "UPDATE procrastinate_jobs AS q SET args = q.args || '{\"long\": true}'::jsonb"
            " FROM jobs WHERE q.status IN ('todo', 'doing') AND q.task_name = 'process_job'"
            " AND (q.args->>'job_id')::bigint = jobs.id AND jobs.kind = ANY(:kinds)"
        ),
        {"kinds": _long_kinds()},
    )
    _run((SQL_DIR / "long_job_slots_0009.sql").read_text())

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

    _run((SQL_DIR / "fair_fetch_0007.sql").read_text())
    _run(_previous_bookkeeping())
    _run(
        """
        DROP INDEX IF EXISTS jobboard_queue_short_todo_idx;
        DROP INDEX IF EXISTS jobboard_queue_short_due_idx;
        DROP INDEX IF EXISTS queue_owners_next_short_at_idx;
        ALTER TABLE queue_owners DROP COLUMN IF EXISTS next_short_at;
        UPDATE procrastinate_jobs SET args = args - 'long' WHERE args ? 'long';
        """
    )
