"""Jobs done by people, without a worker: award, delivery, release, and the rules around
them (permissions, states, bad input). Races and the real worker are in
test_assignments_races.py and test_assignments_flow.py."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from jobboard.extensions import db
from jobboard.jobs.processing import Outcome, run_attempt
from jobboard.models import Bid, BidStatus, Job, JobResult, JobStatus, now_utc
from jobboard.notices import due_at
from tests.support.assignments import (
    accept,
    awarded_job,
    deliver,
    place_bid,
    post_job,
    queued_emails_to,
    release,
)
from tests.support.auth import bearer
from tests.support.jobs import queue_rows, set_queue_status


@pytest.fixture
def paula(make_user):
    return make_user(display_name="Paula Poster")


@pytest.fixture
def bob(make_user):
    return make_user(display_name="Bob Builder", bio="Translator", skills=["french"])


@pytest.fixture
def rita(make_user):
    return make_user(display_name="Rita Rival")


@pytest.fixture
def stranger(make_user):
    return make_user(display_name="Sam Stranger")


def stored_job(job_id: int) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job_id)


# --- award --------------------------------------------------------------------------------


def test_accepting_hands_the_job_over_and_cancels_its_queue_entry(client, paula, bob, rita):
    job = post_job(client, paula)
    (entry,) = queue_rows("process_job", job["id"])
    assert entry["status"] == "todo"
    bid = place_bid(
        client, bob, job["id"], proposed_deadline=(date.today() + timedelta(5)).isoformat()
    )
    place_bid(client, rita, job["id"])
    before = now_utc()

    accept(client, paula, job["id"], bid["id"])

    stored = stored_job(job["id"])
    assert stored.status == JobStatus.IN_PROGRESS
    assert stored.assignee_id == bob.id
    assert before <= stored.started_at <= now_utc()
    assert stored.due_date == date.today() + timedelta(days=5)
    assert stored.queue_job_id is None
    assert [e["status"] for e in queue_rows("process_job", job["id"])] == ["cancelled"]
    # The due date as the API shows it.
    shown = client.get(f"/api/jobs/{job['id']}/", headers=bearer(bob)).get_json()
    assert shown["due_date"] == stored.due_date.isoformat()
    assert shown["status"] == "in_progress"


def test_award_schedules_the_reminder_and_the_overdue_notice(client, paula, bob):
    deadline = date.today() + timedelta(days=3)
    job, _bid = awarded_job(client, paula, bob, deadline=deadline)

    (reminder,) = queue_rows("send_due_reminder", job["id"])
    (overdue,) = queue_rows("send_overdue_notice", job["id"])
    assert reminder["queue_name"] == overdue["queue_name"] == "mail"
    assert reminder["status"] == overdue["status"] == "todo"
    assert overdue["scheduled_at"] == due_at(deadline)
    assert reminder["scheduled_at"] == due_at(deadline) - timedelta(days=1)
    assert reminder["args"] == {"job_id": job["id"], "due_date": deadline.isoformat()}


def test_a_deadline_within_a_day_gets_no_reminder_only_the_overdue_notice(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob, deadline=date.today())
    due = due_at(date.today())
    assert (queue_rows("send_due_reminder", job["id"]) == []) == (
        due - timedelta(days=1) <= now_utc()
    )
    assert [e["scheduled_at"] for e in queue_rows("send_overdue_notice", job["id"])] == [due]


def test_the_worker_skips_an_entry_it_took_just_before_the_award(client, paula, bob):
    """The worker fetched the entry (doing) and waits for the row lock the accept holds:
    after the accept commits, its attempt finds the job handed to a person."""
    job = post_job(client, paula)
    entry_id = stored_job(job["id"]).queue_job_id
    set_queue_status(entry_id, "doing")
    bid = place_bid(client, bob, job["id"])

    accept(client, paula, job["id"], bid["id"])
    outcome = run_attempt(job["id"], queue_job_id=entry_id)

    assert outcome == Outcome.SKIPPED
    stored = stored_job(job["id"])
    assert (stored.status, stored.assignee_id, stored.attempts) == (
        JobStatus.IN_PROGRESS,
        bob.id,
        0,
    )
    assert stored.result is None


def test_a_job_the_queue_is_running_cannot_be_awarded(client, paula, bob):
    job = post_job(client, paula)
    bid = place_bid(client, bob, job["id"])
    stored = stored_job(job["id"])
    stored.status = JobStatus.IN_PROGRESS
    db.session.commit()

    response = client.post(f"/api/jobs/{job['id']}/bids/{bid['id']}/accept/", headers=bearer(paula))

    assert response.status_code == 409
    assert "in_progress" in response.get_json()["message"]
    assert db.session.get(Bid, bid["id"]).status == BidStatus.PENDING


# --- kind manual ------------------------------------------------------------------------------


def test_a_manual_job_is_never_queued_and_stays_open_until_awarded(client, paula, bob):
    job = post_job(client, paula, kind="manual", params={"brief": "Translate 300 words"})

    assert job["status"] == "pending"
    assert queue_rows("process_job", job["id"]) == []
    assert stored_job(job["id"]).queue_job_id is None
    open_ids = [j["id"] for j in client.get("/api/jobs/open/", headers=bearer(bob)).get_json()]
    assert job["id"] in open_ids

    bid = place_bid(client, bob, job["id"])
    accept(client, paula, job["id"], bid["id"])
    assert stored_job(job["id"]).status == JobStatus.IN_PROGRESS
    assert queue_rows("process_job", job["id"]) == []


def test_a_manual_job_that_reached_a_worker_anyway_is_not_run_as_a_success(client, paula):
    job = post_job(client, paula, kind="manual", max_attempts=1)
    outcome = run_attempt(job["id"])
    assert outcome == Outcome.FAILED
    assert "never by the queue" in stored_job(job["id"]).last_error


# --- deliver ----------------------------------------------------------------------------------


def test_the_assignee_delivers_the_result_is_stored_and_the_owner_told(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)

    response = deliver(
        client, bob, job["id"], {"output": {"text": "Bonjour", "words": 1}, "note": "Voilà."}
    )

    assert response.status_code == 200, response.get_json()
    delivered = response.get_json()
    assert delivered["status"] == "completed"
    assert delivered["finished_at"] is not None
    result = client.get(f"/api/jobs/{job['id']}/result/", headers=bearer(paula))
    assert result.status_code == 200
    body = result.get_json()
    assert body["output"] == {"text": "Bonjour", "words": 1}
    assert body["note"] == "Voilà."
    assert body["error_message"] is None
    assert body["duration_ms"] >= 0
    # Stored exactly like a processor's result: one job_results row.
    assert db.session.get(JobResult, job["id"]).output == {"text": "Bonjour", "words": 1}
    (email,) = [e for e in queued_emails_to(paula.email) if "delivered" in e["subject"]]
    assert f"user #{bob.id}" in email["body"]
    assert "> Voilà." in email["body"]
    assert f"/api/jobs/{job['id']}/result/" in email["body"]
    # The deadline notices are cancelled.
    for task in ("send_due_reminder", "send_overdue_notice"):
        assert [e["status"] for e in queue_rows(task, job["id"])] == ["cancelled"]
    assert client.get(f"/api/jobs/{job['id']}/result/", headers=bearer(bob)).status_code == 200


def test_note_is_optional(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)
    response = deliver(client, bob, job["id"], {"output": {}})
    assert response.status_code == 200
    assert (
        client.get(f"/api/jobs/{job['id']}/result/", headers=bearer(paula)).get_json()["note"]
        is None
    )


def test_only_the_assignee_may_deliver(client, paula, bob, rita, stranger, admin_user):
    job, _bid = awarded_job(client, paula, bob)
    for someone in (paula, rita, stranger, admin_user):
        response = deliver(client, someone, job["id"])
        assert response.status_code == 404, someone
        assert response.get_json()["code"] == 404
    assert stored_job(job["id"]).status == JobStatus.IN_PROGRESS


VALID_BODIES = {
    "deliver": {"output": {"a": 1}},
    "release": None,
    "reviews": {"rating": 4},
}


@pytest.mark.parametrize("path", ["deliver", "release", "reviews"])
def test_unknown_and_out_of_range_job_ids_are_404(client, bob, path):
    for job_id in (987654, 2**31, 10**30):
        response = client.post(
            f"/api/jobs/{job_id}/{path}/", json=VALID_BODIES[path], headers=bearer(bob)
        )
        assert response.status_code == 404, (job_id, response.get_json())
        assert response.get_json()["code"] == 404


def test_delivering_twice_or_a_released_job_is_refused(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)
    assert deliver(client, bob, job["id"]).status_code == 200
    again = deliver(client, bob, job["id"])
    assert again.status_code == 409
    assert "completed" in again.get_json()["message"]

    other, _ = awarded_job(client, paula, bob)
    assert release(client, bob, other["id"]).status_code == 200
    assert deliver(client, bob, other["id"]).status_code == 404  # no longer his


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"output": []},
        {"output": "text"},
        {"output": None},
        {"output": 5},
        {"output": {"a": "nul\u0000byte"}},
        {"output": {"nul\u0000key": 1}},
        {"output": {"a": ["deep", {"b": "x\u0000"}]}},
        {"output": {"a": "\ud800"}},
        {"output": {}, "note": "nul\u0000"},
        {"output": {}, "note": 5},
        {"output": {}, "note": "x" * 10_001},
        {"output": {}, "unknown": 1},
    ],
)
def test_bad_deliveries_are_422_and_change_nothing(client, paula, bob, body):
    job, _bid = awarded_job(client, paula, bob)
    response = deliver(client, bob, job["id"], body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == 422
    assert stored_job(job["id"]).status == JobStatus.IN_PROGRESS


def test_output_nested_too_deep_is_422(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)
    nested: dict = {}
    for _ in range(40):
        nested = {"n": nested}
    response = deliver(client, bob, job["id"], {"output": nested})
    assert response.status_code == 422


def test_output_over_the_configured_size_is_422_at_the_edge(client, app, paula, bob):
    limit = app.config["MAX_DELIVERY_OUTPUT_BYTES"]
    job, _bid = awarded_job(client, paula, bob)
    # {"t":"..."} is 8 bytes of JSON around the text.
    too_big = deliver(client, bob, job["id"], {"output": {"t": "x" * (limit - 7)}})
    assert too_big.status_code == 422
    assert str(limit) in too_big.get_json()["message"]
    just_fits = deliver(client, bob, job["id"], {"output": {"t": "x" * (limit - 8)}})
    assert just_fits.status_code == 200, just_fits.get_json()


def test_a_body_that_is_not_json_is_refused(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)
    response = client.post(
        f"/api/jobs/{job['id']}/deliver/",
        data="not json",
        headers={**bearer(bob), "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)


@pytest.mark.parametrize("path", ["deliver", "release", "reviews"])
def test_unverified_users_get_403_and_anonymous_401(client, paula, bob, make_user, path):
    job, _bid = awarded_job(client, paula, bob)
    unverified = make_user(verified=False)
    response = client.post(f"/api/jobs/{job['id']}/{path}/", json={}, headers=bearer(unverified))
    assert response.status_code == 403
    assert client.post(f"/api/jobs/{job['id']}/{path}/", json={}).status_code == 401


# --- release ----------------------------------------------------------------------------------


def test_the_assignee_gives_the_job_back(client, paula, bob, rita):
    job = post_job(client, paula)
    bid = place_bid(client, bob, job["id"])
    rita_bid = place_bid(client, rita, job["id"])
    accept(client, paula, job["id"], bid["id"])
    scheduled = stored_job(job["id"]).scheduled_time

    response = release(client, bob, job["id"])

    assert response.status_code == 200, response.get_json()
    released = response.get_json()
    assert (released["status"], released["assignee_id"], released["due_date"]) == (
        "pending",
        None,
        None,
    )
    assert db.session.get(Bid, bid["id"]).status == BidStatus.WITHDRAWN
    assert db.session.get(Bid, rita_bid["id"]).status == BidStatus.REJECTED
    # Queued again for its time, once.
    entries = queue_rows("process_job", job["id"])
    assert [e["status"] for e in entries] == ["cancelled", "todo"]
    assert entries[-1]["scheduled_at"] == scheduled
    assert stored_job(job["id"]).queue_job_id == entries[-1]["id"]
    for task in ("send_due_reminder", "send_overdue_notice"):
        assert [e["status"] for e in queue_rows(task, job["id"])] == ["cancelled"]
    (email,) = [e for e in queued_emails_to(paula.email) if "given back" in e["subject"]]
    assert "open for bids again" in email["body"]
    # Open again: Rita and Bob may bid anew.
    open_ids = [j["id"] for j in client.get("/api/jobs/open/", headers=bearer(rita)).get_json()]
    assert job["id"] in open_ids
    place_bid(client, bob, job["id"])


def test_the_owner_takes_the_job_away_and_the_assignee_is_told(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)
    response = release(client, paula, job["id"])
    assert response.status_code == 200
    (email,) = [e for e in queued_emails_to(bob.email) if "taken back" in e["subject"]]
    assert job["name"] in email["body"]
    assert not [e for e in queued_emails_to(paula.email) if "given back" in e["subject"]]
    # Bob no longer sees it.
    assert client.get(f"/api/jobs/{job['id']}/", headers=bearer(bob)).status_code == 404


def test_a_released_job_whose_time_passed_is_queued_for_now(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)
    stored = stored_job(job["id"])
    stored.scheduled_time = now_utc() - timedelta(minutes=5)
    db.session.commit()

    assert release(client, bob, job["id"]).status_code == 200

    entry = queue_rows("process_job", job["id"])[-1]
    assert entry["status"] == "todo"
    assert entry["scheduled_at"] is None  # as soon as a worker is free


def test_a_released_manual_job_is_not_queued(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob, kind="manual")
    assert release(client, paula, job["id"]).status_code == 200
    assert queue_rows("process_job", job["id"]) == []
    assert stored_job(job["id"]).status == JobStatus.PENDING


def test_release_rules(client, paula, bob, rita, stranger):
    job, _bid = awarded_job(client, paula, bob)
    for someone in (rita, stranger):
        assert release(client, someone, job["id"]).status_code == 404
    pending = post_job(client, paula)
    answer = release(client, paula, pending["id"])
    assert answer.status_code == 409
    assert release(client, bob, pending["id"]).status_code == 404
    assert deliver(client, bob, job["id"]).status_code == 200
    assert release(client, bob, job["id"]).status_code == 409
    assert release(client, paula, job["id"]).status_code == 409


def test_release_then_award_again_schedules_fresh_deadline_notices(client, paula, bob, rita):
    job, _bid = awarded_job(client, paula, bob)
    assert release(client, bob, job["id"]).status_code == 200
    deadline = date.today() + timedelta(days=9)
    bid = place_bid(client, rita, job["id"], proposed_deadline=deadline.isoformat())
    accept(client, paula, job["id"], bid["id"])

    overdue = queue_rows("send_overdue_notice", job["id"])
    assert [e["status"] for e in overdue] == ["cancelled", "todo"]
    assert overdue[-1]["args"]["due_date"] == deadline.isoformat()
    assert stored_job(job["id"]).assignee_id == rita.id
    assert [e["status"] for e in queue_rows("process_job", job["id"])] == [
        "cancelled",
        "cancelled",
    ]
