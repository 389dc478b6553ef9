"""job attempts

Revision ID: 0011_job_attempts
Revises: 0010_events_webhooks
Create Date: 2026-12-05

`job_attempts`: every attempt of a job the queue runs (number, start, end, duration,
outcome running|completed|failed|lost, error, worker), written by the transitions that
change the job. The table and its indexes are in job_attempts_0011.sql; the running
attempts of jobs in progress at upgrade time are recorded from the jobs table. With them,
what GET /metrics reads: an index of open jobs by status, one of webhook attempts by time,
and `metric_rollups`, the running totals the scrapes advance. The downgrade drops them.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0011_job_attempts"
down_revision = "0010_events_webhooks"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    _run((SQL_DIR / "job_attempts_0011.sql").read_text())


def downgrade() -> None:
    _run(
        """
        DROP TABLE IF EXISTS metric_rollups;
        DROP INDEX IF EXISTS ix_webhook_attempts_attempted_at;
        DROP INDEX IF EXISTS ix_jobs_open_status;
        DROP TABLE IF EXISTS job_attempts;
        """
    )
