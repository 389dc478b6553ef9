"""events, webhook endpoints and deliveries

Revision ID: 0010_events_webhooks
Revises: 0009_long_job_slots
Create Date: 2026-12-04

The events outbox (`events`), webhook endpoints per user, their deliveries and attempts,
the fan-out of events to deliveries in SQL (a statement trigger on `events`, which also
wakes each endpoint's `deliver_webhooks` queue entry), and `plans.max_webhook_endpoints`
(free 1, pro 10). All of it is in events_webhooks_0010.sql; the downgrade drops it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0010_events_webhooks"
down_revision = "0009_long_job_slots"
branch_labels = None
depends_on = None

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(sql: str) -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    _run((SQL_DIR / "events_webhooks_0010.sql").read_text())


def downgrade() -> None:
    _run(
        """
        DROP TRIGGER IF EXISTS jobboard_events_fan_out ON events;
        DROP FUNCTION IF EXISTS jobboard_fan_out_events();
        DROP FUNCTION IF EXISTS jobboard_wake_webhook_endpoint(integer, timestamptz);
        DELETE FROM procrastinate_jobs WHERE queue_name = 'webhooks' AND status = 'todo';
        DROP TABLE IF EXISTS webhook_attempts;
        DROP TABLE IF EXISTS webhook_deliveries;
        DROP TABLE IF EXISTS events;
        DROP TABLE IF EXISTS webhook_endpoints;
        ALTER TABLE plans DROP CONSTRAINT IF EXISTS ck_plans_webhook_endpoints_non_negative;
        ALTER TABLE plans DROP COLUMN IF EXISTS max_webhook_endpoints;
        """
    )
