"""Every kind declares a time limit; an attempt past it is stopped and fails that attempt,
and the job's next attempt is scheduled as after any failure.

First the registry and one attempt in this process; then the real worker with a plugin
whose kinds have a 1 s limit: one that stops when asked (`run.should_abort()`) and one
that ignores it, whose worker slot must come free all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from jobboard.extensions import db
from jobboard.jobs.processing import run_processor
from jobboard.jobs.transitions import Attempt
from jobboard.models import Job, JobResult, JobStatus, User, now_utc
from tests.support.jobs import Api, create_job, parse
from tests.support.plugins import Plugin, installed, write_plugin
from tests.support.polling import wait_until
from workers.processors import (
    DEFAULT_TIME_LIMIT_SECONDS,
    LONG_JOB_SECONDS,
    AttemptInterrupted,
    get_processor,
    kinds,
    processor,
    processors,
    register,
    unregister,
)

logger = logging.getLogger(__name__)

# --- every kind declares one ----------------------------------------------------------------


def test_every_kind_that_the_queue_runs_declares_a_time_limit(app):
    for kind, entry in processors().items():
        if entry.runs_in_queue:
            assert entry.time_limit is not None and 0 < entry.time_limit, kind
    assert get_processor("manual").time_limit is None  # a person does it, not the queue


def test_the_built_in_limits_and_which_kinds_are_long(app):
    limits = {kind: processors()[kind].time_limit for kind in kinds() if kind != "manual"}
    # Short kinds: a slot of theirs comes free within seconds.
    for kind in ("echo", "checksum", "flaky", "wordcount", "report"):
        assert limits[kind] <= LONG_JOB_SECONDS, kind
        assert not processors()[kind].long
    # sleep takes up to 300 s: its limit is over that, so it is long.
    assert limits["sleep"] > 300
    assert processors()["sleep"].long


def test_a_kind_without_a_declared_limit_gets_the_default_and_is_long():
    def plain(params, run):
        return params

    entry = register("plain-default", plain)
    try:
        assert entry.time_limit == DEFAULT_TIME_LIMIT_SECONDS
        assert entry.long == (DEFAULT_TIME_LIMIT_SECONDS > LONG_JOB_SECONDS)
    finally:
        unregister("plain-default")


def test_the_decorator_declares_a_limit_and_refuses_a_nonsense_one():
    @processor("quick-one", time_limit=2)
    def quick(params, run):
        return params

    try:
        assert get_processor("quick-one").time_limit == 2
        assert not get_processor("quick-one").long
    finally:
        unregister("quick-one")
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="time limit"):
            register("bad-limit", quick, time_limit=bad)
    assert get_processor("bad-limit") is None


def test_the_openapi_of_a_job_names_each_kinds_time_limit(client):
    spec = client.get("/api/openapi.json").get_json()
    kind = spec["components"]["schemas"]["JobIn"]["properties"]["kind"]
    assert kind["x-time-limits"]["echo"] == processors()["echo"].time_limit
    assert kind["x-time-limits"]["sleep"] == processors()["sleep"].time_limit
    assert "manual" not in kind["x-time-limits"]
    assert "time limit" in kind["description"]
    assert f"sleep {processors()['sleep'].time_limit:g} s" in kind["description"]


def test_a_long_kinds_queue_entry_says_so_and_a_short_ones_does_not(app, verified_user):
    long_job = create_job(verified_user, kind="sleep", params={"seconds": 1})
    short_job = create_job(verified_user, kind="echo")
    args = dict(
        db.session.execute(
            text("SELECT id, args FROM procrastinate_jobs WHERE id IN (:a, :b)"),
            {"a": long_job.queue_job_id, "b": short_job.queue_job_id},
        ).all()
    )
    assert args[long_job.queue_job_id]["long"] is True
    assert "long" not in args[short_job.queue_job_id]


# --- one attempt, in this process -----------------------------------------------------------


def attempt_of(kind: str, params: dict) -> Attempt:
    return Attempt(
        job_id=1,
        attempt=1,
        owner_id=1,
        kind=kind,
        params=params,
        max_attempts=3,
        scheduled_time=now_utc(),
    )


@pytest.fixture
def limited_kinds() -> Iterator[tuple[str, str]]:
    """A kind that naps in small steps and stops when asked, and one that returns only
    after its limit, both with a limit of 0.3 s."""

    @processor("nap-limited", time_limit=0.3)
    def nap(params, run):
        deadline = time.monotonic() + params["seconds"]
        while time.monotonic() < deadline:
            if run.should_abort():
                raise AttemptInterrupted("asked to stop")
            time.sleep(0.02)
        return {"napped": params["seconds"]}

    @processor("late-limited", time_limit=0.3)
    def late(params, run):
        time.sleep(0.4)
        return {"late": True}

    try:
        yield "nap-limited", "late-limited"
    finally:
        unregister("nap-limited")
        unregister("late-limited")


def test_an_attempt_is_asked_to_stop_at_its_limit_and_fails_naming_it(limited_kinds):
    nap, _ = limited_kinds
    started = time.monotonic()

    output, error = run_processor(attempt_of(nap, {"seconds": 5}), lambda: False)

    elapsed = time.monotonic() - started
    assert output is None
    assert error is not None and "time limit of 0.3 s" in error
    assert 0.3 <= elapsed < 1.5


def test_an_attempt_that_ends_past_its_limit_fails_even_with_an_output(limited_kinds):
    _, late = limited_kinds
    output, error = run_processor(attempt_of(late, {}), lambda: False)
    assert output is None
    assert error is not None and "time limit of 0.3 s" in error


def test_an_attempt_within_its_limit_is_untouched(limited_kinds):
    nap, _ = limited_kinds
    assert run_processor(attempt_of(nap, {"seconds": 0.05}), lambda: False) == (
        {"napped": 0.05},
        None,
    )


# --- the real worker --------------------------------------------------------------------------

PLUGIN_SOURCE = """\
import time
from marshmallow import Schema, fields
from workers.processors import AttemptInterrupted, processor

class Seconds(Schema):
    seconds = fields.Float(required=True)

@processor("nap-{suffix}", schema=Seconds, time_limit=1)
def nap(params, run):
    deadline = time.monotonic() + params["seconds"]
    while time.monotonic() < deadline:
        if run.should_abort():
            raise AttemptInterrupted("asked to stop")
        time.sleep(0.05)
    return {"napped": params["seconds"]}

@processor("stubborn-{suffix}", schema=Seconds, time_limit=1)
def stubborn(params, run):
    time.sleep(params["seconds"])  # never looks at run.should_abort()
    return {"slept": params["seconds"]}
"""


@pytest.fixture
def limited_plugin(tmp_path: Path) -> Iterator[Plugin]:
    plugin = write_plugin(
        tmp_path, PLUGIN_SOURCE, {"nap-{suffix}": "nap", "stubborn-{suffix}": "stubborn"}
    )
    with installed(plugin):
        yield plugin


@pytest.fixture
def api(live_app, live_client, make_live_user) -> Api:
    make_live_user(email="owner@example.com")
    with live_app.app_context():
        owner_id = db.session.scalar(select(User.id).where(User.email == "owner@example.com"))
    return Api(live_app, live_client, owner_id)


def result_row(live_app, job_id: int) -> JobResult:
    with live_app.app_context():
        result = db.session.get(JobResult, job_id)
        db.session.expunge(result)
        return result


def next_entry_status(live_app, job_id: int) -> str:
    with live_app.app_context():
        queue_job_id = db.session.get(Job, job_id).queue_job_id
        return db.session.scalar(
            text("SELECT status::text FROM procrastinate_jobs WHERE id = :id"), {"id": queue_job_id}
        )


def test_an_attempt_past_its_limit_fails_and_the_next_one_is_scheduled(
    api, live_app, limited_plugin, start_worker
):
    nap, _ = limited_plugin.kinds
    start_worker(PYTHONPATH=str(limited_plugin.folder), JOB_RETRY_BASE_SECONDS="0.5")
    job = api.create(
        now_utc() + timedelta(seconds=0.5), kind=nap, params={"seconds": 30}, max_attempts=2
    )

    retrying = wait_until(
        lambda: (j := api.job(job["id"]))["last_error"] and j["attempts"] == 1 and j, timeout=15
    )
    assert retrying["status"] in (JobStatus.PENDING, JobStatus.IN_PROGRESS)
    assert "time limit of 1 s" in retrying["last_error"]
    failed = api.wait_for_status(job["id"], "failed", timeout=15)

    assert failed["attempts"] == 2
    assert "time limit of 1 s" in failed["last_error"]
    duration = result_row(live_app, job["id"]).duration_ms
    logger.warning("a cooperative attempt stopped %d ms after it started (limit 1 s)", duration)
    assert 1000 <= duration < 5000


def test_a_processor_that_ignores_its_limit_fails_and_gives_its_slot_back(
    api, live_app, limited_plugin, start_worker, make_live_user
):
    """One slot for blocking kinds: a job of a kind that sleeps 60 s without ever looking
    at should_abort is failed at its limit (plus a grace), and another blocking job takes
    the slot while the ignored thread sleeps on. An echo job, which runs on the event
    loop, never waited for that slot."""
    _, stubborn = limited_plugin.kinds
    start_worker(
        PYTHONPATH=str(limited_plugin.folder), WORKER_CONCURRENCY="1", JOB_RETRY_BASE_SECONDS="60"
    )
    stuck = api.create(now_utc() + timedelta(seconds=0.5), kind=stubborn, params={"seconds": 60})
    api.wait_for_status(stuck["id"], "in_progress", timeout=15)
    behind = api.create(now_utc() + timedelta(seconds=0.2), kind="wordcount", params={"text": "a"})
    beside = api.create(now_utc() + timedelta(seconds=0.2), kind="echo")

    done = api.wait_for_status(behind["id"], "completed", timeout=20)

    started_stuck = parse(api.job(stuck["id"])["started_at"])
    waited = parse(done["started_at"]) - started_stuck
    logger.warning(
        "the slot came free %.2f s after the ignored attempt started", waited.total_seconds()
    )
    assert timedelta(seconds=1) <= waited < timedelta(seconds=10)
    echoed = api.job(beside["id"])
    assert echoed["status"] == "completed"
    assert parse(echoed["started_at"]) < parse(done["started_at"])
    after = api.job(stuck["id"])
    assert after["status"] == JobStatus.PENDING and after["attempts"] == 1
    assert "time limit of 1 s" in after["last_error"]
    assert next_entry_status(live_app, stuck["id"]) == "todo"  # its next attempt, in 60 s
