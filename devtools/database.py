"""Databases of their own for the tests and the benchmark, on a PostgreSQL server that
is configured (a URL) or, when none is, on the embedded one in .data/postgres."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from config import libpq_url
from jobboard.embedded_db import drop_database, recreate_database, with_database


@dataclass(frozen=True)
class DatabaseServer:
    """A server on which we may create and drop databases, reached through `admin_url`
    (a database on it that we connect to for CREATE and DROP DATABASE)."""

    admin_url: str

    @classmethod
    def at(cls, url: str | None) -> DatabaseServer:
        """The server of `url` (we connect to that database itself: it exists and we may
        use it), else the embedded server, started if needed."""
        if url:
            return cls(libpq_url(url))
        from jobboard import embedded_db

        return cls(embedded_db.server_url("postgres"))

    def url(self, name: str) -> str:
        return with_database(self.admin_url, name)

    def create(self, name: str, template: str | None = None) -> str:
        """Database `name`, dropped first if it exists (a copy of `template` if given);
        returns its URL."""
        return recreate_database(self.admin_url, name, template)

    def drop(self, name: str) -> None:
        drop_database(self.admin_url, name)

    def database(self, name: str) -> Database:
        return Database(self, name)


@dataclass(frozen=True)
class Database:
    """One database on a `DatabaseServer`, such as the benchmark's, made afresh per run."""

    server: DatabaseServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def recreate(self) -> None:
        self.server.create(self.name)

    def drop(self) -> None:
        self.server.drop(self.name)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def setting(self, name: str) -> str:
        with self.connect() as conn:
            return str(conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0])

    def server_version(self) -> str:
        return self.setting("server_version")
