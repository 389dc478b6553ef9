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
given up for dead while it finishes. Status strings come from `JobStatus` only.
Each attempt the queue runs is a row of `job_attempts`, written by the statement or
transaction of the transition that changes the job: the start inserts it `running`, the
completion, a retry or a failure closes it, and the stalled recovery closes it `lost`. A job that
goes back to the queue (retry, release, run-now) asks `jobboard.quotas.admit_requeue` for
its place in the owner's quotas, under the job's lock. The caller
commits, except for the request-level transitions (cancel, retry, deliver, release,
reschedule), which commit themselves. Who may act is asked of `jobboard.jobs.policy`.
Deadline notices (`jobboard.notices`) are scheduled on award and cancelled on delivery
and release, in the same transaction. A transition that somebody should hear of writes its
event (`jobboard.events`) in its own transaction, `_tell`: completed, retrying, failed,
cancelled, released (and the assignee's bid withdrawn with it).
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from marshmallow import ValidationError
from psycopg.rows import dict_row
from sqlalchemy import delete, inspect, select, text
from sqlalchemy.orm.attributes import set_committed_value

from jobboard import conditional, logs, notices, queue, quotas
from jobboard.errors import Conflict, NotFound, Unprocessable, check_shape
from jobboard.events.outbox import build_event, tell, write_events_async
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
from jobboard.models import (
    AttemptOutcome,
    Bid,
    BidStatus,
    Job,
    JobResult,
    JobStatus,
    User,
    now_utc,
)
from workers.processors import get_processor

logger = logging.getLogger(__name__)


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

# Start: pending (unassigned, owned by this queue entry) -> in_progress, attempts + 1, and
# its `running` attempt recorded, in one statement. The conditional UPDATE takes the row
# lock, so a cancel or an award racing the pickup wins or loses cleanly. An attempt still
# `running` on a pending job can only have been lost: it is closed so. The attempt was due
# at its entry's scheduled time, or, for an entry queued to run at once, when it was
# queued (Procrastinate's event; the dashboard's backlog age reads it the same way).
_START_SQL = (
    "WITH started AS (UPDATE jobs SET status = :in_progress, attempts = attempts + 1,"
    " started_at = :now, updated_at = :now"
    " WHERE id = :job_id AND status = :pending AND assignee_id IS NULL"
    " AND (queue_job_id IS NULL OR CAST(:queue_job_id AS bigint) IS NULL"
    "      OR queue_job_id = :queue_job_id)"
    " RETURNING id, attempts, owner_id, kind, params, max_attempts, scheduled_time),"
    " stale AS (UPDATE job_attempts SET outcome = :lost, finished_at = :now"
    " WHERE job_id = (SELECT id FROM started) AND outcome = :running),"
    " attempt AS (INSERT INTO job_attempts"
    " (job_id, number, started_at, outcome, worker, kind, due_at)"
    " SELECT id, attempts, :now, :running, :worker, kind, COALESCE("
    "  (SELECT scheduled_at FROM procrastinate_jobs WHERE id = CAST(:queue_job_id AS bigint)),"
    "  (SELECT max(at) FROM procrastinate_events WHERE job_id = CAST(:queue_job_id AS bigint)"
    "   AND type IN ('deferred', 'deferred_for_retry', 'retried')),"
    "  scheduled_time) FROM started)"
    " SELECT attempts, owner_id, kind, params, max_attempts, scheduled_time FROM started"
)
_START = text(_START_SQL)

# Complete: in_progress (this attempt) -> completed, the result stored and the attempt
# closed, in one statement.
_COMPLETE_SQL = (
    "WITH done AS (UPDATE jobs SET status = :completed, finished_at = :now, updated_at = :now"
    " WHERE id = :job_id AND status = :in_progress AND attempts = :attempt RETURNING id),"
    " attempt AS (UPDATE job_attempts SET outcome = :completed, finished_at = :now,"
    " duration_ms = :duration_ms WHERE job_id = (SELECT id FROM done) AND outcome = :running)"
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


def worker_name() -> str:
    """The process running attempts, as `job_attempts.worker` and the logs name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _start_params(job_id: int, queue_job_id: int | None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "queue_job_id": queue_job_id,
        "now": now_utc(),
        "pending": JobStatus.PENDING.value,
        "in_progress": JobStatus.IN_PROGRESS.value,
        "running": AttemptOutcome.RUNNING.value,
        "lost": AttemptOutcome.LOST.value,
        "worker": worker_name(),
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
        "running": AttemptOutcome.RUNNING.value,
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


_COMPLETED_JOB_DRIVER = "SELECT * FROM jobs WHERE id = %(job_id)s"
_COMPLETED_RESULT_DRIVER = "SELECT * FROM job_results WHERE job_id = %(job_id)s"


async def complete_async(
    connection: Any, job_id: int, attempt: int, output: object, duration_ms: int
) -> bool:
    """`complete` on an autocommit psycopg connection: the statement (status + result) and
    its `job.completed` event in one transaction, pipelined (two round trips: the
    completion with the rows the event is made of, then the event with the COMMIT)."""
    params = _complete_params(job_id, attempt, output, duration_ms, None)
    async with connection.pipeline(), connection.transaction():
        completing = connection.cursor()
        reading_job = connection.cursor(row_factory=dict_row)
        reading_result = connection.cursor(row_factory=dict_row)
        await completing.execute(_COMPLETE_DRIVER, params)
        await reading_job.execute(_COMPLETED_JOB_DRIVER, params)
        await reading_result.execute(_COMPLETED_RESULT_DRIVER, params)
        if await completing.fetchone() is None:
            return False  # nothing changed: the transaction ends empty
        job = _detached(Job, await reading_job.fetchone())
        result = _detached(JobResult, await reading_result.fetchone())
        event = build_event("job.completed", job=job, result=result, by=COMPLETED_BY_PROCESSOR)
        await write_events_async(connection, [event])
    return True


def _detached(model: type[Any], row: Mapping[str, Any]) -> Any:
    """A `model` object holding `row` (read on a psycopg connection), in no session."""
    return model(**{attr.key: row[attr.columns[0].name] for attr in inspect(model).column_attrs})


# --- the same transitions, many jobs a statement (the batched queue) --------------------

# Take up to :limit due entries of the jobs queue for worker :worker_id, at most
# :blocking_limit of them of blocking kinds (the fair fetch,
# migrations/sql/async_slots_0014.sql), and start each entry's job as _START_SQL starts
# one: the same conditions, the same columns. An entry whose job is not simply pending
# comes back without an attempt; its caller decides under the lock (`start_attempt`), in a
# transaction of its own. So does one whose job row is locked (a cancel, an award, an
# edit in progress): the cancel holds the job's row and waits for the entry, this
# statement holds the entry, so it must not wait for the row (SKIP LOCKED).
_START_BATCH_SQL = (
    "WITH taken AS MATERIALIZED ("
    "  SELECT id AS entry_id, (args->>'job_id')::bigint AS job_id, task_name,"
    "  args->>'request_id' AS request_id, NOT (args ? 'async') AS blocking"
    "  FROM jobboard_fetch_jobs(%(worker_id)s, %(limit)s, %(blocking_limit)s)),"
    " startable AS (SELECT jobs.id, taken.entry_id FROM jobs JOIN taken ON jobs.id = taken.job_id"
    "  WHERE jobs.status = %(pending)s AND jobs.assignee_id IS NULL"
    "  AND (jobs.queue_job_id IS NULL OR jobs.queue_job_id = taken.entry_id)"
    "  FOR UPDATE OF jobs SKIP LOCKED),"
    # clock_timestamp(), not a time taken before the statement: the fetch judged the
    # entries due by the statement's own clock, and a start is never before its due time.
    " started AS (UPDATE jobs SET status = %(in_progress)s, attempts = jobs.attempts + 1,"
    "  started_at = clock_timestamp(), updated_at = clock_timestamp() FROM startable"
    "  WHERE jobs.id = startable.id"
    "  RETURNING startable.entry_id, jobs.id, jobs.started_at, jobs.attempts, jobs.owner_id,"
    "  jobs.kind, jobs.params, jobs.max_attempts, jobs.scheduled_time),"
    # Each started job's `running` attempt recorded (and a stale one closed as lost), as
    # _START_SQL records one.
    " stale AS (UPDATE job_attempts SET outcome = %(lost)s, finished_at = clock_timestamp()"
    "  WHERE job_id IN (SELECT id FROM started) AND outcome = %(running)s),"
    " attempt AS (INSERT INTO job_attempts"
    "  (job_id, number, started_at, outcome, worker, kind, due_at)"
    "  SELECT started.id, started.attempts, started.started_at, %(running)s, %(worker)s,"
    "  started.kind, COALESCE(entry.scheduled_at,"
    "   (SELECT max(at) FROM procrastinate_events WHERE job_id = started.entry_id"
    "    AND type IN ('deferred', 'deferred_for_retry', 'retried')),"
    "   started.scheduled_time)"
    "  FROM started LEFT JOIN procrastinate_jobs AS entry ON entry.id = started.entry_id)"
    " SELECT taken.entry_id, taken.job_id, taken.task_name, taken.request_id, taken.blocking,"
    " started.attempts, started.owner_id,"
    " started.kind, started.params, started.max_attempts, started.scheduled_time"
    " FROM taken LEFT JOIN started USING (entry_id) ORDER BY taken.entry_id"
)

# Complete many attempts as _COMPLETE_SQL completes one (status + result, only while the
# attempt still owns its job), and finish the worker's queue entries of many attempts
# (Procrastinate's own procrastinate_finish_job_v1, on entries still `doing` for this
# worker: one the stalled-job check gave back to the queue is left alone), all in one
# statement: one transaction, one WAL flush for the lot.
_COMPLETE_BATCH_SQL = (
    "WITH given AS (SELECT * FROM unnest(%(job_ids)s::bigint[], %(attempts)s::integer[],"
    "  ARRAY(SELECT e.value FROM jsonb_array_elements(%(outputs)s::jsonb)"
    "  WITH ORDINALITY AS e ORDER BY e.ordinality), %(durations)s::integer[])"
    "  AS g(job_id, attempt, output, duration_ms)),"
    " done AS (UPDATE jobs SET status = %(completed)s, finished_at = %(now)s, updated_at = %(now)s"
    "  FROM given WHERE jobs.id = given.job_id AND jobs.status = %(in_progress)s"
    "  AND jobs.attempts = given.attempt RETURNING jobs.id, given.output, given.duration_ms),"
    " results AS (INSERT INTO job_results (job_id, output, completed_at, duration_ms, note)"
    "  SELECT id, output, %(now)s, duration_ms, NULL FROM done RETURNING job_id),"
    " attempt AS (UPDATE job_attempts SET outcome = %(completed)s, finished_at = %(now)s,"
    "  duration_ms = done.duration_ms FROM done"
    "  WHERE job_attempts.job_id = done.id AND job_attempts.outcome = %(running)s),"
    " owned AS (SELECT id FROM procrastinate_jobs WHERE id = ANY(%(entry_ids)s::bigint[])"
    "  AND status = 'doing' AND worker_id = %(worker_id)s FOR UPDATE),"
    " finished AS (SELECT procrastinate_finish_job_v1(id, 'succeeded', false) FROM owned)"
    " SELECT ARRAY(SELECT job_id FROM results), (SELECT count(*) FROM finished)"
)


@dataclass(frozen=True)
class TakenEntry:
    """A queue entry the batched fetch took, with its job's attempt when it started."""

    entry_id: int
    job_id: int | None
    task_name: str
    request_id: str | None  # the request that queued it, for the attempt's log lines
    blocking: bool  # counted by the fetch against the slots of blocking kinds
    attempt: Attempt | None


@dataclass(frozen=True)
class Completion:
    """A finished attempt's output, for `complete_batch_async`."""

    job_id: int
    attempt: int
    output: object
    duration_ms: int


async def start_batch_async(
    connection: Any, worker_id: int, limit: int, blocking_limit: int
) -> list[TakenEntry]:
    """Take up to `limit` entries of the jobs queue for `worker_id`, at most
    `blocking_limit` of them of blocking kinds (`service.entry_marks`), and start their
    jobs, in one statement (its own transaction on an autocommit connection)."""
    params = _start_params(0, None) | {
        "worker_id": worker_id,
        "limit": limit,
        "blocking_limit": blocking_limit,
    }
    async with connection.cursor() as cursor:
        await cursor.execute(_START_BATCH_SQL, params)
        rows = await cursor.fetchall()
    return [
        TakenEntry(
            entry_id,
            job_id,
            task_name,
            request_id,
            blocking,
            None if row[0] is None else _attempt(job_id, row),
        )
        for entry_id, job_id, task_name, request_id, blocking, *row in rows
    ]


async def complete_batch_async(
    connection: Any, worker_id: int, completions: list[Completion], entry_ids: list[int]
) -> set[int]:
    """`complete` for each of `completions` and the finish of `entry_ids` (the worker's
    queue entries), in one statement. Returns the ids of the jobs completed (an attempt
    that no longer owns its job is not)."""
    params = {
        "now": now_utc(),
        "worker_id": worker_id,
        "job_ids": [item.job_id for item in completions],
        "attempts": [item.attempt for item in completions],
        "outputs": json.dumps([item.output for item in completions]),  # as outbox's data
        "durations": [item.duration_ms for item in completions],
        "entry_ids": entry_ids,
        "completed": JobStatus.COMPLETED.value,
        "in_progress": JobStatus.IN_PROGRESS.value,
        "running": AttemptOutcome.RUNNING.value,
    }
    # As `complete_async`: the statement and the completed jobs' `job.completed` events in
    # one transaction, pipelined (two round trips for the whole batch).
    async with connection.pipeline(), connection.transaction():
        completing = connection.cursor()
        reading_jobs = connection.cursor(row_factory=dict_row)
        reading_results = connection.cursor(row_factory=dict_row)
        await completing.execute(_COMPLETE_BATCH_SQL, params)
        await reading_jobs.execute(_COMPLETED_JOBS_DRIVER, params)
        await reading_results.execute(_COMPLETED_RESULTS_DRIVER, params)
        row = await completing.fetchone()
        completed = set(row[0])
        jobs = {item["id"]: item for item in await reading_jobs.fetchall()}
        results = {item["job_id"]: item for item in await reading_results.fetchall()}
        events = [
            build_event(
                "job.completed",
                job=_detached(Job, jobs[job_id]),
                result=_detached(JobResult, results[job_id]),
                by=COMPLETED_BY_PROCESSOR,
            )
            for job_id in sorted(completed)
        ]
        if events:
            await write_events_async(connection, events)
    return completed


_COMPLETED_JOBS_DRIVER = "SELECT * FROM jobs WHERE id = ANY(%(job_ids)s::bigint[])"
_COMPLETED_RESULTS_DRIVER = "SELECT * FROM job_results WHERE job_id = ANY(%(job_ids)s::bigint[])"


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
    lost_ms = _elapsed_ms(job.started_at)
    close_attempt(job.id, AttemptOutcome.LOST, interrupted, lost_ms)
    with logs.job_context(job.id, job.attempts, logs.current_request_id()):
        logger.warning(
            "job %s attempt %s lost after %s ms: its worker stopped during it",
            job.id,
            job.attempts,
            lost_ms,
            extra={"outcome": AttemptOutcome.LOST.value, "duration_ms": lost_ms},
        )
    if job.attempts >= job.max_attempts:
        fail(job, interrupted, _elapsed_ms(job.started_at))
        return False
    job.status = JobStatus.PENDING
    job.last_error = interrupted
    _tell("job.retrying", job=job, next_attempt_at=now_utc())  # flushes: the next start
    return True  # is a plain statement and must see this row


COMPLETED_BY_PROCESSOR = "processor"
COMPLETED_BY_ASSIGNEE = "assignee"


def complete(
    job_id: int,
    attempt: int,
    output: object,
    duration_ms: int,
    note: str | None = None,
    by: str = COMPLETED_BY_PROCESSOR,
) -> bool:
    """Job `job_id`, in progress on `attempt`, is completed with `output` as its result
    (a processor's return value, or an assignee's delivery with `note`: `by`), and its
    owner told (`job.completed`). False, and nothing written, when that attempt no longer
    owns the job. The caller commits."""
    done = db.session.execute(
        _COMPLETE, _complete_params(job_id, attempt, output, duration_ms, note)
    ).first()
    if done is None:
        return False
    job = db.session.get(Job, job_id, populate_existing=True)
    result = db.session.scalar(
        select(JobResult)
        .where(JobResult.job_id == job_id)
        .execution_options(populate_existing=True)
    )
    _tell("job.completed", job=job, result=result, by=by)
    return True


def _tell(type_name: str, **resources: Any) -> None:
    """Write the event of this change on its transaction (`jobboard.events.outbox`)."""
    tell(type_name, **resources)


def attempt_still_owned(job_id: int, attempt: int) -> Job | None:
    """The locked job, if `attempt` is still its running attempt (the stalled-job check
    may have given it up for dead and another worker taken over)."""
    job = locked(Job, job_id)
    if job is None or job.status != JobStatus.IN_PROGRESS or job.attempts != attempt:
        return None
    return job


def schedule_retry(job: Job, error: str, duration_ms: int | None = None) -> str:
    """The locked job's attempt failed with attempts left: back to pending, its next
    attempt queued after the backoff (`retry_delay`)."""
    close_attempt(job.id, AttemptOutcome.FAILED, error, duration_ms)
    job.status = JobStatus.PENDING
    job.last_error = error
    next_attempt_at = now_utc() + retry_delay(job.attempts)
    schedule_job(job, next_attempt_at)
    _tell("job.retrying", job=job, next_attempt_at=next_attempt_at)
    return Outcome.RETRY_SCHEDULED


def fail(job: Job, error: str, duration_ms: int) -> str:
    """The locked job's last attempt failed: failed, with the error as its result."""
    close_attempt(job.id, AttemptOutcome.FAILED, error, duration_ms)
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
    _tell("job.failed", job=job)
    return Outcome.FAILED


_CLOSE_ATTEMPT = text(
    "UPDATE job_attempts SET outcome = :outcome, error = :error, finished_at = :now,"
    " duration_ms = COALESCE(CAST(:duration_ms AS integer),"
    " GREATEST(0, CAST(EXTRACT(EPOCH FROM (:now - started_at)) * 1000 AS integer)))"
    " WHERE job_id = :job_id AND outcome = :running"
)


def close_attempt(job_id: int, outcome: str, error: str | None, duration_ms: int | None) -> None:
    """The running attempt of the locked job `job_id` ended with `outcome` (its duration:
    `duration_ms`, or the time since it started). Nothing when none is running (a job
    done by a person, or one already closed `lost`). The caller commits."""
    db.session.execute(
        _CLOSE_ATTEMPT,
        {
            "job_id": job_id,
            "outcome": outcome,
            "error": error,
            "duration_ms": duration_ms,
            "now": now_utc(),
            "running": AttemptOutcome.RUNNING.value,
        },
    )


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


def _locked_for_change(
    user: User | None, job_id: int, if_match: conditional.IfMatch | None = None
) -> Job:
    """The job locked FOR UPDATE, if `user` may change it (None is the operator's CLI)
    and it is still as the caller read it (`if_match`)."""
    job = locked(Job, job_id)
    if job is None or (user is not None and not policy.can_see(user, job)):
        raise NotFound(f"Job {job_id} not found.")
    conditional.require_current(if_match, job)
    if user is not None:
        policy.require_may_change(user, job)
    return job


def cancel_job(user: User, job_id: int, if_match: conditional.IfMatch | None = None) -> Job:
    """Cancel a pending job and its queue entry; 409 once it has started or finished,
    412 when it changed since the caller read it (`if_match`)."""
    job = _locked_for_change(user, job_id, if_match)
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
        _tell("job.cancelled", job=job)
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
    elapsed = _elapsed_ms(job.started_at)
    if not complete(job.id, job.attempts, output, elapsed, note, by=COMPLETED_BY_ASSIGNEE):
        raise Conflict(f"Job {job.id} is no longer in progress.")  # never: the row is locked
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
    by_owner = policy.is_owner(user, job)
    quotas.admit_requeue(job, by_owner=by_owner)
    other_id = policy.other_party_id(user, job)
    assignee_id = job.assignee_id
    withdrawn = locked_rows(Bid, Bid.job_id == job.id, Bid.status == BidStatus.ACCEPTED)
    for bid in withdrawn:
        bid.status = BidStatus.WITHDRAWN
    job.status = JobStatus.PENDING
    job.assignee_id = None
    job.started_at = None
    job.due_date = None
    notices.cancel_deadline_notices(job)
    if runs_in_queue(job.kind):
        schedule_job(job, job.scheduled_time if job.scheduled_time > now_utc() else None)
    if other_id is not None:
        by = "owner" if by_owner else "assignee"
        _tell("job.released", job=job, by=by, assignee_id=assignee_id)
    if not by_owner:  # its bidder gave it back: the owner hears of the bid withdrawn too
        for bid in withdrawn:
            _tell("bid.withdrawn", job=job, bid=bid)
    commit_as_written()
    return job


EDITABLE_FIELDS = ("name", "description", "scheduled_time", "priority", "params", "max_attempts")


def reschedule(
    user: User,
    job_id: int,
    changes: Mapping[str, Any],
    if_match: conditional.IfMatch | None = None,
) -> Job:
    """The owner edits a pending, unassigned job. A new `scheduled_time` (null: now) or
    `priority` moves its queue entry in the same transaction: the old entry is cancelled
    (or, if a worker has just taken it, superseded: the attempt checks that it still owns
    the job) and a new one deferred, so the job never runs at the old time, nor twice."""
    job = locked(Job, job_id)
    if job is None or not policy.is_owner(user, job):
        raise NotFound(f"Job {job_id} not found.")
    conditional.require_current(if_match, job)
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
