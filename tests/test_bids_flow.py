"""The whole bidding story as three new users live it, end to end: the real API on a
database that commits, the real worker process sending mail, the real SMTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import Message

from tests.support.auth import sign_up
from tests.support.bids import BidsApi, in_days
from tests.support.polling import wait_until
from tests.support.smtp import body_of


def addressed_to(address: str, subject_part: str):
    def matches(message: Message) -> bool:
        return address in message["To"] and subject_part in message["Subject"]

    return matches


def test_three_users_post_bid_compare_accept_and_hear_about_it(live_client, start_worker, mailbox):
    start_worker()
    client = live_client
    api = BidsApi(client)
    paula = sign_up(client, mailbox, "paula@example.com", "Paula Poster", ["management"])
    bob = sign_up(client, mailbox, "bob@example.com", "Bob Bidder", ["french", "proofreading"])
    rita = sign_up(client, mailbox, "rita@example.com", "Rita Rival", ["french"])

    # Paula posts a job.
    posted = client.post(
        "/api/jobs/",
        json={
            "name": "Translate our landing page",
            "description": "About 300 words, English to French.",
            "scheduled_time": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
            "kind": "echo",
            "params": {"words": 300},
        },
        headers=paula,
    )
    assert posted.status_code == 201, posted.get_json()
    job_id = posted.get_json()["id"]

    # Bob and Rita find it among the open jobs and bid.
    open_jobs = client.get("/api/jobs/open/", headers=bob).get_json()
    assert job_id in [job["id"] for job in open_jobs]
    bob_bid = api.place(
        bob,
        job_id,
        fee="80.00",
        proposed_deadline=in_days(5).isoformat(),
        comment="Native speaker, 5 days.",
    )
    rita_bid = api.place(
        rita, job_id, fee=65.5, proposed_deadline=in_days(8).isoformat(), currency="usd"
    )
    assert bob_bid.status_code == 201, bob_bid.get_json()
    assert rita_bid.status_code == 201, rita_bid.get_json()
    assert api.place(paula, job_id).status_code == 403

    # Paula compares: cheapest first, with each bidder's public profile.
    compared = api.list_for_job(paula, job_id, sort="fee").get_json()
    assert [(bid["bidder"]["display_name"], bid["fee"]) for bid in compared] == [
        ("Rita Rival", "65.50"),
        ("Bob Bidder", "80.00"),
    ]
    assert compared[1]["bidder"]["skills"] == ["french", "proofreading"]
    assert all("email" not in bid["bidder"] for bid in compared)
    # Each bidder sees only their own bid.
    assert [bid["id"] for bid in api.list_for_job(rita, job_id).get_json()] == [
        rita_bid.get_json()["id"]
    ]

    # Bob sharpens his offer, then Paula picks him.
    edited = api.edit(bob, job_id, bob_bid.get_json()["id"], {"fee": "70.00"})
    assert edited.get_json()["fee"] == "70.00"
    accepted = api.accept(paula, job_id, bob_bid.get_json()["id"])
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["status"] == "accepted"

    # The worker emails both bidders through the real SMTP server.
    won = mailbox.wait_for(addressed_to("bob@example.com", "accepted"))
    assert "Translate our landing page" in won["Subject"]
    assert "70.00 USD" in body_of(won)
    assert "/api/jobs/assigned/" in body_of(won)
    lost = mailbox.wait_for(addressed_to("rita@example.com", "not selected"))
    assert "Translate our landing page" in body_of(lost)
    # Paula heard of each bid as it came in (and of nothing else).
    wait_until(lambda: len(mailbox.sent_to("paula@example.com")) >= 3)
    notices = [m["Subject"] for m in mailbox.sent_to("paula@example.com")[1:]]
    assert notices == ['New bid on "Translate our landing page"'] * 2

    # Bob now has the job: assigned to him, readable by him, no longer open to anyone.
    assigned = client.get("/api/jobs/assigned/", headers=bob).get_json()
    assert [job["id"] for job in assigned] == [job_id]
    as_assignee = client.get(f"/api/jobs/{job_id}/", headers=bob)
    assert as_assignee.status_code == 200
    assert as_assignee.get_json()["assignee_id"] == accepted.get_json()["bidder"]["id"]
    assert job_id not in [
        job["id"] for job in client.get("/api/jobs/open/", headers=rita).get_json()
    ]
    assert client.get("/api/jobs/assigned/", headers=rita).get_json() == []

    # Rita sees her bid rejected, and cannot bid again.
    rita_bids = api.mine(rita).get_json()
    assert [(bid["job"]["id"], bid["status"]) for bid in rita_bids] == [(job_id, "rejected")]
    assert api.place(rita, job_id).status_code == 409
    assert [bid["status"] for bid in api.mine(bob).get_json()] == ["accepted"]
