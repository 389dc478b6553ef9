"""Abuse limits (docs/security.md), at their edges, with the shipped
defaults: failed logins per (email, IP) and per IP, codes sent per IP and per address,
failed code checks per IP; and the client IP behind TRUSTED_PROXIES."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from jobboard import create_app
from jobboard.extensions import db
from tests.support.auth import DEFAULT_PASSWORD, allow_resend_now, register
from tests.support.database import make_config
from tests.support.limits import age_rate_limits, counted, from_ip, login, retry_after

WRONG = "not the password at all"


def fail_logins(client, email: str, times: int, ip: str = "10.0.0.1") -> list[int]:
    return [login(client, email, WRONG, ip).status_code for _ in range(times)]


# --- failed logins per (email, IP) -------------------------------------------------------------


def test_the_tenth_failure_is_401_and_the_eleventh_try_is_429_even_with_the_right_password(
    client, verified_user
):
    assert fail_logins(client, verified_user.email, 10) == [401] * 10

    refused = login(client, verified_user.email, DEFAULT_PASSWORD)

    assert refused.status_code == 429
    body = refused.get_json()
    assert body["code"] == 429 and body["status"] == "Too Many Requests"
    assert "at most 10 failed logins for one email address from one IP address" in body["message"]
    assert "15 minutes" in body["message"]
    assert 890 <= retry_after(refused) <= 900


def test_another_ip_still_logs_in_while_one_ip_is_locked_out(client, verified_user):
    fail_logins(client, verified_user.email, 10, ip="10.0.0.1")
    assert login(client, verified_user.email, ip="10.0.0.1").status_code == 429

    assert login(client, verified_user.email, ip="10.0.0.2").status_code == 200


def test_the_lockout_ends_when_the_window_passes(client, verified_user):
    fail_logins(client, verified_user.email, 10)
    assert login(client, verified_user.email).status_code == 429

    age_rate_limits(899, "login-failures-email-ip:")
    assert login(client, verified_user.email).status_code == 429
    age_rate_limits(2, "login-failures-email-ip:")

    assert login(client, verified_user.email).status_code == 200


def test_the_window_slides_one_failure_at_a_time(client, verified_user):
    """Not a fixed window: the oldest failure leaving the window frees one slot, no more."""
    fail_logins(client, verified_user.email, 1)
    age_rate_limits(600, "login-failures-email-ip:")
    fail_logins(client, verified_user.email, 9)
    assert login(client, verified_user.email).status_code == 429
    first = login(client, verified_user.email)
    assert 295 <= retry_after(first) <= 300  # when the old failure leaves the window

    age_rate_limits(301, "login-failures-email-ip:")

    assert fail_logins(client, verified_user.email, 2) == [401, 429]


def test_a_right_password_does_not_count_as_a_failure(client, verified_user):
    assert fail_logins(client, verified_user.email, 9) == [401] * 9
    assert login(client, verified_user.email).status_code == 200
    assert login(client, verified_user.email).status_code == 200

    assert fail_logins(client, verified_user.email, 2) == [401, 429]


def test_an_unverified_user_with_the_right_password_is_403_and_not_counted(client, user):
    for _ in range(12):
        assert login(client, user.email).status_code == 403


def test_unknown_addresses_are_limited_like_known_ones(client):
    assert fail_logins(client, "nobody.here@example.com", 11) == [401] * 10 + [429]


def test_the_limit_is_per_email(client, make_user):
    first, second = make_user(), make_user()
    fail_logins(client, first.email, 10)

    assert login(client, second.email).status_code == 200


# --- failed logins per IP ------------------------------------------------------------------


def test_the_hundredth_failure_from_one_ip_is_401_and_the_next_login_429(client, make_user):
    victim = make_user()
    statuses = [
        login(client, f"guess{n}@example.com", WRONG, "10.9.9.9").status_code for n in range(100)
    ]
    assert statuses == [401] * 100

    refused = login(client, victim.email, ip="10.9.9.9")

    assert "at most 100 failed logins from one IP address per hour" in refused.get_json()["message"]
    assert 3590 <= retry_after(refused) <= 3600
    assert login(client, victim.email, ip="10.9.9.10").status_code == 200


# --- codes sent ---------------------------------------------------------------------------------


def resend(client, email: str, ip: str):
    return client.post("/api/resend-otp/", json={"email": email}, **from_ip(ip))


def test_five_codes_per_address_from_one_ip_per_hour(client):
    email = "many.codes@example.com"
    assert register(client, email, ip="10.0.1.2").status_code == 201
    for _ in range(4):
        allow_resend_now(email)
        assert resend(client, email, "10.0.1.2").status_code == 202
    allow_resend_now(email)

    refused = resend(client, email, "10.0.1.2")

    message = refused.get_json()["message"]
    assert "at most 5 emailed codes for one email address requested from one IP address" in message
    assert retry_after(refused) > 3000
    # Another client (the owner) still gets a code for the address.
    assert resend(client, email, "10.0.1.3").status_code == 202


def test_thirty_codes_per_address_per_hour_from_everybody(client):
    email = "popular@example.com"
    for n in range(30):
        allow_resend_now(email)
        assert resend(client, email, f"10.0.9.{n}").status_code == 202
    allow_resend_now(email)

    refused = resend(client, email, "10.0.9.200")

    assert "at most 30 emailed codes per email address per hour" in refused.get_json()["message"]
    assert retry_after(refused) > 3000


def test_unknown_addresses_count_against_the_address_limits_too(client):
    email = "nobody.at.all@example.com"
    statuses = []
    for _ in range(6):
        allow_resend_now(email)
        statuses.append(resend(client, email, "10.0.1.9").status_code)
    assert statuses == [202] * 5 + [429]


def test_one_code_per_address_and_purpose_per_minute_known_or_not(client, user):
    for email in (user.email, "nobody.known@example.com"):
        assert resend(client, email, "10.0.1.20").status_code == 202
        refused = resend(client, email, "10.0.1.21")
        assert (
            "at most 1 verification code per email address per minute"
            in (refused.get_json()["message"])
        )
        assert 55 <= retry_after(refused) <= 60


def test_twenty_codes_per_ip_per_hour_across_addresses(client):
    statuses = [
        register(client, f"bulk{n}@example.com", ip="10.0.2.1").status_code for n in range(20)
    ]
    assert statuses == [201] * 20

    refused = register(client, "bulk20@example.com", ip="10.0.2.1")
    assert "at most 20 emailed codes requested from one IP address" in refused.get_json()["message"]
    assert retry_after(refused) > 3500
    forgot = client.post(
        "/api/password/forgot/", json={"email": "bulk0@example.com"}, **from_ip("10.0.2.1")
    )
    assert forgot.status_code == 429
    assert register(client, "bulk20@example.com", ip="10.0.2.2").status_code == 201


def test_a_registration_refused_with_409_counts_against_the_ip(client):
    """The 409 tells that the address has an account: asking it is counted."""
    register(client, "taken.once@example.com", ip="10.0.3.1")
    for _ in range(5):
        assert register(client, "taken.once@example.com", ip="10.0.3.1").status_code == 409

    assert counted("codes-sent-ip:10.0.3.1") == 6
    assert counted("codes-sent-address:taken.once@example.com") == 1


def test_a_registration_refused_as_invalid_counts_nothing(client):
    assert register(client, "weak@example.com", "short", ip="10.0.3.2").status_code == 422

    assert counted("codes-sent-ip:10.0.3.2") == 0


# --- failed code checks -------------------------------------------------------------------------


def test_thirty_failed_code_checks_per_ip_across_verify_and_reset(client, make_user):
    ip = from_ip("10.0.4.1")
    for n in range(15):
        response = client.post(
            "/api/verify-email/",
            json={"email": f"v{n}@example.com", "otp": "000000", "password": DEFAULT_PASSWORD},
            **ip,
        )
        assert response.status_code == 400
    for n in range(15):
        response = client.post(
            "/api/password/reset/",
            json={"email": f"r{n}@example.com", "otp": "000000", "new_password": "a new secret"},
            **ip,
        )
        assert response.status_code == 400

    refused = client.post(
        "/api/verify-email/",
        json={"email": "v0@example.com", "otp": "000000", "password": DEFAULT_PASSWORD},
        **ip,
    )
    assert "at most 30 failed code checks from one IP address" in refused.get_json()["message"]
    assert retry_after(refused) > 3500
    other = client.post(
        "/api/verify-email/",
        json={"email": "v0@example.com", "otp": "000000", "password": DEFAULT_PASSWORD},
        **from_ip("10.0.4.2"),
    )
    assert other.status_code == 400


def check(client, email: str, ip: str) -> int:
    return client.post(
        "/api/password/reset/",
        json={"email": email, "otp": "000000", "new_password": "a new secret"},
        **from_ip(ip),
    ).status_code


def test_ten_failed_code_checks_per_address_from_one_ip(client):
    email = "checked@example.com"
    assert [check(client, email, "10.0.4.7") for _ in range(11)] == [400] * 10 + [429]
    refused = client.post(
        "/api/verify-email/",
        json={"email": email, "otp": "000000", "password": DEFAULT_PASSWORD},
        **from_ip("10.0.4.7"),
    )
    assert (
        "at most 10 failed code checks for one email address from one IP address"
        in (refused.get_json()["message"])
    )
    assert check(client, email, "10.0.4.8") == 400


def test_sixty_failed_code_checks_per_address_from_everybody(client):
    email = "much.guessed@example.com"
    statuses = [check(client, email, f"10.0.10.{n // 10}") for n in range(60)]
    assert statuses == [400] * 60

    refused = client.post(
        "/api/password/reset/",
        json={"email": email, "otp": "000000", "new_password": "a new secret"},
        **from_ip("10.0.10.99"),
    )

    assert (
        "at most 60 failed code checks for one email address per hour"
        in (refused.get_json()["message"])
    )
    assert check(client, "another.address@example.com", "10.0.10.99") == 400


def test_a_successful_code_check_is_not_counted(client, mailbox):
    from tests.support.auth import deliver_code

    email = "good.code@example.com"
    register(client, email)
    code = deliver_code(mailbox, email)

    verified = client.post(
        "/api/verify-email/",
        json={"email": email, "otp": code, "password": DEFAULT_PASSWORD},
        **from_ip("10.0.5.1"),
    )

    assert verified.status_code == 200
    assert counted("code-check-failures-ip:10.0.5.1") == 0
    assert counted(f"code-check-failures-address:{email}") == 0
    assert counted(f"code-check-failures-address-ip:{email}|10.0.5.1") == 0
    assert counted(f"login-failures-email-ip:{email}|10.0.5.1") == 0


# --- the client IP -------------------------------------------------------------------------


@pytest.fixture
def proxied_app(fresh_database: str, smtp_server) -> Iterator[Flask]:
    application = create_app(make_config(fresh_database, smtp_server.port, TRUSTED_PROXIES=1))
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_without_trusted_proxies_x_forwarded_for_is_ignored(client, verified_user):
    """Rotating a forged X-Forwarded-For gains the attacker nothing."""
    statuses = [
        client.post(
            "/api/login/",
            json={"email": verified_user.email, "password": WRONG},
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
            **from_ip("10.0.6.1"),
        ).status_code
        for n in range(11)
    ]

    assert statuses == [401] * 10 + [429]
    assert counted(f"login-failures-email-ip:{verified_user.email}|10.0.6.1") == 10


def test_behind_one_trusted_proxy_the_client_is_the_last_forwarded_address(
    proxied_app, make_live_user
):
    user = make_live_user(email="proxied@example.com")
    client = proxied_app.test_client()

    def attempt(forwarded_for: str, password: str = WRONG) -> int:
        return client.post(
            "/api/login/",
            json={"email": user.email, "password": password},
            headers={"X-Forwarded-For": forwarded_for},
            **from_ip("10.0.0.254"),  # the proxy
        ).status_code

    # What the client itself put in the header (left) is not trusted; the proxy's entry is.
    assert [attempt(f"198.51.100.{n}, 192.0.2.7") for n in range(11)] == [401] * 10 + [429]
    assert attempt("192.0.2.8", DEFAULT_PASSWORD) == 200
    assert attempt("192.0.2.7", DEFAULT_PASSWORD) == 429
    with proxied_app.app_context():
        assert counted(f"login-failures-email-ip:{user.email}|192.0.2.7") == 10


def test_ipv6_clients_are_counted_by_their_64(client, verified_user):
    def attempt(ip: str, password: str = WRONG) -> int:
        return login(client, verified_user.email, password, ip).status_code

    assert [attempt(f"2001:db8:aa:1::{n:x}") for n in range(1, 11)] == [401] * 10
    assert attempt("2001:db8:aa:1:ffff:ffff:ffff:ffff", DEFAULT_PASSWORD) == 429
    assert attempt("2001:db8:aa:2::1", DEFAULT_PASSWORD) == 200
    assert counted(f"login-failures-email-ip:{verified_user.email}|2001:db8:aa:1::/64") == 10


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
        ("someone@example.com", "someone@example.com"),
    ],
)
def test_client_key(address, key):
    from jobboard.ratelimit import client_key

    assert client_key(address) == key


def test_a_wrong_current_password_counts_as_a_failed_login(client, verified_user, auth_headers):
    """A stolen access token is no way around the login limits to guess the password."""
    headers = auth_headers(verified_user)

    def change(old_password: str) -> int:
        return client.post(
            "/api/me/password/",
            json={"old_password": old_password, "new_password": "a brand new secret"},
            headers=headers,
            **from_ip("10.0.7.1"),
        ).status_code

    assert [change(WRONG) for _ in range(10)] == [400] * 10
    assert change(DEFAULT_PASSWORD) == 429
    assert login(client, verified_user.email, ip="10.0.7.1").status_code == 429
    assert login(client, verified_user.email, ip="10.0.7.2").status_code == 200
