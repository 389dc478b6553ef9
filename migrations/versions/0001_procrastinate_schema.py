"""Procrastinate 3.10 queue schema.

Revision ID: 0001_procrastinate
Revises:
Create Date: 2026-11-23

The SQL is a copy of procrastinate/sql/schema.sql from release 3.10.0, kept beside this
revision so that upgrading the library never changes what this revision does. A later
Procrastinate release gets its own revision running the library's migration files.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0001_procrastinate"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_SQL = Path(__file__).resolve().parent.parent / "sql" / "procrastinate_3_10_0_schema.sql"

# Drops every object the schema creates: tables (with their triggers and indexes),
# then functions and types, found by their common prefix.
DROP_SQL = """
DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
    procrastinate_jobs, procrastinate_workers CASCADE;
DO $$
DECLARE obj record;
BEGIN
    FOR obj IN
        SELECT p.oid::regprocedure AS signature
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
    LOOP
        EXECUTE 'DROP FUNCTION ' || obj.signature || ' CASCADE';
    END LOOP;
    FOR obj IN
        SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%'
           AND t.typtype IN ('e', 'c')
    LOOP
        EXECUTE 'DROP TYPE ' || quote_ident(obj.typname) || ' CASCADE';
    END LOOP;
END $$;
"""


def upgrade() -> None:
    # exec_driver_sql hands the text to psycopg, which treats % as a placeholder.
    op.get_bind().exec_driver_sql(SCHEMA_SQL.read_text().replace("%", "%%"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(DROP_SQL.replace("%", "%%"))
