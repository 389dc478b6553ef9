"""`python -m workers`: the Procrastinate workers on every queue, periodic tasks included.

One process runs two Procrastinate workers side by side, so mail and maintenance never
wait behind jobs: one takes the `jobs` queue with WORKER_CONCURRENCY slots, the other
`mail` and `maintenance` with MAIL_WORKER_CONCURRENCY slots that jobs cannot take. Sync
tasks run on the event loop's default executor, sized to the sum of both, so every slot
really runs at once (asyncio's own default is min(32, cpus + 4) threads).

Settings come from the environment, as everything in a Procfile deployment:
| variable | default | meaning |
| WORKER_CONCURRENCY | 8 | jobs run at once by this process |
| MAIL_WORKER_CONCURRENCY | 2 | mail and maintenance tasks run at once, apart from jobs |
| WORKER_POLL_INTERVAL | 0.1 | seconds between polls for jobs that became due (see README) |
| WORKER_HEARTBEAT_INTERVAL | 10 | seconds between this worker's heartbeats |
| STALLED_WORKER_SECONDS | 30 | a worker silent this long is dead; its jobs are retried |
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from config import config_for_environment, env_float

logger = logging.getLogger(__name__)


def worker_options() -> dict[str, float | int]:
    return {
        "concurrency": int(os.environ.get("WORKER_CONCURRENCY", "8")),
        "fetch_job_polling_interval": env_float("WORKER_POLL_INTERVAL", 0.1),
        "update_heartbeat_interval": env_float("WORKER_HEARTBEAT_INTERVAL", 10.0),
        "stalled_worker_timeout": config_for_environment().STALLED_WORKER_SECONDS,
    }


def worker_set() -> list[dict[str, Any]]:
    """The Procrastinate workers of one process: each one's queues and options."""
    from workers.app import QUEUE_JOBS, QUEUE_MAIL, QUEUE_MAINTENANCE

    common = worker_options()
    return [
        {**common, "name": "jobs", "queues": [QUEUE_JOBS]},
        {
            **common,
            "name": "mail+maintenance",
            "queues": [QUEUE_MAIL, QUEUE_MAINTENANCE],
            "concurrency": int(os.environ.get("MAIL_WORKER_CONCURRENCY", "2")),
        },
    ]


async def run_workers(workers: list[dict[str, Any]]) -> None:
    """Run `workers` on one event loop until SIGTERM/SIGINT, or until one of them stops
    (its database connection lost): then the others are stopped too and this returns."""
    from workers.app import task_app

    loop = asyncio.get_running_loop()
    slots = sum(int(options["concurrency"]) for options in workers)
    loop.set_default_executor(ThreadPoolExecutor(max_workers=slots, thread_name_prefix="task"))
    async with task_app.open_async():
        running = [
            asyncio.create_task(
                task_app.run_worker_async(install_signal_handlers=False, **options),
                name=str(options["name"]),
            )
            for options in workers
        ]

        stopping: set[asyncio.Task[None]] = set()

        def stop_all() -> None:
            # Cancelled once, a Procrastinate worker stops gracefully: it takes no new job
            # and waits for its running ones. A second cancel would abort them.
            for task in running:
                if task not in stopping and not task.done():
                    stopping.add(task)
                    task.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_all)
        try:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            stop_all()
            await asyncio.gather(*running, return_exceptions=True)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)


class QuietRoutineChecks(logging.Filter):
    """The stalled-job check runs every 5 s; three INFO lines each time would bury what
    people read the worker's log for (mail in development, job outcomes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        routine = record.levelno <= logging.INFO and "recover_stalled_jobs" in record.getMessage()
        return not routine


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # plugin chatter at import
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietRoutineChecks())
    # Resolve the database (the embedded one in development) before anything imports
    # the queue app, whose connector reads DATABASE_URL.
    from config import libpq_url
    from jobboard import resolve_database_url

    os.environ["DATABASE_URL"] = libpq_url(resolve_database_url(config_for_environment()))

    from workers.context import flask_app

    flask_app()  # built before tasks start, not on first use
    workers = worker_set()
    for options in workers:
        logger.info("starting worker %s", options)
    asyncio.run(run_workers(workers))


if __name__ == "__main__":
    main()
