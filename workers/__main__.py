"""`python -m workers`: the Procrastinate worker on every queue, periodic tasks included.

Settings come from the environment, as everything in a Procfile deployment:
| variable | default | meaning |
| WORKER_CONCURRENCY | 8 | jobs run at once by this process |
| WORKER_POLL_INTERVAL | 0.1 | seconds between polls for jobs that became due (see README) |
| WORKER_HEARTBEAT_INTERVAL | 10 | seconds between this worker's heartbeats |
| STALLED_WORKER_SECONDS | 30 | a worker silent this long is dead; its jobs are retried |
"""

from __future__ import annotations

import logging
import os

from config import config_for_environment, env_float


def worker_options() -> dict[str, float | int]:
    return {
        "concurrency": int(os.environ.get("WORKER_CONCURRENCY", "8")),
        "fetch_job_polling_interval": env_float("WORKER_POLL_INTERVAL", 0.1),
        "update_heartbeat_interval": env_float("WORKER_HEARTBEAT_INTERVAL", 10.0),
        "stalled_worker_timeout": config_for_environment().STALLED_WORKER_SECONDS,
    }


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
    from config import config_for_environment, libpq_url
    from jobboard import resolve_database_url

    os.environ["DATABASE_URL"] = libpq_url(resolve_database_url(config_for_environment()))

    from workers.app import task_app
    from workers.context import flask_app

    flask_app()  # built before tasks start, not on first use
    options = worker_options()
    logging.getLogger(__name__).info("starting worker: all queues, %s", options)
    task_app.run_worker(queues=None, **options)


if __name__ == "__main__":
    main()
