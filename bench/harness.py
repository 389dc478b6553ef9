"""What every scenario is given: the system under test and the means to measure it.

`Harness` holds the benchmark's database (and a connection to it), the processes
`bench.system` started (gunicorn, and the worker, which scenarios start and stop), the
SMTP sink, the application in process (for the service-level variants), the parsed
options and the report; its methods are the SQL and waiting helpers the scenarios
share. `Scenario` is what a scenario module provides; `bench.scenarios` lists them.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy
from flask import Flask

from bench.report import Report, summary
from bench.system import CpuMeter, postmaster_pid, start_worker
from config import ProductionConfig, sqlalchemy_url
from devtools.database import Database
from devtools.processes import Process
from devtools.smtp import SmtpServer

logger = logging.getLogger("bench")

PASSWORD = "correct horse battery staple"
# create_job refuses a scheduled_time that is not in the future when it checks; a request
# may wait in gunicorn's listen queue, a busy machine may pause us, so "now" is a moment
# ahead. It does not change the throughput figures: those start at the first job's start.
SCHEDULE_MARGIN = timedelta(seconds=2)
BENCH_PLAN = "bench"


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


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `minimum`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, not {value}")
        return value

    return parse


class Scenario:
    """One scenario of `python -m bench`: a module of `bench/scenarios/` defines a
    subclass and `bench.scenarios.SCENARIOS` lists an instance of it."""

    # The `--scenarios` numbers that run it (scenario 2's HTTP variant runs for 2 or 3).
    selected_by: frozenset[str] = frozenset()
    # Whether it needs gunicorn (started once, before the first scenario that does).
    needs_web = True
    # Whether `python -m bench` without --scenarios runs it (the default run must stay
    # under 10 minutes on 2 cores; a scenario at production size is asked for by number).
    in_default_run = True
    # Its headline figures in the JSON summary (null there when it did not run).
    summary_keys: tuple[str, ...] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Its options (their `dest` names are the keys of the JSON's settings.counts)."""

    def check_arguments(self, arguments: argparse.Namespace) -> str | None:
        """What is wrong with the options together, if anything."""
        return None

    def run(self, harness: Harness) -> None:
        raise NotImplementedError


class Harness:
    """The system under test, as every scenario uses it."""

    def __init__(
        self,
        settings: argparse.Namespace,
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

    # --- processes -------------------------------------------------------------------------

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

    def database_backends(self) -> list[int]:
        """PostgreSQL backends serving our database, except our own connection."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return [row[0] for row in rows]

    def server_processes(self) -> list[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'"
        ).fetchall()
        return [row[0] for row in rows] + ([self.postmaster] if self.postmaster else [])

    # --- users and jobs ----------------------------------------------------------------------

    def scalar(self, query: str, *params: Any) -> Any:
        return self.conn.execute(query, params).fetchone()[0]

    def analyze(self) -> None:
        """Steady state: fresh statistics after bulk inserts and the previous drain's dead
        rows gone, as autovacuum would have them later (without statistics each fetch
        sorts every queued row). VACUUM as well as ANALYZE: a server may run with
        autovacuum off (this machine's does; the table shows it), and the rows earlier
        drains left dead would then weigh on every later arm.

        Then a CHECKPOINT, so that the drain that follows starts right after one, as every
        other drain does: a timed checkpoint falling inside one drain and not another
        (every page's first change after a checkpoint writes the whole page to the WAL)
        moved scenario 2's rounds by a quarter either way. Without the right to
        (pg_checkpoint, on a server of DATABASE_URL's) the drains take their chances."""
        self.conn.execute("VACUUM ANALYZE")
        try:
            self.conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            logger.warning("no CHECKPOINT before the drain: not allowed on this server")

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

    # --- measuring -----------------------------------------------------------------------------

    def completed_jobs(self, owner_id: int) -> int:
        """A user's completed jobs. The job row turns `completed` in the statement that
        stores its result (both worker paths), so the count needs no join with the
        results: polled every 0.1 s, the join took 18-22 ms a reading once a drain was
        under way, a fifth of a core taken from the PostgreSQL it was measuring, and more
        with 50,000 jobs queued than with 5,000 (scenario 2's ratio read 0.86). The
        figures' own timestamps (`finish_times`) still come from the stored results."""
        return self.scalar(
            "SELECT count(*) FROM jobs WHERE owner_id = %s AND status = 'completed'",
            owner_id,
        )

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
