"""The anchor: Celery + Redis running a no-op task, as a well-known stack would.

The worker runs as `celery -A bench.celery_noop worker -P prefork -c 4` in a process of
its own, on a queue named for this run (`BENCH_CELERY_QUEUE`), with no result backend.
Its task counts itself with one Redis `INCR`, so that the benchmark knows that tasks
ran, not merely that they left the queue (the worker prefetches): that is one Redis
command per task more than a true no-op, a cost the anchor carries. The task that
completes the warm-up and the last task also store their wall-clock time, from which
the rate is computed.

celery and redis are optional (the `bench` extra; docs/performance.md installs it);
`unavailable()` says why this arm cannot run, and the benchmark then reports it as n/a.
"""

from __future__ import annotations

import os
import time
from typing import Any

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TASK_NAME = "bench_celery_noop"


def redis_url() -> str:
    return os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)


def queue_name() -> str:
    return os.environ.get("BENCH_CELERY_QUEUE", "bench_celery_noop")


def done_key(queue: str) -> str:
    return f"{queue}:done"


def time_key(queue: str, count: int) -> str:
    return f"{queue}:finished:{count}"


def unavailable() -> str | None:
    """Why the Celery arm cannot run here (None: it can)."""
    try:
        import celery  # noqa: F401
        import redis
    except ImportError as exc:
        return f"{exc.name} is not installed (the bench extra: see docs/performance.md)"
    try:
        client = redis.Redis.from_url(redis_url(), socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"no Redis server at {redis_url()} ({exc.__class__.__name__})"
    return None


def make_app() -> Any:
    import redis
    from celery import Celery

    app = Celery("bench_celery_noop", broker=redis_url())
    app.conf.update(
        result_backend=None,
        task_ignore_result=True,
        task_default_queue=queue_name(),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    counter = redis.Redis.from_url(redis_url())  # a pool per prefork child (pid-checked)

    @app.task(name=TASK_NAME, ignore_result=True)
    def noop(queue: str, marks: list[int]) -> None:
        done = counter.incr(done_key(queue))
        if done in marks:
            counter.set(time_key(queue, done), repr(time.time()))

    return app


# Imported by the worker (`-A bench.celery_noop`) only; the benchmark calls make_app().
app = make_app() if os.environ.get("BENCH_CELERY_WORKER") else None
