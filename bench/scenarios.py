"""The scenarios of `python -m bench`, run against the processes `bench.system` started."""

from __future__ import annotations

import functools
import logging
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy
from flask import Flask

from bench import celery_noop
from bench.load import Client, LoadResult, run_load
from bench.report import Report, shown_spread, summary
from bench.system import (
    CpuMeter,
    Database,
    Process,
    log_dir_for,
    postmaster_pid,
    start_web,
    start_worker,
)
from bench.throughput import (
    Arm,
    BacklogArm,
    CeleryArm,
    Drain,
    EndToEndArm,
    RawArm,
    median_cpu,
    spread,
)
from bench.wire import WireCounter
from config import ProductionConfig, sqlalchemy_url
from tests.support.processes import free_port
from tests.support.smtp import SmtpServer

logger = logging.getLogger("bench")

PASSWORD = "correct horse battery staple"
# create_job refuses a scheduled_time that is not in the future when it checks; a request
# may wait in gunicorn's listen queue, a busy machine may pause us, so "now" is a moment
# ahead. It does not change the throughput figures: those start at the first job's start.
SCHEDULE_MARGIN = timedelta(seconds=2)
REGISTER_BLOCK = 10
BENCH_PLAN = "bench"


@dataclass
class Settings:
    jobs: int
    http_jobs: int
    http_concurrency: int
    timed_jobs: int
    timed_ahead: tuple[float, float]
    api_seed: int
    api_requests: int
    api_requests_serial: int
    register_requests: int
    smtp_delay: float
    web_workers: int
    scenarios: set[str]
    drain_timeout: float
    rounds: int
    warmup: int
    round_trip_jobs: int
    backlog_small: int
    backlog_large: int
    backlog_window: int
    backlog_rounds: int
    statement_requests: int


def now_utc() -> datetime:
    return datetime.now(UTC)


def ratio(numerator: float, denominator: float) -> float:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def wait_for(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    check: Callable[[], None],
    interval: float = 0.25,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(interval)


class Bench:
    """Holds what every scenario uses: the database, the processes, the in-process app
    (for the service-level variants) and the report."""

    def __init__(
        self,
        settings: Settings,
        report: Report,
        database: Database,
        env: dict[str, str],
        sink: SmtpServer,
        web: Process | None,
        web_port: int,
    ) -> None:
        self.settings = settings
        self.report = report
        self.database = database
        self.env = env
        self.sink = sink
        self.web = web
        self.web_port = web_port
        self.conn = database.connect()
        self.postmaster = postmaster_pid(self.conn)
        self.worker: Process | None = None

    # --- plumbing ------------------------------------------------------------------------

    @functools.cached_property
    def app(self) -> Flask:
        """The application as the web process configures it, for service calls here."""
        from jobboard import create_app

        config = type(
            "BenchConfig",
            (ProductionConfig,),
            {
                "DATABASE_URL": sqlalchemy_url(self.database.url),
                "SECRET_KEY": self.env["SECRET_KEY"],
                "JWT_SECRET_KEY": self.env["JWT_SECRET_KEY"],
                "JWT_ACCESS_TOKEN_EXPIRES": timedelta(hours=2),
                "MAIL_SERVER": "127.0.0.1",
                "MAIL_PORT": self.sink.port,
            },
        )
        return create_app(config)

    def close(self) -> None:
        from jobboard.extensions import db

        self.stop_worker()
        if "app" in self.__dict__:  # created on first use
            with self.app.app_context():
                db.session.remove()
                db.engine.dispose()
        self.conn.close()

    def check_processes(self) -> None:
        if self.web is not None:
            self.web.check_running()
        if self.worker is not None:
            self.worker.check_running()

    def start_worker(self) -> None:
        if self.worker is None:
            self.worker = start_worker("worker", "workers", self.env, self.database)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def scalar(self, query: str, *params: Any) -> Any:
        return self.conn.execute(query, params).fetchone()[0]

    def make_user(self, label: str) -> tuple[int, str]:
        """A verified user and an access token for it."""
        from flask_jwt_extended import create_access_token

        from jobboard.auth.passwords import hash_password
        from jobboard.extensions import db
        from jobboard.models import User

        with self.app.app_context():
            # The queue stays fair (the fetch rule is always on), but the benchmark's users
            # are on a plan whose quotas never refuse its load and whose running limit is
            # the whole worker: it measures the engine, not the free plan.
            db.session.execute(
                sqlalchemy.text(
                    "INSERT INTO plans (name, max_running_jobs, max_open_jobs, jobs_per_day,"
                    " max_params_bytes, bids_per_day)"
                    f" VALUES ('{BENCH_PLAN}', 1000, 1000000, 1000000, 65536, 1000)"
                    " ON CONFLICT (name) DO NOTHING"
                )
            )
            user = User(
                email=f"bench-{label}@example.com",
                password_hash=hash_password(PASSWORD),
                is_email_verified=True,
                plan_name=BENCH_PLAN,
            )
            db.session.add(user)
            db.session.commit()
            return user.id, create_access_token(identity=str(user.id))

    @contextmanager
    def job_service(self, owner_id: int) -> Iterator[Callable[[dict[str, Any]], int]]:
        """`create(payload) -> job id` through the code path POST /api/jobs/ runs:
        the request schema, then `jobboard.jobs.service.create_job`."""
        from jobboard.extensions import db
        from jobboard.jobs.schemas import JobIn
        from jobboard.jobs.service import create_job
        from jobboard.models import User

        schema = JobIn()
        with self.app.app_context():
            owner = db.session.get(User, owner_id)
            # In a request the caller is loaded fresh; here one detached copy serves every
            # call, instead of being reloaded after each commit expired it.
            db.session.expunge(owner)

            def create(payload: dict[str, Any]) -> int:
                job, _created = create_job(owner, schema.load(payload))
                return sqlalchemy.inspect(job).identity[0]  # without reloading the row

            yield create
            db.session.remove()

    def completed_jobs(self, owner_id: int) -> int:
        return self.scalar(
            "SELECT count(*) FROM jobs j JOIN job_results r ON r.job_id = j.id "
            "WHERE j.owner_id = %s AND j.status = 'completed'",
            owner_id,
        )

    def job_span(self, owner_id: int) -> dict[str, Any]:
        """First start to last finish of a user's jobs, from the job rows, and the same
        from Procrastinate's own events (which also count the worker's app start-up)."""
        row = self.conn.execute(
            "SELECT count(*) FILTER (WHERE j.status = 'completed' AND r.job_id IS NOT NULL),"
            " count(*), min(j.started_at), max(j.finished_at), min(j.created_at)"
            " FROM jobs j LEFT JOIN job_results r ON r.job_id = j.id WHERE j.owner_id = %s",
            (owner_id,),
        ).fetchone()
        completed, total, first_start, last_finish, first_created = row
        events = self.conn.execute(
            "SELECT min(e.at) FILTER (WHERE e.type = 'started'),"
            " max(e.at) FILTER (WHERE e.type = 'succeeded')"
            " FROM procrastinate_events e JOIN procrastinate_jobs q ON q.id = e.job_id"
            " JOIN jobs j ON j.queue_job_id = q.id WHERE j.owner_id = %s",
            (owner_id,),
        ).fetchone()
        seconds = (last_finish - first_start).total_seconds() if completed else math.nan
        event_seconds = (events[1] - events[0]).total_seconds() if events[0] else math.nan
        return {
            "completed_with_result": completed,
            "jobs": total,
            "seconds": seconds,
            "per_second": ratio(completed, seconds),
            "engine_event_seconds": event_seconds,
            "engine_event_per_second": ratio(completed, event_seconds),
            "first_created_to_last_finish_seconds": (
                (last_finish - first_created).total_seconds() if completed else math.nan
            ),
        }

    def database_backends(self) -> list[int]:
        """PostgreSQL backends serving our database, except our own connection."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [row[0] for row in rows]

    def has_queued_entries(self, owner_id: int) -> bool:
        """Whether any of a user's queue entries still waits or runs. Two probes of the
        fair queue's partial indexes on the owner (migrations/sql/fair_queue_0004.sql), so
        the cost does not grow with the backlog: the join over the user's jobs this
        replaces took 35 ms with 50,000 queued and, polled every 10 ms during a warm-up,
        took a core from the worker it was measuring (scenario 2 read 0.17)."""
        return self.scalar(
            "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status = 'todo'"
            "   AND args ? 'owner_id' AND (args->>'owner_id')::bigint = %s)"
            " OR EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status = 'doing'"
            "   AND args ? 'owner_id' AND (args->>'owner_id')::bigint = %s)",
            owner_id,
            owner_id,
        )

    def drain(self, what: str, owner_id: int, count: int) -> int:
        """Wait until a user's `count` jobs completed, or their queue entries are all
        finished without completing some (a bug the table then shows); returns how many
        did not complete."""
        wait_for(
            what,
            lambda: self.completed_jobs(owner_id) >= count or not self.has_queued_entries(owner_id),
            self.settings.drain_timeout,
            self.check_processes,
        )
        missing = count - self.completed_jobs(owner_id)
        if missing:
            logger.warning(
                "%s: %d of %d jobs did not complete; see %s",
                what,
                missing,
                count,
                self.worker.log_path if self.worker else "the worker log",
            )
        return missing

    def add_missing_row(self, scenario: str, missing: int) -> None:
        if missing:
            self.report.add(scenario, "jobs that never completed", missing, "", "0", False)

    def lateness(self, owner_id: int) -> dict[str, Any]:
        """started_at - scheduled_time of a user's jobs; also checks the engine's own
        start (Procrastinate's `started` event) against the queue entry's schedule."""
        rows = self.conn.execute(
            "SELECT extract(epoch FROM j.started_at - j.scheduled_time)::float8,"
            " (SELECT extract(epoch FROM min(e.at) - q.scheduled_at)::float8"
            "    FROM procrastinate_events e WHERE e.job_id = q.id AND e.type = 'started')"
            " FROM jobs j JOIN procrastinate_jobs q ON q.id = j.queue_job_id"
            " WHERE j.owner_id = %s AND j.started_at IS NOT NULL",
            (owner_id,),
        ).fetchall()
        lateness = [row[0] for row in rows]
        engine = [row[1] for row in rows if row[1] is not None]
        # Procrastinate serves due jobs by priority, then queue order: jobs queued earlier
        # and due no later that had not started yet when this one came due ran first.
        waiting_ahead = [
            row[0]
            for row in self.conn.execute(
                "SELECT (SELECT count(*) FROM jobs o"
                "        WHERE o.queue_job_id < j.queue_job_id"
                "          AND o.scheduled_time <= j.scheduled_time"
                "          AND o.priority >= j.priority"
                "          AND (o.started_at IS NULL OR o.started_at > j.scheduled_time))"
                " FROM jobs j WHERE j.owner_id = %s",
                (owner_id,),
            ).fetchall()
        ]
        return {
            **summary(lateness),
            "early_starts": sum(1 for value in lateness if value < 0),
            "engine_early_starts": sum(1 for value in engine if value < 0),
            "engine_lateness": summary(engine),
            "waiting_ahead": summary(waiting_ahead),
        }

    def create_timed_jobs(self, owner_id: int, count: int) -> None:
        """`count` echo jobs, each due between `timed_ahead` seconds after its creation
        (evenly spread over that window)."""
        low, high = self.settings.timed_ahead
        with self.job_service(owner_id) as create:
            for index in range(count):
                ahead = low + (high - low) * index / max(count - 1, 1)
                create(
                    {
                        "name": f"timed {index}",
                        "kind": "echo",
                        "params": {"index": index},
                        "scheduled_time": (now_utc() + timedelta(seconds=ahead)).isoformat(),
                    }
                )

    def add_timeliness_rows(self, label: str, figures: dict[str, Any], p99_target: float) -> None:
        report = self.report
        scenario = f"3 timeliness, {label}"
        report.add(scenario, f"lateness p50 ({figures['count']} jobs)", figures["p50"], "s")
        report.add(
            scenario,
            "lateness p99",
            figures["p99"],
            "s",
            f"<= {p99_target:g} s",
            figures["p99"] <= p99_target,
        )
        report.add(scenario, "lateness max", figures["max"], "s")
        early = figures["early_starts"] + figures["engine_early_starts"]
        report.add(scenario, "jobs started early", early, "", "0", early == 0)

    # --- scenario 1: queue throughput, interleaved arms ----------------------------------

    def analyze(self) -> None:
        """Steady state: fresh statistics after bulk inserts and the previous drain's dead
        rows gone, as autovacuum would have them later (without statistics each fetch
        sorts every queued row). VACUUM as well as ANALYZE: a server may run with
        autovacuum off (this machine's does; the table shows it), and the rows earlier
        drains left dead would then weigh on every later arm."""
        self.conn.execute("VACUUM ANALYZE")

    def pg_meter(self, worker: Process) -> CpuMeter:
        """The worker's process tree; `postgres`: the backends serving the benchmark's
        database (the work its clients cause); `postgres_shared`: the server's own
        processes (WAL writer, checkpointer, autovacuum...), which serve every database
        on the server, so that figure includes other users' load on a shared server."""
        groups: dict[str, Callable[[], list[int]]] = {}
        if self.postmaster:
            groups = {
                "postgres": self.database_backends,
                "postgres_shared": self.server_processes,
            }
        return CpuMeter(groups, worker=worker.popen.pid)

    def server_processes(self) -> list[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
        ).fetchall()
        return [row[0] for row in rows] + ([self.postmaster] if self.postmaster else [])

    def clone_job(self, template_id: int, count: int) -> None:
        """`count` copies of a job row and of its queue entry, each with its own id, its
        own `job_id` argument and lock (the template's id in them replaced)."""
        if count <= 0:
            return
        columns = [
            row[0]
            for row in self.conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'jobs'"
                " AND column_name NOT IN ('id', 'queue_job_id') ORDER BY ordinal_position"
            ).fetchall()
        ]
        queue_columns = [
            row[0]
            for row in self.conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'procrastinate_jobs'"
                " AND column_name NOT IN ('id', 'lock', 'queueing_lock', 'args')"
                " ORDER BY ordinal_position"
            ).fetchall()
        ]
        job_list = ", ".join(columns)
        queue_list = ", ".join(queue_columns)
        queue_copied = ", ".join(f"q.{name}" for name in queue_columns)
        with self.conn.transaction():
            # Two statements: the rows a data-modifying CTE inserts are invisible to the
            # rest of its own statement.
            clone_ids = [
                row[0]
                for row in self.conn.execute(
                    f"INSERT INTO jobs ({job_list})"
                    f" SELECT {job_list} FROM jobs, generate_series(1, %(count)s)"
                    f" WHERE id = %(template)s RETURNING id",
                    {"count": count, "template": template_id},
                ).fetchall()
            ]
            self.conn.execute(
                f"WITH entries AS ("
                f"   INSERT INTO procrastinate_jobs ({queue_list}, lock, queueing_lock, args)"
                f"   SELECT {queue_copied},"
                f"     regexp_replace(q.lock, %(template)s::text || '$', c.id::text),"
                f"     regexp_replace(q.queueing_lock, %(template)s::text || '$', c.id::text),"
                f"     jsonb_set(q.args, '{{job_id}}', to_jsonb(c.id))"
                f"   FROM unnest(%(ids)s::bigint[]) AS c(id),"
                f"     jobs t JOIN procrastinate_jobs q ON q.id = t.queue_job_id"
                f"   WHERE t.id = %(template)s"
                f"   ORDER BY c.id"
                f"   RETURNING id, (args ->> 'job_id')::bigint AS job_id)"
                f" UPDATE jobs SET queue_job_id = e.id FROM entries e WHERE jobs.id = e.job_id",
                {"ids": clone_ids, "template": template_id},
            )

    def now(self) -> datetime:
        return now_utc()

    def throughput(self) -> float | None:
        """Raw Procrastinate, jobboard end to end and Celery + Redis, each drained
        `rounds` times in rotating order, so that drift on a shared machine weighs on
        every arm; then a counting pass for round trips. Returns the raw arm's median
        rate, the baseline of scenario 2's HTTP variant."""
        settings = self.settings
        self.stop_worker()  # jobboard's worker listens on every queue: each arm runs alone
        warmup = min(settings.warmup, settings.jobs // 4)
        arms: list[Arm] = [RawArm(self), EndToEndArm(self)]
        celery_reason = celery_noop.unavailable()
        celery: CeleryArm | None = None
        if celery_reason is None:
            celery = CeleryArm(self)
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
                    drain = Drain(arm, settings.jobs, warmup, settings.drain_timeout, self.check)
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
        wire_runs = self.round_trips(arms[:2]) if settings.round_trip_jobs > 0 else {}
        self.report.details["1_throughput"] = {
            "rounds": runs,
            "round_trip_pass": wire_runs,
            "warmup": warmup,
            "celery_unavailable": celery_reason,
        }
        self.add_throughput_rows(runs, wire_runs, celery_reason)
        raw = self.report.summary.get("raw_jobs_per_s")
        return raw if isinstance(raw, float) and not math.isnan(raw) else None

    def check(self) -> None:
        self.check_processes()

    def round_trips(self, arms: list[Arm]) -> dict[str, dict[str, Any]]:
        """Each PostgreSQL arm once more, its worker talking to the database through a
        counting proxy (`bench.wire`): round trips and statements per job. Not timed."""
        settings = self.settings
        count = settings.round_trip_jobs
        warmup = min(settings.warmup, count // 4)
        wire = WireCounter(self.database.url).start()
        results: dict[str, dict[str, Any]] = {}
        try:
            for arm in arms:
                logger.info("scenario 1: counting round trips, %s, %d jobs", arm.label, count)
                drain = Drain(arm, count, warmup, settings.drain_timeout, self.check, wire=wire)
                results[arm.key] = drain.run(0)
        finally:
            wire.stop()
        return results

    def add_throughput_rows(
        self,
        runs: dict[str, list[dict[str, Any]]],
        wire_runs: dict[str, dict[str, Any]],
        celery_reason: str | None,
    ) -> None:
        report, settings = self.report, self.settings
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
            ("end to end / raw, per round", e2e_per_raw, 0.9),
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
            target = "<= 4" if key == "e2e" else ""
            value = run["round_trips_per_job"]
            report.add(
                scenario,
                f"{labels[key]}: DB round trips per job ({run['measured_jobs']} jobs counted)",
                value,
                "",
                target,
                (value <= 4) if key == "e2e" else None,
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

    # --- scenario 2: fetch cost vs backlog -------------------------------------------------

    def backlog(self) -> None:
        """The end-to-end rate with a small and with a large queued backlog: the same
        number of completions measured, only the number of jobs waiting differs."""
        settings = self.settings
        self.stop_worker()
        sizes = (settings.backlog_small, settings.backlog_large)
        measured = min(settings.backlog_window, *sizes)
        warmup = min(settings.warmup, measured // 4)
        arm = BacklogArm(self)
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
                    arm, size, warmup, settings.drain_timeout, self.check, stop_at=measured
                )
                runs[size].append(drain.run(number))
        small, large = (spread([run["per_second"] for run in runs[size]]) for size in sizes)
        backlog_ratio = spread(
            [
                ratio(a["per_second"], b["per_second"])
                for a, b in zip(runs[sizes[1]], runs[sizes[0]], strict=True)
            ]
        )
        self.report.details["2_backlog"] = {str(size): runs[size] for size in sizes}
        scenario = "2 fetch cost vs backlog"
        for size, figures in ((sizes[0], small), (sizes[1], large)):
            self.report.add(
                scenario,
                f"end to end, {size:,} queued: jobs/s over {measured - warmup} completions",
                shown_spread(figures),
            )
        self.report.add(
            scenario,
            f"rate at {sizes[1]:,} / rate at {sizes[0]:,}",
            backlog_ratio["median"],
            "",
            ">= 0.9",
            backlog_ratio["median"] >= 0.9,
        )
        self.report.summary.update(
            {
                "backlog_small": sizes[0],
                "backlog_large": sizes[1],
                "backlog_small_jobs_per_s": small["median"],
                "backlog_large_jobs_per_s": large["median"],
                "backlog_large_per_small": backlog_ratio["median"],
            }
        )

    # --- scenario 3, idle ------------------------------------------------------------------

    def timeliness_idle(self) -> None:
        count = self.settings.timed_jobs
        self.start_worker()
        owner_id, _token = self.make_user("timed-idle")
        logger.info(
            "scenario 3: %d jobs scheduled %s s ahead, idle worker",
            count,
            "-".join(f"{value:g}" for value in self.settings.timed_ahead),
        )
        self.create_timed_jobs(owner_id, count)
        missing = self.drain("scenario 3 (idle)", owner_id, count)
        figures = self.lateness(owner_id)
        self.report.details["3_timeliness_idle"] = figures
        self.add_timeliness_rows("idle", figures, 0.25)
        self.add_missing_row("3 timeliness, idle", missing)

    # --- scenario 2 through HTTP, and scenario 3 under its load ------------------------

    def end_to_end_http_under_load(self, baseline: float | None) -> None:
        """Clients POST echo jobs while the worker drains them (scenario 2 through HTTP).
        Scenario 3 under that load: one group of jobs scheduled ahead is queued just
        before the clients start, another once the drain is under way."""
        settings = self.settings
        self.start_worker()
        http_owner, token = self.make_user("e2e-http")
        before_owner, _token = self.make_user("timed-before-load")
        during_owner, _token = self.make_user("timed-during-load")
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

        self.create_timed_jobs(before_owner, settings.timed_jobs)
        outcome: list[LoadResult] = []
        load = threading.Thread(
            target=lambda: outcome.append(
                run_load(self.web_port, post_job, settings.http_jobs, settings.http_concurrency)
            ),
            daemon=True,
        )
        load.start()
        wait_for(
            "scenario 2 (HTTP): first job started",
            lambda: (
                not load.is_alive()
                or self.scalar(
                    "SELECT count(*) FROM jobs WHERE owner_id = %s AND started_at IS NOT NULL",
                    http_owner,
                )
                > 0
            ),
            60,
            self.check_processes,
            interval=0.05,
        )
        self.create_timed_jobs(during_owner, settings.timed_jobs)
        load.join()
        posted = outcome[0]
        accepted = posted.statuses.get(201, 0)
        missing_http = self.drain("scenario 2 (HTTP) drain", http_owner, accepted)
        span = self.job_span(http_owner)
        span["post"] = posted.as_dict()
        self.report.details["2_end_to_end_http"] = span
        scenario = "2 end-to-end, HTTP"
        self.report.add(
            scenario,
            f"jobs/s completed ({span['completed_with_result']} jobs, posted and drained at once)",
            span["per_second"],
            "jobs/s",
        )
        if baseline is not None:
            self.report.add(
                scenario,
                "ratio to raw Procrastinate (scenario 1 median)",
                ratio(span["per_second"], baseline),
            )
        self.report.add(
            scenario,
            f"POST /api/jobs/ while draining (c={settings.http_concurrency})",
            posted.per_second,
            "req/s",
        )
        self.add_missing_row(scenario, missing_http)
        if posted.unexpected(201):
            self.report.add(
                scenario, "POSTs not answered 201", posted.unexpected(201), "", "0", False
            )

        load_window = self.conn.execute(
            "SELECT min(started_at), max(finished_at) FROM jobs WHERE owner_id = %s",
            (http_owner,),
        ).fetchone()
        for label, owner_id in (
            ("under load, queued before it", before_owner),
            ("under load, queued during it", during_owner),
        ):
            missing = self.drain(f"scenario 3 ({label})", owner_id, settings.timed_jobs)
            figures = self.lateness(owner_id)
            figures["due_during_load"] = self.scalar(
                "SELECT count(*) FROM jobs"
                " WHERE owner_id = %s AND scheduled_time BETWEEN %s AND %s",
                owner_id,
                *load_window,
            )
            self.report.details[f"3_timeliness_{label.replace(' ', '_').replace(',', '')}"] = (
                figures
            )
            self.add_timeliness_rows(label, figures, 1.0)
            scenario = f"3 timeliness, {label}"
            self.report.add(
                scenario,
                "earlier-due jobs still waiting when it came due (p50 / max)",
                f"{figures['waiting_ahead']['p50']:g} / {figures['waiting_ahead']['max']:g}",
            )
            self.report.add(
                scenario,
                "due while the load ran",
                f"{figures['due_during_load']}/{figures['count']}",
            )
            self.add_missing_row(scenario, missing)

    # --- scenario 4 ------------------------------------------------------------------------

    def seed_jobs(self, owner_id: int, count: int) -> None:
        """`count` completed echo jobs with results, in two INSERT ... SELECTs."""
        self.conn.execute(
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
        self.conn.execute(
            "INSERT INTO job_results (job_id, output, completed_at, duration_ms)"
            " SELECT id, params, finished_at, 5 FROM jobs WHERE owner_id = %s",
            (owner_id,),
        )
        self.conn.execute("ANALYZE jobs")
        self.conn.execute("ANALYZE job_results")

    def api(self) -> None:
        settings = self.settings
        self.start_worker()  # as deployed: the worker polls the same database meanwhile
        reader, reader_token = self.make_user("api-reader")
        _writer, writer_token = self.make_user("api-writer")
        logger.info("scenario 4: seeding %d jobs", settings.api_seed)
        self.seed_jobs(reader, settings.api_seed)

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

        client = Client(self.web_port)
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
            run_load(self.web_port, factory, 4 * settings.web_workers, settings.web_workers)
            for concurrency, total in (
                (1, settings.api_requests_serial),
                (16, settings.api_requests),
            ):
                logger.info("scenario 4: %s x %d at concurrency %d", name, total, concurrency)
                result = run_load(self.web_port, factory, total, concurrency)
                results[f"{name} c={concurrency}"] = result
                scenario = f"4 API {name} c={concurrency}"
                self.report.add(
                    scenario, f"throughput ({total} requests)", result.per_second, "req/s"
                )
                self.report.add(scenario, "latency p50", result.p50, "s")
                self.report.add(
                    scenario,
                    "latency p99",
                    result.p99,
                    "s",
                    "reported" if concurrency == 16 else "",
                    True if concurrency == 16 else None,
                )
                if result.unexpected(expected):
                    self.report.add(
                        scenario,
                        f"answers other than {expected}",
                        result.unexpected(expected),
                        "",
                        "0",
                        False,
                    )
        self.report.details["4_api"] = {name: result.as_dict() for name, result in results.items()}
        self.report.details["4_api"]["seeded_jobs"] = settings.api_seed
        if settings.statement_requests > 0:
            self.api_statements({"GET /api/jobs/": list_jobs, "POST /api/jobs/": post_job})

    def api_statements(self, requests: dict[str, Callable[[int], Any]]) -> None:
        """Statements and round trips per request, counted by a proxy (`bench.wire`) in
        front of a gunicorn of its own (one worker) that only these requests reach,
        one at a time after a warm-up."""
        settings = self.settings
        wire = WireCounter(self.database.url).start()
        port = free_port()
        env = {**self.env, "DATABASE_URL": wire.url}
        counted: dict[str, dict[str, float]] = {}
        try:
            web = start_web(env, port, 1, log_dir_for(self.database.name), name="web-counted")
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
        self.report.details["4_api_statements"] = counted
        for name, target, key in (
            ("GET /api/jobs/", 3, "get_jobs_statements"),
            ("POST /api/jobs/", 4, "post_jobs_statements"),
        ):
            figures = counted[name]
            value = figures["statements_per_request"]
            self.report.add(
                f"4 API {name}",
                f"SQL statements per request ({figures['requests']} requests)",
                value,
                "",
                f"<= {target}",
                value <= target,
            )
            self.report.add(
                f"4 API {name}", "DB round trips per request", figures["round_trips_per_request"]
            )
            self.report.summary[key] = value

    # --- scenario 5 ------------------------------------------------------------------------

    def register(self) -> None:
        settings = self.settings
        self.start_worker()  # mail must flow to the sink while we measure
        stamp = int(time.time())

        def register_user(phase: str) -> Callable[[int], tuple[str, str, Any, dict[str, str]]]:
            def factory(index: int) -> tuple[str, str, Any, dict[str, str]]:
                body = {"email": f"reg-{stamp}-{phase}-{index}@example.com", "password": PASSWORD}
                return "POST", "/api/register/", body, {}

            return factory

        self.sink.mailbox.delay = 0.0
        run_load(self.web_port, register_user("warm"), 2 * settings.web_workers, 1)
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
                self.sink.mailbox.delay = delays[phase]
                received_before = self.sink.mailbox.received
                result = run_load(self.web_port, register_user(f"{phase}{block}"), size, 1)
                latencies[phase].extend(result.latencies)
                statuses[phase].update(result.statuses)
                delivered[phase] += self.sink.mailbox.received - received_before
            done += size
            block += 1
        mails_waiting = self.scalar(
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
                self.report.add(
                    f"5 register, SMTP {phase}",
                    "answers other than 201",
                    unexpected,
                    "",
                    "0",
                    False,
                )
        phases["mail_jobs_waiting_at_end"] = mails_waiting
        self.sink.mailbox.delay = 0.0  # let the backlog of mail drain quickly before we stop
        fast, slow = phases["fast"], phases["slow"]
        self.report.details["5_register"] = phases
        for phase in ("fast", "slow"):
            figures = phases[phase]
            scenario = f"5 register, SMTP {phase} ({figures['smtp_delay']:g} s)"
            self.report.add(
                scenario, f"latency p50 ({figures['count']} requests)", figures["p50"], "s"
            )
            self.report.add(scenario, "latency p99", figures["p99"], "s")
            self.report.add(
                scenario, "mails delivered meanwhile", figures["mails_delivered_meanwhile"]
            )
        scenario = "5 register, slow/fast"
        p50_ratio = ratio(slow["p50"], fast["p50"])
        self.report.add(scenario, "p50 ratio", p50_ratio, "", "<= 1.1", p50_ratio <= 1.1)
        self.report.add(scenario, "p99 ratio", ratio(slow["p99"], fast["p99"]))
