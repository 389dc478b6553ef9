"""The web side's door to the Procrastinate queue.

Everything here runs on the current SQLAlchemy transaction's own connection, so a queue
row commits or rolls back together with the rows that caused it: a crash between the
two can never leave a job without its queue entry, or a queue entry without its job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobboard.extensions import db
from workers.app import task_app


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
    """Defer `task_name` by name (the web process never imports task code); returns the
    Procrastinate job id."""
    deferrer = task_app.configure_task(
        task_name,
        queue=queue,
        schedule_at=schedule_at,
        lock=lock,
        queueing_lock=queueing_lock,
        priority=priority,
        connection=transaction_connection(),
    )
    return deferrer.defer(**task_kwargs)


def cancel(queue_job_id: int) -> bool:
    """Cancel a queue entry that has not started; False when a worker already took it."""
    return task_app.job_manager.cancel_job_by_id(queue_job_id, connection=transaction_connection())
