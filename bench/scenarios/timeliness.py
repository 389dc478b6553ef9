"""Scenario 3, timeliness with an idle worker: jobs scheduled a few seconds ahead, and
how late each starts. (Its variant under load runs with scenario 2's HTTP variant.)"""

from __future__ import annotations

import argparse

from bench.harness import Harness, Scenario, logger
from bench.report import add_timeliness_rows


def window(text: str) -> tuple[float, float]:
    """`low,high` seconds (or one figure for both)."""
    low, _, high = text.partition(",")
    try:
        return float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds as LOW,HIGH, not {text!r}") from None


class TimelinessIdle(Scenario):
    selected_by = frozenset({"3"})

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 3, timeliness")
        group.add_argument(
            "--timed-jobs",
            type=int,
            default=100,
            help="jobs scheduled ahead in each of the three groups (idle, queued before the"
            " load, queued during it)",
        )
        group.add_argument(
            "--timed-ahead",
            type=window,
            default="2,5",
            help="jobs are scheduled this many seconds ahead (low,high)",
        )

    def run(self, harness: Harness) -> None:
        count = harness.settings.timed_jobs
        harness.start_worker()
        owner_id, _token = harness.make_user("timed-idle")
        logger.info(
            "scenario 3: %d jobs scheduled %s s ahead, idle worker",
            count,
            "-".join(f"{value:g}" for value in harness.settings.timed_ahead),
        )
        harness.create_timed_jobs(owner_id, count)
        missing = harness.drain("scenario 3 (idle)", owner_id, count)
        figures = harness.lateness(owner_id)
        harness.report.details["3_timeliness_idle"] = figures
        add_timeliness_rows(harness.report, "idle", figures, 0.25)
        harness.add_missing_row("3 timeliness, idle", missing)
