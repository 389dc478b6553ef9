"""queue performance: the queue table's statistics kept fresh under bulk defers

Revision ID: 0006_queue_performance
Revises: 0005_assignments_reviews
Create Date: 2026-11-28

`procrastinate_jobs` changes fast (every job inserts a row and updates it twice) and is
fetched from by index. Without fresh statistics after a bulk defer, the fetch's plan
sorts every queued row (2.66 ms per fetch instead of 0.05 ms, docs/performance.md).
PostgreSQL's defaults analyse a table after 10 % of it changed and vacuum after 20 %;
here both run after 1,000 rows plus 2 % of the table, and the vacuum is not throttled.

And the fair fetch (revision 0004) replaced by one whose due-order probe is bounded by
its index (fair_fetch_0006.sql): the old one read every waiting entry of the user that
was scheduled (not NULL) on every fetch, 1.8 ms per fetch with 5,000 queued and 10.7 ms
with 50,000. The downgrade puts revision 0004's fetch back.
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import op

revision = "0006_queue_performance"
down_revision = "0005_assignments_reviews"
branch_labels = None
depends_on = None

SETTINGS = {
    "autovacuum_analyze_threshold": "1000",
    "autovacuum_analyze_scale_factor": "0.02",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_insert_threshold": "1000",
    "autovacuum_vacuum_insert_scale_factor": "0.02",
    "autovacuum_vacuum_cost_delay": "0",
}


SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FETCH_SQL = SQL_DIR / "fair_fetch_0006.sql"
PREVIOUS_SQL = SQL_DIR / "fair_queue_0004.sql"


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def _previous_fetch() -> str:
    text = PREVIOUS_SQL.read_text()
    match = re.search(
        r"CREATE OR REPLACE FUNCTION procrastinate_fetch_job_v2.*?\n\$\$;", text, re.S
    )
    assert match is not None
    return match.group(0)


def upgrade():
    _run(FETCH_SQL.read_text())
    pairs = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
    op.execute(f"ALTER TABLE procrastinate_jobs SET ({pairs})")


def downgrade():
    _run(_previous_fetch())
    op.execute(f"ALTER TABLE procrastinate_jobs RESET ({', '.join(SETTINGS)})")
