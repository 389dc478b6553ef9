"""Every transition of a job, one function each; the only code that writes `jobs.status`.

    pending --start_attempt--> in_progress          the worker: one conditional UPDATE
    in_progress --complete--> completed             a processor's output or a delivery:
                                                    status and result in one statement
    in_progress --schedule_retry--> pending         a failed attempt with attempts left
    in_progress --fail--> failed                    the last attempt failed
    in_progress --recover_interrupted--> pending    the attempt's worker died (stalled)
    pending --cancel_job--> cancelled               owner or admin
    failed --retry_failed_job--> pending            owner, admin or the operator's CLI
    pending --award--> in_progress                  an accepted bid: assignee set
    in_progress --deliver--> completed              the assignee hands in the work
    in_progress --release--> pending                assignee cleared
    pending --reschedule--> pending                 fields changed; the queue entry moves

Each runs under the job row's lock (FOR UPDATE, `jobboard.locking.locked`) or is a
conditional UPDATE that takes it, so whoever locks first wins and the other finds the
new status: a cancel racing the worker's start, an award racing it, a stalled attempt
given up for dead while it finishes. Status strings come from `JobStatus` only. A job that
goes back to the queue (retry, release, run-now) asks `jobboard.quotas.admit_requeue` for
its place in the owner's quotas, under the job's lock. The caller
commits, except for the request-level transitions (cancel, retry, deliver, release,
reschedule), which commit themselves. Who may act is asked of `jobboard.jobs.policy`.
Deadline notices (`jobboard.notices`) are scheduled on award and cancelled on delivery
and release, in the same transaction.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import delete, text
from sqlalchemy.orm.attributes import set_committed_value

from jobboard import notices, queue, quotas
from jobboard.errors import Conflict, NotFound, Unprocessable, check_shape
from jobboard.extensions import db
from jobboard.jobs import policy
from jobboard.jobs.service import (
    commit_as_written,
    future_or_now,
    runs_in_queue,
    schedule_job,
    schedule_jobs,
)
from jobboard.locking import locked, locked_rows
from jobboard.models import Bid, BidStatus, Job, JobResult, JobStatus, User, now_utc
from workers.processors import get_processor


class Outcome(enum.StrEnum):
    """What one run of `process_job` did to its job."""

    COMPLETED = "completed"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    SKIPPED = "skipped"  # not pending any more: cancelled, assigned, or already finished
    SUPERSEDED = "superseded"  # another queue entry owns this job's next attempt
    MISSING = "missing"


@dataclass(frozen=True)
class Attempt:
    """An attempt that `start_attempt` began: what the processor needs to run it."""

    job_id: int
    attempt: int
    owner_id: int
    kind: str
    params: dict[str, Any]
    max_attempts: int
    scheduled_time: datetime


# --- the queue's transitions ------------------------------------------------------------

# Start: pending (unassigned, owned by this queue entry) -> in_progress, attempts + 1. The
# conditional UPDATE takes the row lock, so a cancel or an award racing the pickup wins or
# loses cleanly.
_START_SQL = (
    "UPDATE jobs SET status = :in_progress, attempts = attempts + 1,"
    " started_at = :now, updated_at = :now"
    " WHERE id = :job_id AND status = :pending AND assignee_id IS NULL"
    " AND (queue_job_id IS NULL OR CAST(:queue_job_id AS bigint) IS NULL"
    "      OR queue_job_id = :queue_job_id)"
    " RETURNING attempts, owner_id, kind, params, max_attempts, scheduled_time"
)
_START = text(_START_SQL)

# Complete: in_progress (this attempt) -> completed, and the result stored, in one statement.
_COMPLETE_SQL = (
    "WITH done AS (UPDATE jobs SET status = :completed, finished_at = :now, updated_at = :now"
    " WHERE id = :job_id AND status = :in_progress AND attempts = :attempt RETURNING id)"
    " INSERT INTO job_results (job_id, output, completed_at, duration_ms, note)"
    " SELECT id, CAST(:output AS jsonb), :now, :duration_ms, :note FROM done RETURNING job_id"
)
_COMPLETE = text(_COMPLETE_SQL)


def _driver_sql(sql: str) -> str:
    """The same statement in psycopg's placeholder style (`:name` -> `%(name)s`), for the
    worker's own autocommit connections (`start_attempt_async`, `complete_async`)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


_START_DRIVER = _driver_sql(_START_SQL)
_COMPLETE_DRIVER = _driver_sql(_COMPLETE_SQL)


def _start_params(job_id: int, queue_job_id: int | None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "queue_job_id": queue_job_id,
        "now": now_utc(),
        "pending": JobStatus.PENDING.value,
        "in_progress": JobStatus.IN_PROGRESS.value,
    }


def _complete_params(
    job_id: int, attempt: int, output: object, duration_ms: int, note: str | None
) -> dict[str, Any]:
    return {
        "now": now_utc(),
        "job_id": job_id,
        "attempt": attempt,
        "output": json.dumps(output),
        "duration_ms": duration_ms,
        "note": note,
        "completed": JobStatus.COMPLETED.value,
        "in_progress": JobStatus.IN_PROGRESS.value,
    }


async def start_attempt_async(
    connection: Any, job_id: int, queue_job_id: int | None
) -> Attempt | None:
    """The worker's hot path: `start_attempt`'s conditional UPDATE alone, on an autocommit
    psycopg connection (one round trip, its own transaction). None when the job is not
    simply pending: the caller then runs `start_attempt`, which decides under the lock."""
    async with connection.cursor() as cursor:
        await cursor.execute(_START_DRIVER, _start_params(job_id, queue_job_id))
        row = await cursor.fetchone()
    return None if row is None else _attempt(job_id, row)


async def complete_async(
    connection: Any, job_id: int, attempt: int, output: object, duration_ms: int
) -> bool:
    """`complete` on an autocommit psycopg connection: the one statement (status + result)
    is its own transaction, so row, result and status still commit together."""
    async with connection.cursor() as cursor:
        await cursor.execute(
            _COMPLETE_DRIVER, _complete_params(job_id, attempt, output, duration_ms, None)
        )
        return await cursor.fetchone() is not None


def start_attempt(job_id: int, queue_job_id: int | None = None) -> Attempt | str:
    """Begin the next attempt of job `job_id` for queue entry `queue_job_id`; the caller
    commits. Returns the attempt, or the Outcome of a job that has no attempt to run."""
    row = _execute_start(job_id, queue_job_id)
    if row is not None:
        return _attempt(job_id, row)
    # Not simply pending: decided under the row lock.
    job = locked(Job, job_id)
    if job is None:
        return Outcome.MISSING
    if queue_job_id is not None and job.queue_job_id not in (None, queue_job_id):
        return Outcome.SUPERSEDED
    if job.assignee_id is not None:
        # Handed to a person (an accepted bid) while this entry waited for the row lock:
        # the assignee does the job, the queue never runs it.
        return Outcome.SKIPPED
    if job.status != JobStatus.IN_PROGRESS:
        return Outcome.SKIPPED
    if not recover_interrupted(job):
        return Outcome.FAILED
    row = _execute_start(job_id, queue_job_id)
    assert row is not None  # pending and locked by this transaction
    return _attempt(job_id, row)


def _execute_start(job_id: int, queue_job_id: int | None) -> Any:
    return db.session.execute(_START, _start_params(job_id, queue_job_id)).first()


def _attempt(job_id: int, row: Any) -> Attempt:
    attempt, owner_id, kind, params, max_attempts, scheduled_time = row
    return Attempt(job_id, attempt, owner_id, kind, params, max_attempts, scheduled_time)


def recover_interrupted(job: Job) -> bool:
    """The attempt of a locked `in_progress` job whose worker stopped heartbeating (only
    the stalled-job check re-queues such an entry) counts as failed: the job goes back to
    pending for its next attempt (True), or fails when that was its last one (False)."""
    interrupted = f"worker stopped during attempt {job.attempts}"
    if job.attempts >= job.max_attempts:
        fail(job, interrupted, _elapsed_ms(job.started_at))
        return False
    job.status = JobStatus.PENDING
    job.last_error = interrupted
    db.session.flush()  # the next start is a plain statement: it must see this row
    return True


def complete(
    job_id: int, attempt: int, output: object, duration_ms: int, note: str | None = None
) -> bool:
    """Job `job_id`, in progress on `attempt`, is completed with `output` as its result
    (a processor's return value, or an assignee's delivery with `note`). False, and
    nothing written, when that attempt no longer owns the job. The caller commits."""
    done = db.session.execute(
        _COMPLETE, _complete_params(job_id, attempt, output, duration_ms, note)
    ).first()
    return done is not None


def attempt_still_owned(job_id: int, attempt: int) -> Job | None:
    """The locked job, if `attempt` is still its running attempt (the stalled-job check
    may have given it up for dead and another worker taken over)."""
    job = locked(Job, job_id)
    if job is None or job.status != JobStatus.IN_PROGRESS or job.attempts != attempt:
        return None
    return job


def schedule_retry(job: Job, error: str) -> str:
    """The locked job's attempt failed with attempts left: back to pending, its next
    attempt queued after the backoff (`retry_delay`)."""
    job.status = JobStatus.PENDING
    job.last_error = error
    schedule_job(job, now_utc() + retry_delay(job.attempts))
    return Outcome.RETRY_SCHEDULED


def fail(job: Job, error: str, duration_ms: int) -> str:
    """The locked job's last attempt failed: failed, with the error as its result."""
    finished = now_utc()
    job.status = JobStatus.FAILED
    job.last_error = error
    job.finished_at = finished
    db.session.add(
        JobResult(
            job_id=job.id,
            output=None,
            error_message=error,
            completed_at=finished,
            duration_ms=duration_ms,
        )
    )
    return Outcome.FAILED


def retry_delay(failed_attempt: int) -> timedelta:
    """Wait before the attempt after `failed_attempt`: base, 2 x base, 4 x base, ...
    (base = JOB_RETRY_BASE_SECONDS; docs/configuration.md)."""
    base = float(current_app.config["JOB_RETRY_BASE_SECONDS"])
    return timedelta(seconds=base * 2 ** (failed_attempt - 1))


def _elapsed_ms(since: datetime | None) -> int:
    if since is None:
        return 0
    return max(0, round((now_utc() - since).total_seconds() * 1000))


# --- the owner's transitions -------------------------------------------------------------


def _locked_for_change(user: User | None, job_id: int) -> Job:
    """The job locked FOR UPDATE, if `user` may change it (None is the operator's CLI)."""
    job = locked(Job, job_id)
    if job is None or (user is not None and not policy.can_see(user, job)):
        raise NotFound(f"Job {job_id} not found.")
    if user is not None:
        policy.require_may_change(user, job)
    return job


def cancel_job(user: User, job_id: int) -> Job:
    """Cancel a pending job and its queue entry; 409 once it has started or finished."""
    job = _locked_for_change(user, job_id)
    refuse(cannot_cancel(job))
    cancel_locked([job])
    db.session.commit()
    return job


def cannot_cancel(job: Job) -> str | None:
    """Why the job cannot be cancelled, or None when it can."""
    if job.status != JobStatus.PENDING:
        return f"Job {job.id} is {job.status}; only a pending job can be cancelled."
    return None


def cancel_locked(jobs: Sequence[Job]) -> None:
    """The cancel of jobs the caller holds locked, each of which `cannot_cancel` let
    through: cancelled, with their queue entries; the caller commits."""
    finished = now_utc()
    for job in jobs:
        job.status = JobStatus.CANCELLED
        job.finished_at = finished
    # An entry a worker has just taken stays: the worker is waiting for the job's row lock
    # and will find the job cancelled.
    queue.cancel_many([job.queue_job_id for job in jobs if job.queue_job_id is not None])


def retry_failed_job(user: User | None, job_id: int) -> Job:
    """Send a failed job back to pending and queue it now, with a fresh round of
    `max_attempts` attempts (`attempts` restarts from 0; `last_error` is kept)."""
    job = _locked_for_change(user, job_id)
    refuse(cannot_retry(job))
    quotas.admit_requeue(job, retry=True, by_owner=user is not None and policy.is_owner(user, job))
    retry_locked([job])
    commit_as_written()
    return job


def cannot_retry(job: Job) -> str | None:
    """Why the job cannot be retried, or None when it can."""
    if job.status != JobStatus.FAILED:
        return f"Job {job.id} is {job.status}; only a failed job can be retried."
    return None


def retry_locked(jobs: Sequence[Job]) -> None:
    """The retry of failed jobs the caller holds locked and the owners' quotas admitted
    (`quotas.admit_requeue`, `admit_requeues`): pending, queued now; the caller commits."""
    # The failures' result rows go; the next outcome writes a new one.
    db.session.execute(
        delete(JobResult).where(JobResult.job_id.in_([job.id for job in jobs])),
        execution_options={"synchronize_session": False},
    )
    # Queued before the row changes: then one UPDATE a job writes them all (the
    # deferral's own statements would flush the changes made before them).
    schedule_jobs(jobs, None)
    for job in jobs:
        set_committed_value(job, "result", None)
        job.status = JobStatus.PENDING
        job.attempts = 0
        job.finished_at = None


def cannot_run_now(job: Job) -> str | None:
    """Why the job cannot be edited, run now included, or None when it can."""
    if job.status != JobStatus.PENDING or job.assignee_id is not None:
        state = "assigned" if job.assignee_id is not None else job.status
        return f"Job {job.id} is {state}; only a pending, unassigned job can be edited."
    return None


def run_now_locked(jobs: Sequence[Job]) -> None:
    """Run-now of pending jobs the caller holds locked and the owners' quotas admitted:
    scheduled now, their queue entries moved (the old one cancelled, or, if a worker has
    just taken it, superseded: the attempt checks that it still owns the job); the
    caller commits."""
    # The entries first: then one UPDATE a job writes the row (see `retry_locked`).
    _move_entries([job for job in jobs if runs_in_queue(job.kind)], None)
    now = now_utc()
    for job in jobs:
        job.scheduled_time = now


def _move_entries(jobs: Sequence[Job], at: datetime | None) -> None:
    queue.cancel_many([job.queue_job_id for job in jobs if job.queue_job_id is not None])
    schedule_jobs(jobs, at)


def refuse(reason: str | None) -> None:
    """409 with `reason`, if there is one (a `cannot_*` answer)."""
    if reason is not None:
        raise Conflict(reason)


# --- the transitions of a job done by a person ---------------------------------------------


def award(job: Job, bid: Bid) -> None:
    """Hand the job to the bidder of `bid`. The caller holds the job FOR UPDATE and
    commits. Only a pending job can be handed over: one the queue is running is 409."""
    if job.status != JobStatus.PENDING:
        raise Conflict(f"This job is {job.status}; only a pending job can be handed to a bidder.")
    if job.queue_job_id is not None:
        # False when a worker has just taken the entry: it waits for this row's lock, then
        # finds the job in progress with an assignee and leaves it alone.
        queue.cancel(job.queue_job_id)
        job.queue_job_id = None
    job.status = JobStatus.IN_PROGRESS
    job.assignee_id = bid.bidder_id
    job.started_at = now_utc()
    job.due_date = bid.proposed_deadline
    notices.schedule_deadline_notices(job)


def deliver(user: User, job_id: int, output: dict[str, Any], note: str | None) -> Job:
    """The assignee hands in the work: the job is completed and `output` (with `note`) is
    its result, written by `complete` as a processor's is. 404 unless the caller is the
    assignee; 409 unless the job is in progress."""
    job = locked(Job, job_id)
    if job is None or not policy.is_assignee(user, job):
        raise NotFound(f"Job {job_id} not found, or not assigned to you.")
    if job.status != JobStatus.IN_PROGRESS:
        raise Conflict(f"Job {job.id} is {job.status}; only a job in progress can be delivered.")
    quotas.check_delivery_output_size(output)
    notices.cancel_deadline_notices(job)
    db.session.flush()  # `complete` is a plain statement on the row
    if not complete(job.id, job.attempts, output, _elapsed_ms(job.started_at), note):
        raise Conflict(f"Job {job.id} is no longer in progress.")  # never: the row is locked
    db.session.expire(job)  # completed, with its result, as `complete` wrote it
    notices.delivered(job, user, note)
    db.session.commit()
    return job


def release(user: User, job_id: int) -> Job:
    """The assignee gives the job back, or the owner takes it away: the accepted bid is
    withdrawn, the job pending and open for bids again, a queued kind queued again for
    its scheduled time (now, if that passed), and the other party emailed."""
    job = locked(Job, job_id)
    if job is None or not policy.is_party(user, job):
        raise NotFound(f"Job {job_id} not found.")
    if job.status != JobStatus.IN_PROGRESS or job.assignee_id is None:
        raise Conflict(
            f"Job {job.id} is {job.status} and not handed to anybody; only a job in progress "
            "with an assignee can be released."
        )
    quotas.admit_requeue(job, by_owner=policy.is_owner(user, job))
    other_id = policy.other_party_id(user, job)
    for bid in locked_rows(Bid, Bid.job_id == job.id, Bid.status == BidStatus.ACCEPTED):
        bid.status = BidStatus.WITHDRAWN
    job.status = JobStatus.PENDING
    job.assignee_id = None
    job.started_at = None
    job.due_date = None
    notices.cancel_deadline_notices(job)
    if runs_in_queue(job.kind):
        schedule_job(job, job.scheduled_time if job.scheduled_time > now_utc() else None)
    if other_id is not None:
        notices.released(job, user, other_id)
    commit_as_written()
    return job


EDITABLE_FIELDS = ("name", "description", "scheduled_time", "priority", "params", "max_attempts")


def reschedule(user: User, job_id: int, changes: Mapping[str, Any]) -> Job:
    """The owner edits a pending, unassigned job. A new `scheduled_time` (null: now) or
    `priority` moves its queue entry in the same transaction: the old entry is cancelled
    (or, if a worker has just taken it, superseded: the attempt checks that it still owns
    the job) and a new one deferred, so the job never runs at the old time, nor twice."""
    job = locked(Job, job_id)
    if job is None or not policy.is_owner(user, job):
        raise NotFound(f"Job {job_id} not found.")
    refuse(cannot_run_now(job))
    values = dict(changes)
    if "params" in values:
        values["params"] = _params_for(job.kind, values["params"])
        quotas.check_job_params(job.owner_id, values["params"])
    if "max_attempts" in values and values["max_attempts"] <= job.attempts:
        raise Unprocessable(
            f"Job {job.id} has made {job.attempts} attempts already.",
            errors={"json": {"max_attempts": [f"Must be more than {job.attempts}."]}},
        )
    run_now = "scheduled_time" in values and values["scheduled_time"] is None
    if run_now:
        quotas.admit_requeue(job)
        del values["scheduled_time"]  # run_now_locked's
    elif "scheduled_time" in values:
        values["scheduled_time"] = future_or_now(values["scheduled_time"])
    moved = any(
        key in values and values[key] != getattr(job, key) for key in ("scheduled_time", "priority")
    )
    for key in EDITABLE_FIELDS:
        if key in values:
            setattr(job, key, values[key])
    if run_now:
        run_now_locked([job])
    elif moved and runs_in_queue(job.kind):
        _move_entries([job], job.scheduled_time)
    commit_as_written()
    return job


def _params_for(kind: str, params: Any) -> dict[str, Any]:
    processor = get_processor(kind)
    if processor is None:
        raise Unprocessable(f"Kind {kind!r} is not installed; its params cannot be checked.")
    try:
        check_shape(processor.schema, params)
        return processor.load_params(params)
    except ValidationError as error:
        raise Unprocessable(
            "params do not fit the job's kind.", errors={"json": {"params": error.messages}}
        ) from error
