"""batch creation and the batched queue

Revision ID: 0013_batched_queue
Revises: 0012_operations
Create Date: 2026-12-05

`idempotency_keys.job_ids`: the jobs a batch (POST /api/jobs/batch/) created, so that a
repeated request returns them all. The batched fetch of the `jobs` queue
(`jobboard_fetch_jobs`: the fair fetch taking many entries a call, which
Procrastinate's `procrastinate_fetch_job_v2` now calls for one): batched_queue_0013.sql.
The downgrade restores the fetch of long_job_slots_0009.sql.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013_batched_queue"
down_revision = "0012_operations"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    op.add_column(
        "idempotency_keys", sa.Column("job_ids", postgresql.ARRAY(sa.BigInteger()), nullable=True)
    )
    _run((SQL_DIR / "batched_queue_0013.sql").read_text())


def downgrade() -> None:
    previous = (SQL_DIR / "long_job_slots_0009.sql").read_text()
    fetch = previous[previous.index("CREATE OR REPLACE FUNCTION procrastinate_fetch_job_v2(") :]
    # Back under the name 0012_operations' pause filter calls.
    _run(fetch.replace("procrastinate_fetch_job_v2(", "jobboard_fetch_job_unpaused(", 1))
    _run(
        """
        DROP FUNCTION IF EXISTS jobboard_fetch_jobs(bigint, integer);
        DROP FUNCTION IF EXISTS jobboard_fetch_owned_jobs(character varying[], bigint, integer);
        """
    )
    op.drop_column("idempotency_keys", "job_ids")
