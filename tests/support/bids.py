"""Helpers for the bids tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from jobboard.extensions import db
from jobboard.models import Job, User
from tests.support.auth import bearer
from tests.support.factories import JobFactory
from tests.support.races import behind_a_row_lock


def in_days(days: int) -> date:
    return date.today() + timedelta(days=days)


def bid_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "comment": "I can do this.",
        "proposed_deadline": in_days(7).isoformat(),
        "fee": "80.00",
        "currency": "USD",
    }
    payload.update(overrides)
    return payload


def make_live_job(live_app: Flask, owner: User, **fields: Any) -> Job:
    """A committed job, detached with its attributes loaded."""
    with live_app.app_context():
        job = JobFactory(owner=owner.id, **fields)
        db.session.refresh(job)
        db.session.expunge(job)
        return job


def live_headers(live_app: Flask, user: User) -> dict[str, str]:
    with live_app.app_context():
        return bearer(user)


class BidsApi:
    """The bid calls, as a client makes them."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def place(self, headers: dict[str, str], job_id: int, /, **overrides: Any) -> TestResponse:
        return self.client.post(
            f"/api/jobs/{job_id}/bids/", json=bid_payload(**overrides), headers=headers
        )

    def list_for_job(self, headers: dict[str, str], job_id: int, **query: Any) -> TestResponse:
        return self.client.get(f"/api/jobs/{job_id}/bids/", query_string=query, headers=headers)

    def read(self, headers: dict[str, str], job_id: int, bid_id: int) -> TestResponse:
        return self.client.get(f"/api/jobs/{job_id}/bids/{bid_id}/", headers=headers)

    def edit(self, headers: dict[str, str], job_id: int, bid_id: int, changes: Any) -> TestResponse:
        return self.client.patch(
            f"/api/jobs/{job_id}/bids/{bid_id}/", json=changes, headers=headers
        )

    def withdraw(self, headers: dict[str, str], job_id: int, bid_id: int) -> TestResponse:
        return self.client.delete(f"/api/jobs/{job_id}/bids/{bid_id}/", headers=headers)

    def accept(self, headers: dict[str, str], job_id: int, bid_id: int) -> TestResponse:
        return self.client.post(f"/api/jobs/{job_id}/bids/{bid_id}/accept/", headers=headers)

    def mine(self, headers: dict[str, str], **query: Any) -> TestResponse:
        return self.client.get("/api/bids/", query_string=query, headers=headers)


# --- races -------------------------------------------------------------------------------


def run_at_once(
    live_app: Flask,
    database_url: str,
    job_id: int,
    calls: list[Callable[[FlaskClient], TestResponse]],
) -> list[int]:
    """The calls at the same time, queued behind a lock on the job's row (see
    tests.support.races.behind_a_row_lock); their status codes."""
    lock = "SELECT id FROM jobs WHERE id = %s FOR UPDATE"
    responses = behind_a_row_lock(live_app, database_url, lock, job_id, calls)
    return [response.status_code for response in responses]
