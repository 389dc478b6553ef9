"""plans, quotas and the fair queue

Revision ID: 0004_plans_fair_queue
Revises: 0003_account_protection
Create Date: 2026-11-28

Plans (SPEC §9) seeded with the shipped `free` and `pro`; every user on `free` unless
subscribed; and Procrastinate's fetch replaced by one that applies the per-user running
limit (fair_queue_0004.sql beside the other SQL of this history). The downgrade puts
Procrastinate 3.10's own fetch back.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0004_plans_fair_queue"
down_revision = "0003_account_protection"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FAIR_QUEUE_SQL = SQL_DIR / "fair_queue_0004.sql"
PROCRASTINATE_SCHEMA_SQL = SQL_DIR / "procrastinate_3_10_0_schema.sql"

# name, max_running_jobs, max_open_jobs, jobs_per_day, max_params_bytes, bids_per_day
SHIPPED_PLANS = [
    ("free", 2, 100, 1_000, 65_536, 50),
    ("pro", 8, 10_000, 100_000, 524_288, 1_000),
]


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    plans = op.create_table(
        "plans",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("max_running_jobs", sa.Integer(), nullable=False),
        sa.Column("max_open_jobs", sa.Integer(), nullable=False),
        sa.Column("jobs_per_day", sa.Integer(), nullable=False),
        sa.Column("max_params_bytes", sa.Integer(), nullable=False),
        sa.Column("bids_per_day", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "max_running_jobs >= 1 AND max_open_jobs >= 1 AND jobs_per_day >= 1"
            " AND max_params_bytes >= 2 AND bids_per_day >= 0",
            name=op.f("ck_plans_limits_positive"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_plans")),
    )
    op.bulk_insert(
        plans,
        [
            dict(
                zip(
                    (
                        "name",
                        "max_running_jobs",
                        "max_open_jobs",
                        "jobs_per_day",
                        "max_params_bytes",
                        "bids_per_day",
                    ),
                    row,
                    strict=True,
                )
            )
            for row in SHIPPED_PLANS
        ],
    )
    op.add_column(
        "users",
        sa.Column("plan_name", sa.String(length=50), server_default="free", nullable=False),
    )
    op.add_column("users", sa.Column("plan_ends_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("plan_reminded_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_users_plan_name_plans"), "users", "plans", ["plan_name"], ["name"]
    )
    op.create_index(
        "ix_users_plan_ends_at",
        "users",
        ["plan_ends_at"],
        postgresql_where=sa.text("plan_ends_at IS NOT NULL"),
    )
    op.create_index("ix_bids_bidder_created", "bids", ["bidder_id", "created_at"])
    _run(FAIR_QUEUE_SQL.read_text())


def _procrastinate_fetch_function() -> str:
    schema = PROCRASTINATE_SCHEMA_SQL.read_text()
    match = re.search(
        r"CREATE FUNCTION procrastinate_fetch_job_v2\(.*?\n\$\$;", schema, flags=re.DOTALL
    )
    assert match is not None, "procrastinate_fetch_job_v2 not found in the 3.10 schema"
    return match.group(0).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def downgrade() -> None:
    _run(_procrastinate_fetch_function())
    _run(
        """
        DROP TRIGGER IF EXISTS jobboard_queue_owner_inserted ON procrastinate_jobs;
        DROP TRIGGER IF EXISTS jobboard_queue_owner_updated ON procrastinate_jobs;
        DROP TRIGGER IF EXISTS jobboard_queue_owner_deleted ON procrastinate_jobs;
        DROP FUNCTION IF EXISTS jobboard_queue_owner_changed();
        DROP FUNCTION IF EXISTS jobboard_refresh_queue_owner(bigint);
        DROP INDEX IF EXISTS jobboard_queue_owned_todo_idx;
        DROP INDEX IF EXISTS jobboard_queue_owned_due_idx;
        DROP INDEX IF EXISTS jobboard_queue_owned_doing_idx;
        DROP INDEX IF EXISTS jobboard_queue_unowned_todo_idx;
        DROP TABLE IF EXISTS queue_owners;
        """
    )
    op.drop_index("ix_bids_bidder_created", table_name="bids")
    op.drop_index("ix_users_plan_ends_at", table_name="users")
    op.drop_constraint(op.f("fk_users_plan_name_plans"), "users", type_="foreignkey")
    op.drop_column("users", "plan_reminded_at")
    op.drop_column("users", "plan_ends_at")
    op.drop_column("users", "plan_name")
    op.drop_table("plans")
