"""The web app for people, in a real headless Chromium against a real HTTP server: two
people in two browser contexts go from sign-up to review, each seeing the other's moves
live; a third person gets 404 pages for their jobs; axe-core finds no serious or critical
violation on any page; screenshots are kept under test-artifacts/.

Flows covered: sign up, enter the emailed code, sign in, sign out (the owner, the
bidder); post a manual job with its params form; find it in the market by search; bid;
the bid appears on the owner's page without a reload; accept with the confirmation; the
assignee's page turns into the delivery form without a reload; deliver with output and
note; the delivery appears on the owner's page without a reload; review both ways;
notifications with an unread count; assigned jobs with due dates; my bids; public profile;
account with plan and usage; forgot and reset pages (axe); 404 for a stranger."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import func, select

from config import PROJECT_ROOT
from jobboard.events.outbox import build_event, write_events
from jobboard.extensions import db
from jobboard.models import Bid, Event, Job
from tests.support.auth import code_in, run_job, verification_job_for
from tests.support.browser import ARTIFACTS, LiveServer, chromium_path
from tests.support.factories import JobFactory, UserFactory
from tests.support.web import Person, WebBrowser

PASSWORD = "a long enough password"
# A change must show within 5 s (pages poll every 4 s); the margin is for a loaded machine.
LIVE = 12_000
README_SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "web-job-owner.png"


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture
def server(live_app: Flask) -> Iterator[LiveServer]:
    running = LiveServer(live_app)
    yield running
    running.stop()


@pytest.fixture
def web(chromium: str) -> Iterator[WebBrowser]:
    browser = WebBrowser(chromium)
    yield browser
    browser.close()


class Checks:
    """axe-core on every page visited, gathered and asserted once at the end."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.pages: set[str] = set()

    def axe(self, person: Person, label: str) -> None:
        self.pages.add(label)
        self.problems.extend(person.accessibility_problems())


def sign_up(person: Person, server: LiveServer, live_app: Flask, mailbox, email: str) -> None:
    person.open(f"{server.url}/signup/")
    person.fill("#signup-email", email)
    person.fill("#signup-password", PASSWORD)
    person.page.locator("#signup-submit").click()
    person.page.wait_for_url(re.compile(r"/verify/"))
    person.ready()
    with live_app.app_context():
        run_job(verification_job_for(email))
    code = code_in(mailbox.wait_for(lambda message: email in message["To"]))
    expect(person.page.locator("#verify-email")).to_have_value(email)
    person.fill("#verify-otp", code)
    person.fill("#verify-password", PASSWORD)
    person.page.locator("#verify-submit").click()
    person.page.wait_for_url(re.compile(r"/jobs/$"))
    person.ready()


def bid_placed_event_for(job_id: int) -> None:
    """The owner's `bid.placed` event. Written here only while bids do not write their
    events yet (the outbox's next stage): the feed and its unread count are under test."""
    job = db.session.get(Job, job_id)
    written = db.session.scalar(
        select(func.count())
        .select_from(Event)
        .where(Event.user_id == job.owner_id, Event.type == "bid.placed")
    )
    if not written:
        bid = db.session.scalars(select(Bid).where(Bid.job_id == job_id)).one()
        write_events([build_event("bid.placed", job=job, bid=bid)])
        db.session.commit()


def test_two_people_from_sign_up_to_review(web, server, live_app, mailbox):
    checks = Checks()
    owner = web.person("owner")
    bidder = web.person("bidder")

    owner.open(f"{server.url}/")
    checks.axe(owner, "landing")
    owner.open(f"{server.url}/signup/")
    checks.axe(owner, "signup")
    owner.open(f"{server.url}/forgot/")
    checks.axe(owner, "forgot")
    owner.open(f"{server.url}/reset/")
    checks.axe(owner, "reset")
    owner.open(f"{server.url}/signin/")
    checks.axe(owner, "signin")

    sign_up(owner, server, live_app, mailbox, "olivia@example.com")
    sign_up(bidder, server, live_app, mailbox, "bruno@example.com")
    checks.axe(owner, "my jobs")
    for person, name in ((owner, "Olivia Owner"), (bidder, "Bruno Brush")):
        person.open(f"{server.url}/account/")
        person.fill("#me-display_name", name)
        person.fill("#me-skills", "painting, fences")
        person.page.locator("#me-submit").click()
        expect(person.page.locator("#me-notice")).to_have_text("Saved.")
    owner.open(f"{server.url}/jobs/")

    # The owner posts a manual job; the params form is the kind's.
    owner.page.locator("#post-kind").select_option("manual")
    owner.fill("#post-name", "Paint the garden fence")
    owner.fill("#post-description", "Twenty metres of fence, white.")
    owner.fill("#post-params-json", '{"brief": "two coats"}')
    owner.page.locator("#post-submit").click()
    posted = owner.page.locator("#post-notice a")
    expect(posted).to_have_text("Paint the garden fence")
    expect(owner.page.locator("#jobs-list")).to_contain_text("Paint the garden fence")
    posted.click()
    owner.ready()
    job_url = owner.page.url
    job_id = int(re.search(r"/jobs/(\d+)/", job_url).group(1))
    expect(owner.page.locator("#job-role")).to_have_text("You posted this job.")
    expect(owner.page.locator("#bids-empty")).to_be_visible()
    checks.axe(owner, "job (owner, no bids)")

    # The bidder finds it in the market by searching.
    bidder.open(f"{server.url}/market/")
    bidder.fill("#market-q", "fence")
    bidder.page.locator("#market-filters button[type=submit]").click()
    card = bidder.page.locator("#market-list a", has_text="Paint the garden fence")
    expect(card).to_be_visible()
    checks.axe(bidder, "market")
    card.click()
    bidder.ready()
    expect(bidder.page.locator("#bid-section")).to_be_visible()
    checks.axe(bidder, "job (bidder)")

    # A bid with a wrong fee: the API's message beside the field.
    deadline = (date.today() + timedelta(days=10)).isoformat()
    bidder.fill("#bid-fee", "80.005")
    bidder.fill("#bid-proposed_deadline", deadline)
    bidder.fill("#bid-comment", "I have the brushes.")
    bidder.page.locator("#bid-submit").click()
    expect(bidder.page.locator("#bid-fee-error")).to_have_text("Use at most two decimal places.")
    bidder.fill("#bid-fee", "80.00")
    bidder.page.locator("#bid-submit").click()
    expect(bidder.page.locator("#bids-list [data-testid=bid]")).to_contain_text("80.00 USD")

    # The bid arrives on the owner's page without a reload.
    owner_bid = owner.page.locator("#bids-list [data-testid=bid]")
    expect(owner_bid).to_contain_text("80.00 USD", timeout=LIVE)
    expect(owner_bid).to_contain_text("no reviews yet")
    with live_app.app_context():
        bid_placed_event_for(job_id)
    expect(owner.page.locator("#unread-count")).to_have_text(re.compile(r"[1-9]"), timeout=LIVE)
    checks.axe(owner, "job (owner, a bid)")
    owner.screenshot("web-job-owner-bid.png")

    # Accept, with the confirmation.
    owner_bid.locator("button.accept").click()
    expect(owner.page.locator("#confirm-dialog")).to_be_visible()
    checks.axe(owner, "job (owner, confirmation)")
    owner.page.locator("#confirm-yes").click()
    expect(owner.page.locator("#job-status")).to_have_text("in progress", timeout=LIVE)

    # The bidder's page becomes the assignee's without a reload.
    expect(bidder.page.locator("#deliver-section")).to_be_visible(timeout=LIVE)
    expect(bidder.page.locator("#job-role")).to_have_text("This job is assigned to you.")
    checks.axe(bidder, "job (assignee)")
    bidder.open(f"{server.url}/assigned/")
    expect(bidder.page.locator("#assigned-list")).to_contain_text("Paint the garden fence")
    expect(bidder.page.locator("#assigned-list")).to_contain_text("due")
    checks.axe(bidder, "assigned")
    bidder.open(f"{server.url}/bids/")
    expect(bidder.page.locator("#bids-list")).to_contain_text("accepted")
    checks.axe(bidder, "my bids")
    bidder.open(job_url)
    expect(bidder.page.locator("#deliver-section")).to_be_visible()

    # Deliver; the owner sees it without a reload.
    bidder.fill("#deliver-output", '{"photos": 3, "coats": 2}')
    bidder.fill("#deliver-note", "Done, dry by tonight.")
    bidder.page.locator("#deliver-submit").click()
    expect(bidder.page.locator("#job-status")).to_have_text("completed", timeout=LIVE)
    expect(owner.page.locator("#job-status")).to_have_text("completed", timeout=LIVE)
    expect(owner.page.locator("#result-output")).to_contain_text('"coats": 2', timeout=LIVE)
    checks.axe(owner, "job (owner, completed)")
    owner.page.set_viewport_size({"width": 1100, "height": 900})
    owner.screenshot("web-job-owner.png")

    # Reviews both ways.
    owner.page.locator("#review-rating").select_option("5")
    owner.fill("#review-comment", "Neat work.")
    owner.page.locator("#review-submit").click()
    expect(owner.page.locator("#review-notice")).to_contain_text("your review is in")
    bidder.page.locator("#review-rating").select_option("4")
    bidder.page.locator("#review-submit").click()
    expect(bidder.page.locator("#review-notice")).to_contain_text("your review is in")
    owner.page.locator("#review-submit").click()  # a second review: the API's refusal
    expect(owner.page.locator("#review-form-error")).to_contain_text("already reviewed")

    # The bidder's public profile carries the owner's review.
    with live_app.app_context():
        assignee_id = db.session.get(Job, job_id).assignee_id
    owner.open(f"{server.url}/users/{assignee_id}/")
    expect(owner.page.locator("#profile-rating")).to_have_text("5.00 / 5 from 1 review")
    checks.axe(owner, "profile")

    owner.open(f"{server.url}/notifications/")
    expect(owner.page.locator("#events-list")).to_contain_text("A bid was placed on your job")
    checks.axe(owner, "notifications")
    owner.page.locator("#events-mark-read").click()
    expect(owner.page.locator("#unread-count")).to_be_hidden(timeout=LIVE)
    owner.open(f"{server.url}/account/")
    expect(owner.page.locator("#plan-facts")).to_contain_text("free")
    checks.axe(owner, "account")

    # A third person: a 404 page for somebody else's job.
    with live_app.app_context():
        UserFactory(email="carl@example.com", password=PASSWORD)
    stranger = web.person("stranger")
    stranger.open(f"{server.url}/signin/")
    stranger.fill("#signin-email", "carl@example.com")
    stranger.fill("#signin-password", PASSWORD)
    stranger.page.locator("#signin-submit").click()
    stranger.page.wait_for_url(re.compile(r"/jobs/$"))
    response = stranger.page.goto(job_url)
    assert response is not None and response.status == 404
    expect(stranger.page.locator("[data-testid=not-found]")).to_be_visible()
    stranger.ready()
    checks.axe(stranger, "not found")

    # Sign out: the pages send the person to sign in.
    bidder.page.locator("#sign-out").click()
    bidder.page.wait_for_url(re.compile(r"/signin/"))
    bidder.page.goto(f"{server.url}/jobs/")
    bidder.page.wait_for_url(re.compile(r"/signin/\?next="))

    # The README's picture is refreshed on demand, so a test run leaves the tree clean.
    if os.environ.get("UPDATE_DOC_IMAGES") or not README_SCREENSHOT.exists():
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / "web-job-owner.png", README_SCREENSHOT)
    assert checks.problems == []
    assert owner.errors == [] and bidder.errors == [] and stranger.errors == []


def tab_to(person: Person, element_id: str, presses: int = 40) -> None:
    """Press Tab until `element_id` has the focus, as a keyboard-only person would."""
    for _ in range(presses):
        person.page.keyboard.press("Tab")
        if (
            person.page.evaluate("document.activeElement && document.activeElement.id")
            == element_id
        ):
            return
    raise AssertionError(f"Tab never reached #{element_id}")


NARROW_PAGES = (
    "/",
    "/signin/",
    "/signup/",
    "/verify/",
    "/forgot/",
    "/reset/",
    "/jobs/",
    "/market/",
    "/assigned/",
    "/bids/",
    "/account/",
    "/notifications/",
)


def test_keyboard_only_on_a_360_px_screen(web, server, live_app):
    with live_app.app_context():
        UserFactory(email="kim@example.com", password=PASSWORD, display_name="Kim")
        other = UserFactory(display_name="Otto")
        job = JobFactory(owner=other, kind="manual", name="Fix a very long-named bicycle wheel")
        job_id, other_id = job.id, other.id
    person = web.person("keyboard", width=360, height=740)

    person.open(f"{server.url}/signin/")
    tab_to(person, "signin-email")
    person.page.keyboard.type("kim@example.com")
    person.page.keyboard.press("Tab")
    person.page.keyboard.type(PASSWORD)
    person.page.keyboard.press("Enter")
    person.page.wait_for_url(re.compile(r"/jobs/$"))
    person.ready()
    focused_outline = person.page.evaluate(
        "(() => { const e = document.activeElement; return getComputedStyle(e).outlineStyle; })()"
    )
    tab_to(person, "post-name")
    outline = person.page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), f"no visible focus (before: {focused_outline})"

    # A bid, keyboard only.
    person.open(f"{server.url}/jobs/{job_id}/")
    tab_to(person, "bid-fee")
    person.page.keyboard.type("25.50")
    tab_to(person, "bid-proposed_deadline", presses=5)
    deadline = date.today() + timedelta(days=3)
    person.page.keyboard.type(deadline.strftime("%m%d%Y"))
    tab_to(person, "bid-submit", presses=6)
    person.page.keyboard.press("Enter")
    expect(person.page.locator("#bids-list [data-testid=bid]")).to_contain_text("25.50 USD")

    problems = []
    for path in (*NARROW_PAGES, f"/jobs/{job_id}/", f"/users/{other_id}/"):
        person.open(f"{server.url}{path}")
        width = person.page.evaluate("document.documentElement.scrollWidth")
        if width > 360:
            problems.append(f"{path} is {width} px wide")
        problems.extend(person.accessibility_problems())
    person.screenshot("web-job-360px.png")
    assert problems == []
    assert person.errors == []


def sign_in(person: Person, server: LiveServer, email: str) -> None:
    person.open(f"{server.url}/signin/")
    person.fill("#signin-email", email)
    person.fill("#signin-password", PASSWORD)
    person.page.locator("#signin-submit").click()
    person.page.wait_for_url(re.compile(r"/jobs/$"))
    person.ready()


def test_an_owner_posts_edits_runs_now_cancels_and_retries(web, server, live_app):
    with live_app.app_context():
        owner = UserFactory(email="maya@example.com", password=PASSWORD)
        failed = JobFactory(owner=owner, kind="flaky", name="Flaky report", failed=True)
        failed_id = failed.id
    # A browser in Kolkata (UTC+05:30, no daylight saving): times are entered and shown there.
    person = web.person("owner", timezone="Asia/Kolkata")
    sign_in(person, server, "maya@example.com")

    # The sleep kind's own form: a number field, and the API's refusal beside it.
    person.page.locator("#post-kind").select_option("sleep")
    expect(person.page.locator("#post-params-seconds")).to_have_attribute("type", "number")
    person.fill("#post-name", "Nap later")
    person.fill("#post-params-seconds", "999")
    person.page.locator("#post-when-at").check()
    person.fill("#post-scheduled_time", "2030-01-02T10:00")
    person.page.locator("#post-submit").click()
    expect(person.page.locator("#post-params-seconds-error")).not_to_be_empty()
    person.fill("#post-params-seconds", "30")
    person.page.locator("#post-submit").click()
    expect(person.page.locator("#post-notice a")).to_have_text("Nap later")
    with live_app.app_context():
        job = db.session.scalars(select(Job).where(Job.name == "Nap later")).one()
        assert job.scheduled_time.isoformat() == "2030-01-02T04:30:00+00:00"
        assert job.params == {"seconds": 30}
        job_id = job.id

    # Filters: the list shows it under pending, not under cancelled.
    person.page.locator("#jobs-filters input[value=cancelled]").check()
    person.page.locator("#jobs-filters button[type=submit]").click()
    expect(person.page.locator("#jobs-empty")).to_be_visible()
    person.page.locator("#jobs-filters input[value=cancelled]").uncheck()
    person.page.locator("#jobs-filters input[value=pending]").check()
    person.page.locator("#jobs-filters button[type=submit]").click()
    expect(person.page.locator("#jobs-list")).to_contain_text("Nap later")

    person.open(f"{server.url}/jobs/{job_id}/")
    expect(person.page.locator("#job-facts")).to_contain_text("Jan 2, 2030, 10:00 AM")
    person.page.locator("#edit-details summary").click()
    person.fill("#edit-name", "Nap much later")
    person.page.locator("#edit-submit").click()
    expect(person.page.locator("#job-name")).to_have_text("Nap much later")
    person.page.locator("#job-run-now").click()
    expect(person.page.locator("#job-facts")).not_to_contain_text("2030")
    person.page.locator("#job-cancel").click()
    person.page.locator("#confirm-yes").click()
    expect(person.page.locator("#job-status")).to_have_text("cancelled")
    expect(person.page.locator("#job-cancel")).to_be_hidden()

    person.open(f"{server.url}/jobs/{failed_id}/")
    person.page.locator("#job-retry").click()
    expect(person.page.locator("#job-status")).to_have_text(re.compile("pending|in progress"))
    assert person.errors == []
