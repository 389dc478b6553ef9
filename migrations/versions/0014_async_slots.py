"""slots for non-blocking kinds in the batched queue's fetch

Revision ID: 0014_async_slots
Revises: 0013_batched_queue
Create Date: 2026-12-05

`jobboard_fetch_owned_jobs` and `jobboard_fetch_jobs` take a bound on the blocking entries
of a batch (async_slots_0014.sql). The downgrade restores 0013's functions.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0014_async_slots"
down_revision = "0013_batched_queue"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    _run((SQL_DIR / "async_slots_0014.sql").read_text())


def downgrade() -> None:
    _run(
        """
        DROP FUNCTION jobboard_fetch_jobs(bigint, integer, integer);
        DROP FUNCTION jobboard_fetch_owned_jobs(character varying[], bigint, integer, integer);
        """
    )
    previous = (SQL_DIR / "batched_queue_0013.sql").read_text()
    # 0013's two functions; its jobboard_fetch_job_unpaused is unchanged here.
    owned = previous[
        previous.index("CREATE OR REPLACE FUNCTION jobboard_fetch_owned_jobs(") : previous.index(
            "-- The fetch Procrastinate's worker calls"
        )
    ]
    _run(owned + previous[previous.index("CREATE FUNCTION jobboard_fetch_jobs(") :])
