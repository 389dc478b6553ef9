"""GET /api/events/: the caller's events after a cursor, oldest first, safe against
transactions that commit late (two real connections committing out of order), and the
retention of old events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text

from config import libpq_url
from jobboard.events.feed import purge_old_events
from jobboard.events.outbox import WRITE_EVENTS_SQL, EventRow, write_events, write_parameters
from jobboard.extensions import db
from tests.support.auth import bearer


@pytest.fixture
def reader(live_app, make_live_user):
    user = make_live_user()
    with live_app.app_context():
        user.headers = bearer(user)
    return user


def feed(client, user, query: str = "") -> list[dict]:
    response = client.get(f"/api/events/{query}", headers=user.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def write(connection: psycopg.Connection, user_id: int, name: str) -> None:
    row = EventRow("job.failed", user_id, {"job": {"id": 1, "name": name}})
    connection.execute(WRITE_EVENTS_SQL, write_parameters([row]))


def names(events: list[dict]) -> list[str]:
    return [event["data"]["job"]["name"] for event in events]


def test_a_cursor_never_skips_an_event_that_commits_late(live_app, live_client, reader):
    url = libpq_url(live_app.config["DATABASE_URL_FOR_WORKER"])
    with psycopg.connect(url, autocommit=True) as setup:
        write(setup, reader.id, "before")
    (before,) = feed(live_client, reader)
    with psycopg.connect(url) as early, psycopg.connect(url) as late:
        write(early, reader.id, "early")  # draws the lower id, commits last
        write(late, reader.id, "late")
        late.commit()
        # "late" has committed, but a transaction that began before it is still open:
        # the feed waits, rather than show "late" and move a cursor past "early".
        assert feed(live_client, reader, f"?after={before['id']}") == []
        early.commit()
    after = feed(live_client, reader, f"?after={before['id']}")
    assert names(after) == ["early", "late"]
    assert [event["id"] for event in after] == sorted(event["id"] for event in after)
    assert feed(live_client, reader, f"?after={after[-1]['id']}") == []


def test_a_transaction_that_began_first_but_writes_later_comes_first(live_app, live_client, reader):
    url = libpq_url(live_app.config["DATABASE_URL_FOR_WORKER"])
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        first.execute("UPDATE users SET bio = 'busy' WHERE id = %s", (reader.id,))
        write(second, reader.id, "second")
        second.commit()
        assert feed(live_client, reader) == []
        write(first, reader.id, "first")
        first.commit()
    assert names(feed(live_client, reader)) == ["first", "second"]


def test_a_long_transaction_of_another_database_does_not_hold_the_feed_back(
    live_app, live_client, reader, database_server
):
    with psycopg.connect(libpq_url(database_server.url("postgres"))) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # holds a transaction id
        with live_app.app_context():
            write_events([EventRow("job.failed", reader.id, {"job": {"id": 1, "name": "now"}})])
            db.session.commit()
        assert names(feed(live_client, reader)) == ["now"]


def test_types_limit_and_only_the_callers_events(live_app, live_client, reader, make_live_user):
    other = make_live_user()
    with live_app.app_context():
        rows = [
            EventRow("job.failed" if n % 2 else "bid.placed", reader.id, {"job": {"id": n}})
            for n in range(120)
        ]
        write_events([*rows, EventRow("job.failed", other.id, {"job": {"id": 999}})])
        db.session.commit()
    assert len(feed(live_client, reader)) == 50
    assert len(feed(live_client, reader, "?limit=100")) == 100
    page = feed(live_client, reader, "?limit=100")
    rest = feed(live_client, reader, f"?limit=100&after={page[-1]['id']}")
    assert len(rest) == 20
    assert {e["data"]["job"]["id"] for e in page + rest} == set(range(120))
    failed = feed(live_client, reader, "?types=job.failed&limit=100")
    assert len(failed) == 60 and {e["type"] for e in failed} == {"job.failed"}
    both = feed(live_client, reader, "?types=job.failed&types=bid.placed&limit=100")
    assert len(both) == 100


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?types=job.exploded",
        "?types=webhook.test",
        "?after=42",
        "?after=evt_xyz",
        "?after=evt_" + "g" * 32,
    ],
)
def test_bad_input_is_422(client, verified_user, auth_headers, query):
    response = client.get(f"/api/events/{query}", headers=auth_headers(verified_user))
    assert response.status_code == 422, response.get_json()


def test_strangers_401_unverified_403(client, user, auth_headers):
    assert client.get("/api/events/").status_code == 401
    assert client.get("/api/events/", headers=auth_headers(user)).status_code == 403


def test_the_feed_has_an_etag(live_app, live_client, reader):
    first = live_client.get("/api/events/", headers=reader.headers)
    etag = first.headers["ETag"]
    same = live_client.get("/api/events/", headers={**reader.headers, "If-None-Match": etag})
    assert same.status_code == 304 and same.data == b""
    with live_app.app_context():
        write_events([EventRow("job.failed", reader.id, {"job": {"id": 1}})])
        db.session.commit()
    changed = live_client.get("/api/events/", headers={**reader.headers, "If-None-Match": etag})
    assert changed.status_code == 200


def test_old_events_are_purged_with_their_deliveries(live_app, reader):
    with live_app.app_context():
        db.session.execute(
            text("UPDATE plans SET max_webhook_endpoints = 1"),
        )
        db.session.execute(
            text("INSERT INTO webhook_endpoints (user_id, url, secret) VALUES (:u, 'x', 'x')"),
            {"u": reader.id},
        )
        write_events([EventRow("job.failed", reader.id, {"job": {"id": n}}) for n in range(3)])
        db.session.execute(
            text(
                "UPDATE events SET created_at = now() - interval '31 days'"
                " WHERE data->'job'->>'id' <> '2'"
            )
        )
        db.session.commit()
        assert purge_old_events(datetime.now(UTC)) == 2
        left = db.session.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar()
        assert left == 1
        assert purge_old_events(datetime.now(UTC) + timedelta(days=31)) == 1
