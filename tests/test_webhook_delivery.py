"""Delivering webhooks (jobboard.webhooks.delivery), one run of an endpoint's task at a time
in this process, against real receivers on 127.0.0.1 and the live database: signatures,
success and failure, redirects, 410, Retry-After, the retry schedule, disabling, the
first 1 KiB of the body, and receivers that hang or break mid-answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from devtools.wire import WireCounter
from jobboard.extensions import db
from jobboard.webhooks.delivery import (
    CLAIM,
    IN_FLIGHT,
    LEASE_MARGIN_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    EndpointRun,
    next_attempt_at,
    parse_retry_after,
    parse_schedule,
)
from tests.support import receivers
from tests.support import webhooks as wh
from tests.support.auth import bearer
from tests.support.receivers import Receiver


@pytest.fixture
def receiver_factory():
    started: list[Receiver] = []

    def start(behaviour=None, tls=None) -> Receiver:
        receiver = Receiver(behaviour, tls)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def owner(live_app, make_live_user):
    user = make_live_user()
    with live_app.app_context():
        user.headers = bearer(user)
    return user


def url_of(live_app) -> str:
    return live_app.config["DATABASE_URL_FOR_WORKER"]


def statuses(live_app, endpoint_id: int) -> list[str]:
    return [row["status"] for row in wh.deliveries(live_app, endpoint_id)]


def set_sql(live_app, sql: str, **params) -> None:
    with live_app.app_context():
        db.session.execute(text(sql), params)
        db.session.commit()


def test_a_delivery_is_signed_as_standard_webhooks_and_the_reference_library_verifies_it(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory()
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "1 sent"

    (request,) = receiver.wait_for(1)
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "job.failed"
    assert request.headers["webhook-id"] == payload["id"]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert request.headers["content-type"] == "application/json"
    # The body is the event as the feed lists it.
    feed = live_client.get("/api/events/", headers=owner.headers).get_json()
    assert feed == [payload]
    (delivery,) = wh.deliveries(live_app, endpoint["id"])
    assert (delivery["status"], delivery["attempts"], delivery["next_attempt_at"]) == (
        "succeeded",
        1,
        None,
    )
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert attempt["response_status"] == 200 and attempt["response_body"] == "ok"
    assert attempt["duration_ms"] >= 0 and attempt["error"] is None


def test_after_a_rotation_both_secrets_sign_for_24_hours_then_only_the_new_one(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory()
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    rotated = live_client.post(
        f"/api/webhooks/{endpoint['id']}/rotate-secret/", headers=owner.headers
    )
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != endpoint["secret"]
    wh.emit(live_app, owner.id)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    (request,) = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint["secret"]).verify(request.body, request.headers)
    Webhook(new_secret).verify(request.body, request.headers)

    set_sql(
        live_app,
        "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s'",
    )
    wh.emit(live_app, owner.id)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    second = receiver.wait_for(2)[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(second.body, second.headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(endpoint["secret"]).verify(second.body, second.headers)


@pytest.mark.parametrize(
    "behaviour, error",
    [
        (receivers.answer(500, b"boom"), "HTTP 500"),
        (receivers.answer(404), "HTTP 404"),
        (receivers.close_mid_head, "RemoteProtocolError"),
    ],
    ids=["500", "404", "closed-mid-head"],
)
def test_a_failed_attempt_is_retried_after_the_schedule_with_jitter(
    live_app, live_client, owner, receiver_factory, behaviour, error
):
    receiver = receiver_factory(behaviour)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    before = datetime.now(UTC)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    (delivery,) = wh.deliveries(live_app, endpoint["id"])
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    wait = (delivery["next_attempt_at"] - before).total_seconds()
    assert 5 * 0.9 - 0.1 <= wait <= 5 * 1.1 + 5  # the first wait, 5 s +-10 %
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert error in attempt["error"]
    # The task's next run waits for that attempt.
    (entry,) = [e for e in wh.queue_entries(live_app, endpoint["id"]) if e["status"] == "todo"]
    assert entry["scheduled_at"] is not None
    assert abs((entry["scheduled_at"] - delivery["next_attempt_at"]).total_seconds()) < 0.01


def test_a_redirect_is_a_failure_and_is_not_followed(
    live_app, live_client, owner, receiver_factory
):
    target = receiver_factory()
    receiver = receiver_factory(receivers.answer(302, b"", Location=target.url))
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert attempt["response_status"] == 302 and attempt["error"] == "HTTP 302"
    assert wh.deliveries(live_app, endpoint["id"])[0]["status"] == "pending"
    assert target.connections == 0


def test_a_hanging_receiver_times_out(live_app, live_client, owner, receiver_factory):
    receiver = receiver_factory(receivers.hang)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    started = time.monotonic()
    wh.run_endpoint(url_of(live_app), endpoint["id"], wh.settings(timeout=1.0))
    assert time.monotonic() - started < 10
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert attempt["response_status"] is None
    assert attempt["error"] == "No answer within 1 s."
    assert 1000 <= attempt["duration_ms"] < 3000


def test_a_100_mb_answer_keeps_its_first_kib_and_is_not_read_further(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory(receivers.huge_body)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert attempt["response_status"] == 200 and attempt["response_body"] == "x" * 1024
    assert wh.deliveries(live_app, endpoint["id"])[0]["status"] == "succeeded"
    time.sleep(0.5)  # let the receiver notice the closed connection
    # Far from 100 MB: what socket buffers held when the connection was closed.
    assert receiver.bytes_sent < 16 * 1024 * 1024


def test_a_connection_closed_mid_body_keeps_the_answer_status(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory(receivers.close_mid_body)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert attempt["response_status"] == 200
    assert attempt["response_body"] == "only ten b"
    assert "cut off" in attempt["error"]
    assert wh.deliveries(live_app, endpoint["id"])[0]["status"] == "succeeded"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_delays_the_next_attempt_at_least_that_long(
    live_app, live_client, owner, receiver_factory, status
):
    receiver = receiver_factory(receivers.answer(status, b"slow down", Retry_After="120"))
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    before = datetime.now(UTC)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    (delivery,) = wh.deliveries(live_app, endpoint["id"])
    assert (delivery["next_attempt_at"] - before).total_seconds() >= 120


@pytest.mark.parametrize("header", ["soon", "-5", "1.5", "Wed, 99 Foo 2026 00:00:00 GMT", ""])
def test_an_invalid_retry_after_is_ignored(live_app, live_client, owner, receiver_factory, header):
    receiver = receiver_factory(receivers.answer(429, b"", Retry_After=header))
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    before = datetime.now(UTC)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    (delivery,) = wh.deliveries(live_app, endpoint["id"])
    assert (delivery["next_attempt_at"] - before).total_seconds() < 5 * 1.1 + 5


def test_retry_after_values():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30
    assert parse_retry_after("999999", now) == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("Tue, 01 Dec 2026 12:01:00 GMT", now) == 60
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now) is None
    for invalid in (None, "", "x", "-1", "1e3", "3.5", "Tue, 01 Dec 2026 12:01:00"):
        assert parse_retry_after(invalid, now) is None
    # Retry-After lengthens a wait, never shortens one.
    schedule = (300.0,)
    fixed = next_attempt_at(1, now, schedule, retry_after=10)
    assert fixed is not None and (fixed - now).total_seconds() >= 270


def test_the_schedule_has_one_attempt_more_than_waits_each_with_10_percent_jitter():
    schedule = parse_schedule("5,300,1800,7200,18000,36000,36000")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    total = 0.0
    for attempt, wait in enumerate(schedule, start=1):
        at = next_attempt_at(attempt, now, schedule)
        assert at is not None
        assert wait * 0.9 <= (at - now).total_seconds() <= wait * 1.1
        total += wait
    assert next_attempt_at(len(schedule) + 1, now, schedule) is None
    assert round(total / 3600, 1) == 27.6  # 8 attempts over ~27.6 h
    with pytest.raises(ValueError):
        parse_schedule("5,-1")


def test_after_the_last_attempt_the_delivery_fails_and_a_long_failing_endpoint_is_disabled(
    live_app, live_client, owner, receiver_factory, smtp_server
):
    receiver = receiver_factory(receivers.answer(500))
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    config = wh.settings(schedule=(0.0, 0.0), disable_after=3600.0)
    wh.run_endpoint(url_of(live_app), endpoint["id"], config)
    (delivery,) = wh.deliveries(live_app, endpoint["id"])
    # Three attempts (two waits of 0 s), then failed: but the endpoint has been failing
    # for less than disable_after, so it stays enabled.
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    assert live_client.get(f"/api/webhooks/{endpoint['id']}/", headers=owner.headers).get_json()[
        "enabled"
    ]

    set_sql(live_app, "UPDATE webhook_endpoints SET failing_since = now() - interval '2 hours'")
    wh.emit(live_app, owner.id)
    wh.run_endpoint(url_of(live_app), endpoint["id"], config)
    read = live_client.get(f"/api/webhooks/{endpoint['id']}/", headers=owner.headers).get_json()
    assert (read["enabled"], read["disabled_reason"]) == (False, "failing")
    events = live_client.get(
        "/api/events/?types=webhook.disabled", headers=owner.headers
    ).get_json()
    assert [(e["data"]["endpoint"]["id"], e["data"]["reason"]) for e in events] == [
        (endpoint["id"], "failing")
    ]
    assert "secret" not in events[0]["data"]["endpoint"]
    # Its email is queued with it, through the event email task.
    with live_app.app_context():
        queued = (
            db.session.execute(
                text("SELECT args FROM procrastinate_jobs WHERE task_name = 'send_event_email'")
            )
            .scalars()
            .all()
        )
    assert len(queued) == 1


def test_410_disables_the_endpoint_at_once_and_pending_deliveries_wait_for_it(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory(receivers.answer(410))
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id, count=5)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    read = live_client.get(f"/api/webhooks/{endpoint['id']}/", headers=owner.headers).get_json()
    assert (read["enabled"], read["disabled_reason"]) == (False, "gone")
    statuses = sorted(d["status"] for d in wh.deliveries(live_app, endpoint["id"]))
    # At most the two sent at once were answered 410; the others were never sent.
    assert 1 <= statuses.count("failed") <= 2
    assert statuses.count("pending") == 5 - statuses.count("failed")
    assert len(receiver.received) == statuses.count("failed")
    # A run while it is disabled sends nothing and leaves no run to come.
    assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "endpoint disabled"
    assert [e for e in wh.queue_entries(live_app, endpoint["id"]) if e["status"] == "todo"] == []
    # Enabling clears the failure state and wakes it; the pending ones go out.
    receiver.behaviour = receivers.answer(204, b"")
    enabled = live_client.patch(
        f"/api/webhooks/{endpoint['id']}/", json={"enabled": True}, headers=owner.headers
    ).get_json()
    assert (enabled["enabled"], enabled["disabled_reason"], enabled["failing_since"]) == (
        True,
        None,
        None,
    )
    assert [e["status"] for e in wh.queue_entries(live_app, endpoint["id"])][-1] == "todo"
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    statuses = [d["status"] for d in wh.deliveries(live_app, endpoint["id"])]
    assert statuses.count("succeeded") == 5 - statuses.count("failed")


def test_at_most_two_deliveries_are_in_flight_per_endpoint(
    live_app, live_client, owner, receiver_factory
):
    def slow(request, receiver, connection):
        time.sleep(0.2)
        return receivers.Answer()

    receiver = receiver_factory(slow)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id, count=10)
    wh.run_endpoint(url_of(live_app), endpoint["id"])
    assert len(receiver.received) == 10
    assert receiver.max_in_flight == 2


def test_a_run_stops_starting_sends_after_its_time_and_leaves_the_rest_due(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory(receivers.hang)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id, count=6)
    started = time.monotonic()
    wh.run_endpoint(url_of(live_app), endpoint["id"], wh.settings(timeout=1.0, run_seconds=0.5))
    # Two sends started (each times out after 1 s); the others were released unsent.
    assert time.monotonic() - started < 5
    assert len(receiver.received) == 2
    rows = wh.deliveries(live_app, endpoint["id"])
    assert sorted(row["attempts"] for row in rows) == [0, 0, 0, 0, 1, 1]
    assert all(row["lease_expires_at"] is None for row in rows)
    # The next run is due now, for the ones never sent.
    todo = [e for e in wh.queue_entries(live_app, endpoint["id"]) if e["status"] == "todo"]
    assert [entry["scheduled_at"] for entry in todo] == [None]


def test_a_delivery_claimed_by_a_run_that_died_waits_for_its_lease(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory()
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    set_sql(live_app, "UPDATE webhook_deliveries SET lease_expires_at = now() + interval '1 h'")
    assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "0 sent"
    todo = [e for e in wh.queue_entries(live_app, endpoint["id"]) if e["status"] == "todo"]
    assert todo and todo[0]["scheduled_at"] > datetime.now(UTC) + timedelta(minutes=59)
    set_sql(live_app, "UPDATE webhook_deliveries SET lease_expires_at = now() - interval '1 s'")
    assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "1 sent"


def test_a_deleted_endpoint_drops_its_deliveries_and_a_run_for_it_ends_quietly(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory()
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id, count=3)
    assert [e["status"] for e in wh.queue_entries(live_app, endpoint["id"])] == ["todo"]
    deleted = live_client.delete(f"/api/webhooks/{endpoint['id']}/", headers=owner.headers)
    assert deleted.status_code == 204
    assert wh.deliveries(live_app, endpoint["id"]) == []
    # Its waiting entry is cancelled; a run that started anyway finds nothing to do.
    assert [e["status"] for e in wh.queue_entries(live_app, endpoint["id"])] == ["cancelled"]
    assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "endpoint gone"
    assert receiver.received == []


def test_many_deliveries_share_two_kept_alive_connections_and_few_statements(
    live_app, live_client, owner, receiver_factory
):
    receiver = receiver_factory()
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id, count=60)
    wire = WireCounter(url_of(live_app)).start()
    try:
        assert wh.run_endpoint(wire.url, endpoint["id"]) == "60 sent"
        counted = wire.counts()
    finally:
        wire.stop()
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 60
    assert statuses(live_app, endpoint["id"]) == ["succeeded"] * 60
    # Keep-alive: at most IN_FLIGHT connections for the whole run.
    assert receiver.connections <= IN_FLIGHT
    # Claims and outcomes go by the group: the run's own statements (endpoint, claims,
    # outcome writes, next run) and the helper's two stay far below one per delivery.
    assert counted.round_trips <= 16, counted


def test_an_answer_slower_than_5_s_within_the_timeout_succeeds(
    live_app, live_client, owner, receiver_factory
):
    def slow(request, receiver, connection):
        time.sleep(5.5)
        return receivers.Answer(204, {}, b"")

    receiver = receiver_factory(slow)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id)
    wh.run_endpoint(url_of(live_app), endpoint["id"], wh.settings(timeout=10.0))
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert (attempt["response_status"], attempt["error"]) == (204, None)
    assert statuses(live_app, endpoint["id"]) == ["succeeded"]


def test_a_slow_endpoint_claims_only_what_it_reaches_within_the_lease(
    live_app, live_client, owner, receiver_factory
):
    def slow(request, receiver, connection):
        time.sleep(0.5)
        return receivers.Answer(204, {}, b"")

    receiver = receiver_factory(slow)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id, count=8)
    run = EndpointRun(None, endpoint["id"], wh.SETTINGS)
    assert run._claim_size() == 2 * IN_FLIGHT  # nothing known yet
    run._attempted, run._duration_total = 4, 2.0  # 0.5 s an attempt
    assert run._claim_size() == min(CLAIM, int(IN_FLIGHT * LEASE_MARGIN_SECONDS / 0.5))
    run._attempted, run._duration_total = 2, 30.0  # an endpoint that times out
    assert run._claim_size() == IN_FLIGHT
    assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "8 sent"
    assert statuses(live_app, endpoint["id"]) == ["succeeded"] * 8


def test_an_endpoint_deleted_mid_run_ends_the_run_quietly(
    live_app, live_client, owner, receiver_factory
):
    endpoint_ids: list[int] = []

    def delete_on_first(request, receiver, connection):
        if len(receiver.received) == 1:
            set_sql(live_app, "DELETE FROM webhook_endpoints WHERE id = :id", id=endpoint_ids[0])
        return receivers.Answer(204, {}, b"")

    receiver = receiver_factory(delete_on_first)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    endpoint_ids.append(endpoint["id"])
    wh.emit(live_app, owner.id, count=100)
    said = wh.run_endpoint(url_of(live_app), endpoint["id"])
    # The sends under way finish; the first write finds the endpoint gone and nothing
    # more starts: no error, no run left to come, nothing left of it.
    assert said.endswith(" sent") and len(receiver.received) < 100
    assert wh.deliveries(live_app, endpoint["id"]) == []
    assert [e for e in wh.queue_entries(live_app, endpoint["id"]) if e["status"] == "todo"] == []


def test_a_receiver_that_closes_each_connection_after_answering_gets_every_delivery_once(
    live_app, live_client, owner, receiver_factory
):
    def answer_then_close(request, receiver, connection):
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return None  # the receiver closes the connection: no keep-alive after all

    receiver = receiver_factory(answer_then_close)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    wh.emit(live_app, owner.id, count=10)
    assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "10 sent"
    assert statuses(live_app, endpoint["id"]) == ["succeeded"] * 10
    assert len(receiver.received) == 10
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 10


@pytest.mark.parametrize("another_run_waits", [False, True])
def test_a_drained_run_lingers_for_what_comes_due_unless_another_endpoint_waits(
    live_app, live_client, owner, make_live_user, receiver_factory, another_run_waits
):
    def emit_once_more(request, receiver, connection):
        if len(receiver.received) == 1:
            wh.emit(live_app, owner.id)  # a change committed while the run sends
        return receivers.Answer(204, {}, b"")

    receiver = receiver_factory(emit_once_more)
    endpoint = wh.create_endpoint(live_client, owner.headers, receiver.url)
    if another_run_waits:
        other = make_live_user()
        with live_app.app_context():
            other_headers = bearer(other)
        other_receiver = receiver_factory()
        wh.create_endpoint(live_client, other_headers, other_receiver.url)
        wh.emit(live_app, other.id)  # its run waits in the queue for a slot
    wh.emit(live_app, owner.id)
    said = wh.run_endpoint(url_of(live_app), endpoint["id"])
    if another_run_waits:
        # The run gave its slot up: the second change goes in the entry its commit queued.
        assert said == "1 sent"
        assert statuses(live_app, endpoint["id"]) == ["succeeded", "pending"]
        assert wh.run_endpoint(url_of(live_app), endpoint["id"]) == "1 sent"
    else:
        assert said == "2 sent"
    assert statuses(live_app, endpoint["id"]) == ["succeeded", "succeeded"]
