"""Helpers for the jobs tests: payloads, jobs in a given state, the queue rows behind them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from jobboard.extensions import db
from jobboard.jobs import service
from jobboard.jobs.processing import run_attempt
from jobboard.models import Job, JobStatus, User, now_utc
from tests.support.auth import bearer
from tests.support.polling import wait_until

JOB_FIELDS = {
    "id",
    "name",
    "description",
    "kind",
    "params",
    "scheduled_time",
    "status",
    "priority",
    "max_attempts",
    "attempts",
    "owner_id",
    "assignee_id",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "last_error",
    "due_date",
}


def in_future(seconds: float = 3600) -> datetime:
    return now_utc() + timedelta(seconds=seconds)


def payload(**overrides: Any) -> dict[str, Any]:
    """A valid POST /api/jobs/ body."""
    body: dict[str, Any] = {
        "name": "say hello",
        "description": "an echo job",
        "scheduled_time": in_future().isoformat(),
        "kind": "echo",
        "params": {"greeting": "hello"},
    }
    body.update(overrides)
    return body


def create_job(owner: User | int, **fields: Any) -> Job:
    """A job created through the service (queued like an API-created one), then given any
    extra column values (status, assignee_id, created_at, ...) directly."""
    owner_id = owner if isinstance(owner, int) else owner.id
    data = {
        "name": "a job",
        "description": None,
        "kind": "echo",
        "params": {},
        "scheduled_time": in_future(),
        "priority": 0,
        "max_attempts": 3,
    }
    columns = {key: value for key, value in fields.items() if key not in data}
    data.update({key: value for key, value in fields.items() if key in data})
    job, _ = service.create_job(db.session.get(User, owner_id), data)
    for key, value in columns.items():
        setattr(job, key, value)
    db.session.commit()
    # The queue entry follows, as if the job had got to its status for real.
    entry_status = QUEUE_STATUS_OF.get(job.status)
    if entry_status is not None:
        set_queue_status(job.queue_job_id, entry_status)
    return job


QUEUE_STATUS_OF = {
    JobStatus.IN_PROGRESS: "doing",
    JobStatus.COMPLETED: "succeeded",
    JobStatus.FAILED: "succeeded",
    JobStatus.CANCELLED: "cancelled",
}


def queue_row(queue_job_id: int) -> dict[str, Any]:
    row = (
        db.session.execute(
            text(
                "SELECT id, task_name, queue_name, status::text AS status, lock, queueing_lock,"
                " args, scheduled_at, priority FROM procrastinate_jobs WHERE id = :id"
            ),
            {"id": queue_job_id},
        )
        .mappings()
        .one()
    )
    return dict(row)


def queue_rows(task_name: str, job_id: int | None = None) -> list[dict[str, Any]]:
    """Queue rows of `task_name` (of job `job_id`), oldest first."""
    rows = db.session.execute(
        text(
            "SELECT id, status::text AS status, args, scheduled_at, priority, queue_name"
            " FROM procrastinate_jobs WHERE task_name = :task"
            " AND (CAST(:job_id AS integer) IS NULL OR (args->>'job_id')::int = :job_id)"
            " ORDER BY id"
        ),
        {"task": task_name, "job_id": job_id},
    ).mappings()
    return [dict(row) for row in rows]


def set_queue_status(queue_job_id: int, status: str) -> None:
    db.session.execute(
        text(
            "UPDATE procrastinate_jobs SET status = CAST(:status AS procrastinate_job_status)"
            " WHERE id = :id"
        ),
        {"id": queue_job_id, "status": status},
    )
    db.session.commit()


def run_queued_attempt(job_id: int) -> str:
    """What the worker does with the job's waiting queue entry, in this process: take it
    (`doing`), run `process_job`'s attempt, finish the entry."""
    queue_job_id = db.session.get(Job, job_id).queue_job_id
    set_queue_status(queue_job_id, "doing")
    outcome = run_attempt(job_id, queue_job_id=queue_job_id)
    set_queue_status(queue_job_id, "succeeded")
    return outcome


def job_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Job))


class Api:
    """The jobs API as one live user calls it."""

    def __init__(self, app: Flask, client: FlaskClient, user_id: int) -> None:
        self.app = app
        self.client = client
        with app.app_context():
            self.headers = bearer(user_id)

    def create(self, at: datetime, **fields) -> dict:
        body = {"name": fields.pop("name", "job"), "scheduled_time": at.isoformat(), **fields}
        response = self.client.post("/api/jobs/", json=body, headers=self.headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def job(self, job_id: int) -> dict:
        return self.client.get(f"/api/jobs/{job_id}/", headers=self.headers).get_json()

    def result(self, job_id: int):
        return self.client.get(f"/api/jobs/{job_id}/result/", headers=self.headers)

    def cancel(self, job_id: int, client: FlaskClient | None = None):
        return (client or self.client).delete(f"/api/jobs/{job_id}/", headers=self.headers)

    def retry(self, job_id: int):
        return self.client.post(f"/api/jobs/{job_id}/retry/", headers=self.headers)

    def wait_for_status(self, job_id: int, *statuses: str, timeout: float = 15) -> dict:
        return wait_until(
            lambda: (job := self.job(job_id))["status"] in statuses and job, timeout=timeout
        )


def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)
