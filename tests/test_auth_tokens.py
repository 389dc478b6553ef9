"""POST /api/login/, /api/token/refresh/ and /api/logout/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_jwt_extended import create_refresh_token, decode_token
from sqlalchemy import select

from jobboard import create_app
from jobboard.auth.service import BAD_CREDENTIALS, NOT_VERIFIED
from jobboard.extensions import db
from jobboard.models import RevokedToken
from tests.support.auth import DEFAULT_PASSWORD, bearer_header, log_in
from tests.support.database import make_config


def login(client, email: str, password: str = DEFAULT_PASSWORD):
    return client.post("/api/login/", json={"email": email, "password": password})


def refresh(client, refresh_token: str):
    return client.post("/api/token/refresh/", headers=bearer_header(refresh_token))


def me(client, access_token: str):
    return client.get("/api/me/", headers=bearer_header(access_token))


# --- login ---------------------------------------------------------------------------------


def test_login_returns_a_bearer_token_pair(client, verified_user):
    response = login(client, verified_user.email)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    access = decode_token(body["access_token"])
    assert access["sub"] == str(verified_user.id) and access["type"] == "access"
    assert access["exp"] - access["iat"] == body["expires_in"]
    assert decode_token(body["refresh_token"])["type"] == "refresh"
    assert me(client, body["access_token"]).get_json()["id"] == verified_user.id


def test_login_compares_the_email_case_insensitively(client, verified_user):
    assert login(client, verified_user.email.upper()).status_code == 200


def test_login_with_a_wrong_password_is_401(client, verified_user):
    response = login(client, verified_user.email, "not the password")

    assert response.status_code == 401
    assert response.get_json() == {
        "code": 401,
        "status": "Unauthorized",
        "message": BAD_CREDENTIALS,
    }


def test_login_with_an_unknown_email_looks_like_a_wrong_password(client, verified_user):
    unknown = login(client, "nobody@example.com")
    wrong_password = login(client, verified_user.email, "not the password")

    assert unknown.status_code == wrong_password.status_code == 401
    assert unknown.get_json() == wrong_password.get_json()


def test_login_of_an_unverified_user_is_403(client, user):
    response = login(client, user.email)

    assert response.status_code == 403
    assert response.get_json()["message"] == NOT_VERIFIED


def test_an_unverified_user_with_a_wrong_password_gets_401_not_403(client, user):
    assert login(client, user.email, "not the password").status_code == 401


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"email", "password"}),
        ({"email": "a@example.com"}, {"password"}),
        ({"email": "a@example.com", "password": 12345678}, {"password"}),
        ({"email": ["a@example.com"], "password": "x" * 10}, {"email"}),
        ({"email": "a@example.com", "password": None}, {"password"}),
    ],
)
def test_login_refuses_malformed_input_with_422(client, payload, fields):
    response = client.post("/api/login/", json=payload)

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == fields


def test_login_refuses_malformed_json_with_400(client):
    response = client.post("/api/login/", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["errors"] == {"json": ["Invalid JSON body."]}


# --- refresh -------------------------------------------------------------------------------


def test_refresh_returns_new_tokens_and_revokes_the_old_refresh_token(client, verified_user):
    tokens = log_in(client, verified_user.email)

    response = refresh(client, tokens["refresh_token"])

    assert response.status_code == 200
    fresh = response.get_json()
    assert set(fresh) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert fresh["access_token"] != tokens["access_token"]
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert me(client, fresh["access_token"]).status_code == 200

    old_jti = decode_token(tokens["refresh_token"])["jti"]
    revoked = db.session.get(RevokedToken, old_jti)
    assert revoked is not None and revoked.token_type == "refresh"
    assert revoked.user_id == verified_user.id

    # The rotated-in refresh token keeps working, once.
    newer = refresh(client, fresh["refresh_token"])
    assert newer.status_code == 200
    assert me(client, newer.get_json()["access_token"]).status_code == 200


def test_a_refresh_token_used_twice_revokes_every_token_of_its_login(client, verified_user):
    tokens = log_in(client, verified_user.email)
    other_login = log_in(client, verified_user.email)
    fresh = refresh(client, tokens["refresh_token"]).get_json()

    again = refresh(client, tokens["refresh_token"])

    assert again.status_code == 401
    assert again.get_json()["message"] == "Token has been revoked"
    assert refresh(client, fresh["refresh_token"]).status_code == 401
    assert me(client, fresh["access_token"]).status_code == 401
    assert me(client, tokens["access_token"]).status_code == 401
    family = decode_token(tokens["refresh_token"])["fam"]
    assert decode_token(fresh["access_token"])["fam"] == family
    revoked = db.session.get(RevokedToken, f"family:{family}")
    assert revoked is not None and revoked.user_id == verified_user.id
    # Another login is another family.
    assert decode_token(other_login["refresh_token"])["fam"] != family
    assert me(client, other_login["access_token"]).status_code == 200


def test_a_refresh_token_from_before_families_still_refreshes_once(client, verified_user):
    from flask_jwt_extended import create_refresh_token

    old = create_refresh_token(identity=str(verified_user.id), additional_claims={"gen": 0})

    first = refresh(client, old)
    assert first.status_code == 200
    assert "fam" in decode_token(first.get_json()["refresh_token"])
    assert refresh(client, old).status_code == 401


def test_refresh_with_an_access_token_is_401(client, verified_user):
    tokens = log_in(client, verified_user.email)

    assert refresh(client, tokens["access_token"]).status_code == 401


def test_a_refresh_token_is_not_an_access_token(client, verified_user):
    tokens = log_in(client, verified_user.email)

    assert me(client, tokens["refresh_token"]).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "x"},
    ],
)
def test_refresh_without_a_valid_token_is_401(client, headers):
    response = client.post("/api/token/refresh/", headers=headers)

    assert response.status_code == 401
    assert response.get_json()["code"] == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_an_expired_refresh_token_is_401(client, verified_user):
    expired = create_refresh_token(
        identity=str(verified_user.id), expires_delta=timedelta(seconds=-1)
    )

    response = refresh(client, expired)

    assert response.status_code == 401
    assert response.get_json()["message"] == "Token has expired"


# --- logout --------------------------------------------------------------------------------


def test_logout_revokes_the_access_token(client, verified_user):
    tokens = log_in(client, verified_user.email)

    response = client.post("/api/logout/", headers=bearer_header(tokens["access_token"]))

    assert response.status_code == 204
    assert response.data == b""
    payload = decode_token(tokens["access_token"])
    revoked = db.session.get(RevokedToken, payload["jti"])
    assert revoked is not None and revoked.token_type == "access"
    assert revoked.expires_at.timestamp() == payload["exp"]

    after = me(client, tokens["access_token"])
    assert after.status_code == 401
    assert after.get_json()["message"] == "Token has been revoked"
    again = client.post("/api/logout/", headers=bearer_header(tokens["access_token"]))
    assert again.status_code == 401


def test_logout_leaves_other_sessions_alone(client, verified_user):
    first = log_in(client, verified_user.email)
    second = log_in(client, verified_user.email)

    client.post("/api/logout/", headers=bearer_header(first["access_token"]))

    assert me(client, second["access_token"]).status_code == 200


def test_logout_with_the_refresh_token_revokes_both(client, verified_user):
    tokens = log_in(client, verified_user.email)

    response = client.post(
        "/api/logout/",
        headers=bearer_header(tokens["access_token"]),
        json={"refresh_token": tokens["refresh_token"]},
    )

    assert response.status_code == 204
    assert refresh(client, tokens["refresh_token"]).status_code == 401
    revoked = db.session.scalars(select(RevokedToken.token_type)).all()
    assert sorted(revoked) == ["access", "family", "refresh"]


@pytest.mark.parametrize("which", ["garbage", "access token", "other user's refresh token"])
def test_logout_refuses_a_refresh_token_that_is_not_the_callers(
    client, verified_user, other_user, which
):
    tokens = log_in(client, verified_user.email)
    refresh_token = {
        "garbage": "not.a.jwt",
        "access token": tokens["access_token"],
        "other user's refresh token": log_in(client, other_user.email)["refresh_token"],
    }[which]

    response = client.post(
        "/api/logout/",
        headers=bearer_header(tokens["access_token"]),
        json={"refresh_token": refresh_token},
    )

    assert response.status_code == 422
    assert "refresh_token" in response.get_json()["errors"]["json"]
    # Nothing was revoked: the request is all or nothing.
    assert me(client, tokens["access_token"]).status_code == 200


def test_logout_with_an_expired_refresh_token_still_logs_out(client, verified_user):
    tokens = log_in(client, verified_user.email)
    expired = create_refresh_token(
        identity=str(verified_user.id), expires_delta=timedelta(seconds=-1)
    )

    response = client.post(
        "/api/logout/",
        headers=bearer_header(tokens["access_token"]),
        json={"refresh_token": expired},
    )

    assert response.status_code == 204
    assert me(client, tokens["access_token"]).status_code == 401


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic abc"}]
)
def test_logout_without_a_valid_access_token_is_401(client, headers):
    assert client.post("/api/logout/", headers=headers).status_code == 401


def test_logout_with_a_refresh_token_as_bearer_is_401(client, verified_user):
    tokens = log_in(client, verified_user.email)

    response = client.post("/api/logout/", headers=bearer_header(tokens["refresh_token"]))

    assert response.status_code == 401


@pytest.mark.parametrize("payload", [{"refresh_token": 5}, {"unknown": "x"}, []])
def test_logout_refuses_a_malformed_body_with_422(client, verified_user, payload):
    tokens = log_in(client, verified_user.email)

    response = client.post(
        "/api/logout/", headers=bearer_header(tokens["access_token"]), json=payload
    )

    assert response.status_code == 422


def test_logout_refuses_malformed_json_with_400(client, verified_user):
    tokens = log_in(client, verified_user.email)

    response = client.post(
        "/api/logout/",
        headers=bearer_header(tokens["access_token"]),
        data="{not json",
        content_type="application/json",
    )

    assert response.status_code == 400


def test_revocation_survives_a_restart(
    live_app, live_client, make_live_user, fresh_database, smtp_server
):
    """Revocations live in the database: a new application process (here a second app on
    the same database, as after a restart) still refuses the token."""
    make_live_user(email="restart@example.com")
    tokens = log_in(live_client, "restart@example.com")
    assert (
        live_client.post("/api/logout/", headers=bearer_header(tokens["access_token"])).status_code
        == 204
    )
    assert refresh(live_client, tokens["refresh_token"]).status_code == 200

    restarted = create_app(make_config(fresh_database, smtp_server.port))
    client = restarted.test_client()
    try:
        assert me(client, tokens["access_token"]).status_code == 401
        assert refresh(client, tokens["refresh_token"]).status_code == 401
    finally:
        with restarted.app_context():
            db.engine.dispose()
