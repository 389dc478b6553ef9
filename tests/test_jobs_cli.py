"""`flask jobs list|watch|retry`: jobs are data on stdout (a table, or JSON with
`--json`), notes go to stderr, refusals are click errors."""

from __future__ import annotations

import json

import pytest

from jobboard.extensions import db
from jobboard.models import Job, JobStatus
from tests.support.factories import PlanFactory
from tests.support.jobs import create_job, queue_row


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def rows(stdout: str) -> list[str]:
    """The table's rows, the header left out."""
    header, *lines = stdout.splitlines()
    assert header.split()[:3] == ["id", "status", "kind"]
    return lines


def test_list_shows_jobs_newest_first(runner, verified_user, other_user):
    older = create_job(verified_user, name="older one")
    newer = create_job(other_user, name="newer one", status=JobStatus.FAILED, last_error="boom")

    result = runner.invoke(args=["jobs", "list"])

    assert result.exit_code == 0, result.output
    lines = rows(result.stdout)
    assert [line.split()[0] for line in lines] == [str(newer.id), str(older.id)]
    assert "older one" in lines[1] and verified_user.email in lines[1]
    assert lines[0].split()[1] == "failed" and lines[0].endswith("boom")
    assert result.stderr == ""


def test_list_as_json_has_the_api_fields_and_the_owner(runner, verified_user):
    job = create_job(verified_user, name="as json", status=JobStatus.FAILED, last_error="boom")

    result = runner.invoke(args=["jobs", "list", "--json"])

    assert result.exit_code == 0, result.output
    (listed,) = json.loads(result.stdout)
    assert (listed["id"], listed["name"], listed["status"]) == (job.id, "as json", "failed")
    assert listed["owner_email"] == verified_user.email
    assert listed["last_error"] == "boom"
    assert listed["scheduled_time"] == job.scheduled_time.isoformat()


def test_list_filters_by_status_and_user(runner, verified_user, other_user):
    mine = create_job(verified_user, status=JobStatus.FAILED)
    create_job(verified_user)
    create_job(other_user, status=JobStatus.FAILED)

    result = runner.invoke(
        args=["jobs", "list", "--status", "failed", "--user", verified_user.email.upper()]
    )

    assert result.exit_code == 0, result.output
    lines = rows(result.stdout)
    assert len(lines) == 1 and lines[0].split()[:2] == [str(mine.id), "failed"]


def test_list_with_nothing_to_show(runner, verified_user):
    result = runner.invoke(args=["jobs", "list", "--status", "cancelled"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no jobs match" in result.stderr
    as_json = runner.invoke(args=["jobs", "list", "--status", "cancelled", "--json"])
    assert json.loads(as_json.stdout) == []


def test_list_refuses_an_unknown_status_or_user(runner):
    assert runner.invoke(args=["jobs", "list", "--status", "done"]).exit_code == 2
    result = runner.invoke(args=["jobs", "list", "--user", "nobody@example.com"])
    assert result.exit_code == 1
    assert result.stderr == "Error: No user with email nobody@example.com.\n"
    assert result.stdout == ""


def test_watch_shows_counts_and_jobs_every_round(runner, verified_user):
    create_job(verified_user, name="watched")

    result = runner.invoke(args=["jobs", "watch", "--interval", "0", "--iterations", "2"])

    assert result.exit_code == 0, result.output
    counts = [line for line in result.stdout.splitlines() if line.startswith("jobs: ")]
    assert len(counts) == 2
    assert "pending 1" in counts[0]
    assert result.stdout.count("watched") == 2


def test_watch_as_json_writes_one_line_per_round(runner, verified_user):
    create_job(verified_user, name="watched")

    result = runner.invoke(args=["jobs", "watch", "--interval", "0", "--iterations", "2", "--json"])

    assert result.exit_code == 0, result.output
    rounds = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rounds) == 2
    assert rounds[0]["counts"]["pending"] == 1
    assert [job["name"] for job in rounds[1]["jobs"]] == ["watched"]


def test_watch_help_shows_the_interval_but_not_the_test_switch(runner):
    result = runner.invoke(args=["jobs", "watch", "--help"])
    assert "--interval" in result.output
    assert "--iterations" not in result.output


def test_retry_puts_a_failed_job_back_in_the_queue(runner, verified_user):
    job = create_job(verified_user, status=JobStatus.FAILED, attempts=3)

    result = runner.invoke(args=["jobs", "retry", str(job.id)])

    assert result.exit_code == 0, result.output
    assert f"job #{job.id} queued again" in result.stderr
    assert rows(result.stdout)[0].split()[:2] == [str(job.id), "pending"]
    db.session.expire_all()
    job = db.session.get(Job, job.id)
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert queue_row(job.queue_job_id)["status"] == "todo"


def test_retry_is_held_to_the_owners_max_open_jobs(runner, verified_user):
    """The operator's retry is the owner's transition: it needs a place in the owner's
    quotas like the owner's own retry."""
    plan = PlanFactory(name="cli-one-open", max_open_jobs=1)
    verified_user.plan_name = plan.name
    job = create_job(verified_user, status=JobStatus.FAILED, attempts=3)
    create_job(verified_user)

    result = runner.invoke(args=["jobs", "retry", str(job.id)])

    assert result.exit_code == 1
    assert "max_open_jobs reached" in result.stderr
    assert result.stderr.startswith("Error: ")
    db.session.expire_all()
    assert db.session.get(Job, job.id).status == JobStatus.FAILED


def test_retry_as_json_prints_the_job(runner, verified_user):
    job = create_job(verified_user, status=JobStatus.FAILED, attempts=3)

    result = runner.invoke(args=["jobs", "retry", str(job.id), "--json"])

    assert result.exit_code == 0, result.output
    retried = json.loads(result.stdout)
    assert (retried["id"], retried["status"], retried["attempts"]) == (job.id, "pending", 0)


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.COMPLETED])
def test_retry_refuses_jobs_that_are_not_failed(runner, verified_user, status):
    job = create_job(verified_user, status=status)

    result = runner.invoke(args=["jobs", "retry", str(job.id)])

    assert result.exit_code == 1
    assert f"is {status.value}; only a failed job can be retried" in result.stderr
    assert result.stderr.startswith("Error: ")


def test_retry_of_a_missing_job(runner):
    result = runner.invoke(args=["jobs", "retry", "999999"])
    assert result.exit_code == 1
    assert result.stderr == "Error: Job 999999 not found.\n"
