"""`flask jobs list|watch|retry`."""

from __future__ import annotations

import logging

import pytest

from jobboard.extensions import db
from jobboard.models import Job, JobStatus
from tests.support.factories import PlanFactory
from tests.support.jobs import create_job, queue_row


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="jobboard.jobs.cli")
    return caplog


def logged(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "jobboard.jobs.cli")


def test_list_logs_jobs_newest_first(runner, logs, verified_user, other_user):
    older = create_job(verified_user, name="older one")
    newer = create_job(other_user, name="newer one", status=JobStatus.FAILED, last_error="boom")

    result = runner.invoke(args=["jobs", "list"])

    assert result.exit_code == 0, result.output
    text = logged(logs)
    assert text.index(f"#{newer.id} ") < text.index(f"#{older.id} ")
    assert "'older one'" in text and verified_user.email in text
    assert "last_error 'boom'" in text


def test_list_filters_by_status_and_user(runner, logs, verified_user, other_user):
    mine = create_job(verified_user, status=JobStatus.FAILED)
    create_job(verified_user)
    create_job(other_user, status=JobStatus.FAILED)

    result = runner.invoke(
        args=["jobs", "list", "--status", "failed", "--user", verified_user.email.upper()]
    )

    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in logs.records if r.name == "jobboard.jobs.cli"]
    assert len(lines) == 1 and lines[0].startswith(f"#{mine.id} failed")


def test_list_with_nothing_to_show(runner, logs, verified_user):
    result = runner.invoke(args=["jobs", "list", "--status", "cancelled"])
    assert result.exit_code == 0
    assert "no jobs match" in logged(logs)


def test_list_refuses_an_unknown_status_or_user(runner, logs):
    assert runner.invoke(args=["jobs", "list", "--status", "done"]).exit_code == 2
    result = runner.invoke(args=["jobs", "list", "--user", "nobody@example.com"])
    assert result.exit_code == 1
    assert "No user with email nobody@example.com" in logged(logs)


def test_watch_logs_counts_and_jobs_every_round(runner, logs, verified_user):
    create_job(verified_user, name="watched")

    result = runner.invoke(args=["jobs", "watch", "--interval", "0", "--iterations", "2"])

    assert result.exit_code == 0, result.output
    counts = [r.getMessage() for r in logs.records if r.getMessage().startswith("jobs: ")]
    assert len(counts) == 2
    assert "pending 1" in counts[0]
    assert logged(logs).count("'watched'") == 2


def test_watch_help_shows_the_interval_but_not_the_test_switch(runner):
    result = runner.invoke(args=["jobs", "watch", "--help"])
    assert "--interval" in result.output
    assert "--iterations" not in result.output


def test_retry_puts_a_failed_job_back_in_the_queue(runner, logs, verified_user):
    job = create_job(verified_user, status=JobStatus.FAILED, attempts=3)

    result = runner.invoke(args=["jobs", "retry", str(job.id)])

    assert result.exit_code == 0, result.output
    assert f"job #{job.id} queued again" in logged(logs)
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert queue_row(job.queue_job_id)["status"] == "todo"


def test_retry_is_held_to_the_owners_max_open_jobs(runner, logs, verified_user):
    """The operator's retry is the owner's transition: it needs a place in the owner's
    quotas like the owner's own retry."""
    plan = PlanFactory(name="cli-one-open", max_open_jobs=1)
    verified_user.plan_name = plan.name
    job = create_job(verified_user, status=JobStatus.FAILED, attempts=3)
    create_job(verified_user)

    result = runner.invoke(args=["jobs", "retry", str(job.id)])

    assert result.exit_code == 1
    assert "max_open_jobs reached" in logged(logs)
    db.session.expire_all()
    assert db.session.get(Job, job.id).status == JobStatus.FAILED


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.COMPLETED])
def test_retry_refuses_jobs_that_are_not_failed(runner, logs, verified_user, status):
    job = create_job(verified_user, status=status)

    result = runner.invoke(args=["jobs", "retry", str(job.id)])

    assert result.exit_code == 1
    assert f"is {status.value}; only a failed job can be retried" in logged(logs)


def test_retry_of_a_missing_job(runner, logs):
    result = runner.invoke(args=["jobs", "retry", "999999"])
    assert result.exit_code == 1
    assert "Job 999999 not found" in logged(logs)
