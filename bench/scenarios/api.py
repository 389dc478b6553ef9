"""Scenario 4, the API: GET /api/jobs/ (a caller with `--api-seed` jobs) and
POST /api/jobs/, at concurrency 1 and 16 against gunicorn while the worker polls; then
statements and round trips per request, counted by a proxy."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench.harness import Harness, Scenario, logger, now_utc
from bench.load import Client, LoadResult, run_load
from bench.system import log_dir_for, start_web
from devtools.processes import free_port
from devtools.wire import WireCounter


class Api(Scenario):
    selected_by = frozenset({"4"})
    summary_keys = ("get_jobs_statements", "post_jobs_statements")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 4, the API")
        group.add_argument("--api-seed", type=int, default=10_000, help="jobs of the caller")
        group.add_argument(
            "--api-requests",
            type=int,
            default=600,
            help="requests per endpoint at concurrency 16",
        )
        group.add_argument(
            "--api-requests-serial",
            type=int,
            default=200,
            help="requests per endpoint at concurrency 1",
        )
        group.add_argument(
            "--statement-requests",
            type=int,
            default=20,
            help="requests per endpoint sent through the counting proxy",
        )

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        harness.start_worker()  # as deployed: the worker polls the same database meanwhile
        reader, reader_token = harness.make_user("api-reader")
        _writer, writer_token = harness.make_user("api-writer")
        logger.info("scenario 4: seeding %d jobs", settings.api_seed)
        seed_jobs(harness, reader, settings.api_seed)

        def list_jobs(_index: int) -> tuple[str, str, Any, dict[str, str]]:
            return (
                "GET",
                "/api/jobs/?page=1&page_size=20",
                None,
                {"Authorization": f"Bearer {reader_token}"},
            )

        def post_job(index: int) -> tuple[str, str, Any, dict[str, str]]:
            body = {
                "name": f"api post {index}",
                "description": "posted by the benchmark",
                "kind": "echo",
                "params": {"index": index},
                # Far enough ahead that the worker leaves them alone during the run.
                "scheduled_time": (now_utc() + timedelta(days=1)).isoformat(),
            }
            return "POST", "/api/jobs/", body, {"Authorization": f"Bearer {writer_token}"}

        client = Client(harness.web_port)
        page = client.json(
            "GET", "/api/jobs/?page=1&page_size=20", Authorization=f"Bearer {reader_token}"
        )
        client.close()
        if len(page) != 20:
            raise RuntimeError(f"GET /api/jobs/ returned {len(page)} jobs, expected 20")
        results: dict[str, LoadResult] = {}
        for name, factory, expected in (
            ("GET /api/jobs/", list_jobs, 200),
            ("POST /api/jobs/", post_job, 201),
        ):
            # Warm every gunicorn worker up (first-request imports, connection pool).
            run_load(harness.web_port, factory, 4 * settings.web_workers, settings.web_workers)
            for concurrency, total in (
                (1, settings.api_requests_serial),
                (16, settings.api_requests),
            ):
                logger.info("scenario 4: %s x %d at concurrency %d", name, total, concurrency)
                result = run_load(harness.web_port, factory, total, concurrency)
                results[f"{name} c={concurrency}"] = result
                scenario = f"4 API {name} c={concurrency}"
                harness.report.add(
                    scenario, f"throughput ({total} requests)", result.per_second, "req/s"
                )
                harness.report.add(scenario, "latency p50", result.p50, "s")
                harness.report.add(
                    scenario,
                    "latency p99",
                    result.p99,
                    "s",
                    "reported" if concurrency == 16 else "",
                    True if concurrency == 16 else None,
                )
                if result.unexpected(expected):
                    harness.report.add(
                        scenario,
                        f"answers other than {expected}",
                        result.unexpected(expected),
                        "",
                        "0",
                        False,
                    )
        harness.report.details["4_api"] = {
            name: result.as_dict() for name, result in results.items()
        }
        harness.report.details["4_api"]["seeded_jobs"] = settings.api_seed
        if settings.statement_requests > 0:
            count_statements(harness, {"GET /api/jobs/": list_jobs, "POST /api/jobs/": post_job})


def seed_jobs(harness: Harness, owner_id: int, count: int) -> None:
    """`count` completed echo jobs with results, in two INSERT ... SELECTs."""
    harness.conn.execute(
        "INSERT INTO jobs (owner_id, name, description, kind, params, scheduled_time,"
        " status, priority, max_attempts, attempts, started_at, finished_at,"
        " created_at, updated_at)"
        " SELECT %(owner)s, 'seeded job ' || g, 'seeded by the benchmark', 'echo',"
        " jsonb_build_object('index', g), t, 'completed', 0, 3, 1, t, t + interval '5 ms',"
        " t - interval '1 minute', t + interval '5 ms'"
        " FROM generate_series(1, %(count)s) AS g,"
        " LATERAL (SELECT now() - g * interval '1 minute' AS t) AS times",
        {"owner": owner_id, "count": count},
    )
    harness.conn.execute(
        "INSERT INTO job_results (job_id, output, completed_at, duration_ms)"
        " SELECT id, params, finished_at, 5 FROM jobs WHERE owner_id = %s",
        (owner_id,),
    )
    harness.conn.execute("ANALYZE jobs")
    harness.conn.execute("ANALYZE job_results")


def count_statements(harness: Harness, requests: dict[str, Callable[[int], Any]]) -> None:
    """Statements and round trips per request, counted by a proxy (`devtools.wire`) in
    front of a gunicorn of its own (one worker) that only these requests reach, one at a
    time after a warm-up."""
    settings = harness.settings
    wire = WireCounter(harness.database.url).start()
    port = free_port()
    env = {**harness.env, "DATABASE_URL": wire.url}
    counted: dict[str, dict[str, float]] = {}
    try:
        web = start_web(env, port, 1, log_dir_for(harness.database.name), name="web-counted")
        try:
            for name, factory in requests.items():
                run_load(port, factory, 3, 1)  # first-request work, pool connections
                before, texts_before = wire.counts(), wire.statement_texts()
                result = run_load(port, factory, settings.statement_requests, 1)
                delta = wire.counts() - before
                texts = wire.statement_texts() - texts_before
                counted[name] = {
                    "requests": result.requests,
                    "statements": {
                        text: count / result.requests for text, count in texts.most_common()
                    },
                    "statements_per_request": delta.statements / result.requests,
                    "round_trips_per_request": delta.round_trips / result.requests,
                    "new_connections": delta.connections,
                }
        finally:
            web.stop()
    finally:
        wire.stop()
    harness.report.details["4_api_statements"] = counted
    for name, target, key in (
        ("GET /api/jobs/", 3, "get_jobs_statements"),
        ("POST /api/jobs/", 4, "post_jobs_statements"),
    ):
        figures = counted[name]
        value = figures["statements_per_request"]
        harness.report.add(
            f"4 API {name}",
            f"SQL statements per request ({figures['requests']} requests)",
            value,
            "",
            f"<= {target}",
            value <= target,
        )
        harness.report.add(
            f"4 API {name}", "DB round trips per request", figures["round_trips_per_request"]
        )
        harness.report.summary[key] = value
