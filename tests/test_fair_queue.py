"""The fair queue (docs/architecture.md, "The fair queue").

First the fetch rule itself, calling Procrastinate's fetch function as its worker does
(fast and exact); then the real worker (`python -m workers`): one user's backlog of long
jobs at top priority against another user's job and a registration's email.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import psycopg
import pytest
from sqlalchemy import select, text

from config import libpq_url
from jobboard.extensions import db
from jobboard.models import Job, JobStatus, Plan, User, now_utc
from tests.support.auth import bearer
from tests.support.database import lock_waiters
from tests.support.jobs import create_job, in_future
from tests.support.polling import wait_until

logger = logging.getLogger(__name__)


# --- the fetch rule -------------------------------------------------------------------------


def queued(owner: User, *, due_seconds_ago: float = 60, priority: int = 0) -> Job:
    """A job whose queue entry came due `due_seconds_ago` (before the transaction began)."""
    job = create_job(owner, priority=priority, scheduled_time=in_future())
    db.session.execute(
        text(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - make_interval(secs => :ago)"
            " WHERE id = :id"
        ),
        {"ago": due_seconds_ago, "id": job.queue_job_id},
    )
    return job


def fetch(queues: list[str] | None = None) -> int | None:
    """The job id (ours) of the entry Procrastinate's worker would start next, or None."""
    row = db.session.execute(
        text(
            "SELECT task_name, args FROM procrastinate_fetch_job_v2(CAST(:queues AS varchar[]),"
            " NULL)"
        ),
        {"queues": queues if queues is not None else ["jobs"]},
    ).one()
    if row.task_name is None:
        return None
    return row.args.get("job_id", -1)


def finish(job: Job) -> None:
    db.session.execute(
        text("SELECT procrastinate_finish_job_v1(:id, 'succeeded', false)"),
        {"id": job.queue_job_id},
    )


def test_a_user_at_max_running_jobs_waits_and_others_go_past(app, make_user):
    hog, other = make_user(), make_user()
    hog_jobs = [queued(hog, due_seconds_ago=60 - i) for i in range(5)]
    theirs = queued(other, due_seconds_ago=10)

    started = [fetch(), fetch(), fetch()]

    # free: 2 at once. The hog's backlog came due first, yet only two of it start.
    assert started == [hog_jobs[0].id, hog_jobs[1].id, theirs.id]
    assert fetch() is None
    # One of the hog's jobs finishes: the next one (and only one) starts.
    finish(hog_jobs[0])
    assert fetch() == hog_jobs[2].id
    assert fetch() is None


def test_priority_orders_a_users_own_jobs_only(app, make_user):
    first, second = make_user(), make_user()
    low = queued(first, due_seconds_ago=30, priority=0)
    mine_late_but_urgent = queued(first, due_seconds_ago=5, priority=100)
    theirs = queued(second, due_seconds_ago=20, priority=0)
    theirs_urgent = queued(second, due_seconds_ago=1, priority=1000)

    order = [fetch() for _ in range(4)]

    # Turns follow due times across users: first (30 s ago), second (20 s), first (5 s),
    # second (1 s). Priority picks which of a user's due jobs fills the user's turn, so
    # `first`'s urgent job takes its first turn and pushes `low` to its second one: it
    # never lets `first` take `second`'s turn.
    assert order == [mine_late_but_urgent.id, theirs_urgent.id, low.id, theirs.id]


def test_jobs_not_due_yet_never_start_and_do_not_hold_a_users_turn(app, make_user):
    owner = make_user()
    create_job(owner, scheduled_time=in_future(3600), priority=999)
    due = queued(owner, due_seconds_ago=1, priority=0)
    assert fetch() == due.id
    assert fetch() is None


def test_mail_and_maintenance_entries_are_not_subject_to_user_limits(app, make_user):
    owner = make_user()
    for i in range(3):
        queued(owner, due_seconds_ago=60 - i)
    db.session.execute(
        text(
            "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('mail', 'send_email', 0, NULL, NULL,"
            ' \'{"to": "x@example.com"}\'::jsonb, NULL)]::procrastinate_job_to_defer_v1[])'
        )
    )
    # The mail worker's fetch sees only its queues; the jobs worker's only jobs.
    assert fetch(["mail", "maintenance"]) == -1
    assert fetch(["mail", "maintenance"]) is None
    assert fetch(["jobs"]) is not None


def test_a_plan_with_more_running_jobs_gets_more_at_once(app, make_user):
    owner = make_user()
    owner.plan_name = "pro"
    db.session.commit()
    db.session.execute(text("SELECT jobboard_refresh_queue_owner(:id)"), {"id": owner.id})
    jobs = [queued(owner, due_seconds_ago=60 - i) for i in range(10)]
    started = [fetch() for _ in range(10)]
    assert started == [job.id for job in jobs[:8]] + [None, None]


def test_a_stalled_entry_put_back_keeps_counting_until_it_runs_again(app, make_user):
    owner = make_user()
    jobs = [queued(owner, due_seconds_ago=60 - i) for i in range(3)]
    assert [fetch(), fetch()] == [jobs[0].id, jobs[1].id]
    # What recover_stalled_jobs does with a dead worker's entry: back to todo, due now.
    db.session.execute(
        text("SELECT procrastinate_retry_job_v2(:id, NULL, NULL, NULL, NULL)"),
        {"id": jobs[0].queue_job_id},
    )
    # The recovered entry waited longest (unscheduled means due since forever): it goes
    # first, and the user is still held to two at once.
    assert fetch() == jobs[0].id
    assert fetch() is None


def test_two_workers_fetching_at_once_never_exceed_a_users_limit(
    live_app, make_live_user, fresh_database
):
    owner = make_live_user()
    with live_app.app_context():
        for i in range(4):
            create_job(owner.id, scheduled_time=in_future(3600), name=f"j{i}")
        db.session.execute(
            text("UPDATE procrastinate_jobs SET scheduled_at = now() - interval '1 minute'")
        )
        db.session.commit()
    sql = "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['jobs']::varchar[], NULL)"
    with (
        psycopg.connect(libpq_url(fresh_database)) as first,
        psycopg.connect(libpq_url(fresh_database)) as second,
    ):
        assert first.execute(sql).fetchone()[0] is not None
        first.commit()
        # The first worker takes the user's second place and has not committed yet...
        assert first.execute(sql).fetchone()[0] is not None
        # ...a second worker fetching meanwhile waits for the user's row, then counts
        # again: it does not take a third.
        second_got: list[int | None] = []
        fetching = threading.Thread(
            target=lambda: second_got.append(second.execute(sql).fetchone()[0]), daemon=True
        )
        fetching.start()
        wait_until(lambda: lock_waiters(fresh_database) >= 1)
        first.commit()
        fetching.join(timeout=10)
        assert second_got == [None]
        second.commit()
    with psycopg.connect(libpq_url(fresh_database)) as conn:
        doing = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
        ).fetchone()[0]
    assert doing == 2


def test_the_fetch_skips_a_users_backlog_through_indexes(app, make_user):
    """The fetch never walks the entries of a user at their limit: with one user's 2,000
    entries waiting, it reads a handful of index rows, not the backlog."""
    hog, other = make_user(), make_user()
    db.session.execute(
        text(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at, lock,"
            " queueing_lock)"
            " SELECT 'jobs', 'process_job', jsonb_build_object('job_id', -g, 'owner_id', :hog),"
            " now() - interval '1 hour', 'x-' || g, 'x-' || g FROM generate_series(1, 2000) g"
        ),
        {"hog": hog.id},
    )
    assert fetch() is not None and fetch() is not None  # the hog's two places
    theirs = queued(other, due_seconds_ago=1)
    db.session.execute(text("ANALYZE procrastinate_jobs"))
    db.session.execute(text("ANALYZE queue_owners"))
    db.session.execute(text("SET LOCAL track_functions = 'all'"))
    before = db.session.scalar(
        text(
            "SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'procrastinate_jobs'"
        )
    )
    assert fetch() == theirs.id
    after = db.session.scalar(
        text(
            "SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'procrastinate_jobs'"
        )
    )
    logger.warning("heap rows read by the fetch: %s", after - before)
    assert 0 < after - before < 200, after - before


def heap_rows_read() -> int:
    """Rows of procrastinate_jobs this transaction has read so far, by index or scan."""
    return db.session.scalar(
        text(
            "SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'procrastinate_jobs'"
        )
    )


def defer_unowned(queue: str, count: int = 1, *, priority: int = 0, lock: str | None = None):
    db.session.execute(
        text(
            "SELECT procrastinate_defer_jobs_v1(ARRAY(SELECT ROW(:queue, 'send_email', :priority,"
            " :lock, NULL, jsonb_build_object('n', g), NULL)::procrastinate_job_to_defer_v1"
            " FROM generate_series(1, :count) g))"
        ),
        {"queue": queue, "count": count, "priority": priority, "lock": lock},
    )


def fetched_entry(queues: list[str] | None) -> tuple[str | None, int | None]:
    row = db.session.execute(
        text(
            "SELECT queue_name, priority FROM procrastinate_fetch_job_v2("
            "CAST(:queues AS varchar[]), NULL)"
        ),
        {"queues": queues},
    ).one()
    return row.queue_name, row.priority


@pytest.mark.parametrize(
    ("owned", "unowned", "queues"),
    [
        (50_000, 0, ["jobs"]),  # the jobs worker, one user's big backlog
        (50_000, 0, ["mail", "maintenance"]),  # the mail worker, the same backlog
        (0, 50_000, ["jobs"]),  # the jobs worker, a big mail backlog (SMTP down)
    ],
)
def test_the_lookup_of_entries_of_nobody_does_not_walk_other_backlogs(
    app, make_user, owned, unowned, queues
):
    """A fetch that finds no entry of nobody in its queues reads a handful of rows, however
    many entries other queues or users have waiting (one query over every queue walked
    every waiting entry: 49 ms per fetch with 50,000 queued, revision 0007)."""
    hog = make_user()
    # Without queue_owners' triggers (rolled back with the test): the user's entries are
    # then invisible to the users' part of the fetch, and 50,000 inserts take a second.
    db.session.execute(text("ALTER TABLE procrastinate_jobs DISABLE TRIGGER USER"))
    db.session.execute(
        text(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, scheduled_at, lock,"
            " queueing_lock)"
            " SELECT 'jobs', 'process_job', jsonb_build_object('job_id', -g, 'owner_id', :hog),"
            " now() - interval '1 hour', 'x-' || g, 'x-' || g FROM generate_series(1, :owned) g"
        ),
        {"hog": hog.id, "owned": owned},
    )
    # A queue that has run for a while: as many entries finished, and a few of nobody's.
    db.session.execute(
        text(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
            " SELECT 'jobs', 'process_job', jsonb_build_object('job_id', -g, 'owner_id', :hog),"
            " 'succeeded'::procrastinate_job_status FROM generate_series(1, 50000) g"
            " UNION ALL SELECT 'maintenance', 'prune', '{}', 'succeeded'"
            " FROM generate_series(1, 100)"
        ),
        {"hog": hog.id},
    )
    defer_unowned("mail", unowned)
    db.session.execute(text("ANALYZE procrastinate_jobs"))
    for _ in range(6):  # past PL/pgSQL's switch to a generic plan, which chose the long walk
        before = heap_rows_read()
        assert fetch(queues) is None
        assert heap_rows_read() - before < 50, heap_rows_read() - before


def test_entries_of_nobody_start_by_priority_then_age_across_queues(app):
    defer_unowned("mail", 2, priority=0)
    defer_unowned("maintenance", 1, priority=5)
    defer_unowned("mail", 1, priority=5)
    fetched = [fetched_entry(["mail", "maintenance"]) for _ in range(5)]
    assert fetched == [
        ("maintenance", 5),
        ("mail", 5),
        ("mail", 0),
        ("mail", 0),
        (None, None),
    ]


@pytest.mark.parametrize("queues", [["mail"], None])
def test_an_entry_of_nobody_waits_while_another_with_its_lock_runs(app, queues):
    defer_unowned("mail", 2, lock="one-at-a-time")
    assert fetched_entry(queues) == ("mail", 0)
    assert fetched_entry(queues) == (None, None)


def test_a_fetch_for_every_queue_takes_entries_of_nobody_and_users_entries(app, make_user):
    owner = make_user()
    job = queued(owner)
    defer_unowned("maintenance")
    assert fetched_entry(None) == ("maintenance", 0)
    assert fetched_entry(None) == ("jobs", job.priority)


# --- the real worker -------------------------------------------------------------------------


class Sampler:
    """Counts a user's in_progress jobs every 50 ms from its own connection."""

    def __init__(self, database_url: str, owner_id: int) -> None:
        self.url = libpq_url(database_url)
        self.owner_id = owner_id
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM jobs WHERE owner_id = %s AND status = 'in_progress'",
                    (self.owner_id,),
                ).fetchone()
                self.samples.append(row[0])
                time.sleep(0.05)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples


def user_id_of(live_app, email: str) -> int:
    with live_app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def post_job(live_client, headers, at: datetime, **fields) -> dict:
    body = {"name": fields.pop("name", "job"), "scheduled_time": at.isoformat(), **fields}
    response = live_client.post("/api/jobs/", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def read_job(live_app, job_id: int) -> Job:
    with live_app.app_context():
        job = db.session.get(Job, job_id)
        db.session.expunge(job)
        return job


def test_a_hog_never_delays_another_users_job_or_a_verification_email(
    live_app, live_client, make_live_user, start_worker, mailbox, fresh_database
):
    make_live_user(email="hog@example.com")
    make_live_user(email="other@example.com")
    hog_id = user_id_of(live_app, "hog@example.com")
    other_id = user_id_of(live_app, "other@example.com")
    with live_app.app_context():
        hog_headers, other_headers = bearer(hog_id), bearer(other_id)
        limit = db.session.get(Plan, "free").max_running_jobs
    start_worker(WORKER_CONCURRENCY="4")
    sampler = Sampler(fresh_database, hog_id)

    try:
        # Two low-priority jobs first, then twelve long ones at top priority, all due at once
        # (far enough ahead that the last post, on a loaded machine, is still before it).
        due = now_utc() + timedelta(seconds=3)
        sleeper = {"kind": "sleep", "params": {"seconds": 2}}
        low = [post_job(live_client, hog_headers, due, priority=-100, **sleeper) for _ in range(2)]
        top = [post_job(live_client, hog_headers, due, priority=100, **sleeper) for _ in range(12)]
        theirs = post_job(live_client, other_headers, due + timedelta(seconds=1), kind="echo")
        wait_until(lambda: now_utc() > due + timedelta(seconds=1.5))
        registered_at = time.monotonic()
        response = live_client.post(
            "/api/register/",
            json={"email": "newcomer@example.com", "password": "a good password"},
        )
        assert response.status_code == 201
        mailbox.wait_for(lambda m: "newcomer@example.com" in m["To"], timeout=10)
        mail_delay = time.monotonic() - registered_at

        done = wait_until(
            lambda: (job := read_job(live_app, theirs["id"])).status == JobStatus.COMPLETED and job
        )
        # Watch the hog through a few of its turns.
        hog_jobs = [*low, *top]
        wait_until(
            lambda: sum(read_job(live_app, j["id"]).started_at is not None for j in hog_jobs) >= 4,
            timeout=20,
        )
    finally:
        samples = sampler.stop()

    late = (done.started_at - done.scheduled_time).total_seconds()
    logger.warning(
        "other user's lateness %.3f s, mail delay %.3f s, hog running at once max %s (%s samples)",
        late,
        mail_delay,
        max(samples),
        len(samples),
    )
    assert 0 <= late <= 1
    assert mail_delay <= 5
    assert max(samples) == limit
    # The hog's own priority: its top-priority jobs go before its earlier, low ones.
    started = [job for job in (read_job(live_app, j["id"]) for j in hog_jobs) if job.started_at]
    assert len(started) >= 4
    assert all(job.priority == 100 for job in started)


def test_every_configured_job_slot_runs_at_once_and_mail_still_flows(
    live_app, live_client, make_live_user, start_worker, mailbox, fresh_database
):
    """WORKER_CONCURRENCY=8 sync jobs really run at once (asyncio's default executor has
    only cpus + 4 threads), and with all of them busy a verification email still goes.
    `sleep` is a long kind: LONG_JOB_SLOTS lets it take all 8 slots here."""
    make_live_user(email="busy@example.com")
    owner_id = user_id_of(live_app, "busy@example.com")
    with live_app.app_context():
        db.session.get(User, owner_id).plan_name = "pro"  # 8 at once
        db.session.commit()
        headers = bearer(owner_id)
    start_worker(WORKER_CONCURRENCY="8", LONG_JOB_SLOTS="8")
    sampler = Sampler(fresh_database, owner_id)
    try:
        due = now_utc() + timedelta(seconds=3)  # after the eighth post, even under load
        for _ in range(8):
            post_job(live_client, headers, due, kind="sleep", params={"seconds": 4})

        wait_until(lambda: sampler.samples and sampler.samples[-1] == 8, timeout=10)
        registered_at = time.monotonic()
        live_client.post(
            "/api/register/",
            json={"email": "while.busy@example.com", "password": "a good password"},
        )
        mailbox.wait_for(lambda m: "while.busy@example.com" in m["To"], timeout=10)
        mail_delay = time.monotonic() - registered_at
    finally:
        samples = sampler.stop()

    assert max(samples) == 8
    assert mail_delay <= 5


@pytest.mark.parametrize("queues", [["jobs"], None])
def test_the_fetch_function_still_answers_like_procrastinates(app, queues):
    """No entry: the empty row Procrastinate's worker expects (it reads `id` as None)."""
    row = db.session.execute(
        text("SELECT id FROM procrastinate_fetch_job_v2(CAST(:q AS varchar[]), NULL)"),
        {"q": queues},
    ).one()
    assert row.id is None


def test_sigterm_lets_running_jobs_finish_before_the_worker_process_exits(
    live_app, live_client, make_live_user, start_worker
):
    make_live_user(email="graceful@example.com")
    owner_id = user_id_of(live_app, "graceful@example.com")
    with live_app.app_context():
        headers = bearer(owner_id)
    worker = start_worker()
    job = post_job(
        live_client,
        headers,
        now_utc() + timedelta(seconds=0.5),
        kind="sleep",
        params={"seconds": 2},
    )
    wait_until(lambda: read_job(live_app, job["id"]).status == JobStatus.IN_PROGRESS)

    worker.stop()

    assert worker.returncode == 0
    finished = read_job(live_app, job["id"])
    assert finished.status == JobStatus.COMPLETED and finished.attempts == 1
    # The queue entry was finished too, not cut off and left for the stalled-job check.
    with live_app.app_context():
        entry = db.session.scalar(
            text("SELECT status::text FROM procrastinate_jobs WHERE id = :id"),
            {"id": finished.queue_job_id},
        )
    assert entry == "succeeded"
