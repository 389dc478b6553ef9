"""Scenario 1, queue throughput: raw Procrastinate, jobboard end to end and Celery +
Redis, each drained `--rounds` times in rotating order, so that drift on a shared
machine weighs on every arm; then a counting pass for round trips and statements."""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any

from bench import celery_noop
from bench.arms import Arm, CeleryArm, Drain, EndToEndArm, RawArm, median_cpu, spread
from bench.harness import Harness, Scenario, at_least, logger, ratio
from bench.report import shown_spread
from devtools.wire import WireCounter


class Throughput(Scenario):
    selected_by = frozenset({"1"})
    needs_web = False
    summary_keys = (
        "raw_jobs_per_s",
        "e2e_jobs_per_s",
        "celery_jobs_per_s",
        "e2e_per_raw",
        "e2e_per_celery",
        "round_trips_per_job",
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 1, queue throughput")
        group.add_argument(
            "--jobs",
            type=at_least(2),
            default=5000,
            help="jobs queued per arm and round (raw no-op, end-to-end echo, Celery)",
        )
        group.add_argument(
            "--rounds",
            type=at_least(1),
            default=3,
            help="rounds; the arms run in rotating order in each",
        )
        group.add_argument(
            "--round-trip-jobs",
            type=int,
            default=1000,
            help="jobs per arm drained through the counting proxy for round trips (0: skip)",
        )

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        harness.stop_worker()  # jobboard's worker listens on every queue: each arm runs alone
        warmup = min(settings.warmup, settings.jobs // 4)
        arms: list[Arm] = [RawArm(harness), EndToEndArm(harness)]
        celery_reason = celery_noop.unavailable()
        celery: CeleryArm | None = None
        if celery_reason is None:
            celery = CeleryArm(harness)
            arms.append(celery)
        else:
            logger.info("Celery + Redis arm unavailable: %s", celery_reason)
        runs: dict[str, list[dict[str, Any]]] = {arm.key: [] for arm in arms}
        try:
            for number in range(1, settings.rounds + 1):
                shift = (number - 1) % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    logger.info(
                        "scenario 1 (round %d): %s, %d jobs (%d warm-up)",
                        number,
                        arm.label,
                        settings.jobs,
                        warmup,
                    )
                    drain = Drain(
                        arm, settings.jobs, warmup, settings.drain_timeout, harness.check_processes
                    )
                    try:
                        runs[arm.key].append(drain.run(number))
                    except Exception as exc:
                        if arm is not celery:
                            raise
                        # The anchor is optional: its failure is reported, not fatal.
                        logger.warning("Celery + Redis arm failed: %r", exc)
                        arm.stop()
                        celery_reason = f"failed: {exc!r}"[:200]
                        del runs["celery"]
                        arms.remove(arm)
                        continue
        finally:
            if celery is not None:
                celery.close()
        wire_runs = round_trips(harness, arms[:2]) if settings.round_trip_jobs > 0 else {}
        harness.report.details["1_throughput"] = {
            "rounds": runs,
            "round_trip_pass": wire_runs,
            "warmup": warmup,
            "celery_unavailable": celery_reason,
        }
        add_rows(harness, runs, wire_runs, celery_reason)


def round_trips(harness: Harness, arms: list[Arm]) -> dict[str, dict[str, Any]]:
    """Each PostgreSQL arm once more, its worker talking to the database through a
    counting proxy (`devtools.wire`): round trips and statements per job. Not timed."""
    settings = harness.settings
    count = settings.round_trip_jobs
    warmup = min(settings.warmup, count // 4)
    wire = WireCounter(harness.database.url).start()
    results: dict[str, dict[str, Any]] = {}
    try:
        for arm in arms:
            logger.info("scenario 1: counting round trips, %s, %d jobs", arm.label, count)
            drain = Drain(
                arm, count, warmup, settings.drain_timeout, harness.check_processes, wire=wire
            )
            results[arm.key] = drain.run(0)
    finally:
        wire.stop()
    return results


def add_rows(
    harness: Harness,
    runs: dict[str, list[dict[str, Any]]],
    wire_runs: dict[str, dict[str, Any]],
    celery_reason: str | None,
) -> None:
    report, settings = harness.report, harness.settings
    scenario = "1 queue throughput"
    rates = {key: [run["per_second"] for run in arm_runs] for key, arm_runs in runs.items()}
    arms_summary = {key: spread(values) for key, values in rates.items()}
    arm_classes = (RawArm, EndToEndArm, CeleryArm)
    labels = {arm.key: arm.label for arm in arm_classes}
    queued_by = {arm.key: arm.queued_by for arm in arm_classes}
    rounds_text = f"{settings.rounds} rounds x {settings.jobs} jobs"
    for key, figures in arms_summary.items():
        report.add(
            scenario,
            f"{labels[key]}: jobs/s, median (min-max), {rounds_text}",
            shown_spread(figures),
        )
        cpu = median_cpu([run["cpu_ms_per_job"] for run in runs[key]])
        if cpu:
            shown = ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
            report.add(scenario, f"{labels[key]}: CPU ms per job (median)", shown)
        queued = statistics.median(run["queued_per_second"] for run in runs[key])
        report.add(
            scenario, f"{labels[key]}: queued by {queued_by[key]} (median)", queued, "jobs/s"
        )
        if key == "celery":
            commands = statistics.median(run["redis_commands_per_job"] for run in runs[key])
            report.add(scenario, f"{labels[key]}: Redis commands per job", commands)
    if celery_reason is not None:
        report.add(scenario, f"{labels['celery']}: jobs/s", f"n/a ({celery_reason})")
    for key, arm_runs in runs.items():
        missing = sum(run["jobs"] - run["completed"] for run in arm_runs)
        if missing:
            report.add(scenario, f"{labels[key]}: jobs not completed", missing, "", "0", False)

    def paired(numerator: str, denominator: str) -> dict[str, Any]:
        if numerator not in rates or denominator not in rates:
            return spread([])
        return spread(
            [ratio(a, b) for a, b in zip(rates[numerator], rates[denominator], strict=True)]
        )

    e2e_per_raw = paired("e2e", "raw")
    e2e_per_celery = paired("e2e", "celery")
    for label, figures, target in (
        ("end to end / raw, per round", e2e_per_raw, 1.0),
        ("end to end / Celery, per round", e2e_per_celery, 1.0),
    ):
        median = figures["median"]
        report.add(
            scenario,
            f"{label}: median (min-max)",
            shown_spread(figures, 2) if not math.isnan(median) else "n/a",
            "",
            f">= {target:g}",
            None if math.isnan(median) else median >= target,
        )
    for key, run in wire_runs.items():
        # The batched queue: one statement takes and starts a batch, one completes and
        # finishes many; at most one round trip a job, amortized.
        target = "<= 1" if key == "e2e" else ""
        value = run["round_trips_per_job"]
        report.add(
            scenario,
            f"{labels[key]}: DB round trips per job ({run['measured_jobs']} jobs counted)",
            value,
            "",
            target,
            (value <= 1) if key == "e2e" else None,
        )
        report.add(scenario, f"{labels[key]}: DB statements per job", run["statements_per_job"])

    def median_of(key: str) -> float:
        return arms_summary[key]["median"] if key in arms_summary else math.nan

    report.summary.update(
        {
            "rounds": settings.rounds,
            "jobs_per_round": settings.jobs,
            "warmup_jobs": min(settings.warmup, settings.jobs // 4),
            "raw_jobs_per_s": median_of("raw"),
            "e2e_jobs_per_s": median_of("e2e"),
            "celery_jobs_per_s": median_of("celery") if "celery" in rates else None,
            "celery_unavailable": celery_reason,
            "e2e_per_raw": e2e_per_raw["median"],
            "e2e_per_celery": e2e_per_celery["median"] if "celery" in rates else None,
            "round_trips_per_job": wire_runs.get("e2e", {}).get("round_trips_per_job"),
            "raw_round_trips_per_job": wire_runs.get("raw", {}).get("round_trips_per_job"),
            "arms": {
                **arms_summary,
                "e2e_per_raw": e2e_per_raw,
                "e2e_per_celery": e2e_per_celery,
            },
            "cpu_ms_per_job": {
                key: median_cpu([run["cpu_ms_per_job"] for run in arm_runs])
                for key, arm_runs in runs.items()
            },
        }
    )
