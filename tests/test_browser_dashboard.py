"""The dashboard page in a real headless Chromium against a real HTTP server: sign in
through the form, read the numbers off the page, and compare them with the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask

from jobboard import queue
from jobboard.auth.service import resend_verification_code
from jobboard.extensions import db
from jobboard.models import BidStatus, JobStatus, now_utc
from tests.support.auth import DEFAULT_PASSWORD, code_in, run_job, verification_job_for
from tests.support.browser import Browser, LiveServer, chromium_path
from tests.support.factories import BidFactory, JobFactory, UserFactory
from tests.support.polling import wait_until

READ_NUMBERS = """
Object.fromEntries(
  Array.from(document.querySelectorAll('[data-testid][data-value]'))
    .map(e => [e.dataset.testid, {value: e.dataset.value, text: e.textContent}])
)
"""
XSS_NAME = '<img src=x onerror="document.body.dataset.pwned = 1">'
DUE_DATES = (date(2031, 3, 14), date(2031, 1, 2))


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture
def server(live_app: Flask) -> Iterator[LiveServer]:
    running = LiveServer(live_app)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """One Chromium for the module. Each test serves the app on a new port, a new origin,
    so no test sees another's sessionStorage."""
    opened = Browser(chromium)
    yield opened
    opened.close()


@pytest.fixture
def people(live_app: Flask) -> None:
    """A member with jobs in every status, jobs assigned to them, bids; an admin; an
    unverified user; some queue entries. All committed for real."""
    with live_app.app_context():
        make_user = UserFactory
        member = make_user(email="member@example.com", display_name="Mia Member")
        client = make_user(email="client@example.com")
        make_user(email="admin@example.com", admin=True)
        make_user(email="new@example.com", verified=False)
        statuses = (
            [JobStatus.PENDING] * 3
            + [JobStatus.IN_PROGRESS]
            + [JobStatus.COMPLETED] * 7
            + [JobStatus.FAILED] * 2
            + [JobStatus.CANCELLED]
        )
        start = now_utc() - timedelta(days=1)
        for index, status in enumerate(statuses):
            JobFactory(
                owner=member.id,
                status=status,
                name=f"Report {index + 1}",
                created_at=start + timedelta(minutes=index),
            )
        JobFactory(owner=member.id, status=JobStatus.PENDING, name=XSS_NAME, created_at=now_utc())
        theirs = [JobFactory(owner=client.id, status=status) for status in JobStatus]
        theirs[0].due_date = DUE_DATES[0]
        theirs[2].due_date = DUE_DATES[1]
        BidFactory(job=theirs[0], bidder=member.id, status=BidStatus.ACCEPTED)
        BidFactory(job=theirs[2], bidder=member.id, status=BidStatus.ACCEPTED)
        BidFactory(job=theirs[1], bidder=member.id, status=BidStatus.PENDING)
        BidFactory(job=theirs[3], bidder=member.id, status=BidStatus.REJECTED)
        BidFactory(job=theirs[4], bidder=member.id, status=BidStatus.WITHDRAWN)
        queue.defer("send_email", queue="mail", to="a@example.com", subject="s", body="b")
        queue.defer(
            "process_job",
            queue="jobs",
            schedule_at=now_utc() - timedelta(seconds=90),
            job_id=theirs[0].id,
        )
        queue.defer(
            "process_job", queue="jobs", schedule_at=now_utc() + timedelta(hours=1), job_id=1
        )
        db.session.commit()


def api_view(client, email: str) -> tuple[dict, list[int]]:
    """The dashboard JSON and the ids of the latest 10 jobs, as the API gives them."""
    login = client.post("/api/login/", json={"email": email, "password": DEFAULT_PASSWORD})
    headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    dashboard = client.get("/api/dashboard/", headers=headers)
    assert dashboard.status_code == 200
    recent = client.get("/api/jobs/?page_size=10", headers=headers)
    assert recent.status_code == 200
    return dashboard.get_json(), [job["id"] for job in recent.get_json()]


def member_headers(client) -> dict[str, str]:
    login = client.post(
        "/api/login/", json={"email": "member@example.com", "password": DEFAULT_PASSWORD}
    )
    return {"Authorization": f"Bearer {login.get_json()['access_token']}"}


def sign_in(browser: Browser, server: LiveServer, email: str, password: str) -> str:
    browser.open(f"{server.url}/dashboard/")
    assert browser.wait_for_state("signed-out") == "signed-out"
    browser.type_into("signin-email", email)
    browser.type_into("signin-password", password)
    browser.click("signin-submit")
    return browser.wait_for_state("loaded", "signed-out", "error")


def numbers_on_page(browser: Browser) -> dict[str, dict[str, str]]:
    return browser.evaluate(READ_NUMBERS)


def assert_section_matches(numbers, section: str, expected: dict[str, int]) -> None:
    for key, value in expected.items():
        shown = numbers[f"{section}-{key}"]
        assert int(shown["value"]) == value, (section, key)
        assert int(shown["text"].replace(",", "")) == value, (section, key)


def external_requests(browser: Browser, server: LiveServer) -> list[str]:
    """URLs the page fetched from anywhere but this server (inline data: URLs aside)."""
    requested = browser.requested_urls()
    assert any(url.startswith(server.url) for url in requested)
    return [url for url in requested if not url.startswith((server.url + "/", "data:"))]


def show(capsys, path) -> None:
    with capsys.disabled():
        print(f"\n[screenshot] {path}")


def test_member_signs_in_and_sees_the_api_numbers_with_a_chart(
    browser, server, people, live_client, capsys
):
    assert sign_in(browser, server, "member@example.com", DEFAULT_PASSWORD) == "loaded"

    expected, recent_ids = api_view(live_client, "member@example.com")
    numbers = numbers_on_page(browser)
    assert_section_matches(numbers, "jobs", expected["jobs"])
    assert_section_matches(numbers, "assigned", expected["assigned"])
    assert_section_matches(numbers, "bids", expected["bids"])
    assert expected["jobs"]["total"] == 15 and expected["assigned"]["total"] == 2
    # The charts: one bar per status, labelled with its count.
    for chart, section in (("jobs-chart", "jobs"), ("assigned-chart", "assigned")):
        for status in JobStatus:
            label = numbers[f"{chart}-value-{status.value}"]
            assert int(label["value"]) == expected[section][status.value], (chart, status)
    bar_heights = browser.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll("
        "'[data-testid^=jobs-chart-bar-]')).map(b => "
        "[b.dataset.testid.slice('jobs-chart-bar-'.length), Number(b.getAttribute('height'))]))"
    )
    assert bar_heights["completed"] > bar_heights["pending"] > bar_heights["in_progress"] > 0
    # The latest jobs, in the API's order, with the total from X-Pagination.
    shown_ids = browser.evaluate(
        "Array.from(document.querySelectorAll('[data-testid=recent-job]'))"
        ".map(row => Number(row.dataset.jobId))"
    )
    assert shown_ids == recent_ids and len(shown_ids) == 10
    assert "of 15" in browser.evaluate("document.getElementById('recent-total').textContent")
    # The jobs assigned to the member, listed with their due dates as the API gives them.
    assigned = live_client.get(
        "/api/jobs/assigned/?page_size=10", headers=member_headers(live_client)
    ).get_json()
    assert sorted(job["due_date"] for job in assigned) == sorted(d.isoformat() for d in DUE_DATES)
    shown_assigned = browser.evaluate(
        "Array.from(document.querySelectorAll('[data-testid=assigned-job]')).map(row => "
        "[Number(row.dataset.jobId), row.querySelector('[data-testid=assigned-due]')"
        ".dataset.dueDate, row.querySelector('[data-testid=assigned-due]').textContent])"
    )
    assert [[job_id, due] for job_id, due, _text in shown_assigned] == [
        [job["id"], job["due_date"]] for job in assigned
    ]
    # Shown as the calendar date, whatever the browser's time zone.
    assert any("2031" in text and "14" in text for _id, _due, text in shown_assigned)
    assert browser.evaluate("document.getElementById('assigned-empty').hidden") is True
    # A job name is text, never markup.
    assert browser.evaluate("document.body.dataset.pwned") is None
    assert XSS_NAME in browser.evaluate(
        "Array.from(document.querySelectorAll('#recent-jobs td.name')).map(c => c.textContent)"
    )
    assert browser.evaluate("document.querySelectorAll('#recent-jobs img').length") == 0
    # No queue for non-admins.
    assert browser.evaluate("document.getElementById('queue').hidden") is True
    assert not any(key.startswith("queue-") for key in numbers)
    assert browser.evaluate("document.getElementById('session-email').textContent") == (
        "member@example.com"
    )

    path = browser.screenshot("dashboard.png")
    show(capsys, path)
    assert path.stat().st_size > 10_000

    # Everything the page loaded came from this server; nothing broke in the console,
    # under a Content-Security-Policy that allows no inline script.
    assert external_requests(browser, server) == []
    assert browser.javascript_errors() == []
    assert_strict_policy(browser, f"{server.url}/dashboard/")


def test_admin_sees_queue_health(browser, server, people, live_client, capsys):
    assert sign_in(browser, server, "admin@example.com", DEFAULT_PASSWORD) == "loaded"

    expected, _ = api_view(live_client, "admin@example.com")
    numbers = numbers_on_page(browser)
    assert browser.evaluate("document.getElementById('queue').hidden") is False
    assert browser.evaluate("document.getElementById('session-admin').hidden") is False
    for queue_name, counts in expected["queue"]["queues"].items():
        assert_section_matches(numbers, f"queue-{queue_name}", counts)
    assert expected["queue"]["queues"]["mail"]["todo"] == 1
    assert int(numbers["queue-waiting"]["value"]) == expected["queue"]["waiting"] == 2
    assert int(numbers["queue-live-workers"]["value"]) == expected["queue"]["live_workers"] == 0
    oldest = float(numbers["queue-oldest-waiting"]["value"])
    assert oldest == pytest.approx(expected["queue"]["oldest_waiting_seconds"], abs=10)
    assert oldest >= 90
    assert "min" in browser.evaluate("document.getElementById('queue-oldest-waiting').textContent")
    assert_section_matches(numbers, "jobs", expected["jobs"])

    path = browser.screenshot("dashboard-admin.png")
    show(capsys, path)
    assert browser.javascript_errors() == []


def test_session_survives_a_reload_and_ends_with_sign_out(browser, server, people, live_client):
    assert sign_in(browser, server, "member@example.com", DEFAULT_PASSWORD) == "loaded"
    tokens = json.loads(browser.evaluate("sessionStorage.getItem('jobboard.tokens')"))

    browser.open(f"{server.url}/dashboard/")
    assert browser.wait_for_state("loaded") == "loaded"

    browser.click("signout-button")
    assert browser.wait_for_state("signed-out") == "signed-out"
    assert browser.evaluate("sessionStorage.getItem('jobboard.tokens')") is None
    assert browser.evaluate("document.getElementById('dashboard').hidden") is True
    # Signing out revoked the access token on the server.
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert live_client.get("/api/dashboard/", headers=headers).status_code == 401


def test_an_expired_access_token_is_renewed_once_for_calls_made_together(
    browser, server, people, live_app, live_client
):
    """The page loads three things at once; with the access token expired all three get
    401. They must share one refresh: a refresh token presented twice revokes every
    token of the login."""
    live_app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(seconds=1)
    try:
        assert sign_in(browser, server, "member@example.com", DEFAULT_PASSWORD) == "loaded"
        first = json.loads(browser.evaluate("sessionStorage.getItem('jobboard.tokens')"))
        wait_until(lambda: live_client.get("/api/me/", headers=bearer(first)).status_code == 401)

        refresh_url = f"{server.url}/api/token/refresh/"
        before = browser.requested_urls().count(refresh_url)
        browser.click("refresh-button")
        wait_until(
            lambda: (
                json.loads(browser.evaluate("sessionStorage.getItem('jobboard.tokens')")) != first
            )
        )
        assert browser.wait_for_state("loaded", "signed-out", "error") == "loaded"
        renewed = json.loads(browser.evaluate("sessionStorage.getItem('jobboard.tokens')"))
        assert browser.requested_urls().count(refresh_url) - before == 1
    finally:
        live_app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(minutes=15)
    # The login's family is alive: the renewed refresh token still works.
    again = live_client.post("/api/token/refresh/", headers=bearer(renewed, "refresh_token"))
    assert again.status_code == 200


def bearer(tokens: dict, which: str = "access_token") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[which]}"}


def test_wrong_password_shows_the_api_message(browser, server, people):
    assert sign_in(browser, server, "member@example.com", "wrong password") == "signed-out"
    message = browser.evaluate("document.getElementById('signin-error').textContent")
    assert message
    assert browser.evaluate("document.getElementById('signin-error').hidden") is False
    assert browser.evaluate("sessionStorage.getItem('jobboard.tokens')") is None
    assert browser.evaluate("document.getElementById('dashboard').hidden") is True


def test_unverified_user_is_told_to_verify(browser, server, people):
    assert sign_in(browser, server, "new@example.com", DEFAULT_PASSWORD) == "signed-out"
    message = browser.evaluate("document.getElementById('signin-error').textContent")
    assert "verif" in message.lower()


def emailed_code(live_app: Flask, mailbox, email: str) -> str:
    """Ask for a verification code for `email` and read it from the email the mail task
    sends (run here, in place of the worker)."""
    with live_app.app_context():
        resend_verification_code(email)
        run_job(verification_job_for(email))
    return code_in(mailbox.wait_for(lambda m: email in m["To"]))


def test_unverified_user_verifies_with_the_emailed_code_and_is_signed_in(
    browser, server, people, live_app, mailbox
):
    code = emailed_code(live_app, mailbox, "new@example.com")
    assert sign_in(browser, server, "new@example.com", DEFAULT_PASSWORD) == "signed-out"
    # The verify form shows up, with the address and the password already in it.
    assert browser.evaluate("document.getElementById('verify').hidden") is False
    assert browser.evaluate("document.getElementById('verify-email').value") == "new@example.com"

    browser.type_into("verify-code", code)
    browser.click("verify-submit")

    assert browser.wait_for_state("loaded", "verify") == "loaded"
    assert browser.evaluate("document.getElementById('verify').hidden") is True
    assert browser.evaluate("document.getElementById('session-email').textContent") == (
        "new@example.com"
    )
    assert browser.javascript_errors() == []


def test_the_verify_form_shows_the_api_message_for_a_wrong_password(
    browser, server, people, live_app, mailbox
):
    code = emailed_code(live_app, mailbox, "new@example.com")
    browser.open(f"{server.url}/dashboard/")
    browser.wait_for_state("signed-out")
    browser.click("show-verify")
    browser.wait_for_state("verify")
    browser.type_into("verify-email", "new@example.com")
    browser.type_into("verify-code", code)
    browser.type_into("verify-password", "not the registrant's password")
    browser.click("verify-submit")

    message = wait_until(
        lambda: browser.evaluate("document.getElementById('verify-error').textContent")
    )
    assert browser.state() == "verify"
    assert "POST /api/password/forgot/" in message
    assert browser.evaluate("sessionStorage.getItem('jobboard.tokens')") is None


def test_the_verify_form_asks_for_a_new_code(browser, server, people, mailbox):
    browser.open(f"{server.url}/dashboard/")
    browser.wait_for_state("signed-out")
    browser.click("show-verify")
    browser.type_into("verify-email", "new@example.com")
    browser.click("verify-resend")

    wait_until(lambda: browser.evaluate("document.getElementById('verify-notice').textContent"))
    notice = browser.evaluate("document.getElementById('verify-notice').textContent")
    assert "a new code is on its way" in notice
    # At once again: the API's cooldown message, next to the form.
    browser.click("verify-resend")
    wait_until(lambda: browser.evaluate("document.getElementById('verify-error').textContent"))
    assert "Try again in" in browser.evaluate("document.getElementById('verify-error').textContent")


def test_empty_form_asks_for_credentials_without_calling_the_api(browser, server, people):
    browser.open(f"{server.url}/dashboard/")
    browser.wait_for_state("signed-out")
    browser.click("signin-submit")
    browser.wait_for_state("signed-out")
    message = browser.evaluate("document.getElementById('signin-error').textContent")
    assert "email and password" in message
    assert not [url for url in browser.requested_urls() if "/api/login/" in url]


def test_swagger_ui_renders_offline(browser, server, capsys):
    browser.open(f"{server.url}/api/docs")
    title = wait_until(
        lambda: browser.evaluate(
            "(document.querySelector('.swagger-ui .info .title') || {}).textContent"
        ),
        timeout=30,
    )
    assert title.startswith("jobboard")
    operations = wait_until(
        lambda: browser.evaluate("document.querySelectorAll('.opblock-summary-path').length"),
        timeout=30,
    )
    assert operations > 10
    assert "/api/dashboard/" in browser.evaluate(
        "Array.from(document.querySelectorAll('.opblock-summary-path'))"
        ".map(e => e.textContent).join(' ')"
    )
    assert external_requests(browser, server) == []
    assert_strict_policy(browser, f"{server.url}/api/docs")
    # "Try it out" works under the policy: Swagger UI calls the API from the page.
    assert browser.evaluate("fetch('/api/openapi.json').then(r => r.status)") == 200
    show(capsys, browser.screenshot("api-docs.png"))


def assert_strict_policy(browser, page_url: str) -> None:
    headers = browser.document_headers(page_url)
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert browser.policy_violations() == []
