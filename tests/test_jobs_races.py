"""Races that need real commits on separate connections (no worker involved)."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from jobboard.extensions import db
from jobboard.models import IdempotencyKey, Job, User
from tests.support.auth import bearer
from tests.support.jobs import payload, queue_rows


def test_concurrent_posts_with_one_idempotency_key_create_one_job(live_app, make_live_user):
    make_live_user(email="racer@example.com")
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "racer@example.com"))
        headers = {**bearer(owner_id), "Idempotency-Key": "same-click"}
    body = payload()
    start = threading.Barrier(6)
    answers: list[tuple[int, int, bool]] = []

    def post() -> None:
        client = live_app.test_client()
        start.wait()
        response = client.post("/api/jobs/", json=body, headers=headers)
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        answers.append((response.status_code, response.get_json()["id"], replayed))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {status for status, _, _ in answers} == {201}
    assert len({job_id for _, job_id, _ in answers}) == 1
    assert sorted(replayed for _, _, replayed in answers) == [False] + [True] * 5
    with live_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 1
        assert db.session.scalar(select(func.count()).select_from(IdempotencyKey)) == 1
        # The losers' queue entries rolled back with their jobs.
        assert len(queue_rows("process_job")) == 1
