"""`python -m bench.metrics_scrape`: what a Prometheus scrape of GET /metrics costs with a
large history.

    python -m bench.metrics_scrape                      # seed, serve, measure (defaults)
    python -m bench.metrics_scrape --jobs 1000000 --queued 100000 --scrapes 300
    python -m bench.metrics_scrape http://host:8000 --token T   # a running deployment

Without a URL it makes a database of its own (on DATABASE_URL's server, else the embedded
one), migrates it, fills it in SQL with `--jobs` jobs (finished ones with their attempts,
spread over a day) of which `--queued` are pending with a queue entry (half of them due),
analyses the tables, starts the Procfile's web process (gunicorn, WEB_CONCURRENCY
workers) with a METRICS_TOKEN, and scrapes: the first scrape ever (it moves the running
totals over every attempt already finished, once for the deployment's life), then
`--scrapes` more, one after the other, as a Prometheus server would but without pause.
Prints the latency p50/p99/max of both, and the size of what a scrape returns.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from devtools.database import Database, DatabaseServer
from devtools.processes import free_port

SEED_SQL = """
INSERT INTO users (email, is_email_verified)
SELECT 'metrics-' || i || '@example.com', true FROM generate_series(1, 1000) AS i;

INSERT INTO jobs (owner_id, name, kind, params, scheduled_time, status, priority,
                  max_attempts, attempts, started_at, finished_at, last_error,
                  created_at, updated_at)
SELECT f.first_id + i %% 1000, 'seeded ' || i, k.kind, '{}'::jsonb, t.at,
       s.status, 0, 3,
       CASE WHEN s.status IN ('completed', 'failed') THEN 1 ELSE 0 END,
       CASE WHEN s.status IN ('completed', 'failed') THEN t.at + interval '20 ms' END,
       CASE WHEN s.status IN ('completed', 'failed', 'cancelled')
            THEN t.at + interval '20 ms' + (i %% 500) * interval '1 ms' END,
       CASE WHEN s.status = 'failed' THEN 'RuntimeError: seeded failure' END,
       t.at - interval '1 s', t.at
FROM generate_series(1, %(jobs)s) AS i
CROSS JOIN (SELECT min(id) AS first_id FROM users) AS f
CROSS JOIN LATERAL (SELECT now() - (i %% 86400) * interval '1 s' AS at) AS t
CROSS JOIN LATERAL (
    SELECT (ARRAY['echo', 'wordcount', 'checksum', 'flaky'])[1 + i %% 4] AS kind
) AS k
CROSS JOIN LATERAL (
    SELECT CASE WHEN i <= %(queued)s THEN 'pending'
                WHEN i %% 20 = 0 THEN 'failed'
                WHEN i %% 50 = 1 THEN 'cancelled'
                ELSE 'completed' END AS status
) AS s;

INSERT INTO job_attempts (job_id, number, started_at, finished_at, duration_ms, outcome,
                          error, worker, kind, due_at)
SELECT id, 1, started_at, finished_at,
       CAST(EXTRACT(EPOCH FROM finished_at - started_at) * 1000 AS integer),
       status, last_error, 'bench:1', kind, scheduled_time
FROM jobs WHERE status IN ('completed', 'failed');

INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock, args,
                                scheduled_at, status)
SELECT 'jobs', 'process_job', 0, 'job-' || id, 'job-' || id,
       jsonb_build_object('job_id', id, 'owner_id', owner_id),
       CASE WHEN id %% 2 = 0 THEN now() - interval '1 minute' ELSE now() + interval '1 day' END,
       'todo'
FROM jobs WHERE status = 'pending'
"""
TABLES = ("users", "jobs", "job_attempts", "procrastinate_jobs", "procrastinate_events")


def seed(database: Database, jobs: int, queued: int) -> float:
    """Fill the database in SQL, then vacuum and analyse it as autovacuum would have."""
    started = time.monotonic()
    with database.connect() as conn:
        for statement in SEED_SQL.split(";\n\n"):
            conn.execute(statement, {"jobs": jobs, "queued": queued})
        for table in TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
    return time.monotonic() - started


def scrape(url: str, token: str) -> tuple[float, int]:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}")
    return (time.perf_counter() - started) * 1000, len(body)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# The totals take in at most 50,000 finished attempts a scrape (jobboard/metrics.py): the
# first scrapes over a seeded history catch up, and are reported apart.
CATCH_UP_SCRAPES = 25


def measure(url: str, token: str, scrapes: int) -> dict[str, float]:
    catching_up = [scrape(url, token) for _ in range(CATCH_UP_SCRAPES)]
    size = catching_up[-1][1]
    latencies = [scrape(url, token)[0] for _ in range(scrapes)]
    return {
        "first_ms": catching_up[0][0],
        "catch_up_p50_ms": statistics.median(ms for ms, _ in catching_up),
        "catch_up_max_ms": max(ms for ms, _ in catching_up),
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "bytes": size,
    }


def report(figures: dict[str, float], scrapes: int, setting: str) -> None:
    print(f"GET /metrics, {setting}")
    print("| scrape | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    print(
        f"| first {CATCH_UP_SCRAPES} (the totals catching up, the first "
        f"{figures['first_ms']:.1f} ms) | {figures['catch_up_p50_ms']:.1f} | | "
        f"{figures['catch_up_max_ms']:.1f} |"
    )
    print(
        f"| next {scrapes}, one after the other (steady) | {figures['p50_ms']:.1f} | "
        f"{figures['p99_ms']:.1f} | {figures['max_ms']:.1f} |"
    )
    print(f"a scrape's body: {figures['bytes']:,} bytes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_scrape", description=__doc__)
    parser.add_argument("url", nargs="?", help="a running deployment (else one is made)")
    parser.add_argument("--token", default=os.environ.get("METRICS_TOKEN"))
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--database", default="jobboard_bench_metrics")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="a database kept by --keep: no new seed"
    )
    args = parser.parse_args(argv)
    if args.url:
        if not args.token:
            parser.error("--token (or METRICS_TOKEN) is needed with a URL")
        report(measure(args.url, args.token, args.scrapes), args.scrapes, args.url)
        return 0

    from bench.system import (
        log_dir_for,
        run_migrations,
        start_web,
        system_environment,
    )

    server = DatabaseServer.at(os.environ.get("DATABASE_URL"))
    database = server.database(args.database)
    if not args.reuse:
        database.recreate()
    token = secrets.token_urlsafe(24)
    env = system_environment(database.url, free_port())
    env["METRICS_TOKEN"] = token
    log_dir = log_dir_for(database.name)
    web = None
    try:
        run_migrations(env, log_dir)
        if args.reuse:
            with database.connect() as conn:  # the totals start again from nothing
                conn.execute("UPDATE metric_rollups SET watermark = NULL, data = '{}'")
        else:
            print(f"seeding {args.jobs:,} jobs, {args.queued:,} queued ...", file=sys.stderr)
            seconds = seed(database, args.jobs, args.queued)
            print(f"seeded and analysed in {seconds:.0f} s", file=sys.stderr)
        port = free_port()
        workers = int(env.get("WEB_CONCURRENCY") or 2)
        web = start_web(env, port, workers, Path(log_dir))
        figures = measure(f"http://127.0.0.1:{port}", token, args.scrapes)
        report(
            figures,
            args.scrapes,
            f"{args.jobs:,} jobs and as many finished attempts, {args.queued:,} queue entries "
            f"({args.queued // 2:,} due), gunicorn with {workers} workers",
        )
    finally:
        if web is not None:
            web.stop()
        if not args.keep:
            database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
