"""Request ids and log lines: an `X-Request-ID` kept or replaced and echoed, on every log
line of its request and on the worker's lines of the attempts it queued; one access line
per request; one line per attempt; LOG_FORMAT=json in both processes (the Procfile's web
entry and `python -m workers`, for real)."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request

import pytest
from flask import Flask
from sqlalchemy import select

from jobboard import logs
from jobboard.extensions import db
from jobboard.models import User
from tests.support.auth import bearer
from tests.support.factories import UserFactory
from tests.support.live_web import LiveWeb, live_environment
from tests.support.polling import wait_until
from tests.support.worker import WorkerProcess

GENERATED = re.compile(r"[0-9a-f]{32}")


def access_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "jobboard.access"]


# --- the request id ------------------------------------------------------------------------


@pytest.mark.parametrize("kept", ["abc", "A-1_b.c", "x" * 64, "0"])
def test_a_well_formed_request_id_is_kept_and_echoed(client, kept):
    response = client.get("/health", headers={"X-Request-ID": kept})
    assert response.headers["X-Request-ID"] == kept


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x" * 65,
        "x" * 10_240,
        "has space",
        "semi;colon",
        "ctrl\x01char",
        "tab\there",
        "nul\x00",
        "é",
        "../../etc",
    ],
)
def test_a_malformed_request_id_is_replaced_never_echoed(client, bad):
    response = client.get("/health", environ_overrides={"HTTP_X_REQUEST_ID": bad})
    assert response.status_code == 200
    replaced = response.headers["X-Request-ID"]
    assert GENERATED.fullmatch(replaced), replaced


def test_every_response_has_a_request_id_of_its_own(client, verified_user):
    answers = [
        client.get("/health"),
        client.get("/api/jobs/"),  # 401
        client.get("/api/jobs/", headers=bearer(verified_user)),
        client.get("/api/jobs/?sort=nonsense", headers=bearer(verified_user)),  # 422
        client.get("/no/such/page"),  # 404
        client.post("/api/jobs/", data="{", headers=bearer(verified_user)),  # 400/422
    ]
    ids = [answer.headers["X-Request-ID"] for answer in answers]
    assert all(GENERATED.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


# --- the lines of a request ----------------------------------------------------------------


@pytest.fixture
def logging_app(live_app: Flask) -> Flask:
    """An application with a view that logs, as any service may."""

    def chatty():
        logging.getLogger("jobboard.chatty").warning("first")
        logging.getLogger("somelibrary").info("second")
        return {"ok": True}

    live_app.add_url_rule("/chatty", view_func=chatty)
    return live_app


def test_every_line_of_a_request_carries_its_id_and_one_access_line_ends_it(logging_app, caplog):
    caplog.set_level(logging.INFO)
    client = logging_app.test_client()

    client.get("/chatty", headers={"X-Request-ID": "req-1"})
    client.get("/chatty", headers={"X-Request-ID": "req-2"})
    logging.getLogger("jobboard.chatty").warning("outside any request")

    by_id: dict[str | None, list[str]] = {}
    for record in caplog.records:
        by_id.setdefault(getattr(record, "request_id", None), []).append(record.getMessage())
    assert by_id["req-1"][:2] == ["first", "second"]
    assert by_id["req-2"][:2] == ["first", "second"]
    assert "outside any request" in by_id[None]
    [first, second] = access_records(caplog)
    assert first.request_id == "req-1" and second.request_id == "req-2"
    assert (first.method, first.path, first.status) == ("GET", "/chatty", 200)
    assert first.duration_ms >= 0
    assert first.getMessage().startswith("GET /chatty 200 ")


def test_one_access_line_per_request_whatever_its_answer(client, verified_user, caplog):
    caplog.set_level(logging.INFO)
    client.get("/api/jobs/?page=0", headers=bearer(verified_user))  # 422
    client.get("/api/jobs/987654/", headers=bearer(verified_user))  # 404
    client.get("/api/jobs/?token=secret", headers=bearer(verified_user))  # 200, a query
    etag = client.get("/api/jobs/", headers=bearer(verified_user)).headers["ETag"]
    client.get("/api/jobs/", headers={**bearer(verified_user), "If-None-Match": etag})  # 304

    lines = access_records(caplog)
    assert [line.status for line in lines] == [422, 404, 200, 200, 304]
    assert all(line.path.startswith("/api/jobs/") for line in lines)
    # The path without its query string: queries can carry what logs must not.
    assert not any("secret" in line.getMessage() for line in lines)


# --- formats -------------------------------------------------------------------------------


def formatted(log_format: str, *, request_id=None, job=None, **extra) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter_for(log_format))
    logger = logging.getLogger("jobboard.formats")
    logger.addHandler(handler)
    logger.propagate = False
    logs.install_record_context()
    try:
        if job is not None:
            with logs.job_context(*job, request_id=request_id):
                logger.warning("hello %s", "world", extra=extra)
        else:
            token = logs.request_id_var.set(request_id)
            try:
                logger.warning("hello %s", "world", extra=extra)
            finally:
                logs.request_id_var.reset(token)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_json_lines_carry_time_level_logger_message_and_the_context():
    line = json.loads(formatted("json", request_id="r-9", status=201))
    assert line["level"] == "WARNING" and line["logger"] == "jobboard.formats"
    assert line["message"] == "hello world"
    assert line["request_id"] == "r-9" and line["status"] == 201
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line["time"])
    assert "job_id" not in line

    worker_line = json.loads(formatted("json", job=(7, 2), request_id=None))
    assert worker_line["job_id"] == 7 and worker_line["attempt"] == 2
    assert "request_id" not in worker_line


def test_text_lines_stay_readable_with_the_context_after_the_logger():
    line = formatted("text", job=(7, 2), request_id="r-9")
    assert "WARNING jobboard.formats request_id=r-9 job_id=7 attempt=2: hello world" in line
    assert "jobboard.formats: hello world" in formatted("text")


def test_an_unknown_log_format_stops_the_process():
    with pytest.raises(SystemExit, match="LOG_FORMAT must be one of text, json"):
        logs.formatter_for("xml")


# --- both processes, for real --------------------------------------------------------------


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def _call(port: int, method: str, path: str, headers: dict, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), json.loads(response.read() or b"null")


def test_json_logs_of_the_web_and_the_worker_tie_a_job_to_its_request(
    fresh_database, smtp_server, live_app, tmp_path
):
    env = live_environment(fresh_database, smtp_server.port)
    env.update(
        LOG_FORMAT="json",
        JWT_SECRET_KEY=live_app.config["JWT_SECRET_KEY"],
        SECRET_KEY=live_app.config["SECRET_KEY"],
    )
    with live_app.app_context():
        user_id = UserFactory(email="logs@example.com").id
        assert db.session.scalar(select(User.id).where(User.id == user_id))
        headers = {**bearer(user_id), "X-Forwarded-For": "198.51.100.7"}
    web = LiveWeb(env, tmp_path / "web.log")
    worker_log = WorkerProcess.log_path_for_this_process()
    start = worker_log.stat().st_size if worker_log.exists() else 0
    worker = WorkerProcess(
        fresh_database,
        smtp_server.port,
        LOG_FORMAT="json",
        SECRET_KEY=env["SECRET_KEY"],
        JWT_SECRET_KEY=env["JWT_SECRET_KEY"],
    )
    try:
        status, answer_headers, job = _call(
            web.port,
            "POST",
            "/api/jobs/",
            {**headers, "X-Request-ID": "trace-123"},
            {"name": "logged", "params": {"n": 1}},
        )
        assert status == 201 and answer_headers["X-Request-ID"] == "trace-123"
        wait_until(
            lambda: (
                _call(web.port, "GET", f"/api/jobs/{job['id']}/", headers)[2]["status"]
                == "completed"
            ),
            timeout=30,
        )
        _, replaced, _ = _call(web.port, "GET", "/health", {"X-Request-ID": "bad id!"})
        assert GENERATED.fullmatch(replaced["X-Request-ID"])
    finally:
        worker.stop()
        web.stop()

    web_lines = _json_lines((tmp_path / "web.log").read_text())
    traced = [line for line in web_lines if line.get("request_id") == "trace-123"]
    [access] = [line for line in traced if line["logger"] == "jobboard.access"]
    assert access["method"] == "POST" and access["path"] == "/api/jobs/"
    assert access["status"] == 201 and access["duration_ms"] >= 0
    assert {"time", "level", "logger", "message"} <= set(access)
    # gunicorn's own lines are JSON too, and it writes no access line of its own.
    assert any(line["logger"] == "gunicorn.error" for line in web_lines)
    assert not any(line["logger"] == "gunicorn.access" for line in web_lines)
    health = [
        line
        for line in web_lines
        if line["logger"] == "jobboard.access" and line["path"] == "/health"
    ]
    assert health and all(line["request_id"] != "bad id!" for line in health)

    worker_lines = _json_lines(worker_log.read_text()[start:])
    [attempt] = [
        line
        for line in worker_lines
        if line.get("job_id") == job["id"] and line.get("outcome") is not None
    ]
    assert attempt["attempt"] == 1 and attempt["outcome"] == "completed"
    assert attempt["request_id"] == "trace-123"
    assert attempt["duration_ms"] >= 0 and attempt["level"] == "INFO"
    assert attempt["logger"] == "workers.jobs"


def test_the_worker_writes_one_line_per_attempt_failures_included(
    live_app, live_client, make_live_user, start_worker
):
    make_live_user(email="attempts-log@example.com")
    with live_app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == "attempts-log@example.com"))
        headers = bearer(user_id)
    worker_log = WorkerProcess.log_path_for_this_process()
    start = worker_log.stat().st_size if worker_log.exists() else 0
    worker = start_worker(JOB_RETRY_BASE_SECONDS="0.2")
    created = live_client.post(
        "/api/jobs/",
        json={"name": "flaky", "kind": "flaky", "params": {"fail_times": 1}},
        headers={**headers, "X-Request-ID": "flaky-1"},
    )
    assert created.status_code == 201
    job_id = created.get_json()["id"]
    wait_until(
        lambda: (
            live_client.get(f"/api/jobs/{job_id}/", headers=headers).get_json()["status"]
            == "completed"
        ),
        timeout=30,
    )
    worker.stop()

    text = worker_log.read_text()[start:]
    lines = [line for line in text.splitlines() if f"job {job_id} attempt" in line]
    summary = [line for line in lines if " in " in line and " ms" in line]
    assert len(summary) == 2, lines
    assert "request_id=flaky-1 job_id=" in summary[0]
    assert f"job {job_id} attempt 1 failed in " in summary[0]
    assert "the next attempt is scheduled" in summary[0]
    assert f"job {job_id} attempt 2 completed in " in summary[1]


def test_the_next_attempt_of_a_failed_one_keeps_the_request_id(
    live_app, live_client, make_live_user
):
    """A retry scheduled by the worker is queued with the id of the request that queued
    the failed attempt."""
    from jobboard.models import Job
    from tests.support.jobs import queue_row, run_queued_attempt

    make_live_user(email="retry-id@example.com")
    with live_app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == "retry-id@example.com"))
        headers = {**bearer(user_id), "X-Request-ID": "first-request"}
    created = live_client.post(
        "/api/jobs/",
        json={"name": "flaky", "kind": "flaky", "params": {"fail_times": 1}},
        headers=headers,
    )
    job_id = created.get_json()["id"]
    with live_app.app_context():
        entry = db.session.get(Job, job_id).queue_job_id
        assert queue_row(entry)["args"]["request_id"] == "first-request"
        with logs.job_context(job_id, request_id="first-request"):
            run_queued_attempt(job_id)
        db.session.expire_all()
        retry_entry = db.session.get(Job, job_id).queue_job_id
        assert retry_entry != entry
        assert queue_row(retry_entry)["args"]["request_id"] == "first-request"
