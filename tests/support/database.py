"""The tests' per-run database names, the app config pointing at a database and the SMTP
sink, and what race tests read of lock waits. The server and its databases are
`devtools.database`, shared with bench."""

from __future__ import annotations

import os
from typing import Any

import psycopg

from config import TestConfig, libpq_url, sqlalchemy_url

RUN_ID = f"jbtest_{os.getpid()}"


def make_config(database_url: str, smtp_port: int, **overrides: Any) -> type[TestConfig]:
    attributes = {
        "DATABASE_URL": sqlalchemy_url(database_url),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_port,
        "MAIL_USE_TLS": False,
        "MAIL_USE_SSL": False,
        **overrides,
    }
    return type("RunTestConfig", (TestConfig,), attributes)


def lock_waiters(database_url: str) -> int:
    """Sessions of this database currently waiting for a lock: how race tests know that
    the requests they fired are really queued behind a lock they hold."""
    return len(lock_waiting_queries(database_url))


def lock_waiting_queries(database_url: str) -> list[str]:
    """The statements of this database's sessions that are waiting for a lock."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as watcher:
        rows = watcher.execute(
            "SELECT query FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchall()
    return [row[0] for row in rows]
