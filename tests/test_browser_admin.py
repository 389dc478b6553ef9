"""The operations console in a real headless Chromium, against a real HTTP server and a
real worker: an admin signs in with the web app's cookie session (no token within reach of
page script), sees the queues and the failures, the page stays live with conditional
requests and stops asking while hidden, and a bulk retry, confirmed with the number of jobs
it touches, is seen to complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from config import PROJECT_ROOT
from jobboard.extensions import db
from jobboard.models import Job, JobStatus, User
from tests.support.auth import DEFAULT_PASSWORD
from tests.support.browser import Browser, LiveServer, chromium_path
from tests.support.factories import JobFactory, UserFactory
from tests.support.polling import wait_until

SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "admin-console.png"
ERROR = "KeyError: 'text'\n  in wordcount"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    opened = Browser(chromium_path(), width=1400, height=1000)
    yield opened
    opened.close()


@pytest.fixture
def server(live_app: Flask) -> Iterator[LiveServer]:
    running = LiveServer(live_app)
    yield running
    running.stop()


@pytest.fixture
def people(live_app: Flask) -> list[int]:
    """An admin, a member with three failed jobs and a few others; the failed jobs' ids."""
    with live_app.app_context():
        UserFactory(email="admin@example.com", admin=True)
        member = UserFactory(email="member@example.com")
        failed = [
            JobFactory(
                owner=member.id,
                failed=True,
                name=f"Count words {index}",
                kind="echo",
                params={"n": index},
                attempts=3,
                last_error=ERROR,
            ).id
            for index in range(3)
        ]
        JobFactory(owner=member.id, completed=True, name="Done already")
        JobFactory(owner=member.id, pending=True, name="Later")
        db.session.commit()
        return failed


def sign_in(browser: Browser, server: LiveServer, email: str) -> str:
    browser.page.context.clear_cookies()  # the browser outlives each test's server
    browser.open(f"{server.url}/admin/")
    assert browser.wait_for_state("signed-out") == "signed-out"
    browser.type_into("signin-email", email)
    browser.type_into("signin-password", DEFAULT_PASSWORD)
    browser.click("signin-submit")
    return browser.wait_for_state("live")


def tokens_in_reach(browser: Browser) -> list[str]:
    """What page script could read that looks like a token: cookies other than the CSRF
    ones, and anything kept in the tab's storage."""
    return browser.evaluate(
        "[...document.cookie.split(';').map(c => c.trim().split('=')[0])"
        ".filter(name => name && !name.startsWith('csrf_')),"
        " ...Object.keys(sessionStorage), ...Object.keys(localStorage)]"
    )


def text_of(browser: Browser, selector: str) -> str:
    return browser.evaluate(f"document.querySelector({selector!r})?.textContent ?? ''")


def failure_counts(browser: Browser) -> list[str]:
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#failures tbody tr td:nth-child(3)'))"
        ".map(c => c.textContent)"
    )


def rows(browser: Browser, table: str) -> int:
    return browser.evaluate(f"document.querySelectorAll('#{table} tbody tr').length")


def admin_requests(browser: Browser) -> list[str]:
    """The console's API calls so far (Playwright hands events over while it is called)."""
    return [url for url in browser.requested_urls() if "/api/admin/" in url]


def test_an_admin_retries_every_failure_and_sees_it_complete(
    browser, server, people, live_app, start_worker, capsys
):
    start_worker()
    assert sign_in(browser, server, "admin@example.com") == "live"
    wait_until(lambda: text_of(browser, "#session-email") == "admin@example.com")
    assert tokens_in_reach(browser) == []
    names = {cookie["name"]: cookie for cookie in browser.page.context.cookies()}
    assert names["access_token_cookie"]["httpOnly"] is True
    wait_until(
        lambda: browser.evaluate("document.querySelectorAll('#queues tbody tr').length") == 4
    )
    assert browser.evaluate(
        "Array.from(document.querySelectorAll('#queues tbody tr')).map(r => r.dataset.queue)"
    ) == ["jobs", "mail", "maintenance", "webhooks"]
    # One chart per queue, drawn by the page.
    assert browser.evaluate("document.querySelectorAll('#queues svg.spark').length") == 4
    wait_until(lambda: failure_counts(browser) == ["3"])
    assert text_of(browser, "#failures tbody td:nth-child(2)") == "KeyError: 'text'"
    wait_until(
        lambda: browser.evaluate("document.querySelectorAll('#workers tbody tr').length") > 0
    )

    # Live: a job failing now shows within 5 s, without a reload.
    with live_app.app_context():
        member = db.session.scalar(select(User).where(User.email == "member@example.com"))
        late = JobFactory(owner=member.id, failed=True, kind="echo", last_error=ERROR).id
        db.session.commit()
    wait_until(lambda: failure_counts(browser) == ["4"], timeout=6)
    # An unchanged view (the failures, the audit log) costs a 304.
    wait_until(
        lambda: (
            browser.drain_events() is not None
            and any(
                response.status == 304 and "/api/admin/failures/" in response.url
                for response in list(browser.responses)
            )
        ),
        timeout=10,
    )

    # Hidden, the page stops asking; shown again, it asks at once.
    browser.evaluate(
        "Object.defineProperty(document, 'hidden', {value: true, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    browser.drain_events()
    asked = len(admin_requests(browser))
    browser.page.wait_for_timeout(6000)
    assert len(admin_requests(browser)) == asked
    assert text_of(browser, "#live-state") == "paused"
    browser.evaluate(
        "Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    wait_until(lambda: len(admin_requests(browser)) > asked, timeout=3)

    # Filter the failed jobs, retry every match: the confirmation says how many.
    browser.page.locator("#filter-form input[value=failed]").check()
    browser.click("filter-apply")
    wait_until(lambda: text_of(browser, "#jobs-total") == "4 matching")
    browser.page.select_option("#bulk-action", "retry")
    browser.click("bulk-matching")
    wait_until(lambda: browser.evaluate("document.getElementById('confirm').open"))
    assert text_of(browser, "#confirm-text").startswith("Retry 4 matching jobs?")
    browser.click("confirm-go")
    wait_until(lambda: "4 changed" in text_of(browser, "#bulk-result"))
    assert "0 skipped of 4 matched" in text_of(browser, "#bulk-result")

    # The worker runs them: the failures empty, the jobs completed, on the page.
    wait_until(lambda: failure_counts(browser) == [], timeout=20)
    browser.click("filter-clear")
    wait_until(
        lambda: (
            browser.evaluate(
                "Array.from(document.querySelectorAll('#jobs tbody tr'))"
                ".filter(r => r.dataset.status === 'completed').length"
            )
            == 5
        ),
        timeout=20,
    )
    with live_app.app_context():
        statuses = db.session.scalars(select(Job.status).where(Job.id.in_([*people, late])))
        assert set(statuses) == {JobStatus.COMPLETED}
    # The audit log shows the action; a job's detail opens from the list.
    wait_until(lambda: "retry status=failed" in text_of(browser, "#audit tbody"))
    assert "4 / 4" in text_of(browser, "#audit tbody")
    browser.page.locator("#jobs tbody button.link", has_text="Count words 1").click()
    wait_until(lambda: browser.evaluate("!document.getElementById('job-detail').hidden"))
    assert "member@example.com" in text_of(browser, "#detail-fields")

    # A pause from the console, shown on the queue.
    browser.page.locator("[data-testid=pause-maintenance]").click()
    wait_until(
        lambda: (
            browser.evaluate(
                "document.querySelector('#queues tr[data-queue=maintenance]').dataset.paused"
            )
            == "true"
        )
    )

    path = browser.screenshot("admin-console.png")
    # The operations page's picture is refreshed on demand, so a test run leaves the tree
    # clean (the run's own screenshot stays with the test artifacts).
    if os.environ.get("UPDATE_DOC_IMAGES") or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)
    with capsys.disabled():
        print(f"\n[screenshot] {path}")

    assert tokens_in_reach(browser) == []
    requested = browser.requested_urls()
    assert [url for url in requested if not url.startswith((server.url + "/", "data:"))] == []
    assert browser.javascript_errors() == []
    headers = browser.document_headers(f"{server.url}/admin/")
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert browser.policy_violations() == []


def test_one_sign_in_for_the_web_app_and_the_console(browser, server, people):
    """Signed in on the web app's page, a member is signed in on the console too, and sees
    the API's refusal; signing out of the console signs out of the web app."""
    browser.page.context.clear_cookies()
    browser.open(f"{server.url}/signin/?next=%2Fadmin%2F")
    browser.type_into("signin-email", "member@example.com")
    browser.type_into("signin-password", DEFAULT_PASSWORD)
    browser.click("signin-submit")
    browser.page.wait_for_url(f"{server.url}/admin/")
    assert browser.wait_for_state("live") == "live"
    wait_until(lambda: text_of(browser, "#session-email") == "member@example.com")
    wait_until(lambda: browser.evaluate("!document.getElementById('load-error').hidden"))
    assert text_of(browser, "#load-error") == "Only admins may use the operations API."
    assert browser.evaluate("document.querySelectorAll('#jobs tbody tr').length") == 0
    assert tokens_in_reach(browser) == []

    browser.click("signout-button")
    assert browser.wait_for_state("signed-out") == "signed-out"
    assert browser.page.context.cookies() == []
    browser.open(f"{server.url}/admin/")
    assert browser.wait_for_state("signed-out") == "signed-out"
    assert browser.javascript_errors() == []
