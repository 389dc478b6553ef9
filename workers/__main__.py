"""`python -m workers`: the Procrastinate workers on every queue, periodic tasks included.

With WORKER_PROCESSES above 1, this process starts that many minus one more copies of
itself (each with WORKER_PROCESSES=1), restarts any that dies and stops them with itself:
on a machine with more cores, several event loops fetch and finish jobs in parallel.

One process runs three Procrastinate workers side by side, so mail and maintenance never
wait behind jobs: one takes the `jobs` queue (the batched worker: WORKER_ASYNC_CONCURRENCY
slots, of which kinds that block a thread take at most WORKER_CONCURRENCY), one `mail`
and `maintenance` with MAIL_WORKER_CONCURRENCY slots that jobs cannot take, and one the
`webhooks` queue with WEBHOOK_WORKER_CONCURRENCY slots of its own. Sync
tasks run on the event loop's default executor, sized to the sum of both, so every slot
really runs at once (asyncio's own default is min(32, cpus + 4) threads).

Of the WORKER_CONCURRENCY job slots, long jobs (kinds whose time limit is over 10 s) hold
at most LONG_JOB_SLOTS: the fetch reads that number from a setting on the worker's own
connections (`workers.app.autocommit`) and counts the long entries of this worker only, so
every worker process keeps its other slots for short jobs.

Settings come from `config.py` (WORKER_CONCURRENCY, WORKER_ASYNC_CONCURRENCY, LONG_JOB_SLOTS,
MAIL_WORKER_CONCURRENCY, WORKER_POLL_INTERVAL, WORKER_HEARTBEAT_INTERVAL,
STALLED_WORKER_SECONDS, LOG_LEVEL, DATABASE_URL; docs/configuration.md). The queue's
connector is built from that configuration here, when the worker starts: `workers.app`
reads no environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from config import Config, config_for_environment, queue_conninfo
from jobboard import logs, resolve_database_url
from workers.app import (
    QUEUE_JOBS,
    QUEUE_MAIL,
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
    RECOVER_STALLED_TASK,
    new_connector,
    task_app,
)
from workers.batched import BatchedJobsWorker
from workers.context import flask_app
from workers.processors import LONG_JOB_SECONDS

logger = logging.getLogger("workers")

# Restarting the worker loop after the database went away (back at work within 10 s of
# the database's return, docs/operations.md): waits double from the first to the last value.
RESTART_FIRST_DELAY = 0.2
RESTART_MAX_DELAY = 2.0
# A loop that ran this long before it ended starts the backoff afresh.
HEALTHY_RUN_SECONDS = 60.0
# How often the worker checks that the database still answers, and how long it waits.
DATABASE_CHECK_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 2
# An old loop's pool and running jobs get this long to wind down after an outage.
SHUTDOWN_WAIT_SECONDS = 10.0


def worker_options(config: type[Config] | None = None) -> dict[str, float | int]:
    config = config or config_for_environment()
    return {
        "concurrency": config.WORKER_CONCURRENCY,
        "fetch_job_polling_interval": config.WORKER_POLL_INTERVAL,
        "update_heartbeat_interval": config.WORKER_HEARTBEAT_INTERVAL,
        "stalled_worker_timeout": config.STALLED_WORKER_SECONDS,
    }


def long_job_slots(config: type[Config] | None = None) -> int:
    """LONG_JOB_SLOTS, checked: 0 (this worker takes no long job) to WORKER_CONCURRENCY."""
    config = config or config_for_environment()
    slots = config.LONG_JOB_SLOTS
    if not 0 <= slots <= config.WORKER_CONCURRENCY:
        raise SystemExit(
            f"LONG_JOB_SLOTS must be 0 to WORKER_CONCURRENCY ({config.WORKER_CONCURRENCY}), "
            f"not {slots}"
        )
    return slots


def worker_set(config: type[Config] | None = None) -> list[dict[str, Any]]:
    """The Procrastinate workers of one process: each one's queues and options."""
    config = config or config_for_environment()
    common = worker_options(config)
    return [
        {
            **common,
            "name": "jobs",
            "queues": [QUEUE_JOBS],
            "batch_size": config.QUEUE_BATCH_SIZE,
            "flush_seconds": config.QUEUE_FLUSH_SECONDS,
            # Never fewer slots in all than blocking kinds may take.
            "async_concurrency": max(config.WORKER_ASYNC_CONCURRENCY, config.WORKER_CONCURRENCY),
        },
        {
            **common,
            "name": "mail+maintenance",
            "queues": [QUEUE_MAIL, QUEUE_MAINTENANCE],
            "concurrency": config.MAIL_WORKER_CONCURRENCY,
        },
        {
            **common,
            "name": "webhooks",
            "queues": [QUEUE_WEBHOOKS],
            "concurrency": config.WEBHOOK_WORKER_CONCURRENCY,
        },
    ]


class QuietRoutineChecks(logging.Filter):
    """The stalled-job check runs every 5 s; three INFO lines each time would bury what
    people read the worker's log for (mail in development, job outcomes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        routine = record.levelno <= logging.INFO and RECOVER_STALLED_TASK in record.getMessage()
        return not routine


async def supervise(
    task_app: Any,
    conninfo: str,
    workers: list[dict[str, Any]],
    extra_processes: int = 0,
    long_slots: int | None = None,
) -> None:
    """Run Procrastinate's worker until SIGTERM/SIGINT, through database outages.

    When PostgreSQL goes away, Procrastinate 3.10's LISTEN connection dies and its worker
    stops; its pool then waits to reconnect with a backoff that doubles without bound,
    which could keep it away long after the database is back. So the database is watched
    here: once it is unreachable the worker loop is stopped and its pool closed, and as
    soon as the database answers again (polled with a short, capped backoff) a new loop
    starts on a fresh pool. Jobs cut off mid-run are retried by the stalled-job check."""
    loop = asyncio.get_running_loop()
    slots = sum(int(options["concurrency"]) for options in workers)
    loop.set_default_executor(ThreadPoolExecutor(max_workers=slots, thread_name_prefix="task"))
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    children = [
        asyncio.create_task(keep_process(index, stopping)) for index in range(extra_processes)
    ]
    delay = RESTART_FIRST_DELAY
    while not stopping.is_set():
        if not await wait_for_database(conninfo, stopping):
            break
        started = loop.time()
        try:
            reason = await run_workers_once(task_app, conninfo, workers, stopping, long_slots)
        except Exception as error:  # opening the pool failed: the database left again
            reason = repr(error)
        if stopping.is_set():
            break
        if loop.time() - started > HEALTHY_RUN_SECONDS:
            delay = RESTART_FIRST_DELAY
        logger.warning("the worker loop ended (%s); restarting in %.1f s", reason, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        delay = min(delay * 2, RESTART_MAX_DELAY)
    stopping.set()  # the children stop with this process, whatever ended its loop
    await asyncio.gather(*children, return_exceptions=True)
    logger.info("worker stopped")


async def keep_process(index: int, stopping: asyncio.Event) -> None:
    """One more worker process (`python -m workers` with WORKER_PROCESSES=1), restarted
    when it exits, sent SIGTERM (then killed after SHUTDOWN_WAIT_SECONDS) on stop."""
    env = {**os.environ, "WORKER_PROCESSES": "1"}
    while not stopping.is_set():
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "workers", env=env)
        logger.info("worker process %d started (pid %d)", index + 2, process.pid)
        exited = asyncio.create_task(process.wait())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if stopping.is_set():
            if process.returncode is None:
                process.terminate()
            try:
                await asyncio.wait_for(exited, SHUTDOWN_WAIT_SECONDS)
            except TimeoutError:
                process.kill()
                await exited
            return
        logger.warning("worker process %d exited (%s); restarting", index + 2, process.returncode)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), RESTART_MAX_DELAY)


_retiring: set[asyncio.Task[Any]] = set()  # old loops winding down in the background


async def run_workers_once(
    task_app: Any,
    conninfo: str,
    workers: list[dict[str, Any]],
    stopping: asyncio.Event,
    long_slots: int | None = None,
) -> str:
    """One loop of the process's workers on a connector (and pool) of their own, until one
    of them ends, the database becomes unreachable, or a stop is asked. Returns why."""
    connector = new_connector(conninfo, long_slots)
    with task_app.replace_connector(connector):
        await connector.open_async()
        running = [
            asyncio.create_task(run_worker(task_app, options), name=str(options["name"]))
            for options in workers
        ]
        watch = asyncio.create_task(watch_database(conninfo))
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({*running, watch, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (watch, stop):
            task.cancel()
        ended = [task for task in running if task.done()]
        # Cancelled once, a Procrastinate worker stops gracefully: it takes no new job and
        # waits for its running ones. A second cancel would abort them.
        for task in running:
            if not task.done():
                task.cancel()
        if ended or stopping.is_set():
            await asyncio.gather(*running, return_exceptions=True)
            await close_quietly(connector)
            if stopping.is_set():
                return "stop requested"
            error = ended[0].exception() if not ended[0].cancelled() else None
            return f"worker {ended[0].get_name()} ended: {error!r}"
    # The database is gone. The old loop and its pool wind down in the background (its
    # pool would otherwise reconnect with a backoff that doubles without bound), while
    # the next loop starts on a new pool as soon as the database answers.
    retiring = asyncio.create_task(retire(running, connector))
    _retiring.add(retiring)
    retiring.add_done_callback(_retiring.discard)
    return "database unreachable"


async def run_worker(task_app: Any, options: dict[str, Any]) -> None:
    """One worker of the set: the batched worker for the `jobs` queue (unless
    QUEUE_BATCH_SIZE is 0), Procrastinate's own for the others."""
    options = dict(options)
    batch_size = int(options.pop("batch_size", 0))
    flush_seconds = float(options.pop("flush_seconds", 0.05))
    async_concurrency = int(options.pop("async_concurrency", options["concurrency"]))
    if batch_size <= 0:
        await task_app.run_worker_async(install_signal_handlers=False, **options)
        return
    await BatchedJobsWorker(
        task_app,
        concurrency=int(options["concurrency"]),
        async_concurrency=async_concurrency,
        batch_size=batch_size,
        flush_seconds=flush_seconds,
        polling_interval=float(options["fetch_job_polling_interval"]),
        heartbeat_interval=float(options["update_heartbeat_interval"]),
        stalled_worker_timeout=float(options["stalled_worker_timeout"]),
    ).run()


async def close_quietly(connector: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connector.close_async(), SHUTDOWN_WAIT_SECONDS)


async def retire(running: list[asyncio.Task[Any]], connector: Any) -> None:
    await close_quietly(connector)  # whatever waits on the old pool fails at once
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(
            asyncio.gather(*running, return_exceptions=True), SHUTDOWN_WAIT_SECONDS
        )


async def watch_database(conninfo: str) -> None:
    """Return once the database stops answering (checked every DATABASE_CHECK_SECONDS)."""
    try:
        connection = await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except psycopg.Error:
        return
    try:
        while True:
            await asyncio.sleep(DATABASE_CHECK_SECONDS)
            try:
                await asyncio.wait_for(connection.execute("SELECT 1"), CONNECT_TIMEOUT_SECONDS)
            except (psycopg.Error, TimeoutError):
                return
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


async def wait_for_database(conninfo: str, stopping: asyncio.Event) -> bool:
    """Poll until PostgreSQL accepts a connection (True) or a stop is asked (False)."""
    delay = RESTART_FIRST_DELAY
    while not stopping.is_set():
        try:
            connection = await psycopg.AsyncConnection.connect(
                conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except psycopg.Error as error:
            logger.warning("database unreachable (%s); retrying in %.1f s", error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, RESTART_MAX_DELAY)
            continue
        await connection.close()
        return True
    return False


def main() -> None:
    config = config_for_environment()
    logs.configure_process(config.LOG_LEVEL, config.LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # plugin chatter at import
    logging.getLogger("procrastinate").setLevel(config.QUEUE_LOG_LEVEL)
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietRoutineChecks())
    # The database (the embedded one in development) resolved from the configuration;
    # each worker loop installs a connector of its own on it (`run_workers_once`).
    conninfo = queue_conninfo(resolve_database_url(config), config)
    flask_app()  # built before tasks start, not on first use
    workers = worker_set(config)
    long_slots = long_job_slots(config)
    for options in workers:
        logger.info("starting worker %s", options)
    logger.info(
        "long jobs (time limit over %g s) hold at most %d of the %d job slots",
        LONG_JOB_SECONDS,
        long_slots,
        config.WORKER_CONCURRENCY,
    )
    extra = max(0, config.WORKER_PROCESSES - 1)
    asyncio.run(
        supervise(task_app, conninfo, workers, extra_processes=extra, long_slots=long_slots)
    )


if __name__ == "__main__":
    main()
