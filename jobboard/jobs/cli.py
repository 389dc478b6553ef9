"""`flask jobs list|watch|retry`: look at jobs and put failed ones back in the queue.

Jobs are data on stdout (a table, or `--json` with the API's job fields plus the owner's
email); see jobboard/cli_output.py for how commands speak.
"""

from __future__ import annotations

import time
from typing import Any

import click
from flask.cli import AppGroup

from jobboard.cli_output import emit, emit_json, emit_table, json_option, note, refusals
from jobboard.extensions import db
from jobboard.jobs import service, transitions
from jobboard.jobs.schemas import JobOut
from jobboard.models import Job, JobStatus

jobs_cli = AppGroup("jobs", help="Inspect and operate jobs.")

STATUS_CHOICE = click.Choice([status.value for status in JobStatus])
COLUMNS = ("id", "status", "kind", "attempts", "scheduled", "owner", "name", "last_error")


def _owner(job: Job) -> str:
    return job.owner.email if job.owner is not None else f"user {job.owner_id}"


def _row(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.status,
        job.kind,
        f"{job.attempts}/{job.max_attempts}",
        job.scheduled_time,
        _owner(job),
        job.name,
        job.last_error,
    )


def _as_json(job: Job) -> dict[str, Any]:
    return {**JobOut().dump(job), "owner_email": _owner(job)}


def _find(statuses: tuple[str, ...], user: str | None, limit: int) -> list[Job]:
    with refusals():
        return service.jobs_for_operator(statuses, user, limit)


def _show(jobs: list[Job], as_json: bool) -> None:
    if as_json:
        emit_json([_as_json(job) for job in jobs])
    elif jobs:
        emit_table(COLUMNS, [_row(job) for job in jobs])
    else:
        note("no jobs match")


@jobs_cli.command("list")
@click.option("--status", "statuses", type=STATUS_CHOICE, multiple=True, help="Repeatable.")
@click.option("--user", help="Only the jobs of the user with this email.")
@click.option("--limit", default=100, show_default=True, help="Newest jobs first.")
@json_option
def list_jobs(statuses: tuple[str, ...], user: str | None, limit: int, as_json: bool) -> None:
    """Jobs, newest first."""
    _show(_find(statuses, user, limit), as_json)


@jobs_cli.command("watch")
@click.option("--interval", default=10.0, show_default=True, help="Seconds between rounds.")
@click.option("--status", "statuses", type=STATUS_CHOICE, multiple=True, help="Repeatable.")
@click.option("--user", help="Only the jobs of the user with this email.")
@click.option("--limit", default=20, show_default=True, help="Jobs shown per round.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per round and line: the counts by status and the jobs.",
)
@click.option("--iterations", type=click.IntRange(min=1), default=None, hidden=True)
def watch_jobs(
    interval: float,
    statuses: tuple[str, ...],
    user: str | None,
    limit: int,
    as_json: bool,
    iterations: int | None,
) -> None:
    """The job counts and the newest jobs every INTERVAL seconds, until Ctrl-C."""
    done = 0
    try:
        while True:
            counts = service.job_counts()
            jobs = _find(statuses, user, limit)
            if as_json:
                emit_json({"counts": counts, "jobs": [_as_json(job) for job in jobs]})
            else:
                emit("jobs: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
                _show(jobs, as_json=False)
            # End the transaction: the next round must see what happened meanwhile.
            db.session.rollback()
            done += 1
            if iterations is not None and done >= iterations:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        note("stopped watching")


@jobs_cli.command("retry")
@click.argument("job_id", type=int)
@json_option
def retry_job(job_id: int, as_json: bool) -> None:
    """Put failed job JOB_ID back in the queue, to run now; prints the job."""
    with refusals():
        job = transitions.retry_failed_job(None, job_id)
    if as_json:
        emit_json(_as_json(job))
    else:
        note(f"job #{job.id} queued again")
        emit_table(COLUMNS, [_row(job)])
