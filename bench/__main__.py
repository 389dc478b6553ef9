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

from bench.harness import Harness
from bench.report import Report, load_average, machine
from bench.scenarios import SCENARIOS
from bench.system import log_dir_for, run_migrations, start_web, system_environment
from config import PROJECT_ROOT
from devtools.database import DatabaseServer
from devtools.processes import free_port
from devtools.smtp import Mailbox, SmtpServer

logger = logging.getLogger("bench")

# Options that are not counts (the JSON's settings.counts has every other one).
NOT_COUNTS = {"scenarios", "database", "keep_database", "json"}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    numbers = sorted({number for scenario in SCENARIOS for number in scenario.selected_by})
    default = sorted(
        {
            number
            for scenario in SCENARIOS
            if scenario.in_default_run
            for number in scenario.selected_by
        }
    )
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure jobboard's throughput, latency and timeliness (docs/performance.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(default),
        help=f"comma-separated scenarios to run, of {','.join(numbers)}",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=500,
        help="first completions of each drain left out of its figures (at most a quarter"
        " of the drain)",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "2")),
        help="gunicorn workers (the Procfile's WEB_CONCURRENCY)",
    )
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
    for scenario in SCENARIOS:
        scenario.add_arguments(parser)
    arguments = parser.parse_args(argv)
    chosen = {part.strip() for part in arguments.scenarios.split(",") if part.strip()}
    unknown = chosen - set(numbers)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    arguments.scenarios = chosen
    for scenario in SCENARIOS:
        problem = scenario.check_arguments(arguments)
        if problem:
            parser.error(problem)
    return arguments


def stop_on_sigterm() -> None:
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run(settings: argparse.Namespace) -> Report:
    from workers.__main__ import worker_options, worker_set

    chosen = [scenario for scenario in SCENARIOS if scenario.selected_by & settings.scenarios]
    log_dir = log_dir_for(settings.database)
    for old_log in log_dir.glob("*.log"):
        old_log.unlink()  # the logs of the last run only
    report = Report()
    # Every headline figure is in the summary; null when its scenario did not run.
    report.summary = dict.fromkeys(key for scenario in SCENARIOS for key in scenario.summary_keys)
    report.environment = machine()
    with ExitStack() as cleanup:
        logger.info("preparing database %r", settings.database)
        database = DatabaseServer.at(os.environ.get("DATABASE_URL")).database(settings.database)
        database.recreate()
        if not settings.keep_database:
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
        if any(scenario.needs_web for scenario in chosen):
            web_port = free_port()
            logger.info(
                "starting gunicorn (%d workers) on 127.0.0.1:%d", settings.web_workers, web_port
            )
            web = start_web(env, web_port, settings.web_workers, log_dir)
            cleanup.callback(web.stop)

        options = worker_options()
        jobs_worker = next(item for item in worker_set() if item["name"] == "jobs")
        report.settings = {
            "worker": options,
            "jobs_worker": jobs_worker,
            "web_workers": settings.web_workers,
            "counts": {
                key: value for key, value in vars(settings).items() if key not in NOT_COUNTS
            },
            "scenarios": sorted(settings.scenarios),
            "summary": (
                f"gunicorn --workers {settings.web_workers}; jobs worker: "
                f"{jobs_worker['async_concurrency']} slots, {options['concurrency']} for"
                f" blocking kinds, batches of {jobs_worker['batch_size']};"
                f" polling {options['fetch_job_polling_interval']:g} s"
            ),
        }

        harness = Harness(settings, report, database, env, sink, web, web_port)
        cleanup.callback(harness.close)
        for scenario in chosen:
            scenario.run(harness)
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
