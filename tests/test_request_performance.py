"""Issue 14's leaner requests: reading requests in autocommit, a page and its total from
one statement, the total right on full, partial, empty and past-the-end pages."""

from __future__ import annotations

import json

from sqlalchemy import select

from jobboard.extensions import db
from jobboard.models import User
from tests.support.auth import bearer


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
