"""Health, docs, configuration and migrations."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from config import (
    DEV_JWT_SECRET_KEY,
    DEV_SECRET_KEY,
    ProductionConfig,
    libpq_url,
    sqlalchemy_url,
)
from jobboard import create_app
from jobboard.extensions import db


def test_health_reports_database_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_health_is_503_when_database_is_unreachable(smtp_server):
    from tests.support.database import make_config

    unreachable = make_config("postgresql://nobody@127.0.0.1:1/none", smtp_server.port)
    app = create_app(unreachable)
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_log_level_comes_from_the_apps_configuration(smtp_server):
    import logging

    from tests.support.database import make_config

    jobboard_logger = logging.getLogger("jobboard")
    before = jobboard_logger.level
    try:
        quiet = make_config("postgresql://nobody@127.0.0.1:1/none", smtp_server.port)
        quiet.LOG_LEVEL = "WARNING"
        app = create_app(quiet)
        assert app.logger.getEffectiveLevel() == logging.WARNING
        assert not logging.getLogger("jobboard.jobs.service").isEnabledFor(logging.INFO)
        chatty = make_config("postgresql://nobody@127.0.0.1:1/none", smtp_server.port)
        chatty.LOG_LEVEL = "DEBUG"
        assert create_app(chatty).logger.getEffectiveLevel() == logging.DEBUG
    finally:
        jobboard_logger.setLevel(before)


def test_openapi_document_is_served(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "jobboard"


def test_unknown_api_path_is_json_not_html(client):
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["code"] == 404


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db"),
        ("postgresql://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db"),
        ("postgresql+psycopg://u:p@h:5/db", "postgresql+psycopg://u:p@h:5/db"),
    ],
)
def test_database_url_forms_are_accepted(given, expected):
    assert sqlalchemy_url(given) == expected
    assert libpq_url(sqlalchemy_url(given)) == "postgresql://u:p@h:5/db"


def _production(**attributes):
    defaults = {
        "SECRET_KEY": "s" * 40,
        "JWT_SECRET_KEY": "j" * 40,
        "DATABASE_URL": "postgresql://u@h/db",
    }
    return type("Prod", (ProductionConfig,), {**defaults, **attributes})


@pytest.mark.parametrize(
    "attributes",
    [
        {"SECRET_KEY": DEV_SECRET_KEY},
        {"JWT_SECRET_KEY": DEV_JWT_SECRET_KEY},
        {"SECRET_KEY": "short"},
        {"DATABASE_URL": None},
    ],
)
def test_production_refuses_default_or_weak_secrets(attributes):
    with pytest.raises(RuntimeError, match="Refusing to start in production"):
        create_app(_production(**attributes))


def test_production_starts_with_real_secrets():
    app = create_app(_production())
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def _tables(connection) -> set[str]:
    rows = connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    )
    return {row[0] for row in rows}


def test_migrations_upgrade_twice_and_downgrade_fully(live_app: Flask):
    with live_app.app_context():
        upgrade()  # already at head: harmless
        with db.engine.connect() as connection:
            tables = _tables(connection)
        assert {"users", "jobs", "bids", "job_results", "procrastinate_jobs"} <= tables

        downgrade(revision="base")
        with db.engine.connect() as connection:
            assert _tables(connection) <= {"alembic_version"}
            leftovers = connection.execute(
                text(
                    "SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%' "
                    "UNION ALL SELECT count(*) FROM pg_type WHERE typname LIKE 'procrastinate%'"
                )
            ).scalars()
            assert list(leftovers) == [0, 0]

        upgrade()
        with db.engine.connect() as connection:
            assert "procrastinate_jobs" in _tables(connection)


def test_validation_errors_use_the_smorest_body_with_a_message(client, verified_user, auth_headers):
    response = client.post(
        "/api/jobs/", json={"name": 5, "priority": "x"}, headers=auth_headers(verified_user)
    )
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == 422
    assert body["status"] == "Unprocessable Entity"
    assert body["message"] == "Invalid input: json.name, json.priority"
    assert body["errors"]["json"]["name"] == ["Not a valid string."]


def test_worker_application_is_built_once_across_threads(app, monkeypatch):
    import threading

    import config
    from workers import context

    # The worker builds its app from the environment; point that at the test database.
    monkeypatch.setenv("APP_ENV", "testing")
    monkeypatch.setattr(config.TestConfig, "DATABASE_URL", app.config["SQLALCHEMY_DATABASE_URI"])
    monkeypatch.setattr(context, "_app", None)

    built = []
    barrier = threading.Barrier(4)

    def build():
        barrier.wait()
        built.append(context.flask_app())

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 4
    assert all(worker_app is built[0] for worker_app in built)
    assert built[0] is not app


def test_tasks_read_their_settings_from_the_apps_configuration(app):
    from workers.jobs import queue_retention_hours, stalled_worker_seconds

    app.config["STALLED_WORKER_SECONDS"], app.config["QUEUE_RETENTION_HOURS"] = 7.5, 3
    try:
        assert (stalled_worker_seconds(), queue_retention_hours()) == (7.5, 3)
    finally:
        app.config["STALLED_WORKER_SECONDS"] = ProductionConfig.STALLED_WORKER_SECONDS
        app.config["QUEUE_RETENTION_HOURS"] = ProductionConfig.QUEUE_RETENTION_HOURS
