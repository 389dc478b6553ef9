"""Scenario 7, the operations console at size: GET /api/admin/queues/ with `--ops-jobs`
jobs, `--ops-entries` waiting queue entries and `--ops-finished` entries finished in the
last hour; then one bulk retry of `--ops-failed` failed jobs (POST /api/admin/jobs/actions/
with a filter), timed, while another user lists their jobs (GET /api/jobs/) and the worker
runs what the retry queued."""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from typing import Any

from bench.harness import Harness, Scenario, logger
from bench.load import Client, LoadResult, run_load
from bench.report import percentile
from bench.scenarios.api import seed_jobs

SCENARIO = "7 operations"


class Operations(Scenario):
    selected_by = frozenset({"7"})
    in_default_run = False  # seeding a million jobs alone takes minutes: `--scenarios 7`
    summary_keys = ("admin_queues_p99", "bulk_retry_seconds", "jobs_p99_during_bulk")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 7, the operations console")
        group.add_argument("--ops-jobs", type=int, default=1_000_000, help="jobs in the table")
        group.add_argument("--ops-entries", type=int, default=100_000, help="queue entries waiting")
        group.add_argument(
            "--ops-finished",
            type=int,
            default=30_000,
            help="queue entries finished in the last hour (what the percentiles read)",
        )
        group.add_argument(
            "--ops-failed", type=int, default=50_000, help="failed jobs the bulk retry retries"
        )
        group.add_argument(
            "--ops-requests", type=int, default=200, help="GET /api/admin/queues/ per level"
        )

    def check_arguments(self, arguments: argparse.Namespace) -> str | None:
        if arguments.ops_failed > arguments.ops_jobs:
            return "--ops-failed cannot exceed --ops-jobs"
        return None

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        admin_id, admin_token = harness.make_user("ops-admin")
        harness.conn.execute("UPDATE users SET is_admin = true WHERE id = %s", (admin_id,))
        owner_id, _ = harness.make_user("ops-owner")
        reader_id, reader_token = harness.make_user("ops-reader")
        started = time.monotonic()
        seed(harness, owner_id, settings)
        seed_jobs(harness, reader_id, 1_000)
        harness.analyze()
        logger.info("scenario 7: seeded in %.0f s", time.monotonic() - started)
        harness.start_worker()  # as deployed: the worker polls and heartbeats meanwhile

        admin = {"Authorization": f"Bearer {admin_token}"}
        reader = {"Authorization": f"Bearer {reader_token}"}
        reads = measure_reads(harness, admin)
        harness.report.details["7_operations"] = {
            "jobs": settings.ops_jobs,
            "entries": settings.ops_entries,
            "finished_last_hour": settings.ops_finished,
            "failed": settings.ops_failed,
            "reads": {name: result.as_dict() for name, result in reads.items()},
        }
        harness.report.summary["admin_queues_p99"] = reads[f"{QUEUES} c=1"].p99

        baseline = run_load(
            harness.web_port,
            lambda _i: ("GET", "/api/jobs/?page=1&page_size=20", None, reader),
            200,
            4,
        )
        harness.report.add(SCENARIO, "GET /api/jobs/ p99, c=4, before", baseline.p99, "s")
        bulk = bulk_retry(harness, admin, reader)
        harness.report.details["7_operations"]["bulk_retry"] = bulk
        harness.report.summary["bulk_retry_seconds"] = bulk["seconds"]
        harness.report.summary["jobs_p99_during_bulk"] = bulk["jobs_list"]["p99"]


def seed(harness: Harness, owner_id: int, settings: argparse.Namespace) -> None:
    """`--ops-jobs` jobs (the last `--ops-failed` of them failed, the rest completed),
    created days ago; `--ops-entries` queue entries waiting a year ahead; `--ops-finished`
    entries finished over the last hour with their events."""
    conn = harness.conn
    completed = settings.ops_jobs - settings.ops_failed
    logger.info("scenario 7: seeding %d jobs", settings.ops_jobs)
    for status, count, error in (
        ("completed", completed, None),
        ("failed", settings.ops_failed, "TimeoutError: the partner API did not answer\n..."),
    ):
        conn.execute(
            "INSERT INTO jobs (owner_id, name, description, kind, params, scheduled_time,"
            " status, priority, max_attempts, attempts, started_at, finished_at, last_error,"
            " created_at, updated_at)"
            " SELECT %(owner)s, 'ops job ' || g, NULL, 'echo', jsonb_build_object('i', g), t,"
            " %(status)s, 0, 3, 3, t, t + interval '5 ms', %(error)s, t, t"
            " FROM generate_series(1, %(count)s) AS g,"
            " LATERAL (SELECT now() - interval '3 days' - g * interval '1 second' AS t) AS x",
            {"owner": owner_id, "status": status, "count": count, "error": error},
        )
    logger.info("scenario 7: seeding %d queue entries", settings.ops_entries)
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock,"
        " args, scheduled_at)"
        " SELECT 'jobs', 'process_job', 0, 'ops-' || g, 'ops-' || g,"
        " jsonb_build_object('job_id', 2000000000 - g, 'owner_id', %(owner)s),"
        " now() + interval '365 days' + g * interval '1 second'"
        " FROM generate_series(1, %(count)s) AS g",
        {"owner": owner_id, "count": settings.ops_entries},
    )
    logger.info("scenario 7: seeding %d entries finished in the last hour", settings.ops_finished)
    conn.execute(
        "WITH finished AS ("
        " INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, scheduled_at)"
        " SELECT (ARRAY['jobs', 'jobs', 'jobs', 'mail'])[1 + g %% 4], 'process_job',"
        " jsonb_build_object('n', g), 'succeeded',"
        " now() - (g::float / %(count)s) * interval '59 minutes' - interval '2 seconds'"
        " FROM generate_series(1, %(count)s) AS g RETURNING id, scheduled_at)"
        " INSERT INTO procrastinate_events (job_id, type, at)"
        " SELECT id, kind, scheduled_at + offset_by FROM finished,"
        " LATERAL (VALUES ('started'::procrastinate_job_event_type,"
        "                  (random() * 50) * interval '1 millisecond'),"
        "                 ('succeeded'::procrastinate_job_event_type,"
        "                  interval '60 milliseconds'"
        "                  + (random() * 900) * interval '1 millisecond'))"
        " AS e(kind, offset_by)",
        {"count": settings.ops_finished},
    )


# What the console asks every few seconds: the queues, a page of every user's jobs (with
# its total) and the failure groups.
QUEUES = "/api/admin/queues/"
CONSOLE_READS = (
    (QUEUES, (1, 4)),
    ("/api/admin/jobs/?page=1&page_size=50", (1,)),
    ("/api/admin/failures/?page_size=20", (1,)),
)


def measure_reads(harness: Harness, admin: dict[str, str]) -> dict[str, LoadResult]:
    results = {}
    for path, levels in CONSOLE_READS:
        for concurrency in levels:
            results[f"{path} c={concurrency}"] = measure(harness, admin, path, concurrency)
    return results


def measure(harness: Harness, admin: dict[str, str], path: str, concurrency: int) -> LoadResult:
    def read(_index: int) -> tuple[str, str, Any, dict[str, str]]:
        return "GET", path, None, admin

    total = harness.settings.ops_requests
    run_load(harness.web_port, read, 4 * harness.settings.web_workers, 2)  # warm-up
    logger.info("scenario 7: GET %s x %d at concurrency %d", path, total, concurrency)
    result = run_load(harness.web_port, read, total, concurrency)
    name = f"{SCENARIO} GET {path.split('?')[0]} c={concurrency}"
    harness.report.add(name, "latency p50", result.p50, "s")
    harness.report.add(name, "latency p99", result.p99, "s", "reported", True)
    if result.unexpected(200):
        harness.report.add(name, "answers other than 200", result.unexpected(200), "", "0", False)
    return result


def bulk_retry(harness: Harness, admin: dict[str, str], reader: dict[str, str]) -> dict[str, Any]:
    """One POST retrying every failed job, timed, while four clients list another user's
    jobs until it answers."""
    done = threading.Event()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def list_jobs() -> None:
        client = Client(harness.web_port)
        try:
            while not done.is_set():
                began = time.perf_counter()
                try:
                    status, _ = client.send("GET", "/api/jobs/?page=1&page_size=20", None, reader)
                except (http.client.HTTPException, OSError):
                    status = 0
                with lock:
                    latencies.append(time.perf_counter() - began)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            client.close()

    readers = [threading.Thread(target=list_jobs, daemon=True) for _ in range(4)]
    for thread in readers:
        thread.start()
    logger.info("scenario 7: bulk retry of every failed job")
    client = Client(harness.web_port, timeout=1800)
    began = time.perf_counter()
    status, body = client.send(
        "POST",
        "/api/admin/jobs/actions/",
        {"action": "retry", "filter": {"status": ["failed"]}},
        admin,
    )
    seconds = time.perf_counter() - began
    client.close()
    done.set()
    for thread in readers:
        thread.join(timeout=60)
    if status != 200:
        raise RuntimeError(f"the bulk retry answered {status}: {body[:300]!r}")
    counts = json.loads(body)
    name = f"{SCENARIO} bulk retry of {counts['matched']:,} failed jobs"
    harness.report.add(name, "time", seconds, "s", "reported", True)
    harness.report.add(name, "jobs changed per second", counts["changed"] / seconds, "jobs/s")
    harness.report.add(name, "changed", counts["changed"])
    harness.report.add(name, "GET /api/jobs/ p50 meanwhile, c=4", percentile(latencies, 0.5), "s")
    harness.report.add(
        name,
        "GET /api/jobs/ p99 meanwhile, c=4",
        percentile(latencies, 0.99),
        "s",
        "reported",
        True,
    )
    failed = sum(count for code, count in statuses.items() if code != 200)
    if failed:
        harness.report.add(name, "GET /api/jobs/ answers other than 200", failed, "", "0", False)
    return {
        "seconds": seconds,
        "counts": counts,
        "jobs_list": {
            "requests": len(latencies),
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies, default=float("nan")),
            "statuses": {str(code): count for code, count in statuses.items()},
        },
    }
