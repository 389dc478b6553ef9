"""GET /metrics: behind METRICS_TOKEN; the queue's metrics computed from PostgreSQL, the
same totals from every web process, never counted twice; estimates on large tables; 503
within 5 s with PostgreSQL down; HTTP histograms summed over several gunicorn workers."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from config import libpq_url
from jobboard import create_app, metrics
from jobboard.extensions import db
from jobboard.jobs.processing import begin_attempt, run_attempt
from tests.support.database import make_config
from tests.support.factories import UserFactory
from tests.support.jobs import create_job, run_queued_attempt
from tests.support.live_web import LiveWeb, live_environment

TOKEN = "metrics-token-for-the-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def scraping(app, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", TOKEN)
    monkeypatch.setitem(app.config, "METRICS_SETTLE_SECONDS", 0)
    return app


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client) -> dict:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


# --- who may scrape ------------------------------------------------------------------------


def test_without_a_token_configured_there_is_no_metrics_path(client):
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 404
    assert response.get_json()["code"] == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer \u00e9"},
    ],
)
def test_a_missing_or_wrong_token_is_401(scraping, client, headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "METRICS_TOKEN" in response.get_json()["message"]


def test_the_token_opens_it_with_and_without_a_trailing_slash(scraping, client):
    for path in ("/metrics", "/metrics/"):
        assert client.get(path, headers=AUTH).status_code == 200


# --- what it says --------------------------------------------------------------------------


def test_the_queue_as_postgresql_knows_it(scraping, client, verified_user, monkeypatch):
    monkeypatch.setitem(scraping.config, "JOB_RETRY_BASE_SECONDS", 0)
    done = create_job(verified_user, params={"a": 1})
    run_queued_attempt(done.id)
    flaky = create_job(verified_user, kind="flaky", params={"fail_times": 1})
    run_queued_attempt(flaky.id)  # failed, retry scheduled
    run_queued_attempt(flaky.id)  # completed
    lost = create_job(verified_user, max_attempts=1)
    begin_attempt(lost.id, lost.queue_job_id)
    run_attempt(lost.id, queue_job_id=lost.queue_job_id)  # the stalled recovery: lost, failed
    running = create_job(verified_user, kind="sleep", params={"seconds": 1})
    begin_attempt(running.id, running.queue_job_id)
    due = create_job(verified_user)
    db.session.execute(
        text(
            "UPDATE procrastinate_jobs SET scheduled_at = statement_timestamp() - interval '30 s'"
            " WHERE id = :id"
        ),
        {"id": due.queue_job_id},
    )
    create_job(verified_user)  # scheduled in an hour: not waiting yet

    found = scrape(client)

    assert value(found, "jobboard_jobs", status="completed") == 2
    assert value(found, "jobboard_jobs", status="failed") == 1
    assert value(found, "jobboard_jobs", status="in_progress") == 1
    assert value(found, "jobboard_jobs", status="pending") == 2
    finished = "jobboard_job_attempts_finished_total"
    assert value(found, finished, kind="echo", outcome="completed") == 1
    assert value(found, finished, kind="flaky", outcome="failed") == 1
    assert value(found, finished, kind="flaky", outcome="completed") == 1
    assert value(found, finished, kind="echo", outcome="lost") == 1
    assert value(found, finished, kind="sleep", outcome="completed") == 0  # still running
    assert value(found, "jobboard_job_duration_seconds_count", kind="flaky") == 2
    assert value(found, "jobboard_job_duration_seconds_bucket", kind="echo", le="+Inf") == 2
    assert value(found, "jobboard_job_lateness_seconds_count") == 4
    assert value(found, "jobboard_queue_waiting", queue="jobs") == 1
    assert 29 < value(found, "jobboard_queue_oldest_waiting_seconds", queue="jobs") < 120
    assert value(found, "jobboard_queue_waiting", queue="mail") == 0
    assert value(found, "jobboard_workers_live") == 0
    for outcome in ("success", "failure"):
        assert ("jobboard_webhook_attempts_total", (("outcome", outcome),)) in found
    for status in ("pending", "succeeded", "failed"):
        assert ("jobboard_webhook_deliveries", (("status", status),)) in found


def test_totals_grow_once_per_attempt_however_often_scraped(scraping, client, verified_user):
    name = "jobboard_job_attempts_finished_total"
    job = create_job(verified_user)
    run_queued_attempt(job.id)
    assert value(scrape(client), name, kind="echo", outcome="completed") == 1
    assert value(scrape(client), name, kind="echo", outcome="completed") == 1

    another = create_job(verified_user)
    run_queued_attempt(another.id)
    assert value(scrape(client), name, kind="echo", outcome="completed") == 2


def test_a_long_history_is_taken_in_over_several_scrapes(
    scraping, client, verified_user, monkeypatch
):
    """Each scrape adds a bounded number of finished attempts to the totals, so one after
    an upgrade over millions of them stays within its statement timeout."""
    monkeypatch.setattr(metrics, "CATCH_UP_BATCH", 2)
    name = "jobboard_job_attempts_finished_total"
    for _ in range(5):
        run_queued_attempt(create_job(verified_user).id)
    seen = [value(scrape(client), name, kind="echo", outcome="completed") for _ in range(3)]
    assert seen == [3, 5, 5]


def test_attempts_are_counted_once_their_settle_time_has_passed(scraping, client, verified_user):
    name = "jobboard_job_attempts_finished_total"
    scraping.config["METRICS_SETTLE_SECONDS"] = 3600
    run_queued_attempt(create_job(verified_user).id)
    assert value(scrape(client), name, kind="echo", outcome="completed") == 0
    scraping.config["METRICS_SETTLE_SECONDS"] = 0
    assert value(scrape(client), name, kind="echo", outcome="completed") == 1


def test_http_requests_by_route_method_and_status(scraping, client, verified_user):
    from tests.support.auth import bearer

    client.get("/api/jobs/", headers=bearer(verified_user))
    client.get(f"/api/jobs/{987654}/", headers=bearer(verified_user))
    client.get("/no/such/path")
    found = scrape(client)
    count = "jobboard_http_request_duration_seconds_count"
    assert value(found, count, route="/api/jobs/", method="GET", status="200") >= 1
    assert value(found, count, route="/api/jobs/<int:job_id>/", method="GET", status="404") >= 1
    assert value(found, count, route="unmatched", method="GET", status="404") >= 1


# --- several processes, large tables --------------------------------------------------------


@pytest.fixture
def live_scraping(live_app):
    live_app.config.update(METRICS_TOKEN=TOKEN, METRICS_SETTLE_SECONDS=0)
    return live_app


def _live_user(app) -> int:
    with app.app_context():
        return UserFactory().id


def test_every_web_process_answers_the_same_totals(live_scraping, fresh_database, smtp_server):
    other = create_app(make_config(fresh_database, smtp_server.port))
    other.config.update(METRICS_TOKEN=TOKEN, METRICS_SETTLE_SECONDS=0)
    user_id = _live_user(live_scraping)
    name = "jobboard_job_attempts_finished_total"
    try:
        with live_scraping.app_context():
            for _ in range(3):
                run_queued_attempt(create_job(user_id).id)
        first = value(scrape(live_scraping.test_client()), name, kind="echo", outcome="completed")
        second = value(scrape(other.test_client()), name, kind="echo", outcome="completed")
        again = value(scrape(live_scraping.test_client()), name, kind="echo", outcome="completed")
        assert first == second == again == 3
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_scrape_never_waits_for_another_one(live_scraping, fresh_database):
    """While one process moves the totals forward (their row locked), another answers at
    once with the totals as last committed."""
    client = live_scraping.test_client()
    user_id = _live_user(live_scraping)
    with live_scraping.app_context():
        run_queued_attempt(create_job(user_id).id)
    scrape(client)
    with live_scraping.app_context():
        run_queued_attempt(create_job(user_id).id)
    name = "jobboard_job_attempts_finished_total"
    with psycopg.connect(libpq_url(fresh_database)) as holder:
        holder.execute("SELECT 1 FROM metric_rollups WHERE name = 'totals' FOR UPDATE")
        started = time.monotonic()
        assert value(scrape(client), name, kind="echo", outcome="completed") == 1
        assert time.monotonic() - started < 2
    assert value(scrape(client), name, kind="echo", outcome="completed") == 2


def test_large_tables_are_estimated_from_the_statistics(live_scraping, monkeypatch):
    user_id = _live_user(live_scraping)
    with live_scraping.app_context():
        for _ in range(3):
            run_queued_attempt(create_job(user_id).id)
        create_job(user_id)
        db.session.execute(text("ANALYZE jobs"))
        db.session.commit()
    monkeypatch.setattr(metrics, "EXACT_COUNT_BELOW", 0)  # every table counts as large
    found = scrape(live_scraping.test_client())
    # A table this small is sampled whole: the estimate is the count.
    assert value(found, "jobboard_jobs", status="completed") == 3
    assert value(found, "jobboard_jobs", status="pending") == 1  # counted, never estimated


def test_a_scrape_with_postgresql_down_is_a_503_within_5_s(private_server, private_app):
    private_app.config.update(METRICS_TOKEN=TOKEN)
    client = private_app.test_client()
    assert client.get("/metrics", headers=AUTH).status_code == 200

    private_server.stop()
    started = time.monotonic()
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 503, response.data
    assert time.monotonic() - started < 5
    assert response.get_json()["code"] == 503

    private_server.start()
    deadline = time.monotonic() + 15
    while client.get("/metrics", headers=AUTH).status_code != 200:
        assert time.monotonic() < deadline, "metrics did not come back with PostgreSQL"
        time.sleep(0.2)


def test_several_gunicorn_workers_sum_their_requests(fresh_database, smtp_server, tmp_path):
    """Whichever worker answers a scrape, it counts the requests every worker served."""
    env = live_environment(fresh_database, smtp_server.port)
    env.update(METRICS_TOKEN=TOKEN, WEB_CONCURRENCY="2")
    web = LiveWeb(env, tmp_path / "web.log")
    calls, clients = 40, 4
    try:
        barrier = threading.Barrier(clients)

        def hammer() -> None:
            barrier.wait()
            for _ in range(calls // clients):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{web.port}/api/jobs/", timeout=10)
                except urllib.error.HTTPError as error:
                    assert error.code == 401

        threads = [threading.Thread(target=hammer) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        scrapes = []
        for _ in range(6):
            request = urllib.request.Request(f"http://127.0.0.1:{web.port}/metrics", headers=AUTH)
            with urllib.request.urlopen(request, timeout=10) as response:
                scrapes.append(samples(response.read().decode()))
    finally:
        web.stop()
    count = "jobboard_http_request_duration_seconds_count"
    for found in scrapes:
        assert value(found, count, route="/api/jobs/", method="GET", status="401") == calls


def test_jobs_by_status_use_the_open_status_index(live_scraping):
    with live_scraping.app_context():
        db.session.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            db.session.scalars(
                text(
                    "EXPLAIN SELECT status, count(*) FROM jobs"
                    " WHERE status IN ('pending', 'in_progress') GROUP BY status"
                )
            )
        )
        db.session.rollback()
    assert "ix_jobs_open_status" in plan
