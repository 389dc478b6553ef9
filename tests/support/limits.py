"""Helpers for the abuse-limit tests: calls from a chosen client IP, and moving the rate
limit counters back in time instead of waiting out their windows."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.test import TestResponse

from jobboard.extensions import db
from tests.support.auth import DEFAULT_PASSWORD


def from_ip(ip: str) -> dict[str, Any]:
    """Test-client keyword arguments for a request whose socket peer is `ip`."""
    return {"environ_base": {"REMOTE_ADDR": ip}}


def login(
    client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD, ip: str = "10.0.0.1"
) -> TestResponse:
    return client.post("/api/login/", json={"email": email, "password": password}, **from_ip(ip))


def age_rate_limits(seconds: float, key_prefix: str = "") -> None:
    """Move every counted event (of keys starting with `key_prefix`) `seconds` back."""
    db.session.execute(
        text(
            "UPDATE rate_limit_hits SET "
            "hits = array(SELECT h - make_interval(secs => :s) FROM unnest(hits) AS h), "
            "expires_at = expires_at - make_interval(secs => :s) "
            "WHERE key LIKE :prefix || '%'"
        ),
        {"s": seconds, "prefix": key_prefix},
    )
    db.session.commit()


def counted(key: str) -> int:
    """How many events the counter `key` holds (expired ones included)."""
    value = db.session.execute(
        text("SELECT cardinality(hits) FROM rate_limit_hits WHERE key = :key"), {"key": key}
    ).scalar_one_or_none()
    return value or 0


def retry_after(response: TestResponse) -> int:
    assert response.status_code == 429, response.get_json()
    return int(response.headers["Retry-After"])
