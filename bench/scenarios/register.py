"""Scenario 5, registration while SMTP is slow: sign-ups answered as fast when each
email takes the sink `--smtp-delay` seconds as when it answers at once (mail leaves
through the queue, never inside the request)."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.harness import PASSWORD, Harness, Scenario, logger, ratio
from bench.load import run_load
from bench.report import summary

REGISTER_BLOCK = 10


class Register(Scenario):
    selected_by = frozenset({"5"})

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 5, registration with slow SMTP")
        group.add_argument(
            "--register-requests",
            type=int,
            default=100,
            help="registrations per SMTP speed",
        )
        group.add_argument(
            "--smtp-delay",
            type=float,
            default=2.0,
            help="seconds the slow SMTP sink takes per message",
        )

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        mailbox = harness.sink.mailbox
        harness.start_worker()  # mail must flow to the sink while we measure
        stamp = int(time.time())

        def register_user(phase: str) -> Callable[[int], tuple[str, str, Any, dict[str, str]]]:
            def factory(index: int) -> tuple[str, str, Any, dict[str, str]]:
                body = {"email": f"reg-{stamp}-{phase}-{index}@example.com", "password": PASSWORD}
                return "POST", "/api/register/", body, {}

            return factory

        mailbox.delay = 0.0
        run_load(harness.web_port, register_user("warm"), 2 * settings.web_workers, 1)
        # Fast and slow alternate in blocks (fast-slow, slow-fast, ...), so drifting load
        # from anything else on the machine weighs on both sides alike.
        delays = {"fast": 0.0, "slow": settings.smtp_delay}
        latencies: dict[str, list[float]] = {"fast": [], "slow": []}
        statuses: dict[str, Counter] = {"fast": Counter(), "slow": Counter()}
        delivered = {"fast": 0, "slow": 0}
        logger.info(
            "scenario 5: %d registrations with SMTP answering at once and %d with it taking"
            " %g s per message, alternating in blocks of %d",
            settings.register_requests,
            settings.register_requests,
            settings.smtp_delay,
            REGISTER_BLOCK,
        )
        done = 0
        block = 0
        while done < settings.register_requests:
            size = min(REGISTER_BLOCK, settings.register_requests - done)
            order = ("fast", "slow") if block % 2 == 0 else ("slow", "fast")
            for phase in order:
                mailbox.delay = delays[phase]
                received_before = mailbox.received
                result = run_load(harness.web_port, register_user(f"{phase}{block}"), size, 1)
                latencies[phase].extend(result.latencies)
                statuses[phase].update(result.statuses)
                delivered[phase] += mailbox.received - received_before
            done += size
            block += 1
        mails_waiting = harness.scalar(
            "SELECT count(*) FROM procrastinate_jobs"
            " WHERE queue_name = 'mail' AND status IN ('todo', 'doing')"
        )
        phases: dict[str, dict[str, Any]] = {}
        for phase in ("fast", "slow"):
            phases[phase] = {
                **summary(latencies[phase]),
                "smtp_delay": delays[phase],
                "statuses": dict(statuses[phase]),
                "mails_delivered_meanwhile": delivered[phase],
            }
            unexpected = sum(n for status, n in statuses[phase].items() if status != 201)
            if unexpected:
                harness.report.add(
                    f"5 register, SMTP {phase}",
                    "answers other than 201",
                    unexpected,
                    "",
                    "0",
                    False,
                )
        phases["mail_jobs_waiting_at_end"] = mails_waiting
        mailbox.delay = 0.0  # let the backlog of mail drain quickly before we stop
        fast, slow = phases["fast"], phases["slow"]
        harness.report.details["5_register"] = phases
        for phase in ("fast", "slow"):
            figures = phases[phase]
            scenario = f"5 register, SMTP {phase} ({figures['smtp_delay']:g} s)"
            harness.report.add(
                scenario, f"latency p50 ({figures['count']} requests)", figures["p50"], "s"
            )
            harness.report.add(scenario, "latency p99", figures["p99"], "s")
            harness.report.add(
                scenario, "mails delivered meanwhile", figures["mails_delivered_meanwhile"]
            )
        scenario = "5 register, slow/fast"
        p50_ratio = ratio(slow["p50"], fast["p50"])
        harness.report.add(scenario, "p50 ratio", p50_ratio, "", "<= 1.1", p50_ratio <= 1.1)
        harness.report.add(scenario, "p99 ratio", ratio(slow["p99"], fast["p99"]))
