"""The queue's shared vocabulary: the one Procrastinate App, its queue names and its task
names, each defined here once.

A leaf module: it imports nothing from `jobboard` and reads no environment, so the web
process (which defers by task name) and the worker both import it freely. The App is built
without a usable conninfo; the worker entry point (`python -m workers`) installs a
connector built from the application's configuration when it starts
(`task_app.replace_connector(new_connector(conninfo, long_job_slots))`), and the web
process never opens a pool: every synchronous call passes the SQLAlchemy transaction's
own connection.
The import-linter contract in pyproject.toml keeps this module a leaf.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import psycopg_pool
from procrastinate import App, PsycopgConnector, SyncPsycopgConnector

QUEUE_JOBS = "jobs"
QUEUE_MAIL = "mail"
QUEUE_MAINTENANCE = "maintenance"
# Webhook deliveries: their own queue and worker slots (WEBHOOK_WORKER_CONCURRENCY), never
# the jobs', mail's or maintenance's.
QUEUE_WEBHOOKS = "webhooks"
# Every queue the workers serve: the ones an operator can pause (jobboard/admin).
QUEUES = (QUEUE_JOBS, QUEUE_MAIL, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS)

# Task names: the web side defers by these names, the task modules register under them.
PROCESS_JOB_TASK = "process_job"
RECOVER_STALLED_TASK = "recover_stalled_jobs"
PRUNE_QUEUE_TASK = "prune_finished_queue_jobs"
SEND_EMAIL_TASK = "send_email"
SEND_VERIFICATION_CODE_TASK = "send_verification_code"
SEND_PASSWORD_RESET_CODE_TASK = "send_password_reset_code"
DUE_REMINDER_TASK = "send_due_reminder"
OVERDUE_NOTICE_TASK = "send_overdue_notice"
PURGE_TASK = "purge_expired_auth_records"
UNVERIFIED_TASK = "delete_unverified_accounts"
SUBSCRIPTIONS_TASK = "process_subscriptions"
SEND_EVENT_EMAIL_TASK = "send_event_email"
PURGE_EVENTS_TASK = "purge_old_events"
# One waiting entry per endpoint at most (its queueing lock), and one running (its lock):
# migrations/sql/events_webhooks_0010.sql defers it in SQL under these same names.
DELIVER_WEBHOOKS_TASK = "deliver_webhooks"
WAKE_WEBHOOKS_TASK = "wake_webhook_endpoints"


def webhook_endpoint_lock(endpoint_id: int) -> str:
    """The lock and queueing lock of endpoint `endpoint_id`'s delivery task."""
    return f"webhook-endpoint-{endpoint_id}"


class TransactionalPsycopgConnector(PsycopgConnector):
    """The async connector the worker needs, whose synchronous side always runs on a
    caller-supplied connection.

    Deferring from synchronous code (the web process, and sync tasks in the worker) joins
    the caller's SQLAlchemy transaction by passing its psycopg connection. The stock
    connector, once opened asynchronously in the worker, answers sync calls with itself,
    and it cannot run queries on a sync connection; a dedicated SyncPsycopgConnector can.
    It never opens a pool of its own because every sync call here passes `connection`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        sync_kwargs = {k: v for k, v in kwargs.items() if k not in ("pool_factory", "configure")}
        self._transactional_sync = SyncPsycopgConnector(**sync_kwargs)

    def get_sync_connector(self) -> SyncPsycopgConnector:
        return self._transactional_sync


# The setting that the fair fetch reads on the connection it runs on: how many long
# entries one worker may run at once (LONG_JOB_SLOTS; migrations/sql/long_job_slots_0009.sql).
LONG_JOB_SLOTS_SETTING = "jobboard.long_job_slots"


async def autocommit(connection: Any, long_job_slots: int | None = None) -> None:
    """Every statement Procrastinate runs on its pool (fetch, finish, heartbeat, defer)
    is a single function call or statement, its own transaction: in autocommit it is one
    round trip instead of three (BEGIN, statement, COMMIT). `kwargs={"autocommit": True}`
    would do the same but breaks the LISTEN connection of Procrastinate 3.10.

    With `long_job_slots`, the connection also carries LONG_JOB_SLOTS_SETTING for the
    rest of its life: Procrastinate calls its fetch with its own arguments only, so the
    worker's share of long jobs reaches the fetch this way."""
    await connection.set_autocommit(True)
    if long_job_slots is not None:
        await connection.execute(
            "SELECT set_config(%s, %s, false)", (LONG_JOB_SLOTS_SETTING, str(long_job_slots))
        )


def unchecked_pool(**kwargs: Any) -> psycopg_pool.AsyncConnectionPool:
    """The pool without psycopg_pool's per-checkout `check` (a `SELECT 1` round trip before
    every statement), which Procrastinate's connector asks for. A connection that died
    with the database fails its statement instead; the worker's supervisor
    (`workers.__main__.supervise`) replaces the whole pool after an outage, and a task
    that failed on a dead connection is retried (`InfrastructureRetry`)."""
    kwargs.pop("check", None)
    return psycopg_pool.AsyncConnectionPool(**kwargs)


def new_connector(
    conninfo: str, long_job_slots: int | None = None
) -> TransactionalPsycopgConnector:
    """The worker's connector; `long_job_slots`: see `autocommit`."""
    # The worker process runs three Procrastinate workers (jobs; mail + maintenance;
    # webhooks), each holding a LISTEN connection besides its fetches, finishes and
    # heartbeats, and webhook deliveries check a connection out for each of their
    # statements: grow the pool past psycopg_pool's default of 4 when they need it.
    return TransactionalPsycopgConnector(
        conninfo=conninfo,
        max_size=16,
        configure=partial(autocommit, long_job_slots=long_job_slots),
        pool_factory=unchecked_pool,
    )


task_app = App(
    # No conninfo until the worker starts (see the module's docstring).
    connector=new_connector(""),
    import_paths=[
        "workers.mail",
        "workers.jobs",
        "workers.maintenance",
        "workers.plans",
        "workers.deadlines",
        "workers.events",
        "workers.webhooks",
    ],
)
app = task_app  # `procrastinate --app=workers.app.app ...` finds it under the usual name
