"""`flask jobs list|watch|retry`: look at jobs and put failed ones back in the queue.

Output goes through `logging` (logger `jobboard.jobs.cli`), like every admin command.
"""

from __future__ import annotations

import logging
import time
from typing import NoReturn

import click
from flask.cli import AppGroup

from jobboard.errors import DomainError
from jobboard.extensions import db
from jobboard.jobs import service, transitions
from jobboard.models import Job, JobStatus

logger = logging.getLogger(__name__)

jobs_cli = AppGroup("jobs", help="Inspect and operate jobs.")

STATUS_CHOICE = click.Choice([status.value for status in JobStatus])


def _describe(job: Job) -> str:
    owner = job.owner.email if job.owner is not None else f"user {job.owner_id}"
    return (
        f"#{job.id} {job.status:<11} {job.kind:<10} attempts {job.attempts}/{job.max_attempts}"
        f" scheduled {job.scheduled_time.isoformat()} owner {owner} name {job.name!r}"
        + (f" last_error {job.last_error!r}" if job.last_error else "")
    )


def _fail(error: DomainError) -> NoReturn:
    db.session.rollback()
    logger.error(error.message)
    raise click.exceptions.Exit(1)


def _log_jobs(statuses: tuple[str, ...], user: str | None, limit: int) -> None:
    try:
        jobs = service.jobs_for_operator(statuses, user, limit)
    except DomainError as error:
        _fail(error)
    if not jobs:
        logger.info("no jobs match")
    for job in jobs:
        logger.info(_describe(job))


@jobs_cli.command("list")
@click.option("--status", "statuses", type=STATUS_CHOICE, multiple=True, help="Repeatable.")
@click.option("--user", help="Only the jobs of the user with this email.")
@click.option("--limit", default=100, show_default=True, help="Newest jobs first.")
def list_jobs(statuses: tuple[str, ...], user: str | None, limit: int) -> None:
    """Log jobs, newest first."""
    _log_jobs(statuses, user, limit)


@jobs_cli.command("watch")
@click.option("--interval", default=10.0, show_default=True, help="Seconds between rounds.")
@click.option("--status", "statuses", type=STATUS_CHOICE, multiple=True, help="Repeatable.")
@click.option("--user", help="Only the jobs of the user with this email.")
@click.option("--limit", default=20, show_default=True, help="Jobs logged per round.")
@click.option("--iterations", type=click.IntRange(min=1), default=None, hidden=True)
def watch_jobs(
    interval: float,
    statuses: tuple[str, ...],
    user: str | None,
    limit: int,
    iterations: int | None,
) -> None:
    """Log the job counts and the newest jobs every INTERVAL seconds until Ctrl-C."""
    done = 0
    try:
        while True:
            counts = service.job_counts()
            logger.info("jobs: %s", ", ".join(f"{s} {n}" for s, n in counts.items()))
            _log_jobs(statuses, user, limit)
            # End the transaction: the next round must see what happened meanwhile.
            db.session.rollback()
            done += 1
            if iterations is not None and done >= iterations:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        logger.info("stopped watching")


@jobs_cli.command("retry")
@click.argument("job_id", type=int)
def retry_job(job_id: int) -> None:
    """Put failed job JOB_ID back in the queue, to run now."""
    try:
        job = transitions.retry_failed_job(None, job_id)
    except DomainError as error:
        _fail(error)
    logger.info("job #%s queued again: %s", job.id, _describe(job))
