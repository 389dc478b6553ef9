"""POST /api/admin/jobs/actions/: retry, cancel and run now on ids or on a filter, each job
through its owner's transition, in chunks; the refusals, the quotas, the audit log, and
races with the worker and with the owner's own cancel."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from jobboard.admin import service
from jobboard.extensions import db
from jobboard.models import AdminAction, Job, JobResult, JobRetry, JobStatus, User, now_utc
from tests.support.auth import bearer
from tests.support.factories import JobFactory, PlanFactory
from tests.support.jobs import Api, create_job, in_future, parse, queue_row, queue_rows
from tests.support.polling import wait_until
from tests.support.races import blocking_transaction

logger = logging.getLogger(__name__)
URL = "/api/admin/jobs/actions/"


def act(client, admin, **body):
    return client.post(URL, json=body, headers=bearer(admin))


def statuses(*jobs: Job) -> list[str]:
    db.session.expire_all()
    return [db.session.get(Job, job.id).status for job in jobs]


def failed_job(owner: User, **fields) -> Job:
    fields = {"last_error": "boom", **fields}
    job = JobFactory(owner=owner, failed=True, attempts=3, **fields)
    db.session.add(
        JobResult(
            job_id=job.id, error_message=fields["last_error"], completed_at=now_utc(), duration_ms=5
        )
    )
    db.session.commit()
    return job


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"action": "retry"},
        {"action": "retry", "filter": {}},
        {"action": "retry", "ids": []},
        {"action": "retry", "ids": [1], "filter": {"kind": "echo"}},
        {"action": "retry", "ids": [1], "all": True},
        {"action": "explode", "ids": [1]},
        {"action": "retry", "ids": ["1"]},
        {"action": "retry", "ids": [0]},
        {"action": "retry", "ids": [2**40]},
        {"action": "retry", "filter": {"colour": "red"}},
        {"action": "retry", "filter": {"status": "failed"}},
        {"action": "retry", "filter": {"status": ["lost"]}},
        {"action": "retry", "filter": {"owner": "not an email"}},
        {"action": "retry", "filter": {"created_after": "2030-01-01T00:00:00"}},
        {"action": "retry", "ids": [1], "extra": 1},
    ],
)
def test_bad_bodies_are_422_and_change_nothing(client, admin_user, verified_user, body):
    job = failed_job(verified_user)
    response = act(client, admin_user, **body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == 422
    assert statuses(job) == ["failed"]
    assert db.session.query(AdminAction).count() == 0


def test_an_empty_filter_is_refused_unless_all_is_said(client, admin_user, verified_user):
    jobs = [failed_job(verified_user) for _ in range(2)]
    refused = act(client, admin_user, action="retry", filter={})
    assert "name something" in refused.get_json()["errors"]["json"]["filter"][0]
    done = act(client, admin_user, action="retry", filter={}, all=True)
    assert done.get_json() == {"matched": 2, "changed": 2, "skipped": 0}
    assert statuses(*jobs) == ["pending", "pending"]
    also = act(client, admin_user, action="cancel", all=True)
    assert also.get_json() == {"matched": 2, "changed": 2, "skipped": 0}


def test_ids_up_to_ten_thousand(client, admin_user, verified_user):
    job = failed_job(verified_user)
    over = act(client, admin_user, action="retry", ids=list(range(1, 10_002)))
    assert over.status_code == 422
    assert "ids" in over.get_json()["errors"]["json"]
    ids = [job.id, *range(10**8, 10**8 + 9_999)]
    done = act(client, admin_user, action="retry", ids=ids)
    assert done.status_code == 200
    # Ids of no job match nothing.
    assert done.get_json() == {"matched": 1, "changed": 1, "skipped": 0}


# --- each action through its owner's transition ----------------------------------------


def test_retry_by_ids_of_several_users(client, admin_user, make_user):
    alice, bob = make_user(), make_user()
    retried = [failed_job(alice), failed_job(bob)]
    pending = create_job(alice)
    answer = act(client, admin_user, action="retry", ids=[*(j.id for j in retried), pending.id])
    assert answer.status_code == 200
    assert answer.get_json() == {"matched": 3, "changed": 2, "skipped": 1}
    db.session.expire_all()
    for job in retried:
        job = db.session.get(Job, job.id)
        # What POST /api/jobs/<id>/retry/ does: pending, attempts from 0, queued now, the
        # failure's result gone, one of the owner's day's jobs.
        assert (job.status, job.attempts, job.finished_at) == ("pending", 0, None)
        assert job.last_error == "boom"
        entry = queue_row(job.queue_job_id)
        assert (entry["status"], entry["scheduled_at"], entry["queue_name"]) == (
            "todo",
            None,
            "jobs",
        )
        assert entry["args"]["owner_id"] == job.owner_id
        assert entry["args"]["job_id"] == job.id
        assert db.session.get(JobResult, job.id) is None
    assert db.session.scalar(select(func.count()).select_from(JobRetry)) == 2
    assert statuses(pending) == ["pending"]


def test_retry_a_failure_group_by_filter(client, admin_user, make_user):
    alice, bob = make_user(email="alice@example.com"), make_user()
    group = [failed_job(alice, kind="echo", last_error="KeyError: 'x'\nline 2") for _ in range(3)]
    other_kind = failed_job(alice, kind="sleep", params={"seconds": 1}, last_error="KeyError: 'x'")
    other_owner = failed_job(bob, kind="echo", last_error="KeyError: 'x'")
    other_error = failed_job(alice, kind="echo", last_error="ValueError")
    failures = client.get("/api/admin/failures/", headers=bearer(admin_user)).get_json()
    first = failures[0]
    assert (first["kind"], first["error"], first["count"]) == ("echo", "KeyError: 'x'", 4)
    answer = act(
        client,
        admin_user,
        action="retry",
        filter={
            "status": ["failed"],
            "kind": first["kind"],
            "error": first["error"],
            "owner": "ALICE@example.com",
        },
    )
    assert answer.get_json() == {"matched": 3, "changed": 3, "skipped": 0}
    assert statuses(*group) == ["pending"] * 3
    assert statuses(other_kind, other_owner, other_error) == ["failed"] * 3
    entry = db.session.scalars(select(AdminAction)).one()
    assert entry.action == "retry"
    assert entry.target == {
        "filter": {
            "status": ["failed"],
            "kind": "echo",
            "error": "KeyError: 'x'",
            "owner": "ALICE@example.com",
        }
    }
    assert (entry.matched, entry.changed, entry.skipped) == (3, 3, 0)
    assert entry.admin_email == admin_user.email


def test_cancel_cancels_pending_jobs_and_their_entries_and_skips_the_rest(
    client, admin_user, verified_user
):
    pending = [create_job(verified_user) for _ in range(3)]
    running = create_job(verified_user, status=JobStatus.IN_PROGRESS)
    done = JobFactory(owner=verified_user, completed=True)
    answer = act(
        client, admin_user, action="cancel", ids=[*(j.id for j in pending), running.id, done.id]
    )
    assert answer.get_json() == {"matched": 5, "changed": 3, "skipped": 2}
    assert statuses(*pending, running, done) == ["cancelled"] * 3 + ["in_progress", "completed"]
    for job in pending:
        assert queue_row(db.session.get(Job, job.id).queue_job_id)["status"] == "cancelled"
        assert db.session.get(Job, job.id).finished_at is not None


def test_run_now_moves_the_entry_to_now(client, admin_user, verified_user):
    later = create_job(verified_user, scheduled_time=in_future(3600))
    old_entry = later.queue_job_id
    assigned = JobFactory(owner=verified_user, in_progress=True)
    answer = act(client, admin_user, action="run_now", ids=[later.id, assigned.id])
    assert answer.get_json() == {"matched": 2, "changed": 1, "skipped": 1}
    db.session.expire_all()
    job = db.session.get(Job, later.id)
    assert job.scheduled_time <= now_utc()
    assert queue_row(old_entry)["status"] == "cancelled"
    assert queue_row(job.queue_job_id)["status"] == "todo"
    assert queue_row(job.queue_job_id)["scheduled_at"] is None


def test_a_requeue_respects_the_owners_quotas_once_per_chunk(client, admin_user, make_user):
    tight = make_user()
    plan = PlanFactory(name="tight", max_open_jobs=3, jobs_per_day=1000)
    db.session.get(User, tight.id).plan_name = plan.name
    roomy = make_user()
    db.session.commit()
    create_job(tight)  # one open already: two more fit
    tight_failed = [failed_job(tight) for _ in range(4)]
    roomy_failed = [failed_job(roomy) for _ in range(2)]
    answer = act(client, admin_user, action="retry", filter={"status": ["failed"]})
    assert answer.get_json() == {"matched": 6, "changed": 4, "skipped": 2}
    assert statuses(*tight_failed) == ["pending", "pending", "failed", "failed"]
    assert statuses(*roomy_failed) == ["pending", "pending"]


def test_a_retry_counts_against_jobs_per_day(client, admin_user, make_user):
    owner = make_user()
    plan = PlanFactory(name="daily", max_open_jobs=100, jobs_per_day=4)
    db.session.get(User, owner.id).plan_name = plan.name
    db.session.commit()
    # Two jobs created today (these failed ones) leave two retries.
    jobs = [failed_job(owner) for _ in range(2)] + [
        failed_job(owner, created_at=now_utc() - timedelta(days=2)) for _ in range(2)
    ]
    answer = act(client, admin_user, action="retry", ids=[job.id for job in jobs])
    assert answer.get_json() == {"matched": 4, "changed": 2, "skipped": 2}


def test_chunks_cover_every_matching_job(client, admin_user, verified_user, monkeypatch):
    monkeypatch.setattr(service, "BULK_CHUNK", 3)
    jobs = [failed_job(verified_user) for _ in range(10)]
    answer = act(client, admin_user, action="retry", filter={"status": ["failed"]})
    assert answer.get_json() == {"matched": 10, "changed": 10, "skipped": 0}
    assert statuses(*jobs) == ["pending"] * 10
    assert len({db.session.get(Job, job.id).queue_job_id for job in jobs}) == 10


# --- races (real commits, separate connections) -----------------------------------------


def admin_and_owner(live_app, make_live_user) -> tuple[dict, int, dict]:
    """The admin's headers, the owner's id and the owner's headers."""
    make_live_user(email="boss@example.com", admin=True)
    make_live_user(email="owner@example.com")
    with live_app.app_context():
        ids = dict(db.session.execute(select(User.email, User.id)).all())
        owner_id = ids["owner@example.com"]
        return bearer(ids["boss@example.com"]), owner_id, bearer(owner_id)


def test_a_locked_job_is_skipped_not_waited_for(live_app, make_live_user, fresh_database):
    admin, owner_id, _ = admin_and_owner(live_app, make_live_user)
    with live_app.app_context():
        jobs = [create_job(owner_id).id for _ in range(3)]
    with blocking_transaction(fresh_database) as holder:
        holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (jobs[1],))
        answer = live_app.test_client().post(
            URL, json={"action": "cancel", "ids": jobs}, headers=admin
        )
        holder.rollback()
    assert answer.get_json() == {"matched": 3, "changed": 2, "skipped": 1}
    with live_app.app_context():
        assert [db.session.get(Job, job_id).status for job_id in jobs] == [
            "cancelled",
            "pending",
            "cancelled",
        ]


def test_bulk_cancel_racing_the_owners_cancel_cancels_each_job_once(
    live_app, make_live_user, monkeypatch
):
    # Small chunks: the admin goes up the ids while the owner comes down, and they meet.
    monkeypatch.setattr(service, "BULK_CHUNK", 3)
    admin, owner_id, owner = admin_and_owner(live_app, make_live_user)
    with live_app.app_context():
        jobs = [create_job(owner_id).id for _ in range(60)]
    start = threading.Barrier(2)
    owner_answers: dict[int, int] = {}
    admin_answer: list[dict] = []

    def owner_cancels() -> None:
        client = live_app.test_client()
        start.wait()
        for job_id in reversed(jobs):
            owner_answers[job_id] = client.delete(f"/api/jobs/{job_id}/", headers=owner).status_code

    def admin_cancels() -> None:
        client = live_app.test_client()
        start.wait()
        admin_answer.append(
            client.post(URL, json={"action": "cancel", "ids": jobs}, headers=admin).get_json()
        )

    threads = [threading.Thread(target=owner_cancels), threading.Thread(target=admin_cancels)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    counts = admin_answer[0]
    owner_won = sum(1 for status in owner_answers.values() if status == 200)
    assert set(owner_answers.values()) <= {200, 409}
    assert counts["matched"] == 60
    # Every job cancelled exactly once: by the admin or by its owner, never both.
    assert counts["changed"] + owner_won == 60
    with live_app.app_context():
        assert {db.session.get(Job, job_id).status for job_id in jobs} == {"cancelled"}
        entries = queue_rows("process_job")
        assert {entry["status"] for entry in entries} == {"cancelled"}
    logger.warning("admin changed %s, owner cancelled %s", counts["changed"], owner_won)


def test_bulk_cancel_racing_the_worker_never_runs_a_cancelled_job(
    live_app, live_client, make_live_user, start_worker, monkeypatch
):
    monkeypatch.setattr(service, "BULK_CHUNK", 4)
    admin, owner_id, _ = admin_and_owner(live_app, make_live_user)
    api = Api(live_app, live_client, owner_id)
    start_worker()
    # Due 10 ms apart; the cancel fires when the first half is due: the worker takes some
    # as the admin's chunks come by, the admin cancels the others.
    first = now_utc() + timedelta(seconds=3)
    jobs = [api.create(first + timedelta(milliseconds=10 * i), name=f"race {i}") for i in range(40)]
    wait_until(lambda: now_utc() >= parse(jobs[20]["scheduled_time"]), timeout=10, interval=0.001)
    answer = live_app.test_client().post(
        URL, json={"action": "cancel", "ids": [job["id"] for job in jobs]}, headers=admin
    )
    counts = answer.get_json()
    assert counts["matched"] == 40
    outcomes = {"cancelled": 0, "completed": 0}
    for job in jobs:
        final = api.wait_for_status(job["id"], "cancelled", "completed")
        if final["status"] == "cancelled":
            assert final["started_at"] is None and final["attempts"] == 0
        else:
            assert final["attempts"] == 1
        outcomes[final["status"]] += 1
    assert outcomes["cancelled"] == counts["changed"]
    assert outcomes["completed"] == counts["skipped"]
    with live_app.app_context():
        # No cancelled job's entry ran: each cancelled job's only entry is cancelled, or
        # (taken by the worker as the cancel committed) found the job cancelled and left it.
        ran = db.session.execute(
            text("SELECT count(*) FROM jobs WHERE status = 'cancelled' AND attempts > 0")
        ).scalar()
        assert ran == 0
    logger.warning("bulk cancel vs worker: %s", outcomes)


def test_a_bulk_retry_of_long_and_short_kinds_marks_the_long_entries(
    client, admin_user, verified_user
):
    short = [failed_job(verified_user, kind="echo") for _ in range(2)]
    long = [failed_job(verified_user, kind="sleep", params={"seconds": 60}) for _ in range(2)]
    answer = act(client, admin_user, action="retry", ids=[job.id for job in short + long])
    assert answer.get_json()["changed"] == 4
    db.session.expire_all()
    for job, marked in [(job, False) for job in short] + [(job, True) for job in long]:
        entry = queue_row(db.session.get(Job, job.id).queue_job_id)
        assert ("long" in entry["args"]) is marked
        assert entry["args"]["job_id"] == job.id
        assert entry["lock"] == entry["queueing_lock"] == f"job-{job.id}"
