"""Scenario 2, fetch cost vs backlog: the end-to-end rate with a small and with a large
queued backlog; the same number of completions is measured, only the number of jobs
waiting differs."""

from __future__ import annotations

import argparse
from typing import Any

from bench.arms import BacklogArm, Drain, spread
from bench.harness import Harness, Scenario, at_least, logger, ratio
from bench.report import shown_spread


class Backlog(Scenario):
    selected_by = frozenset({"2"})
    needs_web = False
    summary_keys = ("backlog_large_per_small",)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 2, fetch cost vs backlog")
        group.add_argument(
            "--backlog",
            dest="backlog_large",
            type=at_least(1),
            default=50_000,
            help="the large queued backlog",
        )
        group.add_argument(
            "--small-backlog",
            dest="backlog_small",
            type=at_least(1),
            default=5000,
            help="the small queued backlog",
        )
        group.add_argument(
            "--backlog-window",
            type=int,
            # Long enough to measure at a few thousand jobs/s: 1,500 measured completions
            # took under a second and read the ratio anywhere from 0.83 to 1.05.
            default=4000,
            help="completions waited for in each backlog drain (warm-up included)",
        )
        group.add_argument(
            "--backlog-rounds",
            type=at_least(1),
            default=3,
            help="rounds (small then large, alternating order); the ratio is the median of"
            " the rounds' ratios",
        )

    def check_arguments(self, arguments: argparse.Namespace) -> str | None:
        if arguments.backlog_small > arguments.backlog_large:
            return "--small-backlog must be between 1 and --backlog"
        return None

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        harness.stop_worker()
        sizes = (settings.backlog_small, settings.backlog_large)
        measured = min(settings.backlog_window, *sizes)
        warmup = min(settings.warmup, measured // 4)
        arm = BacklogArm(harness)
        runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
        for number in range(1, settings.backlog_rounds + 1):
            for size in sizes if number % 2 else tuple(reversed(sizes)):
                logger.info(
                    "scenario 2 (round %d): %d echo jobs queued, measuring %d completions",
                    number,
                    size,
                    measured - warmup,
                )
                drain = Drain(
                    arm,
                    size,
                    warmup,
                    settings.drain_timeout,
                    harness.check_processes,
                    stop_at=measured,
                )
                runs[size].append(drain.run(number))
        small, large = (spread([run["per_second"] for run in runs[size]]) for size in sizes)
        backlog_ratio = spread(
            [
                ratio(a["per_second"], b["per_second"])
                for a, b in zip(runs[sizes[1]], runs[sizes[0]], strict=True)
            ]
        )
        harness.report.details["2_backlog"] = {str(size): runs[size] for size in sizes}
        scenario = "2 fetch cost vs backlog"
        for size, figures in ((sizes[0], small), (sizes[1], large)):
            harness.report.add(
                scenario,
                f"end to end, {size:,} queued: jobs/s over {measured - warmup} completions",
                shown_spread(figures),
            )
        harness.report.add(
            scenario,
            f"rate at {sizes[1]:,} / rate at {sizes[0]:,}",
            backlog_ratio["median"],
            "",
            ">= 0.9",
            backlog_ratio["median"] >= 0.9,
        )
        harness.report.summary.update(
            {
                "backlog_small": sizes[0],
                "backlog_large": sizes[1],
                "backlog_small_jobs_per_s": small["median"],
                "backlog_large_jobs_per_s": large["median"],
                "backlog_large_per_small": backlog_ratio["median"],
            }
        )
