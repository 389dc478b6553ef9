"""Test harness: a real PostgreSQL, a real SMTP server, the real worker. This file
declares fixtures only; the helpers they use, and tests import, live in tests/support/.

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
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from devtools.database import DatabaseServer
from devtools.smtp import Mailbox, SmtpServer
from jobboard import create_app
from jobboard.embedded_db import recreate_database, with_database
from jobboard.extensions import db
from jobboard.models import User
from tests.support.auth import bearer
from tests.support.database import RUN_ID, make_config
from tests.support.factories import UserFactory
from tests.support.private_postgres import PrivateServer
from tests.support.procfile import production_environment
from tests.support.worker import WorkerProcess

# --- database server and databases -------------------------------------------------


@pytest.fixture(scope="session")
def database_server() -> DatabaseServer:
    url = os.environ.get("TEST_DATABASE_URL")
    return DatabaseServer.at(with_database(url, "postgres") if url else None)


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


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.stop()


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


@pytest.fixture
def make_user(app: Flask) -> Callable[..., User]:
    return UserFactory


@pytest.fixture
def make_live_user(live_app: Flask) -> Callable[..., User]:
    def make(**kwargs: Any) -> User:
        with live_app.app_context():
            user = UserFactory(**kwargs)
            db.session.refresh(user)  # the commit expired it; load before detaching
            db.session.expunge(user)
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


@pytest.fixture
def auth_headers(app: Flask) -> Callable[[User], dict[str, str]]:
    return bearer


# --- processes ----------------------------------------------------------------------------


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


@pytest.fixture
def production_env(fresh_database: str, smtp_server: SmtpServer) -> dict[str, str]:
    """The environment of the Procfile's entries in production, on the live database."""
    return production_environment(fresh_database, smtp_server.port)


# --- a PostgreSQL to stop -------------------------------------------------------------------


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    """A PostgreSQL of the test's own, to stop and start (tests/support/private_postgres.py)."""
    server = PrivateServer()
    yield server
    server.destroy()


@pytest.fixture
def private_app(private_server: PrivateServer, smtp_server) -> Iterator[Flask]:
    url = recreate_database(private_server.admin_url, "jobboard_restart")
    app = create_app(make_config(url, smtp_server.port))
    app.config["DATABASE_URL_FOR_WORKER"] = url
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
