"""Conditional requests: an ETag on a single job, bid, plan, profile and every list, 304 on
a matching If-None-Match; If-Match on PATCH/DELETE of a job and PATCH of a bid: 412 and
nothing changed when stale, the change when current, today's behaviour without it; and the
check cannot race the write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobboard.extensions import db
from jobboard.models import Bid, Job, JobStatus
from tests.support.auth import bearer
from tests.support.factories import BidFactory, JobFactory, UserFactory
from tests.support.races import behind_a_row_lock


@pytest.fixture
def setting(app):
    owner = UserFactory(display_name="Olga")
    bidder = UserFactory(display_name="Ada")
    job = JobFactory(owner=owner, kind="manual")
    bid = BidFactory(job=job, bidder=bidder)
    return owner, bidder, job, bid


def etag_and_304(client, path: str, headers: dict[str, str]) -> str:
    first = client.get(path, headers=headers)
    assert first.status_code == 200, (path, first.get_json())
    etag = first.headers["ETag"]
    again = client.get(path, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"", path
    other = client.get(path, headers={**headers, "If-None-Match": '"something-else"'})
    assert other.status_code == 200
    return etag


def test_single_resources_and_lists_have_etags(client, setting):
    owner, bidder, job, bid = setting
    mine, theirs = bearer(owner), bearer(bidder)
    for path in (
        f"/api/jobs/{job.id}/",
        "/api/jobs/",
        "/api/jobs/assigned/",
        f"/api/jobs/{job.id}/bids/",
        f"/api/jobs/{job.id}/bids/{bid.id}/",
        "/api/me/plan/",
        f"/api/users/{bidder.id}/",
        "/api/events/",
        "/api/webhooks/",
    ):
        etag_and_304(client, path, mine)
    etag_and_304(client, "/api/jobs/open/", theirs)
    etag_and_304(client, "/api/bids/", theirs)


def test_a_list_etag_changes_with_its_page(client, setting):
    owner, *_ = setting
    headers = bearer(owner)
    etag = client.get("/api/jobs/", headers=headers).headers["ETag"]
    JobFactory(owner=owner)
    assert client.get("/api/jobs/", headers={**headers, "If-None-Match": etag}).status_code == 200


def test_patch_of_a_job_honours_if_match(client, setting):
    owner, _bidder, job, _bid = setting
    headers = bearer(owner)
    path = f"/api/jobs/{job.id}/"
    etag = client.get(path, headers=headers).headers["ETag"]
    stale = client.patch(path, json={"name": "new"}, headers={**headers, "If-Match": '"stale"'})
    assert stale.status_code == 412 and "changed" in stale.get_json()["message"]
    assert db.session.get(Job, job.id, populate_existing=True).name != "new"
    done = client.patch(path, json={"name": "new"}, headers={**headers, "If-Match": etag})
    assert done.status_code == 200 and done.get_json()["name"] == "new"
    # The tag read before that change is stale now.
    again = client.patch(path, json={"name": "newer"}, headers={**headers, "If-Match": etag})
    assert again.status_code == 412
    assert (
        client.patch(path, json={"name": "x"}, headers={**headers, "If-Match": "*"}).status_code
        == 200
    )
    # Without If-Match: as before.
    assert client.patch(path, json={"name": "plain"}, headers=headers).status_code == 200


def test_delete_of_a_job_honours_if_match(client, app):
    owner = UserFactory()
    job = JobFactory(owner=owner)
    headers = bearer(owner)
    path = f"/api/jobs/{job.id}/"
    etag = client.get(path, headers=headers).headers["ETag"]
    assert client.delete(path, headers={**headers, "If-Match": '"old"'}).status_code == 412
    assert db.session.get(Job, job.id, populate_existing=True).status == JobStatus.PENDING
    cancelled = client.delete(path, headers={**headers, "If-Match": etag})
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"


def test_patch_of_a_bid_honours_if_match(client, setting):
    _owner, bidder, job, bid = setting
    headers = bearer(bidder)
    path = f"/api/jobs/{job.id}/bids/{bid.id}/"
    etag = client.get(path, headers=headers).headers["ETag"]
    body = {"comment": "cheaper", "fee": "70.00"}
    assert client.patch(path, json=body, headers={**headers, "If-Match": '"x"'}).status_code == 412
    assert str(db.session.get(Bid, bid.id, populate_existing=True).fee) == "80.00"
    done = client.patch(path, json=body, headers={**headers, "If-Match": etag})
    assert done.status_code == 200 and done.get_json()["fee"] == "70.00"


def test_if_match_never_reveals_somebody_elses_job(client, setting):
    _owner, _bidder, job, _bid = setting
    stranger = bearer(UserFactory())
    response = client.patch(
        f"/api/jobs/{job.id}/", json={"name": "x"}, headers={**stranger, "If-Match": '"x"'}
    )
    assert response.status_code == 404


def test_me_has_an_etag_and_honours_if_match(client, setting):
    owner, *_ = setting
    headers = bearer(owner)
    etag = etag_and_304(client, "/api/me/", headers)
    stale = client.patch("/api/me/", json={"bio": "x"}, headers={**headers, "If-Match": '"s"'})
    assert stale.status_code == 412
    assert (
        client.patch(
            "/api/me/", json={"bio": "x"}, headers={**headers, "If-Match": etag}
        ).status_code
        == 200
    )


def test_two_patches_with_the_same_tag_do_not_both_pass(live_app, make_live_user):
    """Both read the same ETag and send it; they queue behind the job's row lock. The first
    to get the lock changes the job; the second then finds the tag stale: 412."""
    owner = make_live_user()
    with live_app.app_context():
        job = JobFactory(owner=owner.id, scheduled_time=datetime.now(UTC) + timedelta(hours=2))
        job_id = job.id
        headers = bearer(owner)
    etag = live_app.test_client().get(f"/api/jobs/{job_id}/", headers=headers).headers["ETag"]
    responses = behind_a_row_lock(
        live_app,
        live_app.config["DATABASE_URL_FOR_WORKER"],
        "SELECT 1 FROM jobs WHERE id = %s FOR UPDATE",
        job_id,
        [
            lambda c, name=name: c.patch(
                f"/api/jobs/{job_id}/", json={"name": name}, headers={**headers, "If-Match": etag}
            )
            for name in ("first", "second")
        ],
    )
    assert sorted(r.status_code for r in responses) == [200, 412]
    winner = next(r for r in responses if r.status_code == 200).get_json()["name"]
    with live_app.app_context():
        assert db.session.get(Job, job_id).name == winner
