"""Test harness: a real PostgreSQL, a real SMTP server, the real worker.

- The database server is TEST_DATABASE_URL (any database on it; we create our own) or,
  when unset, the embedded pgserver of a fresh machine.
- A template database is migrated once per run with `flask db upgrade`, which tests the
  migrations. Each pytest process works in databases named after its pid, so parallel
  runs never meet.
- `app`/`client`: one shared database; every test runs inside an outer transaction that
  is rolled back, and the code's own commits become savepoints.
- `live_app`: a fresh database cloned from the template, for tests whose data must be
  committed for real (a worker process, racing connections).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token

from config import PROJECT_ROOT, TestConfig, libpq_url, sqlalchemy_url
from jobboard import create_app
from jobboard.auth.passwords import hash_password
from jobboard.embedded_db import drop_database, recreate_database, with_database
from jobboard.extensions import db
from jobboard.models import User

DEFAULT_PASSWORD = "correct horse battery"
RUN_ID = f"jbtest_{os.getpid()}"


# --- database server and databases -------------------------------------------------


@dataclass
class DatabaseServer:
    admin_url: str

    def url(self, name: str) -> str:
        return with_database(self.admin_url, name)

    def create(self, name: str, template: str | None = None) -> str:
        return recreate_database(self.admin_url, name, template)

    def drop(self, name: str) -> None:
        drop_database(self.admin_url, name)


@pytest.fixture(scope="session")
def database_server() -> DatabaseServer:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return DatabaseServer(with_database(url, "postgres"))
    from jobboard import embedded_db

    return DatabaseServer(embedded_db.server_url("postgres"))


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


@pytest.fixture(scope="session")
def template_database(database_server: DatabaseServer, smtp_server: SmtpServer) -> str:
    """A database migrated by `flask db upgrade`; every test database is a copy of it."""
    from flask_migrate import upgrade

    name = f"{RUN_ID}_template"
    url = database_server.create(name)
    migrating_app = create_app(make_config(url, smtp_server.port))
    with migrating_app.app_context():
        upgrade()
        db.engine.dispose()
    yield name
    database_server.drop(name)


_database_counter = itertools.count()


@pytest.fixture
def fresh_database(database_server: DatabaseServer, template_database: str) -> Iterator[str]:
    """URL of a new database cloned from the migrated template, dropped afterwards."""
    name = f"{RUN_ID}_{next(_database_counter)}"
    url = database_server.create(name, template=template_database)
    yield url
    database_server.drop(name)


# --- SMTP ----------------------------------------------------------------------------


class Mailbox:
    """Messages received by the in-process SMTP server, with a way to wait for one."""

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        message = message_from_bytes(envelope.original_content or envelope.content)
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Message]:
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def sent_to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address.lower() in m["To"].lower()]

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 20.0) -> Message:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for message in self._messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching email within {timeout}s")
                self._changed.wait(remaining)


def body_of(message: Message) -> str:
    if message.is_multipart():
        parts = [p for p in message.walk() if p.get_content_type() == "text/plain"]
        message = parts[0]
    payload = message.get_payload(decode=True)
    return payload.decode(message.get_content_charset() or "utf-8")


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(port=port, mailbox=mailbox)
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: SmtpServer) -> Mailbox:
    smtp_server.mailbox.clear()
    return smtp_server.mailbox


# --- applications ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def _shared_app(
    database_server: DatabaseServer, template_database: str, smtp_server: SmtpServer
) -> Iterator[Flask]:
    name = f"{RUN_ID}_shared"
    url = database_server.create(name, template=template_database)
    application = create_app(make_config(url, smtp_server.port))
    with application.app_context():
        db.session.remove()
        # Inside the outer test transaction, the code's commits become savepoints.
        db.session.configure(join_transaction_mode="create_savepoint")
    yield application
    with application.app_context():
        db.engine.dispose()
    database_server.drop(name)


@pytest.fixture
def app(_shared_app: Flask) -> Iterator[Flask]:
    """The application, its database work rolled back after the test."""
    with _shared_app.app_context():
        engines = db.engines
        engine = engines[None]
        connection = engine.connect()
        transaction = connection.begin()
        # Flask-SQLAlchemy picks the bind from its engine map; point it at our connection.
        engines[None] = connection  # type: ignore[index]
        try:
            yield _shared_app
        finally:
            db.session.remove()
            engines[None] = engine  # type: ignore[index]
            transaction.rollback()
            connection.close()


@pytest.fixture
def live_app(fresh_database: str, smtp_server: SmtpServer) -> Iterator[Flask]:
    """An application on its own freshly migrated database, committing for real."""
    application = create_app(make_config(fresh_database, smtp_server.port))
    application.config["DATABASE_URL_FOR_WORKER"] = fresh_database
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def live_client(live_app: Flask) -> FlaskClient:
    return live_app.test_client()


# --- users and tokens ---------------------------------------------------------------------


_email_counter = itertools.count()


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    return _user_maker()


@pytest.fixture
def make_live_user(live_app: Flask) -> Callable[..., User]:
    def make(**kwargs: Any) -> User:
        with live_app.app_context():
            user = _user_maker()(**kwargs)
            db.session.refresh(user)  # the commit expired it; load before detaching
            db.session.expunge(user)
            return user

    return make


def _user_maker() -> Callable[..., User]:
    def make(
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
        verified: bool = True,
        admin: bool = False,
        **fields: Any,
    ) -> User:
        user = User(
            email=email or f"user{next(_email_counter)}@example.com",
            password_hash=hash_password(password),
            is_email_verified=verified,
            is_admin=admin,
            **fields,
        )
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def user(make_user: Callable[..., User]) -> User:
    """A registered user whose email is not verified yet."""
    return make_user(verified=False)


@pytest.fixture
def verified_user(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def other_user(make_user: Callable[..., User]) -> User:
    return make_user()


@pytest.fixture
def admin_user(make_user: Callable[..., User]) -> User:
    return make_user(admin=True)


def bearer(user: User | int) -> dict[str, str]:
    """Authorization header with a fresh access token (needs an app context)."""
    user_id = user if isinstance(user, int) else user.id
    return {"Authorization": f"Bearer {create_access_token(identity=str(user_id))}"}


@pytest.fixture
def auth_headers(app: Flask) -> Callable[[User], dict[str, str]]:
    return bearer


# --- the real worker --------------------------------------------------------------------


class WorkerProcess:
    """`python -m workers` (the Procfile's worker) against a live database."""

    def __init__(self, database_url: str, smtp_port: int, **env: str) -> None:
        self.database_url = database_url
        environment = {
            **os.environ,
            "APP_ENV": "testing",
            "DATABASE_URL": database_url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp_port),
            "WORKER_CONCURRENCY": "4",
            "WORKER_POLL_INTERVAL": "0.05",
            "WORKER_HEARTBEAT_INTERVAL": "1",
            "STALLED_WORKER_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.log_path = Path(PROJECT_ROOT, ".data", "test-logs", f"worker-{os.getpid()}.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_registered()

    def _wait_registered(self, timeout: float = 30.0) -> None:
        """Ready once the worker has registered itself in procrastinate_workers."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker exited early, see {self.log_path}")
                row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
                if row and row[0] > 0:
                    return
                time.sleep(0.05)
        raise RuntimeError(f"worker did not start within {timeout}s, see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a machine dies."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def start_worker(
    fresh_database: str, smtp_server: SmtpServer, live_app: Flask
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes on the live database; all are stopped afterwards."""
    workers: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        worker = WorkerProcess(fresh_database, smtp_server.port, **env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def lock_waiters(database_url: str) -> int:
    """Sessions of this database currently waiting for a lock: how race tests know that
    the requests they fired are really queued behind a lock they hold."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return row[0] if row else 0
