"""Browser sessions in cookies: sign in sets HttpOnly, SameSite=Lax cookies; every change
made with them needs the double-submit CSRF token; bearer headers are unaffected; signing
out (here, or everywhere) revokes, so a copied cookie is refused afterwards; the login
limits apply unchanged."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from config import DevelopmentConfig, ProductionConfig
from tests.support.auth import DEFAULT_PASSWORD, bearer
from tests.support.limits import from_ip

ACCESS = "access_token_cookie"
REFRESH = "refresh_token_cookie"
CSRF = "csrf_access_token"
CSRF_REFRESH = "csrf_refresh_token"
REFRESH_PATH = "/api/session/"


def sign_in(client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD):
    return client.post("/api/session/", json={"email": email, "password": password})


def csrf(client: FlaskClient, name: str = CSRF) -> dict[str, str]:
    return {"X-CSRF-TOKEN": client.get_cookie(name).value}


def set_cookies(response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def test_sign_in_sets_httponly_samesite_cookies_and_no_token_in_the_body(client, verified_user):
    response = sign_in(client, verified_user.email)

    assert response.status_code == 200
    assert response.get_json()["email"] == verified_user.email
    assert "access_token" not in response.get_json()
    cookies = set_cookies(response)
    for name in (ACCESS, REFRESH):
        assert "HttpOnly" in cookies[name]
        assert "SameSite=Lax" in cookies[name]
    for name in (CSRF, CSRF_REFRESH):
        assert "HttpOnly" not in cookies[name]  # page script echoes it
    assert f"Path={REFRESH_PATH}" in cookies[REFRESH]
    assert "Secure" not in cookies[ACCESS]  # testing serves plain http
    assert client.get("/api/me/").get_json()["email"] == verified_user.email


def test_cookies_are_secure_in_production_only():
    assert ProductionConfig.JWT_COOKIE_SECURE is True
    assert DevelopmentConfig.JWT_COOKIE_SECURE is False


def test_a_change_with_cookies_needs_the_csrf_token(client, verified_user):
    sign_in(client, verified_user.email)
    patch = {"display_name": "Changed"}

    missing = client.patch("/api/me/", json=patch)
    wrong = client.patch("/api/me/", json=patch, headers={"X-CSRF-TOKEN": "not-the-token"})
    right = client.patch("/api/me/", json=patch, headers=csrf(client))

    assert missing.status_code == 403
    assert "X-CSRF-TOKEN" in missing.get_json()["message"]
    assert wrong.status_code == 403
    assert right.status_code == 200
    assert right.get_json()["display_name"] == "Changed"
    assert client.get("/api/me/").status_code == 200  # reads need no token


def test_sign_out_needs_the_csrf_token_too(client, verified_user):
    sign_in(client, verified_user.email)

    assert client.delete("/api/session/").status_code == 403
    assert client.get("/api/me/").status_code == 200


def test_a_bearer_header_is_not_csrf_checked_and_wins_over_cookies(
    client, verified_user, make_user
):
    other = make_user()
    sign_in(client, verified_user.email)

    response = client.patch("/api/me/", json={"display_name": "Bearer"}, headers=bearer(other))

    assert response.status_code == 200
    assert response.get_json()["id"] == other.id


def test_sign_out_revokes_the_session_and_clears_the_cookies(client, app: Flask, verified_user):
    sign_in(client, verified_user.email)
    stolen_access = client.get_cookie(ACCESS).value
    stolen_refresh = client.get_cookie(REFRESH, path=REFRESH_PATH).value
    refresh_csrf = csrf(client, CSRF_REFRESH)

    response = client.delete("/api/session/", headers=csrf(client))

    assert response.status_code == 204
    assert client.get_cookie(ACCESS) is None
    assert client.get("/api/me/").status_code == 401
    thief = app.test_client()
    thief.set_cookie(ACCESS, stolen_access)
    assert thief.get("/api/me/").status_code == 401
    thief.set_cookie(REFRESH, stolen_refresh, path=REFRESH_PATH)
    thief.set_cookie(CSRF_REFRESH, refresh_csrf["X-CSRF-TOKEN"])
    assert thief.post("/api/session/refresh/", headers=refresh_csrf).status_code == 401


def test_a_stolen_cookie_is_refused_after_sign_out_everywhere(client, app: Flask, verified_user):
    sign_in(client, verified_user.email)
    stolen = client.get_cookie(ACCESS).value
    owner_elsewhere = app.test_client()
    sign_in(owner_elsewhere, verified_user.email)
    thief = app.test_client()
    thief.set_cookie(ACCESS, stolen)
    assert thief.get("/api/me/").status_code == 200

    response = owner_elsewhere.delete("/api/session/all/", headers=csrf(owner_elsewhere))

    assert response.status_code == 204
    assert thief.get("/api/me/").status_code == 401
    assert client.get("/api/me/").status_code == 401
    assert sign_in(owner_elsewhere, verified_user.email).status_code == 200


def test_refresh_rotates_the_cookies_and_a_replayed_refresh_cookie_ends_the_login(
    client, app: Flask, verified_user
):
    sign_in(client, verified_user.email)
    old_refresh = client.get_cookie(REFRESH, path=REFRESH_PATH).value
    old_csrf = csrf(client, CSRF_REFRESH)

    missing_csrf = client.post("/api/session/refresh/")
    refreshed = client.post("/api/session/refresh/", headers=old_csrf)

    assert missing_csrf.status_code == 403
    assert refreshed.status_code == 200
    assert client.get_cookie(REFRESH, path=REFRESH_PATH).value != old_refresh
    assert client.get("/api/me/").status_code == 200
    replay = app.test_client()
    replay.set_cookie(REFRESH, old_refresh, path=REFRESH_PATH)
    replay.set_cookie(CSRF_REFRESH, old_csrf["X-CSRF-TOKEN"])
    assert replay.post("/api/session/refresh/", headers=old_csrf).status_code == 401
    assert client.get("/api/me/").status_code == 401  # the whole login is revoked


def test_sign_in_refuses_like_login(client, make_user):
    unverified = make_user(verified=False)

    assert sign_in(client, unverified.email).status_code == 403
    assert sign_in(client, unverified.email, "wrong password").status_code == 401
    assert sign_in(client, "nobody@example.com").status_code == 401
    assert client.get_cookie(ACCESS) is None
    assert client.post("/api/session/", json={"email": "x"}).status_code == 422


def test_failed_sign_ins_count_against_the_login_limits(client, verified_user):
    for _ in range(10):
        assert sign_in(client, verified_user.email, "wrong password").status_code == 401

    limited = sign_in(client, verified_user.email)
    from_elsewhere = client.post(
        "/api/session/",
        json={"email": verified_user.email, "password": DEFAULT_PASSWORD},
        **from_ip("203.0.113.99"),
    )

    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    assert from_elsewhere.status_code == 200


def test_unverified_session_gets_403_on_jobs(client, app: Flask, make_user):
    user = make_user(verified=False)
    # An unverified user cannot sign in; a token of one (issued before) is refused as 403.
    assert client.get("/api/jobs/", headers=bearer(user)).status_code == 403


def test_a_cross_site_form_cannot_sign_anybody_in(client, verified_user):
    """A form on another site can post text/plain, never JSON without a preflight: the
    session endpoint reads JSON only, so nobody is signed in to an attacker's account."""
    body = f'{{"email": "{verified_user.email}", "password": "{DEFAULT_PASSWORD}"}}'

    response = client.post("/api/session/", data=body, content_type="text/plain")

    assert response.status_code == 422
    assert client.get_cookie(ACCESS) is None
