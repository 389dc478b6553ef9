"""One attempt of a job, as the `process_job` task runs it in the worker.

Our `jobs` row, not Procrastinate, is the source of truth for attempts: each attempt is one
Procrastinate job, and a failed attempt with attempts left queues the next one itself, with
exponential backoff, in the same transaction that puts the job back to `pending`.

    lock row -> (skip unless pending) -> in_progress, attempts += 1, commit
    run the processor, holding no lock
    lock row -> completed + result | pending + next attempt queued | failed + result, commit
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, text

from jobboard.extensions import db
from jobboard.jobs.service import schedule_job
from jobboard.models import Job, JobResult, JobStatus, now_utc
from workers.processors import JobRun, get_processor

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 2000


class Outcome:
    COMPLETED = "completed"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    SKIPPED = "skipped"  # not pending any more: cancelled, or already finished
    SUPERSEDED = "superseded"  # another queue entry owns this job's next attempt
    MISSING = "missing"


def retry_delay(failed_attempt: int) -> timedelta:
    """Wait before the attempt after `failed_attempt`: base, 2 x base, 4 x base, ...
    (base = JOB_RETRY_BASE_SECONDS, 2 s unless configured)."""
    base = float(current_app.config["JOB_RETRY_BASE_SECONDS"])
    return timedelta(seconds=base * 2 ** (failed_attempt - 1))


# The common attempt in two statements. The conditional UPDATE takes the row lock and
# re-checks what `_locked` + the checks of `_run_attempt_locked` check (pending, this
# queue entry), so a cancel racing the pickup still loses or wins cleanly.
_START_PENDING = text(
    "UPDATE jobs SET status = 'in_progress', attempts = attempts + 1,"
    " started_at = :now, updated_at = :now"
    " WHERE id = :job_id AND status = 'pending' AND assignee_id IS NULL"
    " AND (queue_job_id IS NULL OR CAST(:queue_job_id AS bigint) IS NULL"
    "      OR queue_job_id = :queue_job_id)"
    " RETURNING attempts, owner_id, kind, params, max_attempts, scheduled_time"
)
# Completed and result stored in one statement, only if this attempt still owns the job.
_COMPLETE = text(
    "WITH done AS (UPDATE jobs SET status = 'completed', finished_at = :now, updated_at = :now"
    " WHERE id = :job_id AND status = 'in_progress' AND attempts = :attempt RETURNING id)"
    " INSERT INTO job_results (job_id, output, completed_at, duration_ms)"
    " SELECT id, CAST(:output AS jsonb), :now, :duration_ms FROM done RETURNING job_id"
)


def run_attempt(
    job_id: int,
    *,
    queue_job_id: int | None = None,
    should_abort: Callable[[], bool] = lambda: False,
) -> str:
    """Run the next attempt of job `job_id` and store its outcome; safe to run again."""
    row = db.session.execute(
        _START_PENDING, {"now": now_utc(), "job_id": job_id, "queue_job_id": queue_job_id}
    ).first()
    if row is None:  # missing, superseded, cancelled, finished or interrupted: the slow path
        db.session.rollback()
        return _run_attempt_locked(job_id, queue_job_id=queue_job_id, should_abort=should_abort)
    db.session.commit()
    attempt, owner_id, kind, params, max_attempts, scheduled_time = row
    run = JobRun(
        job_id=job_id,
        owner_id=owner_id,
        kind=kind,
        attempt=attempt,
        max_attempts=max_attempts,
        scheduled_time=scheduled_time,
        should_abort=should_abort,
    )
    started = time.monotonic()
    output, error = _run_processor(run, params)
    duration_ms = round((time.monotonic() - started) * 1000)
    if error is None:
        done = db.session.execute(
            _COMPLETE,
            {
                "now": now_utc(),
                "job_id": job_id,
                "attempt": attempt,
                "output": json.dumps(output),
                "duration_ms": duration_ms,
            },
        ).first()
        if done is None:
            db.session.rollback()
            return Outcome.SUPERSEDED
        db.session.commit()
        return Outcome.COMPLETED
    job = _locked(job_id)
    if job is None or job.status != JobStatus.IN_PROGRESS or job.attempts != attempt:
        db.session.rollback()
        return Outcome.SUPERSEDED
    if attempt < job.max_attempts:
        outcome = _schedule_retry(job, error, attempt)
    else:
        outcome = _fail(job, error, duration_ms)
    db.session.commit()
    return outcome


def _run_attempt_locked(
    job_id: int,
    *,
    queue_job_id: int | None = None,
    should_abort: Callable[[], bool] = lambda: False,
) -> str:
    """The attempt of a job that is not simply pending: decided under the row lock."""
    job = _locked(job_id)
    if job is None:
        db.session.rollback()
        return Outcome.MISSING
    if queue_job_id is not None and job.queue_job_id not in (None, queue_job_id):
        db.session.rollback()
        return Outcome.SUPERSEDED
    if job.assignee_id is not None:
        # Handed to a person (an accepted bid) while this entry waited for the row lock:
        # the assignee does the job, the queue never runs it.
        db.session.rollback()
        return Outcome.SKIPPED
    if job.status == JobStatus.IN_PROGRESS:
        # Only the stalled-job check re-queues an entry whose attempt had started: the
        # worker running it stopped heartbeating. That attempt counts as failed.
        interrupted = f"worker stopped during attempt {job.attempts}"
        if job.attempts >= job.max_attempts:
            _fail(job, interrupted, _elapsed_ms(job.started_at))
            db.session.commit()
            return Outcome.FAILED
        job.last_error = interrupted
    elif job.status != JobStatus.PENDING:
        db.session.rollback()
        return Outcome.SKIPPED

    attempt = job.attempts + 1
    job.status = JobStatus.IN_PROGRESS
    job.attempts = attempt
    job.started_at = now_utc()
    run = JobRun(
        job_id=job.id,
        owner_id=job.owner_id,
        kind=job.kind,
        attempt=attempt,
        max_attempts=job.max_attempts,
        scheduled_time=job.scheduled_time,
        should_abort=should_abort,
    )
    params = job.params
    db.session.commit()

    started = time.monotonic()
    output, error = _run_processor(run, params)
    duration_ms = round((time.monotonic() - started) * 1000)

    # The processor's own database work (the report's email) is still uncommitted here and
    # commits with the outcome below.
    job = _locked(job_id)
    if job is None or job.status != JobStatus.IN_PROGRESS or job.attempts != attempt:
        # The stalled-job check gave this attempt up for dead and another worker took over.
        db.session.rollback()
        return Outcome.SUPERSEDED
    if error is None:
        outcome = _complete(job, output, duration_ms)
    elif attempt < job.max_attempts:
        outcome = _schedule_retry(job, error, attempt)
    else:
        outcome = _fail(job, error, duration_ms)
    db.session.commit()
    return outcome


def _locked(job_id: int) -> Job | None:
    return db.session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()


def _run_processor(run: JobRun, params: dict) -> tuple[object, str | None]:
    try:
        processor = get_processor(run.kind)
        if processor is None:
            raise LookupError(f"no processor for kind {run.kind!r} is installed on this worker")
        output = processor.run(processor.load_params(params), run)
        json.dumps(output)  # refuse what the JSONB column could not store, as a failure
    except Exception as exc:  # a processor's failure is the attempt's outcome, never ours
        db.session.rollback()
        logger.info("job %s attempt %s failed: %r", run.job_id, run.attempt, exc)
        return None, describe(exc)
    return output, None


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _complete(job: Job, output: object, duration_ms: int) -> str:
    finished = now_utc()
    job.status = JobStatus.COMPLETED
    job.finished_at = finished
    _store_result(job, output=output, error=None, at=finished, duration_ms=duration_ms)
    return Outcome.COMPLETED


def _schedule_retry(job: Job, error: str, attempt: int) -> str:
    job.status = JobStatus.PENDING
    job.last_error = error
    schedule_job(job, now_utc() + retry_delay(attempt))
    return Outcome.RETRY_SCHEDULED


def _fail(job: Job, error: str, duration_ms: int) -> str:
    finished = now_utc()
    job.status = JobStatus.FAILED
    job.last_error = error
    job.finished_at = finished
    _store_result(job, output=None, error=error, at=finished, duration_ms=duration_ms)
    return Outcome.FAILED


def _store_result(
    job: Job, *, output: object, error: str | None, at: datetime, duration_ms: int
) -> None:
    db.session.add(
        JobResult(
            job_id=job.id,
            output=output,
            error_message=error,
            completed_at=at,
            duration_ms=duration_ms,
        )
    )


def _elapsed_ms(since: datetime | None) -> int:
    if since is None:
        return 0
    return max(0, round((now_utc() - since).total_seconds() * 1000))
