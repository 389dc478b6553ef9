"""Reviews between the parties of a completed job, public profiles, and the profiles
embedded in bid lists (one query for the ratings of a page's bidders)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event

from jobboard.extensions import db
from jobboard.models import JobStatus
from tests.support.assignments import awarded_job, deliver, place_bid, post_job, review
from tests.support.auth import bearer
from tests.support.jobs import create_job, run_queued_attempt


@pytest.fixture
def paula(make_user):
    return make_user(display_name="Paula Poster", bio="Runs a shop", skills=["retail"])


@pytest.fixture
def bob(make_user):
    return make_user(display_name="Bob Builder", bio="Translator", skills=["french"])


@pytest.fixture
def completed(client, paula, bob):
    job, _bid = awarded_job(client, paula, bob)
    assert deliver(client, bob, job["id"]).status_code == 200
    return job


def test_each_party_reviews_the_other_once(client, paula, bob, completed):
    by_owner = review(client, paula, completed["id"], {"rating": 5, "comment": "Fast, precise."})
    assert by_owner.status_code == 201, by_owner.get_json()
    body = by_owner.get_json()
    assert (body["reviewer_id"], body["reviewee_id"], body["rating"]) == (paula.id, bob.id, 5)
    assert body["comment"] == "Fast, precise."
    by_assignee = review(client, bob, completed["id"], {"rating": 4})
    assert by_assignee.status_code == 201
    assert by_assignee.get_json()["reviewee_id"] == paula.id
    assert by_assignee.get_json()["comment"] is None

    for party in (paula, bob):
        again = review(client, party, completed["id"], {"rating": 1})
        assert again.status_code == 409
        assert "already reviewed" in again.get_json()["message"]


def test_the_profile_carries_the_rating_and_completed_jobs_never_the_email(
    client, paula, bob, completed, make_user
):
    other, _bid = awarded_job(client, paula, bob)
    assert deliver(client, bob, other["id"]).status_code == 200
    review(client, paula, completed["id"], {"rating": 5})
    review(client, paula, other["id"], {"rating": 4})
    viewer = make_user()

    response = client.get(f"/api/users/{bob.id}/", headers=bearer(viewer))

    assert response.status_code == 200
    profile = response.get_json()
    assert profile == {
        "id": bob.id,
        "display_name": "Bob Builder",
        "bio": "Translator",
        "skills": ["french"],
        "rating": {"average": 4.5, "count": 2},
        "completed_jobs": 2,
    }
    assert bob.email not in json.dumps(profile)
    paula_profile = client.get(f"/api/users/{paula.id}/", headers=bearer(viewer)).get_json()
    assert paula_profile["rating"] == {"average": None, "count": 0}
    assert paula_profile["completed_jobs"] == 0  # she owns jobs; she did none


def test_average_is_rounded_to_two_places(client, paula, bob, make_user):
    ratings = [5, 4, 4]
    for rating in ratings:
        job, _ = awarded_job(client, paula, bob)
        deliver(client, bob, job["id"])
        assert review(client, paula, job["id"], {"rating": rating}).status_code == 201
    profile = client.get(f"/api/users/{bob.id}/", headers=bearer(paula)).get_json()
    assert profile["rating"] == {"average": 4.33, "count": 3}


def test_unknown_and_out_of_range_users_are_404(client, bob):
    for user_id in (987654, 2**31, 10**30):
        response = client.get(f"/api/users/{user_id}/", headers=bearer(bob))
        assert response.status_code == 404
        assert response.get_json()["code"] == 404


def test_profiles_need_a_verified_user(client, bob, make_user):
    assert client.get(f"/api/users/{bob.id}/").status_code == 401
    unverified = make_user(verified=False)
    assert client.get(f"/api/users/{bob.id}/", headers=bearer(unverified)).status_code == 403


def test_non_parties_get_404(client, paula, bob, completed, make_user, admin_user):
    for someone in (make_user(), admin_user):
        response = review(client, someone, completed["id"])
        assert response.status_code == 404


@pytest.mark.parametrize("status", ["in_progress", "pending"])
def test_a_job_not_completed_cannot_be_reviewed(client, paula, bob, status):
    job, _bid = awarded_job(client, paula, bob)
    if status == "pending":
        client.post(f"/api/jobs/{job['id']}/release/", headers=bearer(bob))
        response = review(client, paula, job["id"])
    else:
        response = review(client, bob, job["id"])
        assert review(client, paula, job["id"]).status_code == 409
    assert response.status_code == 409
    assert status in response.get_json()["message"]


def test_a_job_the_queue_ran_has_nobody_to_review(client, paula):
    job = create_job(paula)
    run_queued_attempt(job.id)
    assert db.session.get(type(job), job.id).status == JobStatus.COMPLETED
    response = review(client, paula, job.id)
    assert response.status_code == 409
    assert "nobody to review" in response.get_json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"rating": 0},
        {"rating": 6},
        {"rating": -1},
        {"rating": "5"},
        {"rating": 4.5},
        {"rating": True},
        {"rating": None},
        {"rating": 5, "comment": "nul\u0000"},
        {"rating": 5, "comment": "\udc00"},
        {"rating": 5, "comment": 7},
        {"rating": 5, "comment": "x" * 2001},
        {"rating": 5, "extra": 1},
    ],
)
def test_bad_reviews_are_422(client, paula, completed, body):
    response = review(client, paula, completed["id"], body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == 422
    assert review(client, paula, completed["id"], {"rating": 1}).status_code == 201


def test_ratings_at_the_edges_are_accepted(client, paula, bob, completed):
    assert review(client, paula, completed["id"], {"rating": 1}).status_code == 201
    assert review(client, bob, completed["id"], {"rating": 5}).status_code == 201


# --- profiles in bid lists ------------------------------------------------------------------


def test_bid_lists_embed_each_bidders_public_profile_with_rating(
    client, paula, bob, completed, make_user
):
    review(client, paula, completed["id"], {"rating": 3})
    job = post_job(client, paula)
    place_bid(client, bob, job["id"], fee="50.00")
    newcomer = make_user(display_name="Nina New")
    place_bid(client, newcomer, job["id"], fee="40.00")

    bids = client.get(f"/api/jobs/{job['id']}/bids/?sort=fee", headers=bearer(paula)).get_json()

    assert [b["bidder"]["display_name"] for b in bids] == ["Nina New", "Bob Builder"]
    assert bids[1]["bidder"]["rating"] == {"average": 3.0, "count": 1}
    assert bids[1]["bidder"]["completed_jobs"] == 1
    assert bids[0]["bidder"]["rating"] == {"average": None, "count": 0}
    assert bob.email not in json.dumps(bids)
    mine = client.get("/api/bids/", headers=bearer(bob)).get_json()
    assert mine[0]["bidder"]["rating"]["count"] == 1


def count_statements(app, call) -> int:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    return len(statements)


def test_listing_bids_costs_the_same_queries_for_one_bidder_or_many(app, client, paula, make_user):
    few = post_job(client, paula)
    many = post_job(client, paula)
    place_bid(client, make_user(), few["id"])
    for _ in range(6):
        place_bid(client, make_user(), many["id"])
    headers = bearer(paula)

    one = count_statements(app, lambda: client.get(f"/api/jobs/{few['id']}/bids/", headers=headers))
    six = count_statements(
        app, lambda: client.get(f"/api/jobs/{many['id']}/bids/", headers=headers)
    )
    assert 0 < one == six
