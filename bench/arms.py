"""Queue throughput in steady state: the arms, and how one drain of an arm is measured
(scenarios 1 and 2 use them).

Every arm is measured the same way (`Drain.run`): its jobs are all queued first (the
worker is not running), the tables are analysed, then its worker starts and drains
them. The first `warmup` completions (worker start-up, first connections, caches) are
discarded: the rate runs from the moment the warmup-th job finished to the moment the
last one did, from the timestamps the jobs themselves recorded; CPU time and round trips
are read when the warm-up is seen done and when the last job is, and divided by the jobs
completed in between.

Arms:
* raw — Procrastinate alone: async no-op jobs batch-deferred, drained by `python -m bench.noop`
  (one process, `python -m workers`' settings);
* e2e — jobboard end to end: `echo` jobs created through `jobs.service.create_job` (the
  code POST /api/jobs/ runs), drained by `python -m workers`; counted from the job rows
  completed with a stored result;
* celery — Celery + Redis, see `bench.celery_noop`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench import celery_noop
from bench.harness import SCHEDULE_MARGIN, Harness, now_utc
from bench.noop import defer_noops
from bench.system import CpuMeter, log_dir_for, start_worker
from devtools.processes import Process
from devtools.wire import WireCounter, WireCounts

logger = logging.getLogger("bench")

# How often a drain's progress is read. The readings only bound the CPU and round-trip
# windows (divided by the completions counted at the same readings), not the rates,
# which come from the jobs' own timestamps; polling faster would load the machine. The
# end of the warm-up is watched more closely (it is short), so that the window starts
# near it even when the rest of the drain is short.
POLL_SECONDS = 0.1
WARMUP_POLL_SECONDS = 0.01
CLONE_BATCH = 1000


def seconds_between(first: datetime | float, last: datetime | float) -> float:
    if isinstance(first, datetime) and isinstance(last, datetime):
        return (last - first).total_seconds()
    return float(last) - float(first)  # type: ignore[arg-type]


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of one figure over the rounds (NaN rounds left out)."""
    present = [value for value in values if not math.isnan(value)]
    if not present:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "rounds": values}
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "rounds": values,
    }


def median_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per process group, the median over the rounds of CPU ms per job."""
    names = sorted({name for run in runs for name in run})
    return {name: statistics.median(run[name] for run in runs if name in run) for name in names}


class Arm:
    """One way of running queued jobs; subclasses queue, start, count and time them."""

    key = ""
    label = ""
    queued_by = ""  # how prepare() queues its jobs
    warmup = 0  # set by Drain before prepare()
    queue_seconds = math.nan  # how long prepare() took to queue them

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.worker: Process | None = None

    def prepare(self, count: int, number: int) -> None:
        raise NotImplementedError

    def start(self, database_url: str | None = None) -> None:
        raise NotImplementedError

    def completed(self) -> int:
        raise NotImplementedError

    def finished(self, count: int) -> bool:
        """All queued jobs are done (completed, or failed: a bug the table then shows)."""
        return self.completed() >= count

    def finish_times(self, warmup: int, count: int) -> tuple[Any, Any, int]:
        """(time the warm-up ended, time the last job finished, jobs in between)."""
        raise NotImplementedError

    def meter(self) -> CpuMeter:
        raise NotImplementedError

    def extra_counts(self) -> dict[str, int]:
        return {}

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def cleanup(self) -> None:
        pass


class RawArm(Arm):
    key = "raw"
    label = "raw Procrastinate, async no-op"
    queued_by = "batch_defer"

    def prepare(self, count: int, number: int) -> None:
        started = time.perf_counter()
        ids = asyncio.run(defer_noops(self.harness.database.url, count))
        self.queue_seconds = time.perf_counter() - started
        self.first_id, self.last_id = min(ids), max(ids)

    def start(self, database_url: str | None = None) -> None:
        env = {**self.harness.env, "DATABASE_URL": database_url or self.harness.database.url}
        self.worker = start_worker("noop-worker", "bench.noop", env, self.harness.database)

    def completed(self) -> int:
        return self.harness.scalar(
            "SELECT count(*) FROM procrastinate_jobs WHERE id BETWEEN %s AND %s"
            " AND status IN ('succeeded', 'failed')",
            self.first_id,
            self.last_id,
        )

    def finish_times(self, warmup: int, count: int) -> tuple[Any, Any, int]:
        rows = self.harness.conn.execute(
            "SELECT at FROM procrastinate_events WHERE job_id BETWEEN %s AND %s"
            " AND type = 'succeeded' ORDER BY at",
            (self.first_id, self.last_id),
        ).fetchall()
        return window([row[0] for row in rows], warmup)

    def meter(self) -> CpuMeter:
        assert self.worker is not None
        return self.harness.pg_meter(self.worker)


class EndToEndArm(Arm):
    key = "e2e"
    label = "jobboard end to end, echo"
    queued_by = "create_job, one by one"

    def prepare(self, count: int, number: int) -> None:
        harness = self.harness
        self.owner_id, _token = harness.make_user(f"e2e-{number}-{time.monotonic_ns()}")
        started = time.perf_counter()
        with harness.job_service(self.owner_id) as create:
            for index in range(count):
                create(
                    {
                        "name": f"echo {index}",
                        "kind": "echo",
                        "params": {"index": index},
                        "scheduled_time": (now_utc() + SCHEDULE_MARGIN).isoformat(),
                    }
                )
        self.queue_seconds = time.perf_counter() - started
        self.wait_until_due()

    def wait_until_due(self) -> None:
        """Start the worker once every job is due, so that the drain is not paced by us."""
        last_due = self.harness.scalar(
            "SELECT max(scheduled_time) FROM jobs WHERE owner_id = %s", self.owner_id
        )
        time.sleep(max(0.0, (last_due - now_utc()).total_seconds()))

    def start(self, database_url: str | None = None) -> None:
        env = {**self.harness.env, "DATABASE_URL": database_url or self.harness.database.url}
        self.worker = start_worker("worker", "workers", env, self.harness.database)

    def completed(self) -> int:
        return self.harness.completed_jobs(self.owner_id)

    def finished(self, count: int) -> bool:
        return self.completed() >= count or not self.harness.has_queued_entries(self.owner_id)

    def finish_times(self, warmup: int, count: int) -> tuple[Any, Any, int]:
        rows = self.harness.conn.execute(
            "SELECT j.finished_at FROM jobs j JOIN job_results r ON r.job_id = j.id"
            " WHERE j.owner_id = %s AND j.status = 'completed' ORDER BY j.finished_at"
            " LIMIT %s",
            (self.owner_id, count),
        ).fetchall()
        return window([row[0] for row in rows], warmup)

    def meter(self) -> CpuMeter:
        assert self.worker is not None
        return self.harness.pg_meter(self.worker)


class BacklogArm(EndToEndArm):
    """End to end with `count` jobs queued, of which only the first `warmup + window`
    completions are waited for; the rest is deleted afterwards. One job is created
    through the service; the others are copies of its job row and queue entry made in
    SQL (same columns; their own id, `job_id` argument and lock), because creating
    50,000 jobs one by one would take minutes and measure job creation, not the fetch."""

    key = "backlog"
    label = "jobboard end to end, backlog"

    def prepare(self, count: int, number: int) -> None:
        harness = self.harness
        self.owner_id, _token = harness.make_user(f"backlog-{number}-{time.monotonic_ns()}")
        with harness.job_service(self.owner_id) as create:
            template = create(
                {
                    "name": "backlog echo",
                    "kind": "echo",
                    "params": {"index": 0},
                    "scheduled_time": (now_utc() + SCHEDULE_MARGIN).isoformat(),
                }
            )
        # In transactions of CLONE_BATCH: each entry's insert trigger updates the user's
        # queue_owners row, and in one transaction of 50,000 every update walks the row's
        # versions left by the earlier ones of the same transaction (minutes instead of
        # seconds; a request creates one job per transaction and never meets this).
        for start in range(1, count, CLONE_BATCH):
            harness.clone_job(template, min(CLONE_BATCH, count - start))
        self.wait_until_due()

    def cleanup(self) -> None:
        conn = self.harness.conn
        # In transactions of CLONE_BATCH, for the reason given in `prepare`.
        while conn.execute(
            "DELETE FROM procrastinate_jobs WHERE id IN (SELECT id FROM procrastinate_jobs"
            " WHERE status = 'todo' AND args ? 'owner_id'"
            " AND (args->>'owner_id')::bigint = %s LIMIT %s)",
            (self.owner_id, CLONE_BATCH),
        ).rowcount:
            pass
        conn.execute(
            "DELETE FROM jobs WHERE owner_id = %s AND status = 'pending'", (self.owner_id,)
        )


class CeleryArm(Arm):
    key = "celery"
    label = "Celery + Redis, no-op (prefork x4)"
    queued_by = "send_task, one by one"

    def __init__(self, harness: Harness) -> None:
        import redis

        super().__init__(harness)
        self.queue = f"bench_celery_{os.getpid()}"
        os.environ["BENCH_CELERY_QUEUE"] = self.queue
        self.app = celery_noop.make_app()
        self.redis = redis.Redis.from_url(celery_noop.redis_url())
        self.own_commands = 0
        info = self.redis.info("server")
        self.redis_pid = int(info["process_id"]) if info.get("process_id") else None

    def prepare(self, count: int, number: int) -> None:
        self.count = count
        self.clear()
        marks = [self.warmup, count]
        started = time.perf_counter()
        with self.app.producer_or_acquire() as producer:
            for _ in range(count):
                self.app.send_task(
                    celery_noop.TASK_NAME,
                    args=(self.queue, marks),
                    queue=self.queue,
                    producer=producer,
                )
        self.queue_seconds = time.perf_counter() - started

    def start(self, database_url: str | None = None) -> None:
        env = {
            **self.harness.env,
            "BENCH_CELERY_WORKER": "1",
            "BENCH_CELERY_QUEUE": self.queue,
            "REDIS_URL": celery_noop.redis_url(),
        }
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_noop",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "4",
            "--queues",
            self.queue,
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"{self.queue}@%h",
        ]
        log_path = log_dir_for(self.harness.database.name) / "celery-worker.log"
        self.worker = Process("celery-worker", argv, env, log_path)

    def completed(self) -> int:
        self.own_commands += 1
        return int(self.redis.get(celery_noop.done_key(self.queue)) or 0)

    def finish_times(self, warmup: int, count: int) -> tuple[Any, Any, int]:
        first = self.redis.get(celery_noop.time_key(self.queue, warmup))
        last = self.redis.get(celery_noop.time_key(self.queue, count))
        if first is None or last is None:
            return math.nan, math.nan, 0
        return float(first), float(last), count - warmup

    def meter(self) -> CpuMeter:
        assert self.worker is not None
        return CpuMeter(worker=self.worker.popen.pid, redis=self.redis_pid)

    def extra_counts(self) -> dict[str, int]:
        self.own_commands += 1
        total = int(self.redis.info("stats")["total_commands_processed"])
        return {"redis_commands": total - self.own_commands}

    def clear(self) -> None:
        keys = [celery_noop.done_key(self.queue), self.queue, f"_kombu.binding.{self.queue}"]
        keys += list(self.redis.scan_iter(f"{self.queue}:finished:*"))
        self.redis.delete(*keys)

    def cleanup(self) -> None:
        self.clear()

    def close(self) -> None:
        import redis

        try:
            self.clear()
        except redis.RedisError as exc:  # Redis gone: nothing left to clear there
            logger.warning("could not clear the Celery arm's Redis keys: %r", exc)
        self.redis.close()


def window(finish_times: list[Any], warmup: int) -> tuple[Any, Any, int]:
    """From the warmup-th finish to the last one, and the jobs finished in between."""
    if len(finish_times) <= warmup or not finish_times:
        return math.nan, math.nan, 0
    first = finish_times[warmup - 1] if warmup else finish_times[0]
    return first, finish_times[-1], len(finish_times) - max(warmup, 1)


@dataclass
class Drain:
    """One drain of one arm: queue `count` jobs, analyse, start the worker, measure."""

    arm: Arm
    count: int
    warmup: int
    timeout: float
    check: Callable[[], None]
    wire: WireCounter | None = None
    stop_at: int | None = None  # stop measuring after this many completions

    def run(self, number: int) -> dict[str, Any]:
        arm, harness = self.arm, self.arm.harness
        target = self.stop_at or self.count
        arm.warmup = self.warmup
        arm.prepare(self.count, number)
        harness.analyze()
        arm.start(self.wire.url if self.wire else None)
        try:
            self.wait(
                "warm-up",
                lambda: arm.completed() >= self.warmup or arm.finished(target),
                WARMUP_POLL_SECONDS,
            )
            meter = arm.meter().start()
            extra_before = arm.extra_counts()
            wire_before = self.wire.counts() if self.wire else None
            texts_before = self.wire.statement_texts() if self.wire else None
            done_before = arm.completed()
            self.wait("drain", lambda: arm.finished(target))
            done_after = arm.completed()
            wire_after = self.wire.counts() if self.wire else None
            texts_after = self.wire.statement_texts() if self.wire else None
            extra_after = arm.extra_counts()
            cpu = meter.stop()
        finally:
            arm.stop()
        first, last, measured = arm.finish_times(self.warmup, target)
        seconds = seconds_between(first, last) if measured else math.nan
        done = done_after - done_before
        result: dict[str, Any] = {
            "round": number,
            "jobs": self.count,
            "queued_per_second": self.count / arm.queue_seconds if arm.queue_seconds else math.nan,
            "completed": arm.completed(),
            "warmup": self.warmup,
            "measured_jobs": measured,
            "seconds": seconds,
            "per_second": measured / seconds if measured and seconds > 0 else math.nan,
            "cpu_ms_per_job": {
                name: 1000 * value / done for name, value in cpu.items() if done > 0
            },
        }
        for name, value in extra_after.items():
            result[f"{name}_per_job"] = (value - extra_before[name]) / done if done else math.nan
        if wire_before is not None and wire_after is not None:
            delta: WireCounts = wire_after - wire_before
            result["round_trips_per_job"] = delta.round_trips / done if done else math.nan
            result["statements_per_job"] = delta.statements / done if done else math.nan
            if done and texts_before is not None and texts_after is not None:
                result["statements"] = {
                    text: count / done
                    for text, count in (texts_after - texts_before).most_common(30)
                }
        arm.cleanup()
        return result

    def wait(
        self, what: str, predicate: Callable[[], bool], interval: float = POLL_SECONDS
    ) -> None:
        deadline = time.monotonic() + self.timeout
        while not predicate():
            self.check()
            if self.arm.worker is not None:
                self.arm.worker.check_running()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.arm.label} {what}: not done in {self.timeout:.0f} s")
            time.sleep(interval)
