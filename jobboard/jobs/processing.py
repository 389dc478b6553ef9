"""One attempt of a job, as the `process_job` task runs it in the worker.

Our `jobs` row, not Procrastinate, is the source of truth for attempts: each attempt is one
Procrastinate job, and a failed attempt with attempts left queues the next one itself, with
exponential backoff, in the same transaction that puts the job back to `pending`. Every
change of the job's status is a transition of `jobboard.jobs.transitions`:

    start_attempt (one conditional UPDATE), commit
    run the processor, holding no lock
    complete (one statement: status + result) | schedule_retry | fail, commit

The worker's `process_job` (workers/jobs.py) runs the same steps: for a processor that is
not `blocking`, the start and the completion are each one statement in autocommit on
the worker's own pool and the processor runs on its event loop (`run_processor`); the
rest (a job not simply pending, a failure, a blocking kind) comes here in a thread:
`begin_attempt`, `finish_attempt`, `store_failure`.

Every attempt runs within its kind's time limit (`run_processor`): past it, the processor
is asked to stop and the attempt fails like any other failed attempt.
"""

from __future__ import annotations

import json
import logging
import math
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
    attempt = begin_attempt(job_id, queue_job_id)
    if not isinstance(attempt, Attempt):
        return attempt
    return finish_attempt(attempt, should_abort)


def begin_attempt(job_id: int, queue_job_id: int | None = None) -> Attempt | str:
    """Start (and commit) the next attempt of job `job_id` for queue entry `queue_job_id`,
    or return the Outcome of a job that has no attempt to run."""
    attempt = start_attempt(job_id, queue_job_id)
    if not isinstance(attempt, Attempt):  # nothing to run; a stalled last attempt failed
        if attempt == Outcome.FAILED:
            db.session.commit()
        else:
            db.session.rollback()
        return attempt
    db.session.commit()
    return attempt


def finish_attempt(attempt: Attempt, should_abort: Callable[[], bool] = lambda: False) -> str:
    """Run the processor of a started (committed) `attempt` and store its outcome."""
    started = time.monotonic()
    output, error = run_processor(attempt, should_abort)
    duration_ms = round((time.monotonic() - started) * 1000)
    if error is not None:
        db.session.rollback()  # the processor's own database work goes with its failure
        return store_failure(attempt.job_id, attempt.attempt, error, duration_ms)
    # The processor's own database work (the report's email) is still uncommitted here and
    # commits with the outcome below.
    if not complete(attempt.job_id, attempt.attempt, output, duration_ms):
        db.session.rollback()  # the stalled-job check gave this attempt up for dead
        return Outcome.SUPERSEDED
    db.session.commit()
    return Outcome.COMPLETED


def store_failure(job_id: int, attempt_number: int, error: str, duration_ms: int) -> str:
    """Attempt `attempt_number` of job `job_id` failed with `error`: retry or fail it."""
    job = attempt_still_owned(job_id, attempt_number)
    if job is None:
        db.session.rollback()
        return Outcome.SUPERSEDED
    if attempt_number < job.max_attempts:
        outcome = schedule_retry(job, error, duration_ms)
    else:
        outcome = fail(job, error, duration_ms)
    db.session.commit()
    return outcome


def run_processor(attempt: Attempt, should_abort: Callable[[], bool]) -> tuple[object, str | None]:
    """The processor's output and None, or None and the error that failed the attempt.

    The kind's time limit counts from here: once it has passed, the processor's
    `run.should_abort()` answers True, and an attempt that ends after it fails as past its
    limit, whatever it returned or raised (workers.processors explains the rule)."""
    started = time.monotonic()
    processor = get_processor(attempt.kind)
    limit = processor.time_limit if processor is not None else None
    deadline = started + limit if limit is not None else math.inf

    def stop_asked() -> bool:
        return time.monotonic() >= deadline or should_abort()

    run = JobRun(
        job_id=attempt.job_id,
        owner_id=attempt.owner_id,
        kind=attempt.kind,
        attempt=attempt.attempt,
        max_attempts=attempt.max_attempts,
        scheduled_time=attempt.scheduled_time,
        should_abort=stop_asked,
    )
    try:
        if processor is None:
            raise LookupError(f"no processor for kind {run.kind!r} is installed on this worker")
        output = processor.run(processor.load_params(attempt.params), run)
        json.dumps(output)  # refuse what the JSONB column could not store, as a failure
    except Exception as exc:  # a processor's failure is the attempt's outcome, never ours
        if limit is not None and time.monotonic() >= deadline:
            return None, past_time_limit(attempt, limit, time.monotonic() - started)
        logger.info("job %s attempt %s failed: %r", run.job_id, run.attempt, exc)
        return None, describe(exc)
    if limit is not None and time.monotonic() >= deadline:
        return None, past_time_limit(attempt, limit, time.monotonic() - started)
    return output, None


def past_time_limit(attempt: Attempt, limit: float, elapsed: float) -> str:
    """The error of an attempt that ran past its kind's time limit (logged as a warning)."""
    logger.warning(
        "job %s attempt %s (%s) ran past its time limit of %g s: failed after %.1f s",
        attempt.job_id,
        attempt.attempt,
        attempt.kind,
        limit,
        elapsed,
    )
    return (
        f"TimeLimitExceeded: attempt {attempt.attempt} ran past the time limit of {limit:g} s "
        f"of kind {attempt.kind!r} and was stopped after {elapsed:.1f} s"
    )


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
