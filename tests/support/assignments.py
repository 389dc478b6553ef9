"""Helpers for the tests of jobs done by people: a job awarded through the real API, the
queue rows and emails that go with it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask.testing import FlaskClient

from jobboard.models import User
from tests.support.auth import bearer
from tests.support.bids import bid_payload
from tests.support.events import queued_event_emails
from tests.support.jobs import payload


def post_job(client: FlaskClient, owner: User, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/jobs/", json=payload(**overrides), headers=bearer(owner))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def place_bid(client: FlaskClient, bidder: User, job_id: int, **overrides: Any) -> dict[str, Any]:
    response = client.post(
        f"/api/jobs/{job_id}/bids/", json=bid_payload(**overrides), headers=bearer(bidder)
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def accept(client: FlaskClient, owner: User, job_id: int, bid_id: int) -> dict[str, Any]:
    response = client.post(f"/api/jobs/{job_id}/bids/{bid_id}/accept/", headers=bearer(owner))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def awarded_job(
    client: FlaskClient,
    owner: User,
    assignee: User,
    *,
    deadline: date | None = None,
    **job_fields: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A job posted by `owner`, `assignee`'s bid on it accepted: (job, bid) as the API
    returns them after the accept."""
    job = post_job(client, owner, **job_fields)
    deadline = deadline or date.today() + timedelta(days=7)
    bid = place_bid(client, assignee, job["id"], proposed_deadline=deadline.isoformat())
    accept(client, owner, job["id"], bid["id"])
    job = client.get(f"/api/jobs/{job['id']}/", headers=bearer(owner)).get_json()
    return job, bid


def deliver(client: FlaskClient, user: User, job_id: int, body: Any = None, **kwargs: Any) -> Any:
    if body is None:
        body = {"output": {"text": "Bonjour"}, "note": "Done."}
    return client.post(f"/api/jobs/{job_id}/deliver/", json=body, headers=bearer(user), **kwargs)


def release(client: FlaskClient, user: User, job_id: int) -> Any:
    return client.post(f"/api/jobs/{job_id}/release/", headers=bearer(user))


def review(client: FlaskClient, user: User, job_id: int, body: Any = None) -> Any:
    if body is None:
        body = {"rating": 5, "comment": "Great."}
    return client.post(f"/api/jobs/{job_id}/reviews/", json=body, headers=bearer(user))


def queued_emails_to(address: str) -> list[dict[str, Any]]:
    """The event emails deferred so far for `address`, rendered as the worker sends them."""
    return [
        {"to": email.to, "subject": email.subject, "body": email.body, "type": email.type}
        for email in queued_event_emails()
        if email.to == address
    ]
