"""Job tasks: one attempt of a job, the stalled-job check and the pruning of the queue."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

from flask import current_app
from procrastinate import BaseRetryStrategy, JobContext, RetryDecision, exceptions
from procrastinate.jobs import Job as QueueJob
from procrastinate.jobs import Status

from jobboard.jobs.processing import finish_attempt, run_attempt, run_processor, store_failure
from jobboard.jobs.transitions import Outcome, complete_async, start_attempt_async
from workers.app import (
    PROCESS_JOB_TASK,
    PRUNE_QUEUE_TASK,
    QUEUE_JOBS,
    QUEUE_MAINTENANCE,
    RECOVER_STALLED_TASK,
    task_app,
)
from workers.context import app_context
from workers.processors import get_processor

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

    A processor's failure never gets here (`run_attempt` stores it as the attempt's
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
async def process_job(context: JobContext, job_id: int, owner_id: int | None = None) -> str:
    """Run the next attempt of job `job_id` (see jobboard.jobs.processing). `owner_id` is
    for the queue's fair fetch only; the job row is the truth.

    The common case costs two statements besides Procrastinate's fetch and finish: the
    start (one conditional UPDATE) and, for a processor that is not `blocking`, the
    completion (one statement: status + result), each its own transaction on the
    worker's autocommit pool, with the processor run on the event loop in between. A
    blocking processor, a failure, or a job that is not simply pending goes to a thread
    and the synchronous path (SQLAlchemy session, row lock), as before."""
    assert context.job.id is not None
    queue_job_id = context.job.id
    should_abort = context.should_abort
    async with context.app.connector.pool.connection() as connection:
        attempt = await start_attempt_async(connection, job_id, queue_job_id)
    if attempt is None:  # cancelled, assigned, finished, stalled: decided under the lock
        return await in_thread(
            run_attempt, job_id, queue_job_id=queue_job_id, should_abort=should_abort
        )
    processor = get_processor(attempt.kind)
    if processor is None or processor.blocking:
        return await in_thread(finish_attempt, attempt, should_abort)
    started = time.monotonic()
    output, error = run_processor(attempt, should_abort)
    duration_ms = round((time.monotonic() - started) * 1000)
    if error is not None:
        return await in_thread(store_failure, job_id, attempt.attempt, error, duration_ms)
    async with context.app.connector.pool.connection() as connection:
        done = await complete_async(connection, job_id, attempt.attempt, output, duration_ms)
    return Outcome.COMPLETED if done else Outcome.SUPERSEDED


async def in_thread(function: Any, *args: Any, **kwargs: Any) -> str:
    """`function` in the event loop's default executor (sized by `python -m workers` to
    every worker slot), inside the worker's Flask application context."""

    def call() -> str:
        with app_context():
            return function(*args, **kwargs)

    return await asyncio.get_running_loop().run_in_executor(None, partial(call))


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
