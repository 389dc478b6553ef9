"""Job tasks: one attempt of a job, the stalled-job check and the pruning of the queue."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from flask import current_app
from procrastinate import BaseRetryStrategy, JobContext, RetryDecision, exceptions
from procrastinate.jobs import Job as QueueJob
from procrastinate.jobs import Status

from jobboard import logs
from jobboard.jobs.processing import (
    begin_attempt,
    finish_attempt,
    past_time_limit,
    run_processor,
    store_failure,
)
from jobboard.jobs.transitions import Attempt, Outcome, complete_async, start_attempt_async
from workers.app import (
    PROCESS_JOB_TASK,
    PRUNE_QUEUE_TASK,
    QUEUE_JOBS,
    QUEUE_MAINTENANCE,
    RECOVER_STALLED_TASK,
    task_app,
)
from workers.context import app_context
from workers.processors import LIMIT_GRACE_SECONDS, get_processor

logger = logging.getLogger(__name__)

# Every 5 s (the 6th cron field is seconds): a dead worker's job is back in the queue at most
# STALLED_WORKER_SECONDS + 5 s after its last heartbeat.
STALLED_CHECK_CRON = "* * * * * */5"
PRUNE_CRON = "17 * * * *"


def stalled_worker_seconds() -> float:
    with app_context():
        return float(current_app.config["STALLED_WORKER_SECONDS"])


def queue_retention_hours() -> int:
    with app_context():
        return int(current_app.config["QUEUE_RETENTION_HOURS"])


class InfrastructureRetry(BaseRetryStrategy):
    """Re-run an entry whose task raised: 0.5 s, 1 s, 2 s, ... (at most 5 min), 12 times.

    A processor's failure never gets here (`finish_attempt` stores it as the attempt's
    outcome); what does is the infrastructure failing around it, such as the database
    going away mid-attempt. The re-run finds the job where the failure left it.
    """

    max_attempts = 12

    def get_retry_decision(
        self, *, exception: BaseException, job: QueueJob
    ) -> RetryDecision | None:
        if job.attempts + 1 >= self.max_attempts:
            return None
        return RetryDecision(retry_in={"seconds": min(0.5 * 2**job.attempts, 300)})


@task_app.task(
    name=PROCESS_JOB_TASK, queue=QUEUE_JOBS, pass_context=True, retry=InfrastructureRetry()
)
async def process_job(
    context: JobContext,
    job_id: int,
    owner_id: int | None = None,
    long: bool = False,
    request_id: str | None = None,
) -> str:
    """Run the next attempt of job `job_id` (see jobboard.jobs.processing). `owner_id` and
    `long` are for the queue's fair fetch only (migrations/sql/long_job_slots_0009.sql);
    the job row is the truth. `request_id`, the request that queued the entry, names it
    in the attempt's log lines (jobboard/logs.py), with the job id and the attempt; the
    attempt ends with one line saying its outcome and duration (`log_attempt`).

    The common case costs two statements besides Procrastinate's fetch and finish: the
    start (one conditional UPDATE) and, for a processor that is not `blocking`, the
    completion (one statement: status + result), each its own transaction on the
    worker's autocommit pool, with the processor run on the event loop in between. A
    blocking processor runs in a thread of its own with the synchronous path (SQLAlchemy
    session, row lock), within its kind's time limit (`finish_within_time_limit`); a
    failure, or a job that is not simply pending, goes to the event loop's executor."""
    assert context.job.id is not None
    queue_job_id = context.job.id
    pool = context.app.connector.pool
    with logs.job_context(job_id, request_id=request_id):
        async with pool.connection() as connection:
            attempt = await start_attempt_async(connection, job_id, queue_job_id)

        async def complete_now(attempt: Attempt, output: object, duration_ms: int) -> bool:
            async with pool.connection() as connection:
                return await complete_async(
                    connection, job_id, attempt.attempt, output, duration_ms
                )

        return await drive_attempt(
            job_id, queue_job_id, attempt, context.should_abort, complete_now
        )


# How each outcome of an attempt reads in its log line.
_ATTEMPT_ENDED = {
    Outcome.COMPLETED: ("completed", "", logging.INFO),
    Outcome.RETRY_SCHEDULED: ("failed", "; the next attempt is scheduled", logging.WARNING),
    Outcome.FAILED: ("failed", "; it was the last: the job failed", logging.WARNING),
    Outcome.SUPERSEDED: (
        "superseded",
        "; given up for lost meanwhile, its outcome discarded",
        logging.WARNING,
    ),
}


def log_attempt(attempt: Attempt, outcome: str, seconds: float) -> None:
    """The attempt's one line: job id and attempt (from the context), outcome, duration."""
    ended, detail, level = _ATTEMPT_ENDED.get(outcome, (str(outcome), "", logging.INFO))
    duration_ms = round(seconds * 1000, 1)
    logger.log(
        level,
        "job %s attempt %s %s in %s ms%s",
        attempt.job_id,
        attempt.attempt,
        ended,
        duration_ms,
        detail,
        extra={"outcome": ended, "duration_ms": duration_ms, "kind": attempt.kind},
    )


# How a finished attempt's output is stored: at once (`process_job`), or by the batched
# queue's completer with others (workers/batched.py). True when the attempt still owned
# its job and is completed.
Complete = Callable[[Attempt, object, int], Awaitable[bool]]


async def drive_attempt(
    job_id: int,
    queue_job_id: int,
    attempt: Attempt | None,
    should_abort: Callable[[], bool],
    complete: Complete,
) -> str:
    """One attempt of job `job_id` for queue entry `queue_job_id`, from its start on:
    what `process_job` and the batched queue both do once the job is started (`attempt`)
    or found not simply pending (None: decided under the lock by `begin_attempt`). The
    attempt ends with its one log line (`log_attempt`)."""
    if attempt is None:  # cancelled, assigned, finished, stalled: decided under the lock
        begun = await in_thread(begin_attempt, job_id, queue_job_id)
        if not isinstance(begun, Attempt):
            return begun
        attempt = begun
    logs.set_attempt(attempt.attempt)
    started = time.monotonic()
    outcome = await _run_started_attempt(attempt, should_abort, complete)
    log_attempt(attempt, outcome, time.monotonic() - started)
    return outcome


async def _run_started_attempt(
    attempt: Attempt, should_abort: Callable[[], bool], complete: Complete
) -> str:
    """A processor that is not `blocking` runs here on the event loop and its output goes
    to `complete`; a blocking one runs in a thread of its own with the synchronous path
    (`finish_within_time_limit`); a failure is stored by `store_failure` in a thread."""
    job_id = attempt.job_id
    processor = get_processor(attempt.kind)
    if processor is None or processor.blocking:
        return await finish_within_time_limit(attempt, should_abort)
    started = time.monotonic()
    output, error = run_processor(attempt, should_abort)
    duration_ms = round((time.monotonic() - started) * 1000)
    if error is not None:
        return await in_thread(store_failure, job_id, attempt.attempt, error, duration_ms)
    done = await complete(attempt, output, duration_ms)
    return Outcome.COMPLETED if done else Outcome.SUPERSEDED


async def finish_within_time_limit(attempt: Attempt, should_abort: Callable[[], bool]) -> str:
    """`finish_attempt` (the processor, then its outcome stored) in a thread of its own.

    At the kind's time limit the processor is asked to stop (`run_processor`), and one
    that stops fails its attempt there. One that ignores it is given up
    LIMIT_GRACE_SECONDS later: its attempt is failed here and this worker slot goes to
    the next job. Python cannot stop a thread, so the ignored one runs on until it
    returns; its outcome is then discarded (the attempt no longer owns the job). A thread
    of its own, not the executor's: an ignored attempt never holds a thread that the
    next attempt needs."""
    processor = get_processor(attempt.kind)
    limit = processor.time_limit if processor is not None else None
    started = time.monotonic()
    finished = in_own_thread(f"job-{attempt.job_id}", finish_attempt, attempt, should_abort)
    if limit is None:
        return await finished
    try:
        return await asyncio.wait_for(asyncio.shield(finished), limit + LIMIT_GRACE_SECONDS)
    except TimeoutError:
        pass
    elapsed = time.monotonic() - started
    logger.error(
        "job %s attempt %s: kind %r ignored should_abort past its time limit of %g s; its "
        "attempt fails, its slot goes to the next job, its thread runs on unattended",
        attempt.job_id,
        attempt.attempt,
        attempt.kind,
        limit,
    )
    finished.add_done_callback(partial(_abandoned_attempt_ended, attempt, started))
    error = past_time_limit(attempt, limit, elapsed)
    return await in_thread(
        store_failure, attempt.job_id, attempt.attempt, error, round(elapsed * 1000)
    )


def _abandoned_attempt_ended(attempt: Attempt, started: float, finished: asyncio.Future) -> None:
    outcome = "cancelled" if finished.cancelled() else finished.exception() or finished.result()
    logger.warning(
        "job %s attempt %s: the thread given up at its time limit returned after %.1f s (%s)",
        attempt.job_id,
        attempt.attempt,
        time.monotonic() - started,
        outcome,
    )


def in_own_thread(name: str, function: Any, *args: Any) -> asyncio.Future[Any]:
    """`function(*args)` in a new daemon thread, inside the worker's Flask application
    context; the future settles on the event loop when it returns."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result, error = None, None
        try:
            with app_context():
                result = function(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    # The thread carries the caller's context (the attempt's log context among it).
    carried = contextvars.copy_context()
    threading.Thread(target=carried.run, args=(run,), name=name, daemon=True).start()
    return future


async def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    """`function` in the event loop's default executor (sized by `python -m workers` to
    every worker slot), inside the worker's Flask application context."""

    def call() -> Any:
        with app_context():
            return function(*args, **kwargs)

    # The executor's thread runs in the caller's context (the attempt's log context).
    carried = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(None, partial(carried.run, call))


@task_app.periodic(cron=STALLED_CHECK_CRON, periodic_id="stalled")
@task_app.task(
    name=RECOVER_STALLED_TASK,
    queue=QUEUE_MAINTENANCE,
    queueing_lock=RECOVER_STALLED_TASK,
    pass_context=True,
)
async def recover_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Put the queue entries of workers that stopped heartbeating back in the queue.

    Procrastinate notices dead workers but leaves their `doing` entries alone. A re-queued
    `process_job` finds its job `in_progress`, counts the lost attempt as failed and goes on.
    """
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_worker_seconds())
    retried = 0
    for job in stalled:
        try:
            await manager.retry_job(job)
            retried += 1
        except exceptions.UniqueViolation:
            # Another entry with the same queueing lock is already waiting (the dead worker
            # had queued the next attempt, or a periodic task was deferred again): this one
            # is superseded.
            assert job.id is not None
            await manager.finish_job_by_id_async(
                job_id=job.id, status=Status.FAILED, delete_job=False
            )
            logger.warning("stalled queue job %s superseded, marked failed", job.id)
        else:
            logger.warning("stalled queue job %s (%s) re-queued", job.id, job.call_string)
    return retried


@task_app.periodic(cron=PRUNE_CRON, periodic_id="prune")
@task_app.task(
    name=PRUNE_QUEUE_TASK,
    queue=QUEUE_MAINTENANCE,
    queueing_lock=PRUNE_QUEUE_TASK,
    pass_context=True,
)
async def prune_finished_queue_jobs(context: JobContext, timestamp: int) -> None:
    """Delete queue entries that finished more than QUEUE_RETENTION_HOURS ago
    (docs/configuration.md). Job rows and their results stay: they are ours, not the
    queue's."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=queue_retention_hours(),
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )
