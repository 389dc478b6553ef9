"""The embedded PostgreSQL (pgserver) used when no DATABASE_URL is configured, and the
server-level helpers (create, recreate, drop a database) that tests and the benchmark
use on it or on any other server.

pgserver ships the PostgreSQL binaries as a PyPI package. The server listens on a Unix
socket inside the data folder only, with trust auth, and keeps running after the
process that started it exits (`cleanup_mode=None`), so the web process, the worker and
the Flask CLI share one server. PostgreSQL refuses to run as root; when we are root,
pgserver runs it as a system user `pgserver` and grants `o+rx` on every parent folder of
the data folder and of the virtual environment (see docs/operations.md, "Embedded PostgreSQL").
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from config import config_for_environment, libpq_url

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "jobboard"


def data_dir() -> Path:
    return Path(config_for_environment().JOBBOARD_PGDATA).resolve()


def _import_pgserver():
    with warnings.catch_warnings():
        # pgserver computes a lock-file folder at import; without XDG_RUNTIME_DIR (servers,
        # CI, root shells) platformdirs warns and uses /tmp/runtime-<uid>, which is fine.
        warnings.simplefilter("ignore", UserWarning)
        import pgserver
    # It logs every handle it opens and closes at INFO: noise in every CLI command.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


def server_url(database: str = "postgres") -> str:
    """Start (or reuse) the embedded server and return a libpq URL for `database`."""
    pgserver = _import_pgserver()
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if os.name == "posix" and os.geteuid() == 0:
        logger.info(
            "running as root: PostgreSQL runs as system user 'pgserver'; "
            "parents of %s get o+rx so it can reach its data",
            folder,
        )
    server = pgserver.get_server(folder, cleanup_mode=None)
    return server.get_uri(database)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name` (keeps ?host=... for sockets)."""
    parts = urlsplit(libpq_url(url))
    return urlunsplit(parts._replace(path=f"/{name}"))


def ensure_database(admin_url: str, name: str, template: str | None = None) -> None:
    """Create database `name` on the server behind `admin_url` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            _create(conn, name, template)


def recreate_database(admin_url: str, name: str, template: str | None = None) -> str:
    """Drop database `name` if it exists and create it afresh; returns its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        _drop(conn, name)
        _create(conn, name, template)
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, disconnecting whoever still uses it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        _drop(conn, name)


def _create(conn: psycopg.Connection, name: str, template: str | None) -> None:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    conn.execute(statement)


def _drop(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_url(name: str = DEFAULT_DATABASE) -> str:
    """URL of the application database on the embedded server, created on first use."""
    admin_url = server_url("postgres")
    ensure_database(admin_url, name)
    url = server_url(name)
    logger.info("embedded PostgreSQL: data in %s, database %r", data_dir(), name)
    return url


def stop_server() -> Path:
    """Stop the embedded server (it outlives the processes that use it by design)."""
    pgserver = _import_pgserver()
    folder = data_dir()
    if (folder / "postmaster.pid").exists():
        as_user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
        pgserver.pg_ctl(["-w", "stop"], pgdata=folder, user=as_user)
    return folder
