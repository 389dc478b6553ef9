"""The one Procrastinate App, shared by the web process (which defers) and the worker."""

from __future__ import annotations

import os
from typing import Any

from procrastinate import App, PsycopgConnector, SyncPsycopgConnector

from config import libpq_url

QUEUE_JOBS = "jobs"
QUEUE_MAIL = "mail"
QUEUE_MAINTENANCE = "maintenance"


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
        self._transactional_sync = SyncPsycopgConnector(**kwargs)

    def get_sync_connector(self) -> SyncPsycopgConnector:
        return self._transactional_sync


def _conninfo() -> str:
    # The worker entry point (`python -m workers`) resolves DATABASE_URL before import;
    # the web process never opens this connector's pool.
    return libpq_url(os.environ.get("DATABASE_URL", ""))


def new_connector(conninfo: str) -> TransactionalPsycopgConnector:
    # The worker process runs two Procrastinate workers (jobs; mail + maintenance), each
    # holding a LISTEN connection besides its fetches, finishes and heartbeats: grow the
    # pool past psycopg_pool's default of 4 when they need it.
    return TransactionalPsycopgConnector(conninfo=conninfo, max_size=10)


task_app = App(
    connector=new_connector(_conninfo()),
    import_paths=[
        "workers.mail",
        "workers.jobs",
        "workers.maintenance",
        "workers.plans",
        "workers.deadlines",
    ],
)
app = task_app  # `procrastinate --app=workers.app.app ...` finds it under the usual name
