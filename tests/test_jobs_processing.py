"""One attempt of a job (what `process_job` runs), in this process on the real database:
outcomes, retries with backoff, skipping, the stalled-worker case."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobboard.extensions import db
from jobboard.jobs.processing import Outcome, run_attempt
from jobboard.jobs.transitions import retry_delay
from jobboard.models import Job, JobStatus, now_utc
from tests.support.jobs import create_job, queue_row, queue_rows, run_queued_attempt


def reloaded(job_id: int) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job_id)


def test_a_successful_attempt_completes_the_job_and_stores_the_result(verified_user):
    job = create_job(verified_user, params={"a": [1, 2]})
    before = now_utc()

    assert run_queued_attempt(job.id) == Outcome.COMPLETED

    job = reloaded(job.id)
    assert job.status == JobStatus.COMPLETED
    assert job.attempts == 1
    assert before <= job.started_at <= job.finished_at
    assert job.last_error is None
    assert job.result.output == {"a": [1, 2]}
    assert job.result.error_message is None
    assert job.result.completed_at == job.finished_at
    assert job.result.duration_ms >= 0


def test_a_failed_attempt_with_attempts_left_is_retried_with_backoff(
    app, verified_user, monkeypatch
):
    monkeypatch.setitem(app.config, "JOB_RETRY_BASE_SECONDS", 10)
    job = create_job(verified_user, kind="flaky", params={"fail_times": 2}, max_attempts=3)
    first_entry = job.queue_job_id

    assert run_queued_attempt(job.id) == Outcome.RETRY_SCHEDULED
    job = reloaded(job.id)
    assert job.status == JobStatus.PENDING
    assert job.attempts == 1
    assert "planned failure of attempt 1" in job.last_error
    assert job.result is None
    second = queue_row(job.queue_job_id)
    assert job.queue_job_id != first_entry
    assert second["status"] == "todo"
    assert second["lock"] == second["queueing_lock"] == f"job-{job.id}"
    # 10 s after the failure: base x 2**0
    assert timedelta(seconds=9) < second["scheduled_at"] - job.started_at < timedelta(seconds=11)

    assert run_queued_attempt(job.id) == Outcome.RETRY_SCHEDULED
    third = queue_row(reloaded(job.id).queue_job_id)
    job = reloaded(job.id)
    # 20 s after the second failure: base x 2**1
    assert timedelta(seconds=19) < third["scheduled_at"] - job.started_at < timedelta(seconds=21)

    assert run_queued_attempt(job.id) == Outcome.COMPLETED
    job = reloaded(job.id)
    assert job.status == JobStatus.COMPLETED
    assert job.attempts == 3
    assert job.result.output == {"attempts": 3}
    # The error of the last failed attempt stays visible after the success.
    assert "planned failure of attempt 2" in job.last_error


def test_the_last_failed_attempt_fails_the_job(verified_user):
    job = create_job(verified_user, kind="flaky", params={"fail_times": 10}, max_attempts=2)

    assert run_queued_attempt(job.id) == Outcome.RETRY_SCHEDULED
    assert run_queued_attempt(job.id) == Outcome.FAILED

    job = reloaded(job.id)
    assert job.status == JobStatus.FAILED
    assert job.attempts == 2
    assert job.finished_at is not None
    assert job.result.output is None
    assert job.result.error_message == job.last_error
    assert job.last_error.startswith("FlakyFailure: planned failure of attempt 2")
    assert [row["status"] for row in queue_rows("process_job")][-1] == "succeeded"


@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_job_that_is_not_pending_is_skipped(verified_user, status):
    job = create_job(verified_user, status=status)

    assert run_attempt(job.id, queue_job_id=job.queue_job_id) == Outcome.SKIPPED

    job = reloaded(job.id)
    assert job.status == status
    assert job.started_at is None
    assert job.attempts == 0


def test_an_attempt_for_a_superseded_queue_entry_is_skipped(verified_user):
    job = create_job(verified_user)

    assert run_attempt(job.id, queue_job_id=job.queue_job_id + 1000) == Outcome.SUPERSEDED
    assert reloaded(job.id).status == JobStatus.PENDING


def test_a_missing_job_is_nothing_to_do(app):
    assert run_attempt(987_654) == Outcome.MISSING


def test_an_attempt_whose_worker_died_counts_as_failed_and_the_next_one_runs(verified_user):
    job = create_job(verified_user, status=JobStatus.IN_PROGRESS, attempts=1, started_at=now_utc())

    assert run_attempt(job.id, queue_job_id=job.queue_job_id) == Outcome.COMPLETED

    job = reloaded(job.id)
    assert job.status == JobStatus.COMPLETED
    assert job.attempts == 2
    assert job.last_error == "worker stopped during attempt 1"


def test_a_dead_worker_on_the_last_attempt_fails_the_job(verified_user):
    job = create_job(
        verified_user,
        status=JobStatus.IN_PROGRESS,
        attempts=3,
        max_attempts=3,
        started_at=now_utc() - timedelta(seconds=40),
    )

    assert run_attempt(job.id, queue_job_id=job.queue_job_id) == Outcome.FAILED

    job = reloaded(job.id)
    assert job.status == JobStatus.FAILED
    assert job.attempts == 3
    assert job.result.error_message == "worker stopped during attempt 3"
    assert job.result.duration_ms >= 40_000


def test_a_kind_without_processor_fails_the_attempt(verified_user):
    job = create_job(verified_user, max_attempts=1, kind="uninstalled-plugin")

    assert run_queued_attempt(job.id) == Outcome.FAILED
    assert "no processor for kind 'uninstalled-plugin'" in reloaded(job.id).last_error


def test_params_are_loaded_by_the_kind_schema_before_running(verified_user):
    # As a seeder or an older release may have stored them: without the schema's defaults.
    job = create_job(verified_user, kind="checksum", params={"text": "abc"})
    job.params = {"text": "abc"}
    db.session.commit()

    assert run_queued_attempt(job.id) == Outcome.COMPLETED
    assert reloaded(job.id).result.output["algorithm"] == "sha256"


def test_output_that_json_cannot_hold_fails_the_attempt(verified_user):
    from workers.processors import processor, unregister

    @processor("returns-a-set")
    def returns_a_set(params, run):
        return {1, 2}

    try:
        job = create_job(verified_user, kind="returns-a-set", max_attempts=1)
        assert run_queued_attempt(job.id) == Outcome.FAILED
        assert reloaded(job.id).last_error.startswith("TypeError")
    finally:
        unregister("returns-a-set")


def test_report_emails_the_owner_through_the_queue_with_the_result(verified_user, make_user):
    create_job(verified_user, status=JobStatus.COMPLETED)
    create_job(verified_user, status=JobStatus.FAILED)
    create_job(make_user())  # somebody else's: not counted
    job = create_job(verified_user, kind="report")

    assert run_queued_attempt(job.id) == Outcome.COMPLETED

    output = reloaded(job.id).result.output
    assert output == {
        "emailed": verified_user.email,
        "counts": {
            "pending": 0,
            "in_progress": 1,  # the report itself
            "completed": 1,
            "failed": 1,
            "cancelled": 0,
        },
    }
    [mail] = queue_rows("send_email")
    assert mail["status"] == "todo"
    assert mail["args"]["to"] == verified_user.email
    assert "completed" in mail["args"]["body"]


def test_database_work_of_a_failed_attempt_is_rolled_back(verified_user):
    from jobboard.mailer import queue_email
    from workers.processors import processor, unregister

    @processor("mails-then-fails")
    def mails_then_fails(params, run):
        queue_email("someone@example.com", "half done", "this must never be sent")
        raise RuntimeError("broke after queueing an email")

    try:
        job = create_job(verified_user, kind="mails-then-fails", max_attempts=1)
        assert run_queued_attempt(job.id) == Outcome.FAILED
        assert queue_rows("send_email") == []
        assert reloaded(job.id).last_error == "RuntimeError: broke after queueing an email"
    finally:
        unregister("mails-then-fails")


def test_retry_delay_doubles_from_the_configured_base(app, monkeypatch):
    assert retry_delay(1) == timedelta(seconds=2)  # the default base
    monkeypatch.setitem(app.config, "JOB_RETRY_BASE_SECONDS", 0.5)
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
