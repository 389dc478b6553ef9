"""Bids and assignment: placing, listing, editing, withdrawing, accepting."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from jobboard.bids.currencies import ISO_4217_CURRENCY_CODES
from jobboard.dates import earliest_date_in_use
from jobboard.events.emails import ZERO_WIDTH_SPACE
from jobboard.extensions import db
from jobboard.models import Bid, BidStatus, Job, JobStatus
from tests.support.bids import BidsApi, bid_payload, in_days
from tests.support.events import queued_event_emails
from tests.support.factories import JobFactory
from tests.support.limits import age_rate_limits


@pytest.fixture
def api(client) -> BidsApi:
    return BidsApi(client)


@pytest.fixture
def poster(make_user):
    return make_user(display_name="Paula Poster", bio="Posts jobs.", skills=["management"])


@pytest.fixture
def bidder(make_user):
    return make_user(display_name="Bob Bidder", bio="Private-ish bio", skills=["french", "qa"])


@pytest.fixture
def rival(make_user):
    return make_user(display_name="Rita Rival", skills=["french"])


@pytest.fixture
def stranger(make_user):
    return make_user(display_name="Sam Stranger")


@pytest.fixture
def job(poster) -> Job:
    return JobFactory(owner=poster)


def place_ok(api: BidsApi, headers: dict[str, str], job_id: int, **fields: Any) -> dict:
    response = api.place(headers, job_id, **fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def queued_emails(include_bid_notices: bool = False) -> list[dict[str, Any]]:
    """Queued event emails; without the owner's "New bid on ..." notices unless asked for
    (the accept tests count the emails about accepting)."""
    emails = [
        {"queue": email.queue, "to": email.to, "subject": email.subject, "body": email.body}
        for email in queued_event_emails()
    ]
    if include_bid_notices:
        return emails
    return [email for email in emails if not email["subject"].startswith("New bid on")]


def assert_error(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert body["code"] == status
    assert "status" in body
    return body


# --- placing a bid ----------------------------------------------------------------------------


def test_place_bid_returns_the_bid_with_the_bidders_public_profile(api, job, bidder, auth_headers):
    response = api.place(
        auth_headers(bidder),
        job.id,
        comment="Native speaker, done in a week.",
        proposed_deadline=in_days(7).isoformat(),
        fee="80",
        currency="usd",
    )

    assert response.status_code == 201
    bid = response.get_json()
    assert bid["job_id"] == job.id
    assert bid["status"] == "pending"
    assert bid["fee"] == "80.00"
    assert bid["currency"] == "USD"
    assert bid["proposed_deadline"] == in_days(7).isoformat()
    assert bid["comment"] == "Native speaker, done in a week."
    # The public profile (bio included), never the email.
    assert bid["bidder"] == {
        "id": bidder.id,
        "display_name": "Bob Bidder",
        "bio": "Private-ish bio",
        "skills": ["french", "qa"],
        "rating": {"average": None, "count": 0},
        "completed_jobs": 0,
    }
    assert bid["created_at"].endswith("+00:00")
    stored = db.session.get(Bid, bid["id"])
    assert stored.bidder_id == bidder.id
    assert str(stored.fee) == "80.00"


def test_bid_output_never_exposes_private_fields(api, job, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    text_of_bid = json.dumps(bid)
    assert bidder.email not in text_of_bid
    assert "password" not in text_of_bid
    assert set(bid["bidder"]) == {
        "id",
        "display_name",
        "bio",
        "skills",
        "rating",
        "completed_jobs",
    }


def test_placing_a_bid_queues_an_email_to_the_owner(api, job, poster, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id, fee="42.50", comment="Quick and careful.")

    (notice,) = queued_emails(include_bid_notices=True)
    assert notice["queue"] == "mail"
    assert notice["to"] == poster.email
    assert notice["subject"] == f'New bid on "{job.name}"'
    assert "Bob Bidder" in notice["body"]
    assert "42.50 USD" in notice["body"]
    assert "Quick and careful." in notice["body"]
    assert f"/api/jobs/{job.id}/bids/{bid['id']}/accept/" in notice["body"]
    assert bidder.email not in notice["body"]


# --- the owner's notices: one per bidder and job an hour, user text quoted -------------------


def test_bidding_again_within_the_hour_is_not_mailed_again(
    api, job, poster, bidder, rival, auth_headers
):
    for _ in range(3):
        bid = place_ok(api, auth_headers(bidder), job.id)
        assert api.withdraw(auth_headers(bidder), job.id, bid["id"]).status_code == 200
    place_ok(api, auth_headers(rival), job.id)

    notices = queued_emails(include_bid_notices=True)

    assert [n["to"] for n in notices] == [poster.email, poster.email]
    assert "Bob Bidder" in notices[0]["body"] and "Rita Rival" in notices[1]["body"]
    assert "not emailed" in notices[0]["body"]


def test_a_bid_on_another_job_is_mailed(api, job, poster, bidder, auth_headers):
    other_job = JobFactory(owner=poster)
    place_ok(api, auth_headers(bidder), job.id)
    place_ok(api, auth_headers(bidder), other_job.id)

    assert len(queued_emails(include_bid_notices=True)) == 2


def test_the_notice_window_slides(api, job, poster, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    api.withdraw(auth_headers(bidder), job.id, bid["id"])
    age_rate_limits(3599, "bid-notice-bidder-job:")
    bid = place_ok(api, auth_headers(bidder), job.id)
    api.withdraw(auth_headers(bidder), job.id, bid["id"])
    assert len(queued_emails(include_bid_notices=True)) == 1
    age_rate_limits(2, "bid-notice-bidder-job:")

    place_ok(api, auth_headers(bidder), job.id)

    assert len(queued_emails(include_bid_notices=True)) == 2


def test_a_refused_bid_does_not_use_up_the_notice(api, job, poster, bidder, auth_headers):
    assert api.place(auth_headers(bidder), job.id, fee="0").status_code == 422
    place_ok(api, auth_headers(bidder), job.id)

    assert len(queued_emails(include_bid_notices=True)) == 1


def test_user_written_text_in_the_notice_is_marked_quoted_and_never_a_link(
    api, poster, bidder, auth_headers
):
    job = JobFactory(owner=poster, name="Fix https://shop.example\nurgent")
    bidder.display_name = "Admin (see WWW.evil.example)"
    db.session.commit()
    comment = "Your account is locked.\nLog in at http://evil.example/login?x=1 now"

    place_ok(api, auth_headers(bidder), job.id, comment=comment)

    (notice,) = queued_emails(include_bid_notices=True)
    body = notice["body"]
    # Nothing a mail client would make a link of: zero-width spaces break every
    # "scheme://", "host.name" and "a@b" of the users' text.
    assert "://" not in body and "www.evil" not in body.lower() and "evil.example" not in body
    assert "Their comment, written by the bidder:\n> Your account is locked.\n" in body
    assert f"> Log in at http:{ZERO_WIDTH_SPACE}/" in body
    assert "Admin (see WWW." in body and "\n" not in notice["subject"]
    assert "://" not in notice["subject"]


def test_a_refused_bid_queues_no_email(api, job, poster, auth_headers):
    assert api.place(auth_headers(poster), job.id).status_code == 403
    assert queued_emails(include_bid_notices=True) == []


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("80", "80.00"),
        ("80.5", "80.50"),
        ("80.10", "80.10"),
        ("80.100", "80.10"),
        ("0.01", "0.01"),
        (" 12.34 ", "12.34"),
        (80, "80.00"),
        (80.5, "80.50"),
        (99.99, "99.99"),
        ("999999999.99", "999999999.99"),
    ],
)
def test_fee_accepts_strings_and_numbers_and_is_always_a_two_place_string(
    api, job, bidder, auth_headers, given, stored
):
    bid = place_ok(api, auth_headers(bidder), job.id, fee=given)
    assert bid["fee"] == stored
    listed = api.mine(auth_headers(bidder)).get_json()
    assert listed[0]["fee"] == stored


def test_currency_defaults_to_usd_and_comment_is_optional(api, job, bidder, auth_headers):
    payload = bid_payload()
    del payload["currency"], payload["comment"]
    response = api.client.post(
        f"/api/jobs/{job.id}/bids/", json=payload, headers=auth_headers(bidder)
    )
    assert response.status_code == 201
    assert response.get_json()["currency"] == "USD"
    assert response.get_json()["comment"] is None


@pytest.mark.parametrize("code", ["EUR", "jpy", "Chf", "XOF", "XCG", "ZWG"])
def test_any_circulating_currency_is_accepted_upper_cased(api, job, bidder, auth_headers, code):
    bid = place_ok(api, auth_headers(bidder), job.id, currency=code)
    assert bid["currency"] == code.upper()


def test_currency_list_is_iso_4217_shaped():
    assert len(ISO_4217_CURRENCY_CODES) > 150
    assert all(
        len(code) == 3 and code.isalpha() and code.isupper() for code in ISO_4217_CURRENCY_CODES
    )
    assert {"USD", "EUR", "GBP", "JPY", "CHF", "INR", "CNY", "BRL"} <= ISO_4217_CURRENCY_CODES


def test_deadline_today_is_accepted_everywhere_on_earth(api, job, bidder, auth_headers):
    bid = place_ok(
        api, auth_headers(bidder), job.id, proposed_deadline=earliest_date_in_use().isoformat()
    )
    assert bid["proposed_deadline"] == earliest_date_in_use().isoformat()


def test_bidding_on_your_own_job_is_forbidden(api, job, poster, auth_headers):
    body = assert_error(api.place(auth_headers(poster), job.id), 403)
    assert "own job" in body["message"]


def test_second_pending_bid_on_the_same_job_is_a_conflict(api, job, bidder, auth_headers):
    place_ok(api, auth_headers(bidder), job.id)
    body = assert_error(api.place(auth_headers(bidder), job.id, fee="70.00"), 409)
    assert "already have a pending bid" in body["message"]
    assert db.session.scalar(select(db.func.count()).select_from(Bid)) == 1


def test_after_withdrawing_the_bidder_may_bid_again(api, job, bidder, auth_headers):
    first = place_ok(api, auth_headers(bidder), job.id)
    assert api.withdraw(auth_headers(bidder), job.id, first["id"]).status_code == 200

    second = place_ok(api, auth_headers(bidder), job.id, fee="75.00")

    assert second["id"] != first["id"]
    statuses = {bid["id"]: bid["status"] for bid in api.mine(auth_headers(bidder)).get_json()}
    assert statuses == {first["id"]: "withdrawn", second["id"]: "pending"}


def test_a_job_in_progress_without_assignee_still_takes_bids(api, poster, bidder, auth_headers):
    running = JobFactory(owner=poster, status=JobStatus.IN_PROGRESS)
    place_ok(api, auth_headers(bidder), running.id)


@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED])
def test_bidding_on_a_closed_job_you_bid_on_before_is_a_conflict(
    api, job, bidder, auth_headers, status
):
    earlier = place_ok(api, auth_headers(bidder), job.id)
    api.withdraw(auth_headers(bidder), job.id, earlier["id"])
    job.status = status
    db.session.commit()

    body = assert_error(api.place(auth_headers(bidder), job.id), 409)
    assert status.value in body["message"]


@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_closed_job_you_never_bid_on_is_not_found(api, poster, stranger, auth_headers, status):
    closed = JobFactory(owner=poster, status=status)
    assert_error(api.place(auth_headers(stranger), closed.id), 404)
    assert_error(api.list_for_job(auth_headers(stranger), closed.id), 404)


def test_bidding_on_an_assigned_job_is_a_conflict_for_a_former_bidder_and_404_for_others(
    api, job, poster, bidder, rival, stranger, auth_headers
):
    winning = place_ok(api, auth_headers(bidder), job.id)
    place_ok(api, auth_headers(rival), job.id)
    assert api.accept(auth_headers(poster), job.id, winning["id"]).status_code == 200

    body = assert_error(api.place(auth_headers(rival), job.id), 409)
    assert "already assigned" in body["message"]
    assert_error(api.place(auth_headers(bidder), job.id), 409)
    assert_error(api.place(auth_headers(stranger), job.id), 404)


def test_bidding_on_a_missing_job_is_not_found(api, bidder, auth_headers):
    assert_error(api.place(auth_headers(bidder), 987654), 404)
    assert_error(
        api.client.post("/api/jobs/abc/bids/", json=bid_payload(), headers=auth_headers(bidder)),
        404,
    )


BAD_FEES = [
    ("0", "greater than 0"),
    ("0.00", "greater than 0"),
    (0, "greater than 0"),
    ("-5", "greater than 0"),
    (-0.5, "greater than 0"),
    ("abc", "valid number"),
    ("", "valid number"),
    ("80,00", "valid number"),
    ("80.005", "two decimal places"),
    (80.005, "two decimal places"),
    ("0.001", "two decimal places"),
    ("NaN", "Special numeric values"),
    ("Infinity", "Special numeric values"),
    ("1e30", "at most"),
    ("1000000000", "at most"),
    (True, "valid number"),
    (None, "null"),
    ([80], "valid number"),
    ({"amount": 80}, "valid number"),
]


@pytest.mark.parametrize(("fee", "message"), BAD_FEES)
def test_bad_fees_are_unprocessable(api, job, bidder, auth_headers, fee, message):
    body = assert_error(api.place(auth_headers(bidder), job.id, fee=fee), 422)
    assert message.lower() in " ".join(body["errors"]["json"]["fee"]).lower()


BAD_DEADLINES = [
    (lambda: (earliest_date_in_use() - timedelta(days=1)).isoformat(), "past"),
    (lambda: "2020-01-01", "past"),
    (lambda: "2030-13-01", "valid date"),
    (lambda: "tomorrow", "valid date"),
    (lambda: "", "valid date"),
    (lambda: 20301201, "valid date"),
    (lambda: None, "null"),
]


@pytest.mark.parametrize(("deadline", "message"), BAD_DEADLINES)
def test_bad_deadlines_are_unprocessable(api, job, bidder, auth_headers, deadline, message):
    response = api.place(auth_headers(bidder), job.id, proposed_deadline=deadline())
    body = assert_error(response, 422)
    assert message in " ".join(body["errors"]["json"]["proposed_deadline"]).lower()


@pytest.mark.parametrize(
    "currency", ["XYZ", "US", "USDD", "usdollar", "", "ANG", "BGN", "XAU", "XTS", 840, None]
)
def test_unknown_currencies_are_unprocessable(api, job, bidder, auth_headers, currency):
    body = assert_error(api.place(auth_headers(bidder), job.id, currency=currency), 422)
    assert "currency" in body["errors"]["json"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"comment": "x" * 2001}, "comment"),
        ({"comment": 42}, "comment"),
        ({"comment": ["a"]}, "comment"),
        ({"status": "accepted"}, "status"),
        ({"bidder_id": 1}, "bidder_id"),
        ({"job_id": 1}, "job_id"),
    ],
)
def test_wrong_types_and_unknown_fields_are_unprocessable(
    api, job, bidder, auth_headers, overrides, field
):
    body = assert_error(api.place(auth_headers(bidder), job.id, **overrides), 422)
    assert field in body["errors"]["json"]


@pytest.mark.parametrize("missing", ["fee", "proposed_deadline"])
def test_missing_required_fields_are_unprocessable(api, job, bidder, auth_headers, missing):
    payload = bid_payload()
    del payload[missing]
    response = api.client.post(
        f"/api/jobs/{job.id}/bids/", json=payload, headers=auth_headers(bidder)
    )
    body = assert_error(response, 422)
    assert body["errors"]["json"][missing] == ["Missing data for required field."]


@pytest.mark.parametrize("body", [[], "80.00", 80, None])
def test_a_body_that_is_not_an_object_is_unprocessable(api, job, bidder, auth_headers, body):
    response = api.client.post(f"/api/jobs/{job.id}/bids/", json=body, headers=auth_headers(bidder))
    assert_error(response, 422)


def test_a_form_body_is_unprocessable_and_broken_json_a_bad_request(api, job, bidder, auth_headers):
    form = api.client.post(
        f"/api/jobs/{job.id}/bids/",
        data="fee=80",
        headers={**auth_headers(bidder), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(form, 422)
    broken = api.client.post(
        f"/api/jobs/{job.id}/bids/",
        data='{"fee": "80.00",',
        headers={**auth_headers(bidder), "Content-Type": "application/json"},
    )
    assert_error(broken, 400)


# --- listing the bids on a job ---------------------------------------------------------------


@pytest.fixture
def three_bids(api, job, bidder, rival, make_user, auth_headers):
    third = make_user(display_name="Theo Third")
    bids = [
        place_ok(
            api,
            auth_headers(bidder),
            job.id,
            fee="80.00",
            proposed_deadline=in_days(10).isoformat(),
        ),
        place_ok(
            api, auth_headers(rival), job.id, fee="65.50", proposed_deadline=in_days(20).isoformat()
        ),
        place_ok(
            api, auth_headers(third), job.id, fee="120.00", proposed_deadline=in_days(3).isoformat()
        ),
    ]
    return bids, third


def fees(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [bid["fee"] for bid in response.get_json()]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("fee", ["65.50", "80.00", "120.00"]),
        ("-fee", ["120.00", "80.00", "65.50"]),
        ("proposed_deadline", ["120.00", "80.00", "65.50"]),
        ("-proposed_deadline", ["65.50", "80.00", "120.00"]),
        ("created_at", ["80.00", "65.50", "120.00"]),
        ("-created_at", ["120.00", "65.50", "80.00"]),
    ],
)
def test_owner_sees_every_bid_sorted(api, job, poster, three_bids, auth_headers, sort, expected):
    assert fees(api.list_for_job(auth_headers(poster), job.id, sort=sort)) == expected


def test_default_order_is_newest_first(api, job, poster, three_bids, auth_headers):
    assert fees(api.list_for_job(auth_headers(poster), job.id)) == ["120.00", "65.50", "80.00"]


def test_sorting_by_fee_keeps_each_currency_together(api, job, poster, bidder, rival, auth_headers):
    place_ok(api, auth_headers(bidder), job.id, fee="9000", currency="JPY")
    place_ok(api, auth_headers(rival), job.id, fee="70", currency="EUR")
    listed = api.list_for_job(auth_headers(poster), job.id, sort="fee").get_json()
    assert [(bid["currency"], bid["fee"]) for bid in listed] == [
        ("EUR", "70.00"),
        ("JPY", "9000.00"),
    ]
    only_euros = api.list_for_job(auth_headers(poster), job.id, currency="eur").get_json()
    assert [bid["currency"] for bid in only_euros] == ["EUR"]


def test_owner_can_filter_by_status(api, job, poster, bidder, three_bids, auth_headers):
    bids, _third = three_bids
    api.withdraw(auth_headers(bidder), job.id, bids[0]["id"])

    pending = api.list_for_job(auth_headers(poster), job.id, status="pending", sort="fee")
    assert fees(pending) == ["65.50", "120.00"]
    withdrawn = api.list_for_job(auth_headers(poster), job.id, status="withdrawn")
    assert fees(withdrawn) == ["80.00"]
    both = api.client.get(
        f"/api/jobs/{job.id}/bids/?status=pending&status=withdrawn&sort=fee",
        headers=auth_headers(poster),
    )
    assert fees(both) == ["65.50", "80.00", "120.00"]


def test_owner_list_is_paginated(api, job, poster, three_bids, auth_headers):
    response = api.list_for_job(auth_headers(poster), job.id, sort="fee", page=2, page_size=2)
    assert fees(response) == ["120.00"]
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 3
    assert pagination["total_pages"] == 2
    assert pagination["page"] == 2
    assert pagination["previous_page"] == 1


def test_a_bidder_sees_only_their_own_bids(api, job, bidder, rival, three_bids, auth_headers):
    bids, _third = three_bids
    listed = api.list_for_job(auth_headers(rival), job.id).get_json()
    assert [bid["id"] for bid in listed] == [bids[1]["id"]]
    assert (
        json.loads(api.list_for_job(auth_headers(rival), job.id).headers["X-Pagination"])["total"]
        == 1
    )


def test_anyone_may_look_at_an_open_job_and_sees_no_bids_of_others(
    api, job, stranger, three_bids, auth_headers
):
    response = api.list_for_job(auth_headers(stranger), job.id)
    assert response.status_code == 200
    assert response.get_json() == []


@pytest.mark.parametrize(
    "query",
    [
        {"sort": "price"},
        {"sort": "bidder"},
        {"sort": "--fee"},
        {"status": "won"},
        {"page_size": 101},
        {"page": 0},
        {"currency": "XYZ"},
    ],
)
def test_bad_list_arguments_are_unprocessable(api, job, poster, auth_headers, query):
    body = assert_error(api.list_for_job(auth_headers(poster), job.id, **query), 422)
    assert "query" in body["errors"]


def test_listing_bids_of_a_missing_job_is_not_found(api, bidder, auth_headers):
    assert_error(api.list_for_job(auth_headers(bidder), 987654), 404)


# --- reading one bid -------------------------------------------------------------------------


def test_owner_and_bidder_can_read_a_bid_others_cannot(
    api, job, poster, bidder, rival, stranger, auth_headers
):
    bid = place_ok(api, auth_headers(bidder), job.id)
    assert api.read(auth_headers(poster), job.id, bid["id"]).get_json() == bid
    assert api.read(auth_headers(bidder), job.id, bid["id"]).get_json() == bid
    assert_error(api.read(auth_headers(rival), job.id, bid["id"]), 404)
    assert_error(api.read(auth_headers(stranger), job.id, bid["id"]), 404)
    assert_error(api.read(auth_headers(poster), job.id, 987654), 404)


def test_a_bid_is_only_found_under_its_own_job(api, job, poster, bidder, auth_headers):
    other_job = JobFactory(owner=poster, name="Another job")
    bid = place_ok(api, auth_headers(bidder), job.id)
    assert_error(api.read(auth_headers(bidder), other_job.id, bid["id"]), 404)
    assert_error(api.withdraw(auth_headers(bidder), other_job.id, bid["id"]), 404)
    assert_error(api.accept(auth_headers(poster), other_job.id, bid["id"]), 404)


# --- editing ---------------------------------------------------------------------------------


def test_bidder_edits_a_pending_bid(api, job, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    response = api.edit(
        auth_headers(bidder),
        job.id,
        bid["id"],
        {
            "fee": 72.5,
            "currency": "eur",
            "proposed_deadline": in_days(9).isoformat(),
            "comment": None,
        },
    )
    assert response.status_code == 200, response.get_json()
    edited = response.get_json()
    assert edited["fee"] == "72.50"
    assert edited["currency"] == "EUR"
    assert edited["proposed_deadline"] == in_days(9).isoformat()
    assert edited["comment"] is None
    assert edited["status"] == "pending"
    assert edited["updated_at"] > bid["updated_at"]


def test_editing_only_the_comment_keeps_the_rest(api, job, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id, fee="90.00")
    edited = api.edit(auth_headers(bidder), job.id, bid["id"], {"comment": "Can start today."})
    assert edited.get_json()["fee"] == "90.00"
    assert edited.get_json()["comment"] == "Can start today."


def test_someone_elses_bid_cannot_be_edited(api, job, poster, bidder, rival, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    assert_error(api.edit(auth_headers(rival), job.id, bid["id"], {"fee": "1.00"}), 404)
    assert_error(api.edit(auth_headers(poster), job.id, bid["id"], {"fee": "1.00"}), 404)
    assert db.session.get(Bid, bid["id"]).fee == 80


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"fee": "0"}, "fee"),
        ({"fee": "1.234"}, "fee"),
        ({"fee": "lots"}, "fee"),
        ({"fee": None}, "fee"),
        ({"proposed_deadline": "2020-01-01"}, "proposed_deadline"),
        ({"currency": "ABC"}, "currency"),
        ({"status": "accepted"}, "status"),
        ({}, "_schema"),
    ],
)
def test_bad_edits_are_unprocessable(api, job, bidder, auth_headers, changes, field):
    bid = place_ok(api, auth_headers(bidder), job.id)
    body = assert_error(api.edit(auth_headers(bidder), job.id, bid["id"], changes), 422)
    assert field in body["errors"]["json"]


def test_a_bid_that_is_not_pending_cannot_be_edited(api, job, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    api.withdraw(auth_headers(bidder), job.id, bid["id"])
    body = assert_error(api.edit(auth_headers(bidder), job.id, bid["id"], {"fee": "1.00"}), 409)
    assert "withdrawn" in body["message"]


def test_a_pending_bid_on_a_cancelled_job_cannot_be_edited_but_can_be_withdrawn(
    api, job, bidder, auth_headers
):
    bid = place_ok(api, auth_headers(bidder), job.id)
    job.status = JobStatus.CANCELLED
    db.session.commit()

    body = assert_error(api.edit(auth_headers(bidder), job.id, bid["id"], {"fee": "1.00"}), 409)
    assert "cancelled" in body["message"]
    assert api.withdraw(auth_headers(bidder), job.id, bid["id"]).get_json()["status"] == "withdrawn"


# --- withdrawing -----------------------------------------------------------------------------


def test_withdrawing_answers_200_with_the_withdrawn_bid(api, job, poster, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    response = api.withdraw(auth_headers(bidder), job.id, bid["id"])
    assert response.status_code == 200
    assert response.get_json()["status"] == "withdrawn"
    assert response.get_json()["id"] == bid["id"]
    body = assert_error(api.withdraw(auth_headers(bidder), job.id, bid["id"]), 409)
    assert "only a pending bid" in body["message"]
    # The owner can no longer pick it.
    assert_error(api.accept(auth_headers(poster), job.id, bid["id"]), 409)


def test_someone_elses_bid_cannot_be_withdrawn(api, job, poster, bidder, rival, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    assert_error(api.withdraw(auth_headers(rival), job.id, bid["id"]), 404)
    assert_error(api.withdraw(auth_headers(poster), job.id, bid["id"]), 404)
    assert db.session.get(Bid, bid["id"]).status == BidStatus.PENDING


def test_an_accepted_bid_cannot_be_withdrawn(api, job, poster, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    api.accept(auth_headers(poster), job.id, bid["id"])
    body = assert_error(api.withdraw(auth_headers(bidder), job.id, bid["id"]), 409)
    assert "accepted" in body["message"]


# --- accepting -------------------------------------------------------------------------------


def test_accepting_assigns_the_job_rejects_the_others_and_queues_the_emails(
    api, job, poster, bidder, rival, make_user, auth_headers
):
    third = make_user(display_name="Theo Third")
    withdrawn_by = make_user(display_name="Will Withdraw")
    winning = place_ok(api, auth_headers(bidder), job.id, fee="80.00")
    losing = place_ok(api, auth_headers(rival), job.id, fee="65.00")
    also_losing = place_ok(api, auth_headers(third), job.id, fee="99.00")
    withdrawn = place_ok(api, auth_headers(withdrawn_by), job.id)
    api.withdraw(auth_headers(withdrawn_by), job.id, withdrawn["id"])

    response = api.accept(auth_headers(poster), job.id, winning["id"])

    assert response.status_code == 200
    assert response.get_json()["status"] == "accepted"
    assert response.get_json()["id"] == winning["id"]
    db.session.expire_all()
    assert db.session.get(Job, job.id).assignee_id == bidder.id
    statuses = {
        bid.id: bid.status for bid in db.session.scalars(select(Bid).where(Bid.job_id == job.id))
    }
    assert statuses == {
        winning["id"]: "accepted",
        losing["id"]: "rejected",
        also_losing["id"]: "rejected",
        withdrawn["id"]: "withdrawn",
    }
    emails = queued_emails()
    assert {email["queue"] for email in emails} == {"mail"}
    by_recipient = {email["to"]: email for email in emails}
    assert set(by_recipient) == {bidder.email, rival.email, third.email}
    assert "accepted" in by_recipient[bidder.email]["subject"]
    assert "80.00 USD" in by_recipient[bidder.email]["body"]
    assert "/api/jobs/assigned/" in by_recipient[bidder.email]["body"]
    assert "not selected" in by_recipient[rival.email]["subject"]


def test_the_loser_sees_rejected_and_the_winner_accepted(
    api, job, poster, bidder, rival, auth_headers
):
    winning = place_ok(api, auth_headers(bidder), job.id)
    place_ok(api, auth_headers(rival), job.id)
    api.accept(auth_headers(poster), job.id, winning["id"])

    assert [b["status"] for b in api.mine(auth_headers(rival)).get_json()] == ["rejected"]
    assert [b["status"] for b in api.mine(auth_headers(bidder)).get_json()] == ["accepted"]
    assert [b["status"] for b in api.list_for_job(auth_headers(rival), job.id).get_json()] == [
        "rejected"
    ]


def test_only_the_owner_may_accept_others_get_404(api, job, bidder, rival, stranger, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    place_ok(api, auth_headers(rival), job.id)
    for someone in (bidder, rival, stranger):
        assert_error(api.accept(auth_headers(someone), job.id, bid["id"]), 404)
    assert db.session.get(Bid, bid["id"]).status == BidStatus.PENDING
    assert queued_emails() == []


def test_accepting_twice_or_another_bid_afterwards_is_a_conflict(
    api, job, poster, bidder, rival, auth_headers
):
    winning = place_ok(api, auth_headers(bidder), job.id)
    losing = place_ok(api, auth_headers(rival), job.id)
    assert api.accept(auth_headers(poster), job.id, winning["id"]).status_code == 200

    again = assert_error(api.accept(auth_headers(poster), job.id, winning["id"]), 409)
    assert "already assigned" in again["message"]
    other = assert_error(api.accept(auth_headers(poster), job.id, losing["id"]), 409)
    assert "already assigned" in other["message"]
    db.session.expire_all()
    assert db.session.get(Job, job.id).assignee_id == bidder.id


@pytest.mark.parametrize("status", [JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.FAILED])
def test_accepting_on_a_job_that_is_not_open_is_a_conflict(
    api, job, poster, bidder, auth_headers, status
):
    bid = place_ok(api, auth_headers(bidder), job.id)
    job.status = status
    db.session.commit()
    body = assert_error(api.accept(auth_headers(poster), job.id, bid["id"]), 409)
    assert status.value in body["message"]
    assert queued_emails() == []


def test_accepting_a_missing_bid_or_on_a_missing_job_is_not_found(api, job, poster, auth_headers):
    assert_error(api.accept(auth_headers(poster), job.id, 987654), 404)
    assert_error(api.accept(auth_headers(poster), 987654, 1), 404)


# --- my bids ---------------------------------------------------------------------------------


def test_my_bids_lists_my_bids_across_jobs_with_their_job(api, poster, bidder, rival, auth_headers):
    first_job = JobFactory(owner=poster, name="First job")
    second_job = JobFactory(owner=poster, name="Second job")
    mine_first = place_ok(api, auth_headers(bidder), first_job.id)
    mine_second = place_ok(api, auth_headers(bidder), second_job.id, fee="10.00")
    place_ok(api, auth_headers(rival), first_job.id)
    api.withdraw(auth_headers(bidder), second_job.id, mine_second["id"])

    response = api.mine(auth_headers(bidder))

    assert response.status_code == 200
    listed = response.get_json()
    assert [bid["id"] for bid in listed] == [mine_second["id"], mine_first["id"]]
    assert listed[0]["job"] == {"id": second_job.id, "name": "Second job", "status": "pending"}
    assert listed[0]["status"] == "withdrawn"
    assert listed[1]["job"]["name"] == "First job"
    assert json.loads(response.headers["X-Pagination"])["total"] == 2

    pending = api.mine(auth_headers(bidder), status="pending").get_json()
    assert [bid["id"] for bid in pending] == [mine_first["id"]]
    by_fee = api.mine(auth_headers(bidder), sort="fee").get_json()
    assert [bid["fee"] for bid in by_fee] == ["10.00", "80.00"]


def test_my_bids_is_empty_for_someone_who_never_bid(api, stranger, auth_headers):
    response = api.mine(auth_headers(stranger))
    assert response.status_code == 200
    assert response.get_json() == []


@pytest.mark.parametrize("query", [{"status": "lost"}, {"sort": "job"}, {"page_size": 0}])
def test_bad_my_bids_arguments_are_unprocessable(api, bidder, auth_headers, query):
    assert_error(api.mine(auth_headers(bidder), **query), 422)


# --- who may call at all ---------------------------------------------------------------------


def every_bid_call(job_id: int, bid_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("POST", f"/api/jobs/{job_id}/bids/", bid_payload()),
        ("GET", f"/api/jobs/{job_id}/bids/", None),
        ("GET", f"/api/jobs/{job_id}/bids/{bid_id}/", None),
        ("PATCH", f"/api/jobs/{job_id}/bids/{bid_id}/", {"fee": "1.00"}),
        ("DELETE", f"/api/jobs/{job_id}/bids/{bid_id}/", None),
        ("POST", f"/api/jobs/{job_id}/bids/{bid_id}/accept/", None),
        ("GET", "/api/bids/", None),
    ]


def test_unverified_users_get_403_on_every_bid_call(
    api, job, poster, bidder, make_user, auth_headers
):
    bid = place_ok(api, auth_headers(bidder), job.id)
    unverified = make_user(verified=False)
    for method, path, body in every_bid_call(job.id, bid["id"]):
        response = api.client.open(path, method=method, json=body, headers=auth_headers(unverified))
        assert_error(response, 403)
    assert db.session.get(Bid, bid["id"]).status == BidStatus.PENDING


def test_an_unverified_owner_cannot_accept(api, make_user, bidder, auth_headers):
    owner = make_user(verified=False)
    unverified_job = JobFactory(owner=owner)
    bid = place_ok(api, auth_headers(bidder), unverified_job.id)
    assert_error(api.accept(auth_headers(owner), unverified_job.id, bid["id"]), 403)


def test_calls_without_a_token_get_401(api, job, bidder, auth_headers):
    bid = place_ok(api, auth_headers(bidder), job.id)
    for method, path, body in every_bid_call(job.id, bid["id"]):
        response = api.client.open(path, method=method, json=body)
        assert_error(response, 401)
    garbage = api.client.get("/api/bids/", headers={"Authorization": "Bearer not-a-token"})
    assert_error(garbage, 401)


def test_authentication_is_checked_before_the_body(api, job, make_user, auth_headers):
    unverified = make_user(verified=False)
    response = api.client.post(
        f"/api/jobs/{job.id}/bids/", json={"fee": "nope"}, headers=auth_headers(unverified)
    )
    assert_error(response, 403)
    assert_error(api.client.post(f"/api/jobs/{job.id}/bids/", json={"fee": "nope"}), 401)


# --- documentation ---------------------------------------------------------------------------


def test_openapi_documents_the_bid_calls_and_money_as_a_string(client):
    spec = client.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    assert {"get", "post"} <= set(paths["/api/jobs/{job_id}/bids/"])
    assert {"get", "patch", "delete"} <= set(paths["/api/jobs/{job_id}/bids/{bid_id}/"])
    assert "post" in paths["/api/jobs/{job_id}/bids/{bid_id}/accept/"]
    assert "get" in paths["/api/bids/"]
    accept = paths["/api/jobs/{job_id}/bids/{bid_id}/accept/"]["post"]
    assert {"200", "404", "409"} <= set(accept["responses"])
    assert accept["security"] == [{"bearerAuth": []}]
    fee = spec["components"]["schemas"]["BidOut"]["properties"]["fee"]
    assert fee["type"] == "string"
