"""The webhook endpoints API: every call, who may use it, its bad input, the plan's limit
(and two creates racing at it), and how events fan out to deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from jobboard.events.outbox import EventRow, write_events
from jobboard.extensions import db
from jobboard.models import Plan, User, WebhookDelivery, WebhookEndpoint
from tests.support.auth import bearer
from tests.support.races import behind_a_row_lock

URL = "http://127.0.0.1:9/hooks"  # never contacted: no worker runs in these tests


def create(client, headers, **fields):
    return client.post("/api/webhooks/", json={"url": URL, **fields}, headers=headers)


def deliveries_of(endpoint_id: int) -> list[WebhookDelivery]:
    return list(
        db.session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
            .execution_options(populate_existing=True)
        )
    )


def event(user: User, type_name: str = "job.failed") -> int:
    (event_id,) = write_events([EventRow(type_name, user.id, {"job": {"id": 1}})])
    db.session.commit()
    return event_id


@pytest.fixture
def me(verified_user, auth_headers):
    verified_user.headers = auth_headers(verified_user)
    return verified_user


def test_create_shows_the_secret_once_and_stores_it_sealed(client, me):
    response = create(client, me.headers, description="prod", types=["job.completed"])
    assert response.status_code == 201
    body = response.get_json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) == 6 + 44
    assert (body["url"], body["types"], body["description"], body["enabled"]) == (
        URL,
        ["job.completed"],
        "prod",
        True,
    )
    stored = db.session.get(WebhookEndpoint, body["id"])
    assert body["secret"] not in stored.secret
    read = client.get(f"/api/webhooks/{body['id']}/", headers=me.headers).get_json()
    assert "secret" not in read
    listed = client.get("/api/webhooks/", headers=me.headers).get_json()
    assert [e["id"] for e in listed] == [body["id"]] and "secret" not in listed[0]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"types": ["job.exploded"]}, "types"),
        ({"types": ["webhook.test"]}, "types"),
        ({"types": []}, "types"),
        ({"url": "https://8.8.8.8/" + "a" * 2000}, "url"),
        ({"url": ""}, "url"),
        ({"url": 5}, "url"),
        ({"description": "x" * 1001}, "description"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_422(client, me, fields, field):
    response = create(client, me.headers, **fields)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]["json"]


def test_a_url_over_2000_characters_is_refused_even_when_private_urls_are_allowed(client, me):
    response = create(client, me.headers, url="http://127.0.0.1/" + "a" * 1990)
    assert response.status_code == 422


def test_strangers_get_401_and_the_unverified_403(client, user, auth_headers):
    assert client.get("/api/webhooks/").status_code == 401
    assert client.post("/api/webhooks/", json={"url": URL}).status_code == 401
    assert create(client, auth_headers(user)).status_code == 403


def test_somebody_elses_endpoint_is_404_on_every_call(client, me, other_user, auth_headers):
    theirs = create(client, auth_headers(other_user)).get_json()["id"]
    base = f"/api/webhooks/{theirs}"
    calls = [
        ("get", f"{base}/", None),
        ("patch", f"{base}/", {"description": "mine now"}),
        ("delete", f"{base}/", None),
        ("post", f"{base}/rotate-secret/", None),
        ("post", f"{base}/test/", None),
        ("get", f"{base}/deliveries/", None),
        ("get", f"{base}/deliveries/1/", None),
        ("post", f"{base}/deliveries/1/resend/", None),
        ("post", f"{base}/recover/", {"since": "2026-01-01T00:00:00+00:00"}),
    ]
    for method, path, body in calls:
        response = getattr(client, method)(path, json=body, headers=me.headers)
        assert response.status_code == 404, (method, path, response.get_json())
    assert client.get("/api/webhooks/", headers=me.headers).get_json() == []
    assert db.session.get(WebhookEndpoint, theirs).description is None


def test_the_plan_limits_endpoints_free_1_pro_10(client, me, make_user, auth_headers):
    assert create(client, me.headers).status_code == 201
    refused = create(client, me.headers)
    assert refused.status_code == 429
    assert "max_webhook_endpoints" in refused.get_json()["message"]
    assert int(refused.headers["Retry-After"]) > 0
    # Deleting one makes room again.
    first = client.get("/api/webhooks/", headers=me.headers).get_json()[0]["id"]
    assert client.delete(f"/api/webhooks/{first}/", headers=me.headers).status_code == 204
    assert create(client, me.headers).status_code == 201

    pro = make_user(plan_name="pro", plan_ends_at=datetime.now(UTC) + timedelta(days=30))
    headers = auth_headers(pro)
    assert [create(client, headers).status_code for _ in range(10)] == [201] * 10
    assert create(client, headers).status_code == 429
    assert db.session.get(Plan, "pro").max_webhook_endpoints == 10
    assert db.session.get(Plan, "free").max_webhook_endpoints == 1
    plan = client.get("/api/me/plan/", headers=headers).get_json()["plan"]
    assert plan["max_webhook_endpoints"] == 10


def test_two_creates_racing_at_the_limit_let_exactly_one_through(live_app, make_live_user):
    user = make_live_user()
    with live_app.app_context():
        headers = bearer(user)
    responses = behind_a_row_lock(
        live_app,
        live_app.config["DATABASE_URL_FOR_WORKER"],
        "SELECT 1 FROM users WHERE id = %s FOR UPDATE",
        user.id,
        [lambda c: create(c, headers), lambda c: create(c, headers)],
    )
    assert sorted(r.status_code for r in responses) == [201, 429]


def test_patch_changes_and_enabling_clears_the_failure_state(client, me):
    endpoint = create(client, me.headers).get_json()
    path = f"/api/webhooks/{endpoint['id']}/"
    assert client.patch(path, json={}, headers=me.headers).status_code == 422
    assert client.patch(path, json={"types": ["nope"]}, headers=me.headers).status_code == 422
    changed = client.patch(
        path,
        json={"url": "http://127.0.0.1:10/x", "types": ["bid.placed"], "description": None},
        headers=me.headers,
    ).get_json()
    assert (changed["url"], changed["types"]) == ("http://127.0.0.1:10/x", ["bid.placed"])
    disabled = client.patch(path, json={"enabled": False}, headers=me.headers).get_json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "by_owner")
    db.session.execute(
        text("UPDATE webhook_endpoints SET failing_since = now() WHERE id = :id"),
        {"id": endpoint["id"]},
    )
    enabled = client.patch(path, json={"enabled": True}, headers=me.headers).get_json()
    assert (enabled["enabled"], enabled["disabled_reason"], enabled["failing_since"]) == (
        True,
        None,
        None,
    )


def test_events_fan_out_to_enabled_endpoints_that_take_their_type(
    client, me, other_user, auth_headers
):
    every = create(client, me.headers).get_json()["id"]
    db.session.execute(
        text("UPDATE plans SET max_webhook_endpoints = 5 WHERE name = 'free'"),
    )
    bids_only = create(client, me.headers, types=["bid.placed"]).get_json()["id"]
    off = create(client, me.headers).get_json()["id"]
    client.patch(f"/api/webhooks/{off}/", json={"enabled": False}, headers=me.headers)
    theirs = create(client, auth_headers(other_user)).get_json()["id"]

    event(me, "job.failed")
    event(me, "bid.placed")
    assert len(deliveries_of(every)) == 2
    assert len(deliveries_of(bids_only)) == 1
    assert deliveries_of(off) == [] and deliveries_of(theirs) == []
    # Each endpoint with deliveries has one waiting run of its task.
    waiting = (
        db.session.execute(
            text(
                "SELECT queueing_lock FROM procrastinate_jobs WHERE queue_name = 'webhooks'"
                " AND status = 'todo' ORDER BY queueing_lock"
            )
        )
        .scalars()
        .all()
    )
    assert waiting == sorted([f"webhook-endpoint-{every}", f"webhook-endpoint-{bids_only}"])


def test_the_test_call_reaches_that_endpoint_only_and_not_the_feed(client, me):
    db.session.execute(text("UPDATE plans SET max_webhook_endpoints = 5 WHERE name = 'free'"))
    tested = create(client, me.headers, types=["bid.placed"]).get_json()["id"]
    other = create(client, me.headers).get_json()["id"]
    response = client.post(f"/api/webhooks/{tested}/test/", headers=me.headers)
    assert response.status_code == 202
    assert response.get_json()["event_id"].startswith("evt_")
    (delivery,) = deliveries_of(tested)
    assert delivery.event.type == "webhook.test"
    assert delivery.event.data["endpoint_id"] == tested
    assert deliveries_of(other) == []


def test_deliveries_list_filter_detail_resend_and_recover(client, me):
    endpoint = create(client, me.headers).get_json()["id"]
    for _ in range(3):
        event(me)
    rows = deliveries_of(endpoint)
    rows[0].status, rows[0].attempts = "failed", 8
    rows[1].status = "succeeded"
    db.session.add_all(rows)
    db.session.commit()
    base = f"/api/webhooks/{endpoint}/deliveries/"
    listed = client.get(base, headers=me.headers).get_json()
    assert [d["id"] for d in listed] == [r.id for r in reversed(rows)]  # newest first
    assert [d["status"] for d in client.get(f"{base}?status=failed", headers=me.headers).json] == [
        "failed"
    ]
    assert client.get(f"{base}?status=lost", headers=me.headers).status_code == 422
    detail = client.get(f"{base}{rows[0].id}/", headers=me.headers).get_json()
    assert detail["attempt_history"] == [] and detail["event"]["id"] == detail["event_id"]
    assert client.get(f"{base}99999999999/", headers=me.headers).status_code == 404

    resent = client.post(f"{base}{rows[0].id}/resend/", headers=me.headers)
    assert resent.status_code == 202
    assert (resent.get_json()["status"], resent.get_json()["event_id"]) == (
        "pending",
        detail["event_id"],
    )
    again = db.session.get(WebhookDelivery, rows[0].id, populate_existing=True)
    assert (again.round_attempts, again.attempts) == (0, 8)

    for row in deliveries_of(endpoint):
        row.status = "failed"
    db.session.commit()
    recover = f"/api/webhooks/{endpoint}/recover/"
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert client.post(recover, json={"since": future}, headers=me.headers).json == {"resent": 0}
    assert client.post(recover, json={"since": past, "until": future}, headers=me.headers).json == {
        "resent": 3
    }
    assert {r.status for r in deliveries_of(endpoint)} == {"pending"}
    for body in (
        {},
        {"since": "2026-01-01T00:00:00"},
        {"since": future, "until": past},
    ):
        assert client.post(recover, json=body, headers=me.headers).status_code == 422


def test_delete_drops_pending_deliveries_and_the_waiting_run(client, me):
    endpoint = create(client, me.headers).get_json()["id"]
    event(me)
    assert client.delete(f"/api/webhooks/{endpoint}/", headers=me.headers).status_code == 204
    assert deliveries_of(endpoint) == []
    statuses = (
        db.session.execute(
            text("SELECT status FROM procrastinate_jobs WHERE queueing_lock = :lock"),
            {"lock": f"webhook-endpoint-{endpoint}"},
        )
        .scalars()
        .all()
    )
    assert statuses == ["cancelled"]
    assert client.get(f"/api/webhooks/{endpoint}/", headers=me.headers).status_code == 404
