"""The batched worker of the `jobs` queue (workers/batched.py): the batched fetch keeps every
rule of the single fetch, the batched completion writes what the single one writes, and a
worker SIGKILLed at random points over 1,000 jobs loses none, never runs one twice at
once and leaves none in progress."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, text

from config import libpq_url
from jobboard.extensions import db
from jobboard.jobs import service
from jobboard.jobs.transitions import Completion, complete_batch_async, start_batch_async
from jobboard.models import Job, JobResult, JobStatus, User
from tests.support.factories import PlanFactory, UserFactory
from tests.support.polling import wait_until
from workers.batched import FLUSH_AT_WAITING, BatchCompleter


def _user(max_running: int = 1000) -> User:
    plan = PlanFactory(max_running_jobs=max_running, max_open_jobs=100_000, jobs_per_day=100_000)
    user = UserFactory(plan_name=plan.name)
    db.session.commit()
    return user


def _jobs(owner: User, count: int, **fields: Any) -> list[int]:
    """`count` jobs due now, created through the batch service 100 at a time."""
    ids: list[int] = []
    for start in range(0, count, 100):
        data = [
            {
                "name": f"job {start + i}",
                "description": None,
                "kind": fields.get("kind", "echo"),
                "params": fields.get("params", {"i": start + i}),
                "scheduled_time": None,
                "priority": 0,
                "max_attempts": fields.get("max_attempts", 3),
            }
            for i in range(min(100, count - start))
        ]
        jobs, _ = service.create_jobs(db.session.get(User, owner.id), data)
        ids.extend(job.id for job in jobs)
    return ids


@pytest.fixture
def queue_connection(live_app) -> Iterator[psycopg.AsyncConnection]:
    """An autocommit connection like the worker's pool's, and a worker id registered."""
    url = libpq_url(live_app.config["DATABASE_URL_FOR_WORKER"])

    async def connect() -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)

    connection = asyncio.run(connect())
    yield connection
    asyncio.run(connection.close())


def _worker_id(connection: psycopg.AsyncConnection) -> int:
    async def register() -> int:
        cursor = await connection.execute("SELECT * FROM procrastinate_register_worker_v1()")
        return (await cursor.fetchone())[0]

    return asyncio.run(register())


def _fetch(
    connection: psycopg.AsyncConnection,
    worker_id: int,
    limit: int,
    blocking_limit: int | None = None,
):
    blocking_limit = limit if blocking_limit is None else blocking_limit
    return asyncio.run(start_batch_async(connection, worker_id, limit, blocking_limit))


def test_the_batched_fetch_starts_the_jobs_it_takes(live_app, queue_connection):
    with live_app.app_context():
        ids = _jobs(_user(), 5)
    worker = _worker_id(queue_connection)

    taken = _fetch(queue_connection, worker, 3)

    assert len(taken) == 3
    assert {entry.job_id for entry in taken} <= set(ids)
    assert all(entry.attempt is not None and entry.attempt.attempt == 1 for entry in taken)
    with live_app.app_context():
        statuses = dict(db.session.execute(select(Job.id, Job.status)).all())
        assert sorted(statuses.values()).count(JobStatus.IN_PROGRESS) == 3
        doing = db.session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' AND worker_id = :w"
            ),
            {"w": worker},
        )
        assert doing == 3
    assert len(_fetch(queue_connection, worker, 10)) == 2  # only what is due
    assert _fetch(queue_connection, worker, 10) == []


def test_the_batched_fetch_keeps_each_users_running_limit(live_app, queue_connection):
    with live_app.app_context():
        hog, other = _user(max_running=2), _user(max_running=3)
        _jobs(hog, 20)
        _jobs(other, 20)
        hog_id, other_id = hog.id, other.id
    worker = _worker_id(queue_connection)

    taken = _fetch(queue_connection, worker, 50)

    with live_app.app_context():
        owners = [db.session.get(Job, entry.job_id).owner_id for entry in taken]
    assert sorted(owners) == sorted([hog_id] * 2 + [other_id] * 3)
    assert _fetch(queue_connection, worker, 50) == []  # everyone at their limit


def test_the_batched_fetch_keeps_the_long_job_slots(live_app, queue_connection):
    with live_app.app_context():
        owner = _user()
        _jobs(owner, 6, kind="sleep", params={"seconds": 60})  # long kind
        _jobs(owner, 2)
    worker = _worker_id(queue_connection)
    asyncio.run(
        queue_connection.execute("SELECT set_config('jobboard.long_job_slots', '2', false)")
    )

    taken = _fetch(queue_connection, worker, 50)

    kinds = sorted(entry.attempt.kind for entry in taken)
    assert kinds == ["echo", "echo", "sleep", "sleep"]


def test_the_batched_fetch_takes_blocking_kinds_only_for_their_free_slots(
    live_app, queue_connection
):
    """wordcount blocks a thread, echo runs on the event loop: with 2 slots free for
    blocking kinds, a batch takes 2 wordcount entries and every echo entry, and the
    wordcount entries past the bound stay queued for the next fetch."""
    with live_app.app_context():
        owner = _user()
        blocking = _jobs(owner, 5, kind="wordcount", params={"text": "a b"})
        quick = _jobs(owner, 4)
    worker = _worker_id(queue_connection)

    taken = _fetch(queue_connection, worker, 50, blocking_limit=2)

    assert sorted(entry.job_id for entry in taken if entry.blocking) == blocking[:2]
    assert sorted(entry.job_id for entry in taken if not entry.blocking) == quick
    assert all(entry.attempt is not None for entry in taken)
    again = _fetch(queue_connection, worker, 50, blocking_limit=0)
    assert again == []
    rest = _fetch(queue_connection, worker, 50, blocking_limit=50)
    assert sorted(entry.job_id for entry in rest) == blocking[2:]


def test_with_no_blocking_slot_free_a_users_last_place_goes_to_a_non_blocking_entry(
    live_app, queue_connection
):
    """A user with one running place whose first entry blocks: while no slot of blocking
    kinds is free, the place goes to the echo entry behind it, not to nothing."""
    with live_app.app_context():
        owner = _user(max_running=1)
        _jobs(owner, 1, kind="wordcount", params={"text": "a"})
        (quick,) = _jobs(owner, 1)
    worker = _worker_id(queue_connection)

    (taken,) = _fetch(queue_connection, worker, 50, blocking_limit=0)

    assert taken.job_id == quick and not taken.blocking


def test_entries_carry_their_kinds_marks_and_an_unmarked_entry_counts_as_blocking(
    live_app, queue_connection
):
    with live_app.app_context():
        owner = _user()
        (echo_id,) = _jobs(owner, 1)
        (wordcount_id,) = _jobs(owner, 1, kind="wordcount", params={"text": "a"})
        args = dict(
            db.session.execute(
                text(
                    "SELECT (args->>'job_id')::bigint, args FROM procrastinate_jobs"
                    " WHERE task_name = 'process_job'"
                )
            ).all()
        )
        assert args[echo_id]["async"] is True and "long" not in args[echo_id]
        assert "async" not in args[wordcount_id]
        # As an entry queued before the mark existed.
        db.session.execute(text("UPDATE procrastinate_jobs SET args = args - 'async'"))
        db.session.commit()
    worker = _worker_id(queue_connection)

    assert _fetch(queue_connection, worker, 50, blocking_limit=0) == []
    taken = _fetch(queue_connection, worker, 50, blocking_limit=1)
    assert len(taken) == 1 and taken[0].blocking


def test_a_worker_runs_echo_jobs_while_its_blocking_slots_are_taken(live_app, start_worker):
    """WORKER_CONCURRENCY=1: one sleep job holds the only slot of blocking kinds, a second
    waits for it, and 200 echo jobs queued behind them all complete meanwhile."""
    with live_app.app_context():
        owner = _user()
        sleepers = _jobs(owner, 2, kind="sleep", params={"seconds": 5})
        echoes = _jobs(owner, 200)
    url = libpq_url(live_app.config["DATABASE_URL_FOR_WORKER"])
    start_worker(WORKER_CONCURRENCY="1", LONG_JOB_SLOTS="1", WORKER_ASYNC_CONCURRENCY="50")
    with psycopg.connect(url, autocommit=True) as watch:

        def statuses(ids: list[int]) -> list[str]:
            rows = watch.execute("SELECT status FROM jobs WHERE id = ANY(%s)", (ids,))
            return sorted(row[0] for row in rows)

        wait_until(lambda: statuses(echoes) == ["completed"] * 200, timeout=30, interval=0.05)
        assert statuses(sleepers) == ["in_progress", "pending"]
        wait_until(lambda: statuses(sleepers) == ["completed"] * 2, timeout=30, interval=0.1)
        first, second = watch.execute(
            "SELECT started_at, finished_at FROM jobs WHERE id = ANY(%s) ORDER BY started_at",
            (sleepers,),
        ).fetchall()
        assert second[0] >= first[1]  # one at a time


def test_a_cancelled_job_comes_back_without_an_attempt(live_app, queue_connection):
    with live_app.app_context():
        owner = _user()
        (job_id,) = _jobs(owner, 1)
        # Cancelled while the entry was taken: the row says so, the entry is still todo.
        db.session.execute(
            text("UPDATE jobs SET status = 'cancelled' WHERE id = :id"), {"id": job_id}
        )
        db.session.commit()
    worker = _worker_id(queue_connection)

    (entry,) = _fetch(queue_connection, worker, 5)

    assert entry.job_id == job_id and entry.attempt is None


def test_the_batched_completion_writes_what_the_single_one_writes(live_app, queue_connection):
    with live_app.app_context():
        owner = _user()
        _jobs(owner, 3)
    worker = _worker_id(queue_connection)
    taken = _fetch(queue_connection, worker, 3)
    first, second, _third = taken
    completions = [
        Completion(first.job_id, 1, {"out": 1}, 5),
        Completion(second.job_id, 2, {"stale": True}, 5),  # not its attempt: left alone
    ]

    completed = asyncio.run(
        complete_batch_async(queue_connection, worker, completions, [e.entry_id for e in taken])
    )

    assert completed == {first.job_id}
    with live_app.app_context():
        done = db.session.get(Job, first.job_id)
        assert done.status == JobStatus.COMPLETED and done.finished_at is not None
        assert db.session.get(JobResult, first.job_id).output == {"out": 1}
        assert db.session.get(Job, second.job_id).status == JobStatus.IN_PROGRESS
        entries = db.session.execute(
            text(
                "SELECT status::text, attempts FROM procrastinate_jobs WHERE id = ANY(:ids)"
                " ORDER BY id"
            ),
            {"ids": [e.entry_id for e in taken]},
        ).all()
        assert entries == [("succeeded", 1)] * 3
    # An entry given back to the queue meanwhile (the stalled-job check) is not finished.
    with live_app.app_context():
        _jobs(owner, 1)
    (late,) = _fetch(queue_connection, worker, 1)
    asyncio.run(
        queue_connection.execute(
            "UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL WHERE id = %s",
            (late.entry_id,),
        )
    )
    asyncio.run(complete_batch_async(queue_connection, worker, [], [late.entry_id]))
    with live_app.app_context():
        status = db.session.scalar(
            text("SELECT status::text FROM procrastinate_jobs WHERE id = :id"),
            {"id": late.entry_id},
        )
        assert status == "todo"


class _Recorder:
    def __init__(self) -> None:
        self.flushes: list[int] = []

    async def complete_and_finish(self, worker_id, completions, entry_ids):
        self.flushes.append(len(entry_ids))
        return {item.job_id for item in completions}


def test_the_completer_flushes_on_its_tick_at_100_waiting_and_when_idle():
    async def scenario() -> list[int]:
        recorder = _Recorder()
        idle = [False]
        completer = BatchCompleter(recorder, 1, 0.05, lambda: idle[0])  # type: ignore[arg-type]
        runner = asyncio.create_task(completer.run())
        futures = [completer.add(i, Completion(i, 1, {}, 0)) for i in range(3)]
        started = time.monotonic()
        assert await asyncio.gather(*futures) == [True] * 3
        assert time.monotonic() - started >= 0.04  # waited for the tick
        many = [completer.add(i) for i in range(FLUSH_AT_WAITING)]
        await asyncio.gather(*many)  # at once: 100 waiting
        idle[0] = True
        await completer.add(7)  # idle: at once
        runner.cancel()
        return recorder.flushes

    flushes = asyncio.run(scenario())
    assert flushes[0] == 3 and FLUSH_AT_WAITING in flushes and flushes[-1] == 1


# --- the real worker, SIGKILLed at random points ---------------------------------------------


def test_sigkill_at_random_points_over_1000_jobs(live_app, start_worker):
    """Kill the worker five times while 1,000 echo jobs run, restarting it each time:
    every job completes exactly once (one result), none is ever taken by two entries at
    once, none is left in progress, no entry left doing."""
    rng = random.Random(22)
    with live_app.app_context():
        owner = _user()
        ids = _jobs(owner, 1000, max_attempts=10)
    url = libpq_url(live_app.config["DATABASE_URL_FOR_WORKER"])
    doubles: list[Any] = []
    kills = 5
    with psycopg.connect(url, autocommit=True) as watch:

        def sample() -> None:
            doubles.extend(
                watch.execute(
                    "SELECT args->>'job_id', count(*) FROM procrastinate_jobs"
                    " WHERE status = 'doing' AND task_name = 'process_job'"
                    " GROUP BY 1 HAVING count(*) > 1"
                ).fetchall()
            )

        def completed() -> int:
            return watch.execute("SELECT count(*) FROM jobs WHERE status = 'completed'").fetchone()[
                0
            ]

        worker = start_worker(WORKER_CONCURRENCY="8", QUEUE_LOG_LEVEL="WARNING")
        for _ in range(kills):
            running = worker.running
            # A random point: after between 0 and 150 more completions, plus up to 30 ms.
            target = min(len(ids) - 1, completed() + rng.randint(0, 150))
            wait_until(
                lambda target=target, running=running: completed() >= target or not running(),
                timeout=60,
                interval=0.005,
            )
            time.sleep(rng.random() * 0.03)
            sample()
            worker.kill()
            worker.wait(10)
            worker = start_worker(WORKER_CONCURRENCY="8", QUEUE_LOG_LEVEL="WARNING")

        def settled() -> bool:
            sample()
            return completed() == len(ids)

        wait_until(settled, timeout=120, interval=0.1)

    assert doubles == []
    with live_app.app_context():
        statuses = db.session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        assert statuses == [(JobStatus.COMPLETED, 1000)]
        assert db.session.scalar(select(func.count()).select_from(JobResult)) == 1000
        attempts = db.session.scalars(select(Job.attempts)).all()
        assert min(attempts) >= 1 and max(attempts) <= 1 + kills
        rerun = sum(1 for value in attempts if value > 1)
        print(f"[sigkill] {kills} kills; {rerun} jobs ran again after a kill")
        outputs = dict(db.session.execute(select(JobResult.job_id, JobResult.output)).all())
        assert all(outputs[job_id] == {"i": index} for index, job_id in enumerate(ids))
        left = db.session.scalar(
            text(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('doing', 'todo')"
                " AND task_name = 'process_job'"
            )
        )
        assert left == 0


def test_a_job_row_locked_by_a_cancel_is_not_waited_for(live_app, queue_connection):
    """A cancel locks the job's row, then its entry; the batched fetch holds the entry:
    waiting for the row there would deadlock. The entry comes back without an attempt,
    and the cancel goes through."""
    with live_app.app_context():
        owner = _user()
        (job_id,) = _jobs(owner, 1)
    url = libpq_url(live_app.config["DATABASE_URL_FOR_WORKER"])
    worker = _worker_id(queue_connection)
    with psycopg.connect(url) as cancel:
        cancel.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))

        (entry,) = _fetch(queue_connection, worker, 5)

        assert entry.job_id == job_id and entry.attempt is None
        cancel.rollback()
