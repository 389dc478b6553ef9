"""The web side's door to the Procrastinate queue.

Everything here runs on the current SQLAlchemy transaction's own connection, so a queue
row commits or rolls back together with the rows that caused it: a crash between the
two can never leave a job without its queue entry, or a queue entry without its job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from procrastinate.tasks import configure_task
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Insert,
    Integer,
    Select,
    String,
    cast,
    column,
    func,
    insert,
    literal,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, array
from sqlalchemy.sql.expression import tuple_
from sqlalchemy.types import UserDefinedType

from jobboard.extensions import db
from workers.app import task_app

# Procrastinate's SQL API for deferring (migrations/sql/procrastinate_3_10_0_schema.sql).
DEFER_FUNCTION = "procrastinate_defer_jobs_v1"
JOB_TO_DEFER_TYPE = "procrastinate_job_to_defer_v1"


def transaction_connection() -> Any:
    """The psycopg connection under the session's current transaction."""
    return db.session.connection().connection.driver_connection


def defer(
    task_name: str,
    *,
    queue: str,
    schedule_at: datetime | None = None,
    lock: str | None = None,
    queueing_lock: str | None = None,
    priority: int | None = None,
    **task_kwargs: Any,
) -> int:
    """Defer `task_name` by name; returns the Procrastinate job id.

    By name only: `task_app.configure_task` would first import every task module (its
    `import_paths`), pulling the worker's code into the web process and registering its
    periodic tasks there on the first request that defers. The web side never needs them;
    the job row carries everything the worker reads (tests/test_queue_by_name.py checks that
    no task sets defaults of its own that this would skip)."""
    deferrer = configure_task(
        name=task_name,
        job_manager=task_app.job_manager,
        queue=queue,
        schedule_at=schedule_at,
        lock=lock,
        queueing_lock=queueing_lock,
        priority=priority,
        connection=transaction_connection(),
    )
    return deferrer.defer(**task_kwargs)


def deferral(
    task_name: str,
    *,
    queue: str,
    schedule_at: datetime | None,
    lock: str | ColumnElement[str] | None,
    queueing_lock: str | ColumnElement[str] | None,
    priority: int,
    args: Mapping[str, Any],
) -> ColumnElement[int]:
    """SQL that defers `task_name` when the statement holding it runs, and is the new queue
    entry's id: what `defer` does, as part of a statement of ours, whose values (`args`,
    the locks) may be SQL too, such as the id of a row the same statement inserts.

    It calls the function that Procrastinate's own `defer` runs (its `defer_jobs` query):
    part of its versioned SQL API, where a changed contract gets a new name (`_v2`), not a
    changed body. tests/test_queue_sql.py fails if the installed Procrastinate's function
    or type stops matching what this builds."""
    entry = to_defer(
        task_name,
        queue=queue,
        schedule_at=schedule_at,
        lock=lock,
        queueing_lock=queueing_lock,
        priority=priority,
        args=args,
    )
    return deferrals([entry])[1]


def to_defer(
    task_name: str,
    *,
    queue: str,
    schedule_at: datetime | None,
    lock: str | ColumnElement[str] | None,
    queueing_lock: str | ColumnElement[str] | None,
    priority: int | ColumnElement[int],
    args: Mapping[str, Any],
) -> ColumnElement[Any]:
    """One entry to defer, as Procrastinate's composite type (see `deferral`)."""
    job = tuple_(
        literal(queue, String),
        literal(task_name, String),
        literal(priority, Integer) if isinstance(priority, int) else priority,
        literal(lock, String) if isinstance(lock, str | None) else lock,
        literal(queueing_lock, String) if isinstance(queueing_lock, str | None) else queueing_lock,
        func.jsonb_build_object(
            *chain.from_iterable((literal(key, String), value) for key, value in args.items())
        ),
        literal(schedule_at, DateTime(timezone=True)),
    )
    return cast(job, _ProcrastinateType(JOB_TO_DEFER_TYPE))


def deferrals(entries: Sequence[ColumnElement[Any]]) -> ColumnElement[list[int]]:
    """SQL deferring every entry of `to_defer` in one call; its value is the array of the
    new entries' ids (which `entry_ids` maps back to what they run)."""
    return getattr(func, DEFER_FUNCTION)(array(list(entries)), type_=ARRAY(BigInteger))


def deferrals_of(entries: ColumnElement[Any]) -> ColumnElement[list[int]]:
    """`deferrals` of an array of `to_defer` entries that SQL builds (`array_agg`)."""
    return getattr(func, DEFER_FUNCTION)(entries, type_=ARRAY(BigInteger))


def entry_args(queue_job_ids: Sequence[int], key: str) -> dict[int, int]:
    """`args[key]` (an integer: a job's id) of each of the entries `queue_job_ids`, by it."""
    rows = db.session.execute(
        text("SELECT (args->>:key)::bigint, id FROM procrastinate_jobs WHERE id = ANY(:ids)"),
        {"key": key, "ids": list(queue_job_ids)},
    )
    return {value: entry_id for value, entry_id in rows}


class _ProcrastinateType(UserDefinedType):
    """A composite type of Procrastinate's schema, by name."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **_kw: Any) -> str:
        return self.name


# The columns of Procrastinate's queue table that its own `procrastinate_defer_jobs_v1`
# fills; tests/test_queue_sql.py fails if the installed Procrastinate's function stops
# inserting exactly these.
ENTRY_COLUMNS = (
    "queue_name",
    "task_name",
    "priority",
    "lock",
    "queueing_lock",
    "args",
    "scheduled_at",
)
entries_table = table(
    "procrastinate_jobs",
    column("id", BigInteger),
    column("queue_name", String),
    column("task_name", String),
    column("priority", Integer),
    column("lock", String),
    column("queueing_lock", String),
    column("args", JSONB),
    column("scheduled_at", DateTime(timezone=True)),
)


def insert_entries(rows: Select[Any]) -> Insert:
    """SQL deferring one entry per row of `rows` (columns in ENTRY_COLUMNS' order), the
    way `procrastinate_defer_jobs_v1` does (one INSERT), returning each entry's `id` and
    `args`: a statement of ours can then match entries to the rows it inserts beside
    them, which the function's bare array of ids cannot promise."""
    return (
        insert(entries_table)
        .from_select(list(ENTRY_COLUMNS), rows)
        .returning(entries_table.c.id, entries_table.c.args)
    )


def cancel_many(queue_job_ids: Sequence[int]) -> int:
    """`cancel` for many entries in one statement (Procrastinate's own cancel function for
    each); how many were cancelled."""
    if not queue_job_ids:
        return 0
    return (
        db.session.scalar(
            text(
                "SELECT count(procrastinate_cancel_job_v1(id, false, false))"
                " FROM unnest(CAST(:ids AS bigint[])) AS id"
            ),
            {"ids": list(queue_job_ids)},
        )
        or 0
    )


def cancel(queue_job_id: int) -> bool:
    """Cancel a queue entry that has not started; False when a worker already took it."""
    return task_app.job_manager.cancel_job_by_id(queue_job_id, connection=transaction_connection())
