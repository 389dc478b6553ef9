"""One attempt of a job, as the `process_job` task runs it in the worker.

Our `jobs` row, not Procrastinate, is the source of truth for attempts: each attempt is one
Procrastinate job, and a failed attempt with attempts left queues the next one itself, with
exponential backoff, in the same transaction that puts the job back to `pending`. Every
change of the job's status is a transition of `jobboard.jobs.transitions`:

    start_attempt (one conditional UPDATE), commit
    run the processor, holding no lock
    complete (one statement: status + result) | schedule_retry | fail, commit
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from jobboard.extensions import db
from jobboard.jobs.transitions import (
    Attempt,
    Outcome,
    attempt_still_owned,
    complete,
    fail,
    schedule_retry,
    start_attempt,
)
from workers.processors import JobRun, get_processor

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 2000


def run_attempt(
    job_id: int,
    *,
    queue_job_id: int | None = None,
    should_abort: Callable[[], bool] = lambda: False,
) -> str:
    """Run the next attempt of job `job_id` and store its outcome; safe to run again."""
    attempt = start_attempt(job_id, queue_job_id)
    if not isinstance(attempt, Attempt):  # nothing to run; a stalled last attempt failed
        if attempt == Outcome.FAILED:
            db.session.commit()
        else:
            db.session.rollback()
        return attempt
    db.session.commit()

    started = time.monotonic()
    output, error = _run_processor(attempt, should_abort)
    duration_ms = round((time.monotonic() - started) * 1000)

    # The processor's own database work (the report's email) is still uncommitted here and
    # commits with the outcome below.
    if error is None:
        if not complete(job_id, attempt.attempt, output, duration_ms):
            db.session.rollback()  # the stalled-job check gave this attempt up for dead
            return Outcome.SUPERSEDED
        db.session.commit()
        return Outcome.COMPLETED
    job = attempt_still_owned(job_id, attempt.attempt)
    if job is None:
        db.session.rollback()
        return Outcome.SUPERSEDED
    if attempt.attempt < job.max_attempts:
        outcome = schedule_retry(job, error)
    else:
        outcome = fail(job, error, duration_ms)
    db.session.commit()
    return outcome


def _run_processor(attempt: Attempt, should_abort: Callable[[], bool]) -> tuple[object, str | None]:
    run = JobRun(
        job_id=attempt.job_id,
        owner_id=attempt.owner_id,
        kind=attempt.kind,
        attempt=attempt.attempt,
        max_attempts=attempt.max_attempts,
        scheduled_time=attempt.scheduled_time,
        should_abort=should_abort,
    )
    try:
        processor = get_processor(run.kind)
        if processor is None:
            raise LookupError(f"no processor for kind {run.kind!r} is installed on this worker")
        output = processor.run(processor.load_params(attempt.params), run)
        json.dumps(output)  # refuse what the JSONB column could not store, as a failure
    except Exception as exc:  # a processor's failure is the attempt's outcome, never ours
        db.session.rollback()
        logger.info("job %s attempt %s failed: %r", run.job_id, run.attempt, exc)
        return None, describe(exc)
    return output, None


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
