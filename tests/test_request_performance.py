"""Lean requests: reading requests in autocommit, a page and its total from
one statement, the total right on full, partial, empty and past-the-end pages; the
statements a GET and a POST of /api/jobs/ cost, counted on the wire."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import event, select

from devtools.wire import WireCounter
from jobboard import create_app
from jobboard.extensions import db
from jobboard.models import Job, User
from tests.support.auth import bearer
from tests.support.database import make_config
from tests.support.factories import PlanFactory, UserFactory
from tests.support.jobs import payload


def _driver_autocommit() -> bool:
    return db.session.connection().connection.driver_connection.autocommit


def test_reading_requests_run_in_autocommit_and_writing_ones_in_transactions(live_app):
    for method, expected in [("GET", True), ("HEAD", True), ("POST", False), ("PATCH", False)]:
        with live_app.test_request_context("/api/jobs/", method=method):
            assert _driver_autocommit() is expected, method
            db.session.remove()
    # Outside a request (the worker, the CLI) a connection keeps its transactions, even
    # one that a reading request used before (the pool hands the same connection back).
    with live_app.app_context():
        assert _driver_autocommit() is False
        db.session.remove()


def _total(response) -> int:
    assert response.status_code == 200, response.get_json()
    return json.loads(response.headers["X-Pagination"])["total"]


def test_page_totals_come_with_the_page(live_app, live_client, make_live_user):
    make_live_user(email="pages@example.com")
    with live_app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == "pages@example.com"))
        headers = bearer(user_id)
    for i in range(5):
        created = live_client.post("/api/jobs/", json={"name": f"j{i}"}, headers=headers)
        assert created.status_code == 201, created.get_json()

    full = live_client.get("/api/jobs/?page=1&page_size=2", headers=headers)
    assert _total(full) == 5 and len(full.get_json()) == 2
    partial = live_client.get("/api/jobs/?page=3&page_size=2", headers=headers)
    assert _total(partial) == 5 and len(partial.get_json()) == 1
    past_the_end = live_client.get("/api/jobs/?page=9&page_size=2", headers=headers)
    assert _total(past_the_end) == 5 and past_the_end.get_json() == []
    nothing = live_client.get("/api/jobs/?status=failed", headers=headers)
    assert _total(nothing) == 0 and nothing.get_json() == []
    # Bad input is still a 422, not a 500.
    assert live_client.get("/api/jobs/?page=0", headers=headers).status_code == 422


# --- statements per request, counted on the wire (BEGIN and COMMIT included) -------------


@pytest.fixture
def counted_app(fresh_database, smtp_server) -> Iterator[tuple[Flask, WireCounter]]:
    """An application whose every database message goes through the benchmark's counting
    proxy (`devtools.wire`): what it counts is what PostgreSQL receives."""
    wire = WireCounter(fresh_database).start()
    application = create_app(make_config(wire.url, smtp_server.port))
    try:
        yield application, wire
    finally:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()
        wire.stop()


def _statements_of(
    application: Flask, wire: WireCounter, call: Callable[[], object]
) -> tuple[int, Counter[str], list[str]]:
    """How many statements `call` runs, their texts as `devtools.wire` folds them, and the
    SQL that SQLAlchemy ran, whole (BEGIN and COMMIT are psycopg's own)."""
    executed: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        executed.append(statement)

    with application.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    before, texts_before = wire.counts(), wire.statement_texts()
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return (wire.counts() - before).statements, wire.statement_texts() - texts_before, executed


def _writer(application: Flask, **plan_limits: int) -> dict[str, str]:
    with application.app_context():
        user = UserFactory()
        if plan_limits:
            user.plan_name = PlanFactory(name=f"counted-{user.id}", **plan_limits).name
            db.session.commit()
        return bearer(user)


def test_get_jobs_runs_at_most_3_statements(counted_app):
    application, wire = counted_app
    client = application.test_client()
    headers = _writer(application)
    assert client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201
    client.get("/api/jobs/", headers=headers)  # the pool's first connection

    counted, texts, executed = _statements_of(
        application, wire, lambda: client.get("/api/jobs/", headers=headers)
    )

    assert counted <= 3, texts
    assert not any("FOR NO KEY UPDATE" in statement for statement in executed)  # no lock


@pytest.mark.parametrize("kind", ["echo", "manual"])
def test_post_jobs_runs_4_statements_revocation_and_quotas_included(counted_app, kind):
    """BEGIN; the token's user with its revocation state, locked, with its plan; one
    INSERT counting the quotas, deferring the queue entry (a queue kind) and storing the
    job; COMMIT."""
    application, wire = counted_app
    client = application.test_client()
    headers = _writer(application)
    client.get("/api/jobs/", headers=headers)  # the pool's first connection

    created = []
    counted, texts, executed = _statements_of(
        application,
        wire,
        lambda: created.append(
            client.post("/api/jobs/", json=payload(kind=kind, params={}), headers=headers)
        ),
    )

    assert created[0].status_code == 201, created[0].get_json()
    assert counted == 4, texts
    assert texts["BEGIN"] == texts["COMMIT"] == 1
    lookup, insert = executed
    assert "revoked_tokens" in lookup and "FOR NO KEY UPDATE OF users" in lookup
    assert "INSERT INTO jobs" in insert
    assert ("procrastinate_defer_jobs_v1" in insert) is (kind == "echo")
    with application.app_context():
        job = db.session.get(Job, created[0].get_json()["id"])
        assert (job.queue_job_id is not None) is (kind == "echo")


def test_a_refused_post_jobs_runs_no_more_statements(counted_app):
    """The statement that would insert the job says which quota refused it."""
    application, wire = counted_app
    client = application.test_client()
    headers = _writer(application, max_open_jobs=1)
    assert client.post("/api/jobs/", json=payload(), headers=headers).status_code == 201

    refused = []
    counted, texts, _ = _statements_of(
        application,
        wire,
        lambda: refused.append(client.post("/api/jobs/", json=payload(), headers=headers)),
    )

    assert refused[0].status_code == 429
    assert "max_open_jobs" in refused[0].get_json()["message"]
    assert counted == 4, texts  # BEGIN, lookup, INSERT (nothing inserted), ROLLBACK
    assert texts["BEGIN"] == texts["ROLLBACK"] == 1


@pytest.mark.parametrize("key", [None, "batch-key"])
def test_post_jobs_batch_of_100_runs_4_statements(counted_app, key):
    """A batch costs what one job does: BEGIN; the token's user, locked, with its plan;
    one INSERT counting the quotas for the whole batch, deferring every queue entry,
    storing every job and claiming the Idempotency-Key; COMMIT."""
    application, wire = counted_app
    client = application.test_client()
    headers = _writer(application) | ({"Idempotency-Key": key} if key else {})
    client.get("/api/jobs/", headers=headers)  # the pool's first connection
    body = {"jobs": [payload(name=f"job {i}") for i in range(100)]}

    created = []
    counted, texts, executed = _statements_of(
        application,
        wire,
        lambda: created.append(client.post("/api/jobs/batch/", json=body, headers=headers)),
    )

    assert created[0].status_code == 201, created[0].get_json()
    assert len(created[0].get_json()) == 100
    assert counted == 4, texts
    lookup, insert = executed
    assert "FOR NO KEY UPDATE OF users" in lookup
    assert "INSERT INTO procrastinate_jobs" in insert and "INSERT INTO jobs" in insert
    assert ("INSERT INTO idempotency_keys" in insert) is (key is not None)
