"""Long jobs hold at most LONG_JOB_SLOTS of a worker's slots, so short jobs of anyone find
a slot however many long jobs of however many users wait.

First the fetch rule itself (Procrastinate's fetch function called as its worker calls
it, with the worker's id and the setting the worker's connections carry); then the real
worker: long jobs of several users fill their share and a short job of another user
starts on time.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from config import PROJECT_ROOT, Config, libpq_url
from jobboard.extensions import db
from jobboard.models import Job, User, now_utc
from tests.support.jobs import Api, create_job, in_future, parse
from tests.support.polling import wait_until
from workers.__main__ import long_job_slots as checked_long_job_slots

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "migrations" / "sql"


# --- the fetch rule -------------------------------------------------------------------------


def new_worker() -> int:
    """A worker registered as Procrastinate's worker registers itself."""
    return db.session.scalar(text("SELECT worker_id FROM procrastinate_register_worker_v1()"))


def set_long_job_slots(slots: int | None) -> None:
    """What `python -m workers` sets on each of its connections (LONG_JOB_SLOTS), for the
    rest of the test's transaction."""
    if slots is not None:
        db.session.execute(
            text("SELECT set_config('jobboard.long_job_slots', :slots, true)"),
            {"slots": str(slots)},
        )


def queued(owner: User, *, long: bool, due_seconds_ago: float = 60, priority: int = 0) -> Job:
    """A job of a long kind (`sleep`) or a short one (`echo`), due `due_seconds_ago`."""
    kind, params = ("sleep", {"seconds": 1}) if long else ("echo", {})
    job = create_job(owner, kind=kind, params=params, priority=priority, scheduled_time=in_future())
    db.session.execute(
        text(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - make_interval(secs => :ago)"
            " WHERE id = :id"
        ),
        {"ago": due_seconds_ago, "id": job.queue_job_id},
    )
    return job


def fetch(worker: int | None) -> int | None:
    """Our job id of the entry that worker `worker` of the jobs queue starts next."""
    row = db.session.execute(
        text(
            "SELECT args FROM procrastinate_fetch_job_v2(ARRAY['jobs']::varchar[],"
            " CAST(:worker AS bigint))"
        ),
        {"worker": worker},
    ).one()
    return None if row.args is None else row.args["job_id"]


def finish(job: Job) -> None:
    db.session.execute(
        text("SELECT procrastinate_finish_job_v1(:id, 'succeeded', false)"),
        {"id": job.queue_job_id},
    )


def test_long_jobs_fill_the_workers_long_slots_and_a_short_job_still_starts(app, make_user):
    hogs, other = [make_user() for _ in range(3)], make_user()
    longs = {
        hog.id: [queued(hog, long=True, due_seconds_ago=60 - i) for i in range(2)] for hog in hogs
    }
    short = queued(other, long=False, due_seconds_ago=1)
    worker = new_worker()
    set_long_job_slots(2)

    first = [fetch(worker), fetch(worker)]
    # Two long jobs fill the long slots; the short job, due last, starts next, and the
    # other users' long jobs wait although they came due before it.
    assert len(set(first)) == 2 and all(
        job_id in {j.id for js in longs.values() for j in js} for job_id in first
    )
    assert fetch(worker) == short.id
    assert fetch(worker) is None
    # A long job ends: one more long one (and one only) takes its slot.
    finish(db.session.get(Job, first[0]))
    assert fetch(worker) is not None
    assert fetch(worker) is None


def test_with_the_long_slots_full_a_users_short_job_passes_their_long_ones(app, make_user):
    hog, user = make_user(), make_user()
    queued(hog, long=True, due_seconds_ago=90)
    queued(hog, long=True, due_seconds_ago=89)
    urgent_long = queued(user, long=True, due_seconds_ago=30, priority=100)
    later_short = queued(user, long=False, due_seconds_ago=10, priority=0)
    worker = new_worker()
    set_long_job_slots(2)
    assert fetch(worker) is not None and fetch(worker) is not None  # the hog's two

    # Priority would pick the urgent long job; only a short one can start now.
    assert fetch(worker) == later_short.id
    assert fetch(worker) is None
    assert db.session.get(Job, urgent_long.id).queue_job_id is not None


def test_the_long_slots_are_each_workers_own(app, make_user):
    users = [make_user() for _ in range(2)]
    for user in users:
        for i in range(2):
            queued(user, long=True, due_seconds_ago=60 - i)
    first, second = new_worker(), new_worker()
    set_long_job_slots(1)

    assert fetch(first) is not None
    assert fetch(first) is None  # its one long slot is taken
    # Another worker process (WORKER_PROCESSES, or another machine) has long slots of its own.
    assert fetch(second) is not None
    assert fetch(second) is None


def test_without_the_setting_or_a_worker_id_long_jobs_are_not_limited(app, make_user):
    """Only `python -m workers` sets LONG_JOB_SLOTS on its connections; a fetch without it
    (or without a worker id) applies the other rules only."""
    users = [make_user() for _ in range(2)]
    for user in users:
        for i in range(2):
            queued(user, long=True, due_seconds_ago=60 - i)
    worker = new_worker()
    assert [fetch(worker) is not None for _ in range(3)] == [True, True, True]
    set_long_job_slots(1)
    assert fetch(None) is not None


def heap_rows_read() -> int:
    return db.session.scalar(
        text(
            "SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'procrastinate_jobs'"
        )
    )


def test_with_the_long_slots_full_the_fetch_skips_a_long_backlog_through_indexes(app, make_user):
    """A user with 2,000 long jobs waiting and places left under their running limit: with
    the long slots full, the fetch finds another user's short job reading a handful of
    index rows, not the backlog."""
    hog, other = make_user(), make_user()
    hog.plan_name = "pro"
    db.session.commit()
    db.session.execute(text("SELECT jobboard_refresh_queue_owner(:id)"), {"id": hog.id})
    db.session.execute(
        text(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at, lock,"
            " queueing_lock)"
            " SELECT 'jobs', 'process_job',"
            " jsonb_build_object('job_id', -g, 'owner_id', :hog, 'long', true),"
            " now() - interval '1 hour', 'x-' || g, 'x-' || g FROM generate_series(1, 2000) g"
        ),
        {"hog": hog.id},
    )
    worker = new_worker()
    set_long_job_slots(2)
    assert fetch(worker) is not None and fetch(worker) is not None  # the long slots
    theirs = queued(other, long=False, due_seconds_ago=1)
    db.session.execute(text("ANALYZE procrastinate_jobs"))
    for _ in range(6):  # past PL/pgSQL's switch to a generic plan
        before = heap_rows_read()
        assert fetch(worker) == theirs.id
        logger.warning("heap rows read by the fetch: %s", heap_rows_read() - before)
        assert heap_rows_read() - before < 200, heap_rows_read() - before
        db.session.execute(
            text("UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL WHERE id = :id"),
            {"id": theirs.queue_job_id},
        )


# --- the real worker ---------------------------------------------------------------------------


class RunningLongJobs:
    """Counts `sleep` jobs in progress, every user's, every 50 ms from its own connection."""

    def __init__(self, database_url: str) -> None:
        self.url = libpq_url(database_url)
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM jobs WHERE kind = 'sleep' AND status = 'in_progress'"
                ).fetchone()
                self.samples.append(row[0])
                time.sleep(0.05)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples


def registered_workers(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]


@pytest.mark.parametrize(("processes", "hogs"), [(1, 3), (2, 4)])
def test_long_jobs_of_several_users_leave_a_short_job_of_another_its_slot(
    live_app, live_client, make_live_user, start_worker, fresh_database, processes, hogs
):
    """The attack, scaled to workers of 4 slots: the `sleep` jobs of a few users (free
    plans, two running each) could fill every slot, and another user's job waited for one
    to end. LONG_JOB_SLOTS (half of WORKER_CONCURRENCY by default) keeps two slots of each
    worker process for short jobs; with WORKER_PROCESSES=2 each process counts its own."""
    users = [make_live_user() for _ in range(hogs + 1)]
    owners = [Api(live_app, live_client, user.id) for user in users[:hogs]]
    other = Api(live_app, live_client, users[-1].id)
    start_worker(WORKER_CONCURRENCY="4", WORKER_PROCESSES=str(processes))
    # Each process registers two Procrastinate workers (jobs; mail + maintenance).
    wait_until(lambda: registered_workers(fresh_database) >= 2 * processes, timeout=20)
    share = 2 * processes
    running = RunningLongJobs(fresh_database)
    try:
        due = now_utc() + timedelta(seconds=3)  # after the last post, even under load
        sleepers = [
            (owner, owner.create(due, kind="sleep", params={"seconds": 6}))
            for owner in owners
            for _ in range(2)
        ]
        wait_until(lambda: max(running.samples, default=0) >= share, timeout=10)
        short = other.create(now_utc() + timedelta(seconds=1), kind="echo")

        done = other.wait_for_status(short["id"], "completed", timeout=15)
    finally:
        samples = running.stop()

    late = parse(done["started_at"]) - parse(done["scheduled_time"])
    logger.warning(
        "%d worker process(es): short job started %.3f s after its time; long jobs running at"
        " once: at most %d",
        processes,
        late.total_seconds(),
        max(samples),
    )
    assert timedelta(0) <= late < timedelta(seconds=2.5)
    assert max(samples) == share  # their share, filled, and no more
    for owner, job in sleepers:  # the waiting ones need not run
        owner.cancel(job["id"])


# --- the revision -------------------------------------------------------------------------------


def function_body(name: str) -> str:
    return db.session.scalar(text("SELECT prosrc FROM pg_proc WHERE proname = :n"), {"n": name})


def body_in(sql_file: str, function: str) -> str:
    sql = (SQL_DIR / sql_file).read_text()
    start = sql.index("AS $$", sql.index(function)) + len("AS $$")
    return sql[start : sql.index("$$;", start)]


def test_the_revision_marks_waiting_long_entries_and_its_downgrade_restores_0007(
    live_app, make_live_user
):
    owner = make_live_user()
    with live_app.app_context():
        sleeper = create_job(owner.id, kind="sleep", params={"seconds": 1})
        echo = create_job(owner.id, kind="echo", scheduled_time=in_future(60))
        sleeper_entry, echo_entry, echo_at = (
            sleeper.queue_job_id,
            echo.queue_job_id,
            echo.scheduled_time,
        )
        db.session.remove()  # no transaction of ours may hold a lock the migration waits for

        downgrade(revision="0007_fetch_by_queue")
        db.session.remove()
        assert function_body("procrastinate_fetch_job_v2") == body_in(
            "fair_fetch_0007.sql", "procrastinate_fetch_job_v2"
        )
        assert function_body("jobboard_refresh_queue_owner") == body_in(
            "fair_queue_0004.sql", "jobboard_refresh_queue_owner"
        )
        assert "long" not in queue_args(sleeper_entry)
        columns = db.session.scalars(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'queue_owners'"
            )
        ).all()
        assert "next_short_at" not in columns
        db.session.remove()

        upgrade()
        db.session.remove()
        assert queue_args(sleeper_entry)["long"] is True
        assert "long" not in queue_args(echo_entry)
        next_short_at = db.session.scalar(
            text("SELECT next_short_at FROM queue_owners WHERE owner_id = :id"), {"id": owner.id}
        )
        assert next_short_at == echo_at


def queue_args(queue_job_id: int) -> dict:
    return db.session.scalar(
        text("SELECT args FROM procrastinate_jobs WHERE id = :id"), {"id": queue_job_id}
    )


# --- the setting --------------------------------------------------------------------------------


def configured_long_job_slots(**env: str) -> int:
    """Config.LONG_JOB_SLOTS as a process started with `env` reads it."""
    environment = {k: v for k, v in os.environ.items() if k != "LONG_JOB_SLOTS"} | env
    out = subprocess.run(
        [sys.executable, "-c", "from config import Config; print(Config.LONG_JOB_SLOTS)"],
        env=environment,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out)


def test_long_job_slots_default_to_half_the_job_slots_and_must_fit_in_them():
    assert configured_long_job_slots(WORKER_CONCURRENCY="8") == 4
    assert configured_long_job_slots(WORKER_CONCURRENCY="5") == 2
    assert configured_long_job_slots(WORKER_CONCURRENCY="1") == 1  # at least one
    assert configured_long_job_slots(WORKER_CONCURRENCY="8", LONG_JOB_SLOTS="6") == 6

    class Eight(Config):
        WORKER_CONCURRENCY = 8

    for slots in (0, 8):  # 0: this worker takes no long job; 8: none kept for short ones
        assert checked_long_job_slots(type("Some", (Eight,), {"LONG_JOB_SLOTS": slots})) == slots
    for slots in (-1, 9):
        with pytest.raises(SystemExit, match="LONG_JOB_SLOTS must be 0 to WORKER_CONCURRENCY"):
            checked_long_job_slots(type("Bad", (Eight,), {"LONG_JOB_SLOTS": slots}))
