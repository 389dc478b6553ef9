"""Scenario 2 through HTTP, and scenario 3 under its load: clients POST echo jobs while
the worker drains them; one group of jobs scheduled ahead is queued just before the
clients start, another once the drain is under way."""

from __future__ import annotations

import argparse
import math
import threading
from typing import Any

from bench.harness import SCHEDULE_MARGIN, Harness, Scenario, logger, now_utc, ratio, wait_for
from bench.load import LoadResult, run_load
from bench.report import add_timeliness_rows


class HttpUnderLoad(Scenario):
    selected_by = frozenset({"2", "3"})

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenarios 2 and 3 through HTTP, under load")
        group.add_argument(
            "--http-jobs",
            type=int,
            default=1500,
            help="echo jobs POSTed in scenario 2's HTTP variant (the load of 3)",
        )
        group.add_argument(
            "--http-concurrency",
            type=int,
            default=8,
            help="clients POSTing in scenario 2's HTTP variant",
        )

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        raw = harness.report.summary.get("raw_jobs_per_s")  # scenario 1's, when it ran
        baseline = raw if isinstance(raw, float) and not math.isnan(raw) else None
        harness.start_worker()
        http_owner, token = harness.make_user("e2e-http")
        before_owner, _token = harness.make_user("timed-before-load")
        during_owner, _token = harness.make_user("timed-during-load")
        ahead = "-".join(f"{value:g}" for value in settings.timed_ahead)
        logger.info(
            "scenario 2/3: %d echo jobs POSTed by %d clients; %d jobs scheduled %s s ahead"
            " queued before, and %d more once the drain is under way",
            settings.http_jobs,
            settings.http_concurrency,
            settings.timed_jobs,
            ahead,
            settings.timed_jobs,
        )
        headers = {"Authorization": f"Bearer {token}"}

        def post_job(index: int) -> tuple[str, str, Any, dict[str, str]]:
            body = {
                "name": f"http echo {index}",
                "kind": "echo",
                "params": {"index": index},
                "scheduled_time": (now_utc() + SCHEDULE_MARGIN).isoformat(),
            }
            return "POST", "/api/jobs/", body, headers

        harness.create_timed_jobs(before_owner, settings.timed_jobs)
        outcome: list[LoadResult] = []
        load = threading.Thread(
            target=lambda: outcome.append(
                run_load(harness.web_port, post_job, settings.http_jobs, settings.http_concurrency)
            ),
            daemon=True,
        )
        load.start()
        wait_for(
            "scenario 2 (HTTP): first job started",
            lambda: (
                not load.is_alive()
                or harness.scalar(
                    "SELECT count(*) FROM jobs WHERE owner_id = %s AND started_at IS NOT NULL",
                    http_owner,
                )
                > 0
            ),
            60,
            harness.check_processes,
            interval=0.05,
        )
        harness.create_timed_jobs(during_owner, settings.timed_jobs)
        load.join()
        posted = outcome[0]
        accepted = posted.statuses.get(201, 0)
        missing_http = harness.drain("scenario 2 (HTTP) drain", http_owner, accepted)
        span = harness.job_span(http_owner)
        span["post"] = posted.as_dict()
        harness.report.details["2_end_to_end_http"] = span
        scenario = "2 end-to-end, HTTP"
        harness.report.add(
            scenario,
            f"jobs/s completed ({span['completed_with_result']} jobs, posted and drained at once)",
            span["per_second"],
            "jobs/s",
        )
        if baseline is not None:
            harness.report.add(
                scenario,
                "ratio to raw Procrastinate (scenario 1 median)",
                ratio(span["per_second"], baseline),
            )
        harness.report.add(
            scenario,
            f"POST /api/jobs/ while draining (c={settings.http_concurrency})",
            posted.per_second,
            "req/s",
        )
        harness.add_missing_row(scenario, missing_http)
        if posted.unexpected(201):
            harness.report.add(
                scenario, "POSTs not answered 201", posted.unexpected(201), "", "0", False
            )

        load_window = harness.conn.execute(
            "SELECT min(started_at), max(finished_at) FROM jobs WHERE owner_id = %s",
            (http_owner,),
        ).fetchone()
        for label, owner_id in (
            ("under load, queued before it", before_owner),
            ("under load, queued during it", during_owner),
        ):
            missing = harness.drain(f"scenario 3 ({label})", owner_id, settings.timed_jobs)
            figures = harness.lateness(owner_id)
            figures["due_during_load"] = harness.scalar(
                "SELECT count(*) FROM jobs"
                " WHERE owner_id = %s AND scheduled_time BETWEEN %s AND %s",
                owner_id,
                *load_window,
            )
            harness.report.details[f"3_timeliness_{label.replace(' ', '_').replace(',', '')}"] = (
                figures
            )
            add_timeliness_rows(harness.report, label, figures, 1.0)
            scenario = f"3 timeliness, {label}"
            harness.report.add(
                scenario,
                "earlier-due jobs still waiting when it came due (p50 / max)",
                f"{figures['waiting_ahead']['p50']:g} / {figures['waiting_ahead']['max']:g}",
            )
            harness.report.add(
                scenario,
                "due while the load ran",
                f"{figures['due_during_load']}/{figures['count']}",
            )
            harness.add_missing_row(scenario, missing)
