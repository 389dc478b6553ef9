"""Scenario 6, batch creation: jobs created per second by POST /api/jobs/batch/ (100 jobs
a request) beside single POST /api/jobs/, at the same concurrency against gunicorn while
the worker polls. Rounds interleave the two arms; the median and range are reported."""

from __future__ import annotations

import argparse
import statistics
from datetime import timedelta
from typing import Any

from bench.harness import Harness, Scenario, logger, now_utc
from bench.load import run_load

BATCH_SIZE = 100


class BatchCreate(Scenario):
    selected_by = frozenset({"6"})
    summary_keys = ("batch_create_ratio",)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 6, batch creation")
        group.add_argument(
            "--batch-jobs",
            type=int,
            default=2_000,
            help="jobs created by each arm in each round",
        )
        group.add_argument(
            "--batch-concurrency", type=int, default=8, help="clients at once, both arms"
        )
        group.add_argument("--batch-rounds", type=int, default=3, help="interleaved rounds")

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        harness.start_worker()
        _owner, token = harness.make_user("batch-writer")
        headers = {"Authorization": f"Bearer {token}"}
        # Far enough ahead that the worker leaves them alone during the run.
        when = (now_utc() + timedelta(days=1)).isoformat()

        def job(index: int) -> dict[str, Any]:
            return {
                "name": f"batch {index}",
                "description": "posted by the benchmark",
                "kind": "echo",
                "params": {"index": index},
                "scheduled_time": when,
            }

        def single(index: int) -> tuple[str, str, Any, dict[str, str]]:
            return "POST", "/api/jobs/", job(index), headers

        def batched(index: int) -> tuple[str, str, Any, dict[str, str]]:
            body = {"jobs": [job(index * BATCH_SIZE + i) for i in range(BATCH_SIZE)]}
            return "POST", "/api/jobs/batch/", body, headers

        concurrency = settings.batch_concurrency
        jobs = settings.batch_jobs
        # Warm every gunicorn worker up (first-request imports, connection pool).
        run_load(harness.web_port, single, 4 * settings.web_workers, settings.web_workers)
        run_load(harness.web_port, batched, 2 * settings.web_workers, settings.web_workers)
        rates: dict[str, list[float]] = {"single": [], "batch": []}
        failures = 0
        for round_number in range(settings.batch_rounds):
            for arm, factory, requests, per_request in (
                ("single", single, jobs, 1),
                ("batch", batched, max(1, jobs // BATCH_SIZE), BATCH_SIZE),
            ):
                logger.info(
                    "scenario 6: round %d, %s, %d requests at concurrency %d",
                    round_number + 1,
                    arm,
                    requests,
                    concurrency,
                )
                result = run_load(harness.web_port, factory, requests, concurrency)
                failures += result.unexpected(201)
                rates[arm].append(result.per_second * per_request)
        scenario = f"6 batch creation c={concurrency}"
        for arm, label in (("single", "POST /api/jobs/"), ("batch", "POST /api/jobs/batch/")):
            values = rates[arm]
            harness.report.add(
                scenario,
                f"{label} jobs/s, median (range {min(values):.0f}-{max(values):.0f})",
                statistics.median(values),
                "jobs/s",
            )
        ratio = statistics.median(rates["batch"]) / statistics.median(rates["single"])
        harness.report.add(scenario, "batch / single", ratio, "x", ">= 10", ratio >= 10)
        if failures:
            harness.report.add(scenario, "answers other than 201", failures, "", "0", False)
        harness.report.summary["batch_create_ratio"] = ratio
        harness.report.details["6_batch_create"] = {
            "concurrency": concurrency,
            "jobs_per_round": jobs,
            "jobs_per_second": rates,
        }
