"""fetch by queue: the entries of nobody looked up queue by queue

Revision ID: 0007_fetch_by_queue
Revises: 0006_queue_performance
Create Date: 2026-11-28

The fair fetch first looks for a waiting entry that belongs to nobody (mail,
maintenance). Written as one query over every target queue, that lookup filtered
`queue_name = ANY(...)` and `NOT (args ? 'owner_id')`, and the planner walked
Procrastinate's index of every waiting entry, users' included: with 50,000 jobs queued,
each fetch of the jobs worker took 49 ms to find nothing, and the end-to-end rate fell
to a fifth (docs/performance.md, scenario 2). fair_fetch_0007.sql looks queue by queue
in `jobboard_queue_unowned_todo_idx`, whose order is the fetch's. The downgrade puts
revision 0006's fetch back.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0007_fetch_by_queue"
down_revision = "0006_queue_performance"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(name: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql((SQL_DIR / name).read_text().replace("%", "%%"))


def upgrade():
    _run("fair_fetch_0007.sql")


def downgrade():
    _run("fair_fetch_0006.sql")
