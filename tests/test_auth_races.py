"""Races between concurrent requests, forced deterministically: a separate connection holds
a lock, the requests pile up behind it (we watch pg_stat_activity until they wait), then
the lock is released and the database decides."""

from __future__ import annotations

from typing import Any

from flask_jwt_extended import decode_token

from tests.support.auth import DEFAULT_PASSWORD, bearer_header, deliver_code, log_in, register
from tests.support.database import lock_waiters
from tests.support.polling import wait_until
from tests.support.races import blocking_transaction, in_threads, join


def test_a_registration_that_loses_the_race_for_an_email_gets_409(
    live_client, fresh_database, mailbox
):
    with blocking_transaction(fresh_database) as blocker:
        # Another registration of the same address (other letter case), not committed yet:
        # the request's own duplicate check cannot see it.
        blocker.execute(
            "INSERT INTO users (email, password_hash) VALUES ('Racer@Example.com', 'x')"
        )
        results, threads = in_threads(lambda: register(live_client, "racer@example.com"))
        wait_until(lambda: lock_waiters(fresh_database) == 1)
        blocker.commit()
        join(threads)

    (response,) = results
    assert response.status_code == 409
    # The winner is not verified: the loser is pointed to the password reset.
    assert "POST /api/password/forgot/" in response.get_json()["message"]


def test_two_simultaneous_verifications_with_the_right_code_pass_once(
    live_app, live_client, fresh_database, mailbox
):
    assert register(live_client, "twice@example.com").status_code == 201
    with live_app.app_context():
        code = deliver_code(mailbox, "twice@example.com")

    def verify():
        return live_client.post(
            "/api/verify-email/",
            json={"email": "twice@example.com", "otp": code, "password": DEFAULT_PASSWORD},
        )

    with blocking_transaction(fresh_database) as blocker:
        blocker.execute("SELECT id FROM users WHERE email = 'twice@example.com' FOR UPDATE")
        results, threads = in_threads(verify, verify)
        wait_until(lambda: lock_waiters(fresh_database) == 2)
        blocker.rollback()
        join(threads)

    # The second finds the code used and the address verified: a wrong code to it.
    assert sorted(r.status_code for r in results) == [200, 400]


def test_two_simultaneous_refreshes_with_one_token_rotate_once(
    live_client, make_live_user, fresh_database
):
    make_live_user(email="refresher@example.com")
    refresh_token = log_in(live_client, "refresher@example.com")["refresh_token"]
    jti = decode_token_outside_app(live_client, refresh_token)["jti"]

    def refresh():
        return live_client.post("/api/token/refresh/", headers=bearer_header(refresh_token))

    with blocking_transaction(fresh_database) as blocker:
        # A pending revocation of the same token lets both requests past the revocation
        # check; rolling it back makes them race for the insert.
        blocker.execute(
            "INSERT INTO revoked_tokens (jti, token_type, expires_at) "
            "VALUES (%s, 'refresh', now() + interval '1 day')",
            (jti,),
        )
        results, threads = in_threads(refresh, refresh)
        wait_until(lambda: lock_waiters(fresh_database) == 2)
        blocker.rollback()
        join(threads)

    assert sorted(r.status_code for r in results) == [200, 401]
    # The loser presented a token already traded: a reuse, so the winner's new tokens
    # (same family) are revoked too.
    (winner,) = [r.get_json() for r in results if r.status_code == 200]
    again = live_client.post("/api/token/refresh/", headers=bearer_header(winner["refresh_token"]))
    assert again.status_code == 401
    me = live_client.get("/api/me/", headers=bearer_header(winner["access_token"]))
    assert me.status_code == 401


def decode_token_outside_app(client, token: str) -> dict[str, Any]:
    with client.application.app_context():
        return decode_token(token)
