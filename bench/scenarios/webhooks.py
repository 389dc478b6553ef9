"""Scenario 8, webhooks: how fast events reach healthy receivers, how late a healthy
endpoint hears of a change while another endpoint times out, and what delivering a
`job.completed` webhook for every job costs the queue's throughput.

The receivers are `bench.webhook_receiver`, a process of its own on 127.0.0.1 that
verifies every request with the reference `standardwebhooks` library. Endpoints are
created through the service `POST /api/webhooks/` runs (each for a user of its own, as
the plans allow one per user); events are written as a change writes them
(`jobboard.events.outbox.write_events`, committed), so the outbox's fan-out queues the
deliveries. The worker is `python -m workers`, with the Procfile's settings, and
WEBHOOK_ALLOW_PRIVATE_URLS=1 (the receivers are on loopback).

Each of `--webhook-rounds` rounds runs, in this order:
* fan-out: `--webhook-events` events queued for `--webhook-endpoints` healthy endpoints
  with no worker running, tables analysed, then the worker starts and delivers them;
  deliveries per second from the receiver's arrival times, from the end of the warm-up
  (a quarter of them at most, `--warmup`) to the last one; CPU per delivery;
* lag: `--webhook-hanging` endpoints of another user that never answer, with a backlog,
  and one healthy endpoint that is sent `--webhook-lag-events` events, one committed
  change at a time, `--webhook-lag-rate` a second; the lag of each is its arrival at the
  receiver minus the moment its transaction's COMMIT returned;
* job throughput: scenario 1's end-to-end drain of `--webhook-jobs` echo jobs (queued
  as scenario 2 queues its backlog), once as is and once with the jobs' owner holding
  an endpoint for `job.completed` (every job then fires a webhook, delivered while the
  drain runs), in rotating order; the ratio is taken within the round.
Then, unless `--webhook-round-trip-events` is 0, a fan-out once more with the worker
talking to PostgreSQL through `devtools.wire`'s counting proxy: round trips and
statements per delivery, from the worker's start to the last delivery (not timed; the
worker's start and its idle workers' polls are counted too).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.arms import BacklogArm, Drain, median_cpu, spread
from bench.harness import Harness, Scenario, at_least, logger, ratio, wait_for
from bench.report import percentile, shown_spread, summary
from bench.system import log_dir_for, start_worker, wait_until_ready
from devtools.processes import Process, free_port
from devtools.wire import WireCounter

SCENARIO = "8 webhooks"
EVENT_BATCH = 500
# A job as `job.completed` carries it: the event's size is about a real one's.
SAMPLE_JOB = {
    "name": "nightly report",
    "kind": "echo",
    "status": "completed",
    "params": {"report": "sales", "region": "emea", "rows": 1200},
    "attempts": 1,
    "max_attempts": 3,
    "priority": 0,
    "scheduled_time": "2026-12-05T01:00:00+00:00",
    "created_at": "2026-12-05T00:59:58.123456+00:00",
    "started_at": "2026-12-05T01:00:00.041213+00:00",
    "finished_at": "2026-12-05T01:00:00.052117+00:00",
    "result": {"echo": {"report": "sales", "region": "emea", "rows": 1200}},
}


class ReceiverProcess:
    """`bench.webhook_receiver` in a process of its own, and its control calls."""

    def __init__(self, harness: Harness) -> None:
        self.port = free_port()
        log_path = log_dir_for(harness.database.name) / "webhook-receiver.log"
        argv = [sys.executable, "-m", "bench.webhook_receiver", "--port", str(self.port)]
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        process = Process("webhook-receiver", argv, harness.env, log_path)
        self.process = wait_until_ready(process, self._answers, "answer")

    def _answers(self) -> bool:
        try:
            return self.http.get("/control/counts").status_code == 200
        except httpx.HTTPError:
            return False

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def declare(self, name: str, secret: str, mode: str = "ok") -> None:
        answer = self.http.put(f"/control/endpoints/{name}", json={"secret": secret, "mode": mode})
        answer.raise_for_status()

    def release(self, name: str) -> None:
        self.http.post(f"/control/release/{name}").raise_for_status()

    def counts(self) -> dict[str, Any]:
        return self.http.get("/control/counts").json()

    def stats(self) -> dict[str, Any]:
        return self.http.get("/control/stats").json()

    def close(self) -> None:
        self.http.close()
        self.process.stop()


@dataclass
class Endpoint:
    name: str
    user_id: int
    endpoint_id: int


class Webhooks(Scenario):
    selected_by = frozenset({"8"})
    needs_web = False
    summary_keys = (
        "webhook_deliveries_per_s",
        "webhook_lag_p99_s",
        "webhook_jobs_with_per_without",
        "webhook_round_trips_per_delivery",
    )

    def __init__(self) -> None:
        self._made = 0

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("scenario 8, webhooks")
        group.add_argument("--webhook-rounds", type=at_least(1), default=3, help="rounds")
        group.add_argument(
            "--webhook-endpoints",
            type=at_least(1),
            default=8,
            help="healthy endpoints (one user each) sharing the fan-out's events",
        )
        group.add_argument(
            "--webhook-events",
            type=at_least(4),
            default=3000,
            help="events delivered in each round's fan-out, over every endpoint",
        )
        group.add_argument(
            "--webhook-hanging",
            type=at_least(1),
            default=1,
            help="endpoints that never answer during the lag measurement",
        )
        group.add_argument(
            "--webhook-hanging-backlog",
            type=at_least(1),
            default=200,
            help="events queued for each hanging endpoint before the lag measurement",
        )
        group.add_argument(
            "--webhook-lag-events",
            type=at_least(1),
            default=100,
            help="changes committed for the healthy endpoint in each round's lag measurement",
        )
        group.add_argument(
            "--webhook-lag-rate",
            type=float,
            default=20.0,
            help="changes committed per second during the lag measurement",
        )
        group.add_argument(
            "--webhook-jobs",
            type=at_least(2),
            # At ~2,000 jobs/s a drain of 1,000 lasted half a second, and the deliveries
            # that trailed past its last job were outside the rate: a flattering ratio.
            default=4000,
            help="echo jobs per drain in the job throughput comparison",
        )
        group.add_argument(
            "--webhook-round-trip-events",
            type=int,
            default=1000,
            help="events delivered through the counting proxy for round trips (0: skip)",
        )

    def run(self, harness: Harness) -> None:
        settings = harness.settings
        harness.stop_worker()  # this scenario starts its own workers
        saved_env = harness.env.get("WEBHOOK_ALLOW_PRIVATE_URLS")
        harness.env["WEBHOOK_ALLOW_PRIVATE_URLS"] = "1"
        harness.app.config["WEBHOOK_ALLOW_PRIVATE_URLS"] = True
        receiver = ReceiverProcess(harness)
        fan_outs: list[dict[str, Any]] = []
        lags: list[dict[str, Any]] = []
        jobs: dict[str, list[dict[str, Any]]] = {"plain": [], "webhook": []}
        wire_run: dict[str, Any] = {}
        try:
            for number in range(1, settings.webhook_rounds + 1):
                fan_outs.append(self.fan_out(harness, receiver, number))
                lags.append(self.lag(harness, receiver, number))
                arms: list[BacklogArm] = [
                    PlainArm(harness),
                    WebhookArm(harness, receiver, self.next_name("jobs")),
                ]
                warmup = min(settings.warmup, settings.webhook_jobs // 4)
                shift = (number - 1) % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    key = "webhook" if isinstance(arm, WebhookArm) else "plain"
                    logger.info(
                        "scenario 8 (round %d): job throughput %s webhooks, %d jobs",
                        number,
                        "with" if key == "webhook" else "without",
                        settings.webhook_jobs,
                    )
                    drain = Drain(
                        arm,
                        settings.webhook_jobs,
                        warmup,
                        settings.drain_timeout,
                        harness.check_processes,
                    )
                    result = drain.run(number)
                    if isinstance(arm, WebhookArm):
                        result.update(arm.delivered())
                    jobs[key].append(result)
            if settings.webhook_round_trip_events > 0:
                wire_run = self.round_trips(harness, receiver)
        finally:
            receiver.close()
            if saved_env is None:
                harness.env.pop("WEBHOOK_ALLOW_PRIVATE_URLS", None)
            else:
                harness.env["WEBHOOK_ALLOW_PRIVATE_URLS"] = saved_env
        harness.report.details["8_webhooks"] = {
            "fan_out": fan_outs,
            "lag": lags,
            "jobs": jobs,
            "round_trip_pass": wire_run,
        }
        add_rows(harness, fan_outs, lags, jobs, wire_run)

    # --- building blocks ------------------------------------------------------------------

    def next_name(self, label: str) -> str:
        self._made += 1
        return f"{label}-{self._made}-{time.monotonic_ns()}"

    def endpoint(
        self,
        harness: Harness,
        receiver: ReceiverProcess,
        label: str,
        mode: str = "ok",
        types: list[str] | None = None,
    ) -> Endpoint:
        name = self.next_name(label)
        user_id, _token = harness.make_user(f"webhooks-{name}")
        return make_endpoint(harness, receiver, name, user_id, mode, types)

    def start_worker(self, harness: Harness, database_url: str | None = None) -> Process:
        env = {**harness.env, "DATABASE_URL": database_url or harness.database.url}
        return start_worker("worker", "workers", env, harness.database)

    def fan_out(
        self,
        harness: Harness,
        receiver: ReceiverProcess,
        number: int,
        wire: WireCounter | None = None,
    ) -> dict[str, Any]:
        settings = harness.settings
        count = settings.webhook_round_trip_events if wire else settings.webhook_events
        endpoints = [
            self.endpoint(harness, receiver, "fan-out") for _ in range(settings.webhook_endpoints)
        ]
        per_endpoint = [count // len(endpoints)] * len(endpoints)
        for index in range(count % len(endpoints)):
            per_endpoint[index] += 1
        logger.info(
            "scenario 8 (round %s): fan-out of %d events to %d endpoints",
            number or "counting",
            count,
            len(endpoints),
        )
        for endpoint, events in zip(endpoints, per_endpoint, strict=True):
            emit(harness, endpoint.user_id, range(events))
        harness.analyze()
        warmup = min(settings.warmup, count // 4)
        names = {endpoint.name for endpoint in endpoints}
        ids = [endpoint.endpoint_id for endpoint in endpoints]

        def received() -> int:
            counts = receiver.counts()
            return sum(counts[name]["received"] for name in names)

        # Round trips are counted over the whole fan-out, the worker's start included: a
        # short one may be over before a reading after the warm-up.
        wire_before = wire.counts() if wire else None
        texts_before = wire.statement_texts() if wire else None
        worker = self.start_worker(harness, wire.url if wire else None)
        try:
            check = harness.check_processes
            wait_for("webhook fan-out warm-up", lambda: received() >= warmup, 60, check, 0.02)
            meter = harness.pg_meter(worker).start()
            done_before = received()
            wait_for(
                "webhook fan-out",
                lambda: received() >= count and pending(harness, ids) == 0,
                settings.drain_timeout,
                check,
                0.1,
            )
            done_after = received()
            wire_after = wire.counts() if wire else None
            texts_after = wire.statement_texts() if wire else None
            cpu = meter.stop()
        finally:
            worker.stop()
        stats = receiver.stats()
        arrivals = sorted(time for name in names for _seq, time in stats[name]["arrivals"])
        measured = len(arrivals) - max(warmup, 1)
        first = arrivals[warmup - 1] if warmup else arrivals[0]
        seconds = arrivals[-1] - first
        done = done_after - done_before
        result: dict[str, Any] = {
            "round": number,
            "events": count,
            "endpoints": len(endpoints),
            "warmup": warmup,
            "measured": measured,
            "seconds": seconds,
            "per_second": measured / seconds if seconds > 0 else math.nan,
            "received": sum(stats[name]["received"] for name in names),
            "distinct_ids": sum(stats[name]["distinct_ids"] for name in names),
            "failed_verification": sum(stats[name]["failed_verification"] for name in names),
            "max_connections_per_endpoint": max(stats[name]["max_connections"] for name in names),
            "not_succeeded": not_succeeded(harness, ids),
            "cpu_ms_per_delivery": {
                name: 1000 * value / done for name, value in cpu.items() if done > 0
            },
        }
        if wire and wire_before is not None and wire_after is not None:
            delta = wire_after - wire_before
            result["round_trips_per_delivery"] = delta.round_trips / count
            result["statements_per_delivery"] = delta.statements / count
            if texts_before is not None and texts_after is not None:
                result["statements"] = {
                    text: times / count
                    for text, times in (texts_after - texts_before).most_common(20)
                }
        return result

    def lag(self, harness: Harness, receiver: ReceiverProcess, number: int) -> dict[str, Any]:
        settings = harness.settings
        hanging = [
            self.endpoint(harness, receiver, "hanging", mode="hang")
            for _ in range(settings.webhook_hanging)
        ]
        for endpoint in hanging:
            emit(harness, endpoint.user_id, range(settings.webhook_hanging_backlog))
        healthy = self.endpoint(harness, receiver, "healthy")
        count = settings.webhook_lag_events
        logger.info(
            "scenario 8 (round %d): lag of %d changes, %g/s, beside %d hanging endpoint(s)",
            number,
            count,
            settings.webhook_lag_rate,
            len(hanging),
        )
        harness.analyze()
        worker = self.start_worker(harness)
        committed: dict[int, float] = {}
        try:
            check = harness.check_processes
            wait_for(
                "a hanging endpoint's request in flight",
                lambda: all(
                    receiver.counts()[endpoint.name]["in_flight"] > 0 for endpoint in hanging
                ),
                60,
                check,
                0.05,
            )
            interval = 1.0 / settings.webhook_lag_rate if settings.webhook_lag_rate > 0 else 0.0
            next_at = time.monotonic()
            with harness.app.app_context():
                for seq in range(count):
                    committed[seq] = emit_one(healthy.user_id, seq)
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
            wait_for(
                "the healthy endpoint's deliveries",
                lambda: receiver.counts()[healthy.name]["received"] >= count,
                settings.drain_timeout,
                check,
                0.05,
            )
            hanging_stats = {
                endpoint.name: receiver.counts()[endpoint.name] for endpoint in hanging
            }
            for endpoint in hanging:  # gone before the worker stops: nothing waits on them
                delete_endpoint(harness, endpoint)
                receiver.release(endpoint.name)
        finally:
            worker.stop()
        arrivals = {seq: at for seq, at in receiver.stats()[healthy.name]["arrivals"]}
        lags = [arrivals[seq] - at for seq, at in committed.items() if seq in arrivals]
        return {
            "round": number,
            "changes": count,
            "arrived": len(arrivals),
            "hanging_endpoints": len(hanging),
            "hanging_requests": sum(stats["received"] for stats in hanging_stats.values()),
            **summary(lags),
            "p50_s": percentile(lags, 0.5),
        }

    def round_trips(self, harness: Harness, receiver: ReceiverProcess) -> dict[str, Any]:
        wire = WireCounter(harness.database.url).start()
        try:
            return self.fan_out(harness, receiver, 0, wire=wire)
        finally:
            wire.stop()


class PlainArm(BacklogArm):
    """Scenario 1's end-to-end drain of echo jobs; the jobs are queued as scenario 2
    queues its backlog (one through the service, the others copied in SQL), which takes
    seconds instead of the minute one-by-one creation would."""

    key = "e2e"
    label = "jobboard end to end, echo"


class WebhookArm(PlainArm):
    """The same, with the jobs' owner holding an endpoint for `job.completed`: every job
    fires a webhook. Its drain ends once the deliveries are done too."""

    key = "e2e_webhook"
    label = "jobboard end to end, echo, with a job.completed webhook"

    def __init__(self, harness: Harness, receiver: ReceiverProcess, name: str) -> None:
        super().__init__(harness)
        self.receiver = receiver
        self.name = name

    def prepare(self, count: int, number: int) -> None:
        super().prepare(count, number)
        self.endpoint = make_endpoint(
            self.harness, self.receiver, self.name, self.owner_id, "ok", ["job.completed"]
        )

    def finished(self, count: int) -> bool:
        return super().finished(count) and pending(self.harness, [self.endpoint.endpoint_id]) == 0

    def delivered(self) -> dict[str, Any]:
        stats = self.receiver.counts()[self.name]
        return {
            "webhooks_received": stats["received"],
            "webhooks_distinct": stats["distinct_ids"],
            "webhooks_failed_verification": stats["failed_verification"],
        }


# --- endpoints and events -----------------------------------------------------------------


def make_endpoint(
    harness: Harness,
    receiver: ReceiverProcess,
    name: str,
    user_id: int,
    mode: str,
    types: list[str] | None = None,
) -> Endpoint:
    """An endpoint of `user_id` created by the service POST /api/webhooks/ runs, pointed
    at the receiver's `name`, which learns its secret."""
    from jobboard.extensions import db
    from jobboard.models import User
    from jobboard.webhooks.service import create_endpoint

    with harness.app.app_context():
        user = db.session.get(User, user_id)
        created = create_endpoint(user, receiver.url(name), types, f"bench {name}")
        endpoint_id = created.endpoint.id
        secret = created.secret
        db.session.remove()
    receiver.declare(name, secret, mode)
    return Endpoint(name, user_id, endpoint_id)


def delete_endpoint(harness: Harness, endpoint: Endpoint) -> None:
    from jobboard.extensions import db
    from jobboard.models import User
    from jobboard.webhooks.service import delete_endpoint as delete

    with harness.app.app_context():
        delete(db.session.get(User, endpoint.user_id), endpoint.endpoint_id)
        db.session.remove()


def event_data(seq: int) -> dict[str, Any]:
    return {"seq": seq, "by": "processor", "job": {"id": seq, **SAMPLE_JOB}}


def emit(harness: Harness, user_id: int, seqs: range) -> None:
    """`job.completed` events for `user_id`, EVENT_BATCH to a transaction."""
    from jobboard.events.outbox import EventRow, write_events
    from jobboard.extensions import db

    with harness.app.app_context():
        for start in range(seqs.start, seqs.stop, EVENT_BATCH):
            stop = min(start + EVENT_BATCH, seqs.stop)
            write_events(
                [EventRow("job.completed", user_id, event_data(seq)) for seq in range(start, stop)]
            )
            db.session.commit()
        db.session.remove()


def emit_one(user_id: int, seq: int) -> float:
    """One change's event, committed (in the caller's app context); when COMMIT returned."""
    from jobboard.events.outbox import EventRow, write_events
    from jobboard.extensions import db

    write_events([EventRow("job.completed", user_id, event_data(seq))])
    db.session.commit()
    return time.time()


def pending(harness: Harness, endpoint_ids: list[int]) -> int:
    return harness.scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ANY(%s)"
        " AND status = 'pending'",
        endpoint_ids,
    )


def not_succeeded(harness: Harness, endpoint_ids: list[int]) -> int:
    return harness.scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ANY(%s)"
        " AND status <> 'succeeded'",
        endpoint_ids,
    )


# --- the table ------------------------------------------------------------------------------


def add_rows(
    harness: Harness,
    fan_outs: list[dict[str, Any]],
    lags: list[dict[str, Any]],
    jobs: dict[str, list[dict[str, Any]]],
    wire_run: dict[str, Any],
) -> None:
    report, settings = harness.report, harness.settings
    rounds = len(fan_outs)
    rates = spread([run["per_second"] for run in fan_outs])
    report.add(
        SCENARIO,
        f"deliveries/s to {settings.webhook_endpoints} healthy endpoints, median (min-max),"
        f" {rounds} rounds x {settings.webhook_events} events",
        shown_spread(rates),
        "",
        ">= 500",
        None if math.isnan(rates["median"]) else rates["median"] >= 500,
    )
    cpu = median_cpu([run["cpu_ms_per_delivery"] for run in fan_outs])
    if cpu:
        shown = ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
        report.add(SCENARIO, "fan-out: CPU ms per delivery (median)", shown)
    lost = sum(run["events"] - run["distinct_ids"] for run in fan_outs)
    lost += sum(run["not_succeeded"] for run in fan_outs)
    report.add(SCENARIO, "fan-out: events not delivered or not succeeded", lost, "", "0", lost == 0)
    unverified = sum(run["failed_verification"] for run in fan_outs)
    unverified += sum(run.get("webhooks_failed_verification", 0) for run in jobs["webhook"])
    report.add(
        SCENARIO,
        "requests standardwebhooks refused to verify",
        unverified,
        "",
        "0",
        unverified == 0,
    )
    # Each connection carries one request at a time (HTTP/1.1, no pipelining).
    connections = max(run["max_connections_per_endpoint"] for run in fan_outs)
    report.add(
        SCENARIO,
        "most connections open to one endpoint at once",
        connections,
        "",
        "<= 2",
        connections <= 2,
    )

    p99 = spread([run["p99"] for run in lags])
    p50 = spread([run["p50_s"] for run in lags])
    hanging = f"{settings.webhook_hanging} endpoint(s) of another user hanging"
    report.add(
        SCENARIO,
        f"lag commit -> receiver p50, beside {hanging}, median (min-max)",
        shown_spread(p50, 3),
        "s",
    )
    report.add(
        SCENARIO,
        f"lag commit -> receiver p99, {settings.webhook_lag_events} changes at"
        f" {settings.webhook_lag_rate:g}/s, median (min-max)",
        shown_spread(p99, 3),
        "s",
        "<= 1 s",
        None if math.isnan(p99["median"]) else p99["median"] <= 1.0,
    )
    report.add(SCENARIO, "lag max (all rounds)", max(run["max"] for run in lags), "s")
    late = sum(run["changes"] - run["arrived"] for run in lags)
    report.add(SCENARIO, "lag: changes never delivered", late, "", "0", late == 0)

    plain = [run["per_second"] for run in jobs["plain"]]
    with_hooks = [run["per_second"] for run in jobs["webhook"]]
    jobs_text = f"{rounds} rounds x {settings.webhook_jobs} jobs"
    report.add(
        SCENARIO,
        f"end to end jobs/s, no webhook, median (min-max), {jobs_text}",
        shown_spread(spread(plain)),
    )
    report.add(
        SCENARIO,
        "end to end jobs/s, a job.completed webhook per job, median (min-max)",
        shown_spread(spread(with_hooks)),
    )
    for key, label in (("plain", "no webhook"), ("webhook", "a webhook per job")):
        cpu_per_job = median_cpu([run["cpu_ms_per_job"] for run in jobs[key]])
        if cpu_per_job:
            shown = ", ".join(f"{name} {value:.2f}" for name, value in cpu_per_job.items())
            report.add(SCENARIO, f"end to end, {label}: CPU ms per job (median)", shown)
    per_round = spread([ratio(a, b) for a, b in zip(with_hooks, plain, strict=True)])
    report.add(
        SCENARIO,
        "with webhook / without, per round: median (min-max)",
        shown_spread(per_round, 2),
        "",
        ">= 0.9",
        None if math.isnan(per_round["median"]) else per_round["median"] >= 0.9,
    )
    missing = sum(run["jobs"] - run["webhooks_distinct"] for run in jobs["webhook"])
    report.add(SCENARIO, "job.completed webhooks not received", missing, "", "0", missing == 0)
    if wire_run:
        report.add(
            SCENARIO,
            f"DB round trips per delivery ({wire_run['events']} deliveries counted,"
            " the worker's start included)",
            wire_run["round_trips_per_delivery"],
        )
        report.add(SCENARIO, "DB statements per delivery", wire_run["statements_per_delivery"])

    report.summary.update(
        {
            "webhook_deliveries_per_s": rates["median"],
            "webhook_lag_p99_s": p99["median"],
            "webhook_jobs_with_per_without": per_round["median"],
            "webhook_round_trips_per_delivery": wire_run.get("round_trips_per_delivery"),
            "webhooks": {
                "deliveries_per_s": rates,
                "lag_p99_s": p99,
                "lag_p50_s": p50,
                "jobs_plain_per_s": spread(plain),
                "jobs_webhook_per_s": spread(with_hooks),
                "jobs_with_per_without": per_round,
                "cpu_ms_per_delivery": cpu,
            },
        }
    )
