"""Smoke tests of the benchmark harness (`python -m bench`): it runs its arms, drains,
reports and cleans up, and its round-trip counter counts what a client sends. No timing
is asserted; the figures themselves are for the benchmark to show."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import psycopg

from bench.arms import spread, window
from config import PROJECT_ROOT
from devtools.wire import WireCounter
from jobboard.embedded_db import drop_database, with_database

SUMMARY_KEYS = {
    "raw_jobs_per_s",
    "e2e_jobs_per_s",
    "celery_jobs_per_s",
    "e2e_per_raw",
    "e2e_per_celery",
    "round_trips_per_job",
    "get_jobs_statements",
    "post_jobs_statements",
    "webhook_deliveries_per_s",
    "webhook_lag_p99_s",
    "webhook_jobs_with_per_without",
    "webhook_round_trips_per_delivery",
}


def measured_or_too_fast(figure: float | None) -> bool:
    """A drain of the batched queue at smoke-test sizes can end between two readings of
    its counters: its rate is then missing (None), never zero or negative."""
    return figure is None or figure > 0


def test_bench_runs_the_queue_arms_the_backlog_and_the_webhooks_scenarios(
    database_server, tmp_path
):
    name = f"jbtest_{os.getpid()}_bench"
    results = tmp_path / "bench.json"
    # Nothing listens on port 1: the Celery arm must report itself unavailable, not fail
    # (and it does the same where celery is not installed).
    env = {
        **os.environ,
        "DATABASE_URL": database_server.admin_url,
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    arguments = {
        "--scenarios": "1,2,8",
        "--jobs": "200",
        "--rounds": "2",
        "--warmup": "2",
        # Enough that the drain outlasts the warm-up by several readings of the counters
        # (with 8, a fast raw drain sometimes finished between two readings: no figure).
        "--round-trip-jobs": "200",
        "--small-backlog": "300",
        "--backlog": "900",
        "--backlog-window": "10",
        "--http-jobs": "6",
        "--timed-jobs": "3",
        "--timed-ahead": "1,2",
        "--webhook-rounds": "1",
        "--webhook-endpoints": "2",
        "--webhook-events": "40",
        "--webhook-hanging-backlog": "5",
        "--webhook-lag-events": "5",
        "--webhook-lag-rate": "50",
        "--webhook-jobs": "20",
        "--webhook-round-trip-events": "40",
        "--database": name,
        "--json": str(results),
    }
    argv = [sys.executable, "-m", "bench", *(part for item in arguments.items() for part in item)]
    try:
        finished = subprocess.run(
            [*argv, "--keep-database"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert finished.returncode == 0, finished.stderr[-3000:]
        with psycopg.connect(with_database(database_server.admin_url, name)) as conn:
            queued = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs"
                " WHERE status IN ('todo', 'doing') AND queue_name = 'jobs'"
            ).fetchone()[0]
            backlog_jobs_left = conn.execute(
                "SELECT count(*) FROM jobs WHERE status = 'pending'"
            ).fetchone()[0]
    finally:
        drop_database(database_server.admin_url, name)

    assert queued == 0, "the backlog's leftover queue entries are deleted"
    assert backlog_jobs_left == 0
    assert "1 queue throughput" in finished.stdout
    assert "Celery + Redis, no-op (prefork x4): jobs/s" in finished.stdout
    figures = json.loads(results.read_text())
    summary = figures["summary"]
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["get_jobs_statements"] is None  # scenario 4 did not run
    assert summary["celery_jobs_per_s"] is None
    assert summary["e2e_per_celery"] is None
    assert (
        "redis://127.0.0.1:1/0" in summary["celery_unavailable"]
        or "not installed" in (summary["celery_unavailable"])
    )
    assert summary["raw_jobs_per_s"] > 0
    assert measured_or_too_fast(summary["e2e_jobs_per_s"])
    assert measured_or_too_fast(summary["e2e_per_raw"])
    for arm in ("raw", "e2e"):
        figures_of_arm = summary["arms"][arm]
        assert len(figures_of_arm["rounds"]) == 2
        assert figures_of_arm["min"] <= figures_of_arm["median"] <= figures_of_arm["max"]
    # Procrastinate's worker costs a few round trips a job at least (fetch, finish); the
    # batched one some, but less than one a job (a batch's fetch, a flush's completion).
    assert summary["raw_round_trips_per_job"] >= 2
    assert 0 < summary["round_trips_per_job"] <= 1
    rounds = figures["details"]["1_throughput"]["rounds"]
    for arm in ("raw", "e2e"):
        for run in rounds[arm]:
            assert run["completed"] == 200
            assert run["measured_jobs"] == 198  # the warm-up left out
    # CPU is read at the end of the warm-up and of the drain: Procrastinate's own worker
    # takes long enough for two readings; the batched one can finish its jobs between two
    # readings (then its figure is missing, not wrong).
    assert any(run["cpu_ms_per_job"].get("worker", 0) > 0 for run in rounds["raw"])
    assert all(run["cpu_ms_per_job"].get("worker", 0) >= 0 for run in rounds["e2e"])
    assert summary["backlog_small"] == 300 and summary["backlog_large"] == 900
    assert measured_or_too_fast(summary["backlog_large_per_small"])
    # Webhooks: every event reached a receiver that verified it with standardwebhooks.
    assert "8 webhooks" in finished.stdout
    assert summary["webhook_deliveries_per_s"] > 0
    assert summary["webhook_lag_p99_s"] > 0
    assert measured_or_too_fast(summary["webhook_jobs_with_per_without"])
    assert summary["webhook_round_trips_per_delivery"] > 0
    webhooks = figures["details"]["8_webhooks"]
    (fan_out,) = webhooks["fan_out"]
    assert fan_out["distinct_ids"] == 40 and fan_out["failed_verification"] == 0
    assert fan_out["not_succeeded"] == 0 and fan_out["max_connections_per_endpoint"] <= 2
    (lag,) = webhooks["lag"]
    assert lag["arrived"] == 5 and lag["hanging_requests"] >= 1


def test_wire_counter_counts_round_trips_and_statements(database_server):
    wire = WireCounter(database_server.admin_url).start()
    try:
        with psycopg.connect(wire.url) as conn:
            before = wire.counts()
            with conn.transaction():
                conn.execute("SELECT %s::int", (1,)).fetchone()
                conn.execute("SELECT 2").fetchone()
            counted = wire.counts() - before
            texts = wire.statement_texts()
        with psycopg.connect(wire.url, autocommit=True) as conn:
            before = wire.counts()
            conn.execute("SELECT 3").fetchone()
            autocommitted = wire.counts() - before
    finally:
        wire.stop()
    # BEGIN, two SELECTs, COMMIT: one statement and one round trip each.
    assert (counted.statements, counted.round_trips) == (4, 4)
    assert texts["BEGIN"] == 1 and texts["COMMIT"] == 1 and texts["SELECT 2"] == 1
    assert (autocommitted.statements, autocommitted.round_trips) == (1, 1)
    assert counted.connections == 0 and wire.counts().connections == 2


def test_window_leaves_the_warm_up_out_and_spread_skips_missing_rounds():
    assert window([0.0, 1.0, 2.0, 4.0], 2) == (1.0, 4.0, 2)
    first, last, measured = window([0.0, 1.0], 2)
    assert math.isnan(first) and math.isnan(last) and measured == 0
    figures = spread([3.0, math.nan, 1.0, 2.0])
    assert (figures["median"], figures["min"], figures["max"]) == (2.0, 1.0, 3.0)
    assert math.isnan(spread([math.nan])["median"])


def test_metrics_scrape_seeds_serves_measures_and_cleans_up(database_server):
    name = f"jbtest_{os.getpid()}_metrics"
    env = {**os.environ, "DATABASE_URL": database_server.admin_url}
    sizes = ["--jobs", "3000", "--queued", "300", "--scrapes", "5", "--database", name]
    result = subprocess.run(
        [sys.executable, "-m", "bench.metrics_scrape", *sizes],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| first 25 (the totals catching up" in result.stdout
    assert "| next 5, one after the other (steady) |" in result.stdout
    with psycopg.connect(database_server.admin_url, autocommit=True) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert left is None
