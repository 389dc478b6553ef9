"""Deferring from our own SQL (`jobboard.queue.deferral`): it calls Procrastinate's versioned
SQL function `procrastinate_defer_jobs_v1`, as Procrastinate's own `defer` does. These
tests fail loudly when an installed Procrastinate changes that function, its argument
type, or stops deferring through it, and check that both ways write the same queue row."""

from __future__ import annotations

import inspect
import re
from datetime import timedelta
from pathlib import Path

import procrastinate
import pytest
from procrastinate import PsycopgConnector
from procrastinate import sql as procrastinate_sql
from procrastinate.manager import JobManager
from sqlalchemy import select, text

from config import PROJECT_ROOT
from jobboard import queue
from jobboard.extensions import db
from jobboard.jobs import transitions
from jobboard.models import now_utc

# The copy that migration 0001 runs.
MIGRATION_SCHEMA = PROJECT_ROOT / "migrations" / "sql" / "procrastinate_3_10_0_schema.sql"
INSTALLED_SCHEMA = Path(procrastinate.__file__).parent / "sql" / "schema.sql"


def definition(schema_sql: str, pattern: str) -> str:
    """The statement of `schema_sql` that creates `pattern`, whitespace folded."""
    match = re.search(rf"CREATE {pattern}.*?(\$\$;|\);)", schema_sql, re.DOTALL)
    assert match is not None, f"no CREATE {pattern}"
    return " ".join(match.group(0).split())


@pytest.mark.parametrize(
    "pattern",
    [
        rf"TYPE {queue.JOB_TO_DEFER_TYPE} AS",
        rf"FUNCTION {queue.DEFER_FUNCTION}\(",
    ],
)
def test_the_installed_procrastinate_defines_the_function_and_type_of_the_migration(pattern):
    """A Procrastinate release that changes them needs a new migration and a look at
    `queue.deferral`."""
    installed = definition(INSTALLED_SCHEMA.read_text(), pattern)
    migrated = definition(MIGRATION_SCHEMA.read_text(), pattern)
    assert installed == migrated


def test_procrastinates_own_defer_calls_the_same_function():
    query = " ".join(procrastinate_sql.queries["defer_jobs"].split())
    assert f"{queue.DEFER_FUNCTION}( %(jobs)s::{queue.JOB_TO_DEFER_TYPE}[] )" in query


def test_the_database_has_the_function_and_type_deferral_calls(app):
    signature = db.session.execute(
        text(
            "SELECT pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid)"
            " FROM pg_proc p WHERE p.proname = :name"
        ),
        {"name": queue.DEFER_FUNCTION},
    ).all()
    assert signature == [(f"jobs {queue.JOB_TO_DEFER_TYPE}[]", "bigint[]")]
    attributes = db.session.execute(
        text(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = (SELECT typrelid FROM pg_type WHERE typname = :type)"
            " AND attnum > 0"
            " ORDER BY attnum"
        ),
        {"type": queue.JOB_TO_DEFER_TYPE},
    ).all()
    assert attributes == [
        ("queue_name", "character varying"),
        ("task_name", "character varying"),
        ("priority", "integer"),
        ("lock", "text"),
        ("queueing_lock", "text"),
        ("args", "jsonb"),
        ("scheduled_at", "timestamp with time zone"),
    ]


ROW = text(
    "SELECT queue_name, task_name, priority, lock, queueing_lock, args, status, scheduled_at,"
    " attempts FROM procrastinate_jobs WHERE id = :id"
)


@pytest.mark.parametrize("scheduled", [True, False])
def test_deferral_writes_the_row_procrastinates_defer_writes(app, scheduled):
    at = now_utc() + timedelta(hours=1) if scheduled else None
    options = {"queue": "jobs", "schedule_at": at, "priority": 7}

    by_procrastinate = queue.defer(
        "some_task", lock="a-lock", queueing_lock="lock-1", job_id=5, owner_id=9, **options
    )
    by_sql = db.session.scalar(
        select(
            queue.deferral(
                "some_task",
                lock="a-lock",
                queueing_lock="lock-2",
                args={"job_id": 5, "owner_id": 9},
                **options,
            )
        )
    )

    first, second = (
        db.session.execute(ROW, {"id": entry}).one()._asdict()
        for entry in (by_procrastinate, by_sql)
    )
    assert first.pop("queueing_lock") == "lock-1" and second.pop("queueing_lock") == "lock-2"
    assert first == second
    assert first["args"] == {"job_id": 5, "owner_id": 9}
    assert first["scheduled_at"] == at


def test_deferral_without_locks(app):
    entry = db.session.scalar(
        select(
            queue.deferral(
                "other_task",
                queue="mail",
                schedule_at=None,
                lock=None,
                queueing_lock=None,
                priority=0,
                args={},
            )
        )
    )
    row = db.session.execute(ROW, {"id": entry}).one()
    assert (row.lock, row.queueing_lock, row.args, row.scheduled_at) == (None, None, {}, None)


def test_batch_inserts_fill_the_columns_procrastinates_defer_fills():
    """`queue.insert_entries` (POST /api/jobs/batch/) inserts into procrastinate_jobs
    directly, the columns that `procrastinate_defer_jobs_v1` fills, in the same order:
    a release that fills another column (or stops filling one) fails here."""
    function = definition(INSTALLED_SCHEMA.read_text(), rf"FUNCTION {queue.DEFER_FUNCTION}\(")
    columns = re.search(r"INSERT INTO procrastinate_jobs \((.*?)\)", function)
    assert columns is not None
    assert tuple(name.strip() for name in columns.group(1).split(",")) == queue.ENTRY_COLUMNS


# --- what the batched worker (workers/batched.py) leans on --------------------------------


def test_the_batched_completion_finishes_entries_with_procrastinates_own_function():
    """`_COMPLETE_BATCH_SQL` calls `procrastinate_finish_job_v1` as Procrastinate's own
    finish does: a release that changes it (or stops using it) fails here."""
    pattern = r"FUNCTION procrastinate_finish_job_v1\("
    installed = definition(INSTALLED_SCHEMA.read_text(), pattern)
    assert installed == definition(MIGRATION_SCHEMA.read_text(), pattern)
    assert "procrastinate_finish_job_v1(" in procrastinate_sql.queries["finish_job"]
    assert "procrastinate_finish_job_v1(id, 'succeeded', false)" in transitions._COMPLETE_BATCH_SQL


def test_procrastinates_fetch_still_calls_the_function_the_migrations_redefine():
    """Revision 0013 redefines `procrastinate_fetch_job_v2` (with the fair fetch split in
    two); Procrastinate's worker must still call it with the same two arguments."""
    query = " ".join(procrastinate_sql.queries["fetch_job"].split())
    assert "FROM procrastinate_fetch_job_v2(%(queues)s::varchar[], %(worker_id)s)" in query


@pytest.mark.parametrize(
    ("method", "parameters"),
    [
        ("register_worker", []),
        ("update_heartbeat", ["worker_id"]),
        ("unregister_worker", ["worker_id"]),
        ("prune_stalled_workers", ["seconds_since_heartbeat"]),
        ("listen_for_jobs", ["on_notification", "queues"]),
        ("retry_job_by_id_async", ["job_id", "retry_at"]),
    ],
)
def test_the_job_manager_calls_the_batched_worker_makes(method, parameters):
    signature = inspect.signature(getattr(JobManager, method))
    assert inspect.iscoroutinefunction(getattr(JobManager, method))
    assert all(name in signature.parameters for name in parameters), signature


def test_the_connector_has_the_pool_the_batched_worker_uses():
    assert isinstance(getattr(PsycopgConnector, "pool", None), property)
