"""Revoking every token of a user: password change, password reset, POST /api/logout/all/.
Old access and refresh tokens are refused; a login right after works; checking a token
costs one query."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask_jwt_extended import decode_token
from sqlalchemy import event

from jobboard.extensions import db
from tests.support.auth import DEFAULT_PASSWORD, bearer_header, log_in
from tests.support.limits import from_ip
from tests.support.reset import reset_code_for

NEW_PASSWORD = "a brand new secret"


def me(client, token: str) -> int:
    return client.get("/api/me/", headers=bearer_header(token)).status_code


def refresh(client, token: str):
    return client.post("/api/token/refresh/", headers=bearer_header(token))


def sessions(client, email: str, count: int = 2) -> list[dict[str, str]]:
    """`count` independent logins (devices), plus one rotated refresh of the first."""
    pairs = [log_in(client, email) for _ in range(count)]
    rotated = refresh(client, pairs[0]["refresh_token"])
    assert rotated.status_code == 200
    return [*pairs[1:], rotated.get_json()]


def assert_all_refused(client, pairs: list[dict[str, str]]) -> None:
    for pair in pairs:
        assert me(client, pair["access_token"]) == 401
        refused = refresh(client, pair["refresh_token"])
        assert refused.status_code == 401
        assert refused.get_json()["message"] == "Token has been revoked"


def test_logout_all_revokes_every_access_and_refresh_token(client, verified_user):
    pairs = sessions(client, verified_user.email, 3)

    response = client.post("/api/logout/all/", headers=bearer_header(pairs[0]["access_token"]))

    assert response.status_code == 204
    assert_all_refused(client, pairs)
    fresh = log_in(client, verified_user.email)
    assert me(client, fresh["access_token"]) == 200
    assert refresh(client, fresh["refresh_token"]).status_code == 200


def test_logout_all_needs_a_valid_access_token(client, verified_user):
    pair = log_in(client, verified_user.email)

    assert client.post("/api/logout/all/").status_code == 401
    assert (
        client.post("/api/logout/all/", headers=bearer_header(pair["refresh_token"])).status_code
        == 401
    )
    assert me(client, pair["access_token"]) == 200


def test_logout_all_leaves_other_users_alone(client, verified_user, other_user):
    mine = log_in(client, verified_user.email)
    theirs = log_in(client, other_user.email)

    client.post("/api/logout/all/", headers=bearer_header(mine["access_token"]))

    assert me(client, theirs["access_token"]) == 200


def test_a_password_change_revokes_every_earlier_token_and_the_new_password_logs_in(
    client, verified_user
):
    pairs = sessions(client, verified_user.email)

    changed = client.post(
        "/api/me/password/",
        json={"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer_header(pairs[0]["access_token"]),
    )

    assert changed.status_code == 204
    assert_all_refused(client, pairs)
    # Right after, in the same second as the revocation.
    fresh = log_in(client, verified_user.email, NEW_PASSWORD)
    assert me(client, fresh["access_token"]) == 200
    renewed = refresh(client, fresh["refresh_token"])
    assert renewed.status_code == 200
    assert me(client, renewed.get_json()["access_token"]) == 200


def test_a_refused_password_change_revokes_nothing(client, verified_user):
    pair = log_in(client, verified_user.email)

    wrong = client.post(
        "/api/me/password/",
        json={"old_password": "not the old one", "new_password": NEW_PASSWORD},
        headers=bearer_header(pair["access_token"]),
    )

    assert wrong.status_code == 400
    assert me(client, pair["access_token"]) == 200


def test_a_password_reset_revokes_every_earlier_token(client, verified_user, mailbox):
    pairs = sessions(client, verified_user.email)
    code = reset_code_for(client, mailbox, verified_user.email)

    reset = client.post(
        "/api/password/reset/",
        json={"email": verified_user.email, "otp": code, "new_password": NEW_PASSWORD},
    )

    assert reset.status_code == 204
    assert_all_refused(client, pairs)
    assert me(client, log_in(client, verified_user.email, NEW_PASSWORD)["access_token"]) == 200


def test_tokens_carry_the_generation_they_were_issued_under(client, verified_user):
    first = log_in(client, verified_user.email)
    client.post("/api/logout/all/", headers=bearer_header(first["access_token"]))
    second = log_in(client, verified_user.email)

    assert decode_token(first["access_token"])["gen"] == 0
    assert decode_token(second["access_token"])["gen"] == 1
    assert decode_token(second["refresh_token"])["gen"] == 1


def test_a_refresh_keeps_the_generation_of_the_presented_token(client, verified_user):
    pair = log_in(client, verified_user.email)

    rotated = refresh(client, pair["refresh_token"]).get_json()

    assert decode_token(rotated["access_token"])["gen"] == 0
    assert decode_token(rotated["refresh_token"])["gen"] == 0


@contextmanager
def statements_counted() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_an_authenticated_request_checks_its_token_with_one_query(client, verified_user):
    """User, jti revocation and token generation in one statement: GET /api/me/ needs no
    other query."""
    token = log_in(client, verified_user.email)["access_token"]
    db.session.remove()

    with statements_counted() as statements:
        assert me(client, token) == 200

    queries = [s for s in statements if not s.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(queries) == 1, "\n=====\n".join(queries)
    assert "revoked_tokens" in queries[0] and "users" in queries[0]


def test_the_takeover_is_undone_for_tokens_too(client, user, mailbox):
    """An attacker who registered the address and got tokens some other way (say, the
    account was verified by an operator) loses them when the owner resets."""
    with client.application.app_context():
        from jobboard.auth.service import mark_email_verified
        from jobboard.models import now_utc

        mark_email_verified(user, now_utc())
        db.session.commit()
    attacker = log_in(client, user.email)
    code = reset_code_for(client, mailbox, user.email)
    client.post(
        "/api/password/reset/",
        json={"email": user.email, "otp": code, "new_password": NEW_PASSWORD},
        **from_ip("10.7.0.1"),
    )

    assert me(client, attacker["access_token"]) == 401
    assert refresh(client, attacker["refresh_token"]).status_code == 401
