"""`python -m bench [options]`: run the benchmark, print the table, write the JSON.

Run it from the repository root with the project's virtual environment
(`.venv/bin/python -m bench`). `--help` lists the counts; the defaults finish in under
10 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.report import Report, load_average, machine
from bench.scenarios import Bench, Settings
from bench.system import Database, log_dir_for, run_migrations, start_web, system_environment
from config import PROJECT_ROOT
from tests.support.processes import free_port
from tests.support.smtp import Mailbox, SmtpServer

logger = logging.getLogger("bench")

SUMMARY_KEYS = (
    "raw_jobs_per_s",
    "e2e_jobs_per_s",
    "celery_jobs_per_s",
    "e2e_per_raw",
    "e2e_per_celery",
    "round_trips_per_job",
    "get_jobs_statements",
    "post_jobs_statements",
    "backlog_large_per_small",
)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure jobboard's throughput, latency and timeliness (docs/performance.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=5000,
        help="jobs queued per arm and round in scenario 1 (raw no-op, end-to-end echo, Celery)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of scenario 1; the arms run in rotating order in each",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="first completions of each drain left out of its figures (at most a quarter"
        " of the drain)",
    )
    parser.add_argument(
        "--round-trip-jobs",
        type=int,
        default=1000,
        help="jobs per arm drained through the counting proxy for round trips (0: skip)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=50_000,
        help="the large queued backlog of scenario 2",
    )
    parser.add_argument(
        "--small-backlog",
        type=int,
        default=5000,
        help="the small queued backlog of scenario 2",
    )
    parser.add_argument(
        "--backlog-window",
        type=int,
        default=2000,
        help="completions waited for in each backlog drain (warm-up included)",
    )
    parser.add_argument(
        "--backlog-rounds",
        type=int,
        default=3,
        help="rounds of scenario 2 (small then large, alternating order); the ratio is the"
        " median of the rounds' ratios",
    )
    parser.add_argument(
        "--http-jobs",
        type=int,
        default=1500,
        help="echo jobs POSTed in scenario 2's HTTP variant (the load of 3)",
    )
    parser.add_argument(
        "--http-concurrency",
        type=int,
        default=8,
        help="clients POSTing in scenario 2's HTTP variant",
    )
    parser.add_argument(
        "--timed-jobs",
        type=int,
        default=100,
        help="jobs scheduled ahead in each of scenario 3's three groups",
    )
    parser.add_argument(
        "--timed-ahead",
        default="2,5",
        help="scenario 3 schedules jobs this many seconds ahead (low,high)",
    )
    parser.add_argument(
        "--api-seed", type=int, default=10_000, help="jobs of the caller in scenario 4"
    )
    parser.add_argument(
        "--api-requests",
        type=int,
        default=600,
        help="requests per endpoint at concurrency 16 in scenario 4",
    )
    parser.add_argument(
        "--api-requests-serial",
        type=int,
        default=200,
        help="requests per endpoint at concurrency 1 in scenario 4",
    )
    parser.add_argument(
        "--statement-requests",
        type=int,
        default=20,
        help="requests per endpoint sent through the counting proxy in scenario 4",
    )
    parser.add_argument(
        "--register-requests",
        type=int,
        default=100,
        help="registrations per SMTP speed in scenario 5",
    )
    parser.add_argument(
        "--smtp-delay",
        type=float,
        default=2.0,
        help="seconds the slow SMTP sink takes per message in scenario 5",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "2")),
        help="gunicorn workers (the Procfile's WEB_CONCURRENCY)",
    )
    parser.add_argument("--scenarios", default="1,2,3,4,5", help="comma-separated scenarios to run")
    parser.add_argument(
        "--database",
        default="jobboard_bench",
        help="database created (dropped first) on the server for this run",
    )
    parser.add_argument(
        "--keep-database",
        action="store_true",
        help="leave the benchmark database in place afterwards",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=240.0,
        help="seconds a queue may take to drain before the run fails",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=PROJECT_ROOT / "bench-results.json",
        help="where to write the figures as JSON",
    )
    arguments = parser.parse_args(argv)
    scenarios = {part.strip() for part in arguments.scenarios.split(",") if part.strip()}
    unknown = scenarios - {"1", "2", "3", "4", "5"}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if arguments.rounds < 1 or arguments.jobs < 2 or arguments.backlog_rounds < 1:
        parser.error("--rounds and --backlog-rounds must be >= 1, --jobs >= 2")
    if not 0 < arguments.small_backlog <= arguments.backlog:
        parser.error("--small-backlog must be between 1 and --backlog")
    arguments.scenario_set = scenarios
    low, _, high = arguments.timed_ahead.partition(",")
    arguments.timed_ahead_window = (float(low), float(high or low))
    return arguments


def settings_from(arguments: argparse.Namespace) -> Settings:
    return Settings(
        jobs=arguments.jobs,
        http_jobs=arguments.http_jobs,
        http_concurrency=arguments.http_concurrency,
        timed_jobs=arguments.timed_jobs,
        timed_ahead=arguments.timed_ahead_window,
        api_seed=arguments.api_seed,
        api_requests=arguments.api_requests,
        api_requests_serial=arguments.api_requests_serial,
        register_requests=arguments.register_requests,
        smtp_delay=arguments.smtp_delay,
        web_workers=arguments.web_workers,
        scenarios=arguments.scenario_set,
        drain_timeout=arguments.drain_timeout,
        rounds=arguments.rounds,
        warmup=arguments.warmup,
        round_trip_jobs=arguments.round_trip_jobs,
        backlog_small=arguments.small_backlog,
        backlog_large=arguments.backlog,
        backlog_window=arguments.backlog_window,
        backlog_rounds=arguments.backlog_rounds,
        statement_requests=arguments.statement_requests,
    )


def stop_on_sigterm() -> None:
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run(arguments: argparse.Namespace) -> Report:
    from workers.__main__ import worker_options

    settings = settings_from(arguments)
    log_dir = log_dir_for(arguments.database)
    for old_log in log_dir.glob("*.log"):
        old_log.unlink()  # the logs of the last run only
    report = Report()
    # Every headline figure is in the summary; null when its scenario did not run.
    report.summary = dict.fromkeys(SUMMARY_KEYS)
    report.environment = machine()
    with ExitStack() as cleanup:
        logger.info("preparing database %r", arguments.database)
        database = Database.on_configured_server(arguments.database)
        database.recreate()
        if not arguments.keep_database:
            cleanup.callback(database.drop)
        report.environment["postgresql"] = database.server_version()
        report.environment["autovacuum"] = database.setting("autovacuum")
        report.environment["database"] = (
            "DATABASE_URL's server" if os.environ.get("DATABASE_URL") else "embedded (pgserver)"
        )

        sink = SmtpServer(Mailbox(keep=False))
        cleanup.callback(sink.stop)
        env = system_environment(database.url, sink.port)
        logger.info("migrating (flask db upgrade)")
        run_migrations(env, log_dir)

        web, web_port = None, 0
        if settings.scenarios - {"1"}:
            web_port = free_port()
            logger.info(
                "starting gunicorn (%d workers) on 127.0.0.1:%d", settings.web_workers, web_port
            )
            web = start_web(env, web_port, settings.web_workers, log_dir)
            cleanup.callback(web.stop)

        options = worker_options()
        report.settings = {
            "worker": options,
            "web_workers": settings.web_workers,
            "counts": {
                key: value for key, value in vars(settings).items() if key not in {"scenarios"}
            },
            "scenarios": sorted(settings.scenarios),
            "summary": (
                f"gunicorn --workers {settings.web_workers}; worker concurrency "
                f"{options['concurrency']}, polling {options['fetch_job_polling_interval']:g} s"
            ),
        }

        bench = Bench(settings, report, database, env, sink, web, web_port)
        cleanup.callback(bench.close)
        chosen = settings.scenarios
        baseline = bench.throughput() if "1" in chosen else None
        if "2" in chosen:
            bench.backlog()
        if "3" in chosen:
            bench.timeliness_idle()
        if chosen & {"2", "3"}:
            bench.end_to_end_http_under_load(baseline)
        if "4" in chosen:
            bench.api()
        if "5" in chosen:
            bench.register()
    report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    report.environment["load_average_end"] = load_average()
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    for noisy in ("procrastinate", "alembic", "jobboard", "httpx", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    stop_on_sigterm()
    started = time.monotonic()
    try:
        report = run(arguments)
    except KeyboardInterrupt:
        logger.error("interrupted; everything the benchmark started has been stopped")
        return 130
    logger.info(
        "finished in %.0f s; process logs in %s",
        time.monotonic() - started,
        log_dir_for(arguments.database),
    )
    print(report.preamble())
    print(report.table())
    report.write_json(arguments.json)
    print(f"(figures also in {arguments.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
