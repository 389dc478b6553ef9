"""What validating a request body costs: bodies under the size limit built to be expensive
(hundreds of thousands of values, thousands of unknown keys, long lists where a short one
is expected) are refused cheaply, with a small error body, and invalid unauthenticated
requests are counted per client IP.

The CPU time of each request (client and server, one process) is measured with
time.process_time; the bound asserted is a sanity bound for a shared machine, the
promise is ~20 ms, and the largest figure seen is printed.
"""

from __future__ import annotations

import gc
import json
import time
from typing import Any

import pytest

from jobboard import create_app
from jobboard.extensions import db
from jobboard.request_rules import MAX_JSON_VALUES
from tests.support.auth import bearer
from tests.support.database import make_config

CPU_SANITY_BOUND = 0.1  # seconds
MAX_ERROR_BODY = 16 * 1024  # bytes
SEEN: dict[str, float] = {}


def many(item: str, count: int) -> str:
    return "[" + ",".join([item] * count) + "]"


def keys(count: int, value: str = "0") -> str:
    return "{" + ",".join(f'"k{i}":{value}' for i in range(count)) + "}"


UNAUTHENTICATED_BODIES: dict[str, str] = {
    "349k empty arrays": many("[]", 349_000),
    "349k empty objects": many("{}", 349_000),
    "500k zeros": many("0", 500_000),
    "90k unknown keys": keys(90_000),
    "just under the value limit, unknown keys": keys(MAX_JSON_VALUES - 1),
    "a password of 250k arrays": json.dumps({"email": "a@example.com", "password": [[]] * 250_000}),
    "an email of 9,000 strings": json.dumps({"email": ["x"] * 9_000, "password": "p" * 10}),
    "140k escaped strings": many('["\\\\"]', 140_000),
    "nested 500k deep": "[" * 500_000 + "]" * 500_000,
    "null": "null",
    "a number": "5",
}
UNAUTHENTICATED_PATHS = ("/api/register/", "/api/login/", "/api/verify-email/", "/api/resend-otp/")


@pytest.fixture(autouse=True)
def warm(client):
    """The app's first request does one-time work (registering periodic tasks); it is not
    what is measured."""
    client.get("/health")


def measure(label: str, call) -> Any:
    # A full collection of the test process's own heap (a thousand tests in) can take
    # hundreds of ms: let it happen before the clock starts, not inside the request.
    gc.collect()
    started = time.process_time()
    response = call()
    spent = time.process_time() - started
    SEEN[label] = spent
    return response, spent


def assert_refused_cheaply(response, spent: float, label: str) -> None:
    assert response.status_code in (400, 422), (label, response.status_code)
    body = response.get_data()
    assert len(body) <= MAX_ERROR_BODY, (label, len(body))
    assert response.get_json()["code"] == response.status_code
    assert spent < CPU_SANITY_BOUND, f"{label}: {spent * 1000:.1f} ms of CPU"


@pytest.mark.parametrize("path", UNAUTHENTICATED_PATHS)
@pytest.mark.parametrize("name", list(UNAUTHENTICATED_BODIES))
def test_expensive_bodies_are_refused_cheaply_without_an_account(app, client, path, name):
    body = UNAUTHENTICATED_BODIES[name].encode()
    assert len(body) <= app.config["MAX_CONTENT_LENGTH"]
    response, spent = measure(
        f"{path} {name}",
        lambda: client.post(path, data=body, content_type="application/json"),
    )
    assert_refused_cheaply(response, spent, name)


def test_unknown_keys_are_reported_up_to_a_few(client):
    response = client.post("/api/register/", data=keys(5_000), content_type="application/json")
    assert response.status_code == 422
    errors = response.get_json()["errors"]["json"]
    unknown = [key for key in errors if key.startswith("k")]
    assert 0 < len(unknown) <= 20
    assert "5000 unknown fields" in " ".join(errors["_schema"]) or any(
        "more" in message for message in errors["_schema"]
    )


def authenticated_cases(job_id: int) -> list[tuple[str, str, str, str]]:
    return [
        ("PATCH", "/api/me/", "9,999 skills", json.dumps({"skills": ["s"] * 9_999})),
        ("PATCH", "/api/me/", "skills of 9,000 arrays", json.dumps({"skills": [[]] * 9_000})),
        (
            "POST",
            "/api/jobs/",
            "sleep params with 9,990 unknown keys",
            '{"name": "x", "kind": "sleep", "params": ' + keys(9_990) + "}",
        ),
        (
            "POST",
            "/api/jobs/",
            "9,990 unknown top-level keys",
            keys(9_990),
        ),
        (
            "PATCH",
            f"/api/jobs/{job_id}/",
            "params for sleep of 9,990 keys",
            '{"params": ' + keys(9_990) + "}",
        ),
        (
            "POST",
            f"/api/jobs/{job_id}/bids/",
            "a bid of 9,990 unknown keys",
            keys(9_990),
        ),
    ]


def test_expensive_bodies_are_refused_cheaply_with_an_account(client, verified_user, capsys):
    headers = bearer(verified_user)
    created = client.post(
        "/api/jobs/",
        json={"name": "target", "kind": "sleep", "params": {"seconds": 1}},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    for method, path, name, body in authenticated_cases(created.get_json()["id"]):
        response, spent = measure(
            f"{method} {path} {name}",
            lambda method=method, path=path, body=body: client.open(
                path, method=method, data=body, content_type="application/json", headers=headers
            ),
        )
        assert response.status_code in (400, 404, 409, 422), (name, response.status_code)
        assert len(response.get_data()) <= MAX_ERROR_BODY, (name, len(response.get_data()))
        assert spent < CPU_SANITY_BOUND, f"{name}: {spent * 1000:.1f} ms of CPU"


def test_a_large_valid_body_is_accepted(client, verified_user):
    """The value limit leaves room for what the API takes: an echo job with 5,000 params
    values, a long text full of commas and brackets."""
    headers = bearer(verified_user)
    values = {"text": "a,b,[c],{d}\n" * 2_000, "numbers": list(range(5_000))}
    response, _ = measure(
        "a large valid job",
        lambda: client.post(
            "/api/jobs/", json={"name": "big", "kind": "echo", "params": values}, headers=headers
        ),
    )
    assert response.status_code == 201, response.get_json()


def test_report_the_figures(capsys):
    if not SEEN:
        pytest.skip("nothing measured in this run")
    label, spent = max(SEEN.items(), key=lambda item: item[1])
    with capsys.disabled():
        for name, seconds in sorted(SEEN.items(), key=lambda item: -item[1])[:8]:
            print(f"\n  {seconds * 1000:6.1f} ms  {name}", end="")
        print(
            f"\n[body cost] {len(SEEN)} bodies; largest CPU per request {spent * 1000:.1f} ms "
            f"({label}); median {sorted(SEEN.values())[len(SEEN) // 2] * 1000:.1f} ms"
        )


def test_invalid_requests_without_an_account_are_limited_per_ip(live_app, smtp_server):
    """Past INVALID_REQUESTS_PER_IP malformed bodies, that IP's unauthenticated bodies are
    refused with 429 before they are decoded; other IPs and authenticated callers are not;
    the count lives in PostgreSQL, so another web process refuses that IP too."""
    live_app.config["INVALID_REQUESTS_PER_IP"] = 3
    attacker = live_app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    neighbour = live_app.test_client()
    neighbour.environ_base["REMOTE_ADDR"] = "203.0.113.8"
    junk = UNAUTHENTICATED_BODIES["349k empty arrays"].encode()

    for _ in range(3):
        assert (
            attacker.post("/api/login/", data=junk, content_type="application/json").status_code
            == 422
        )
    refused = attacker.post("/api/login/", data=b"{", content_type="application/json")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "invalid requests" in refused.get_json()["message"]

    # Now even a well-formed body from that IP is refused, unread, and cheaply.
    valid = {"email": "someone@example.com", "password": "a-long-password"}
    assert attacker.post("/api/register/", json=valid).status_code == 429
    response, spent = measure(
        "a junk body from a refused IP",
        lambda: attacker.post("/api/register/", data=junk, content_type="application/json"),
    )
    assert response.status_code == 429
    assert spent < CPU_SANITY_BOUND

    assert neighbour.post("/api/register/", json=valid).status_code == 201

    # Another web process (another app on the same database) refuses that IP as well.
    other_process = create_app(
        make_config(live_app.config["DATABASE_URL_FOR_WORKER"], smtp_server.port)
    )
    other_process.config["INVALID_REQUESTS_PER_IP"] = 3
    try:
        again = other_process.test_client()
        again.environ_base["REMOTE_ADDR"] = "203.0.113.7"
        assert (
            again.post("/api/login/", data=b"[]", content_type="application/json").status_code
            == 429
        )
    finally:
        with other_process.app_context():
            db.session.remove()
            db.engine.dispose()


def test_invalid_bodies_of_authenticated_callers_are_not_counted(live_app, make_live_user):
    live_app.config["INVALID_REQUESTS_PER_IP"] = 2
    client = live_app.test_client()
    with live_app.app_context():
        headers = bearer(make_live_user(email="counted@example.com"))
    for _ in range(4):
        response = client.post(
            "/api/jobs/", data=b"[]", content_type="application/json", headers=headers
        )
        assert response.status_code == 422
    login = {"email": "counted@example.com", "password": "wrong-password"}
    assert client.post("/api/login/", json=login).status_code == 401
