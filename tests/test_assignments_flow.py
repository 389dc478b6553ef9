"""The whole story, as three new users live it: Paula posts, Bob and Rita bid, Paula
accepts Bob, Bob delivers, both review; and a job given back. The real API on a database
that commits, the real worker process, the real SMTP server reading every notice."""

from __future__ import annotations

from email.message import Message

from sqlalchemy import text

from devtools.smtp import Mailbox
from jobboard.extensions import db
from tests.support.auth import sign_up
from tests.support.bids import BidsApi, in_days, live_headers
from tests.support.polling import wait_until
from tests.support.smtp import body_of


def one_email(mailbox: Mailbox, to: str, subject_part: str) -> Message:
    return mailbox.wait_for(lambda m: to in m["To"] and subject_part in m["Subject"])


def test_post_bid_award_deliver_review_with_every_notice(live_client, start_worker, mailbox):
    start_worker()
    client = live_client
    api = BidsApi(client)
    paula = sign_up(client, mailbox, "paula@example.com", "Paula Poster", ["management"])
    bob = sign_up(client, mailbox, "bob@example.com", "Bob Bidder", ["french"])
    rita = sign_up(client, mailbox, "rita@example.com", "Rita Rival", ["french"])

    # Paula posts a manual job: nobody's processor, it waits for a person.
    posted = client.post(
        "/api/jobs/",
        json={
            "name": "Translate our landing page",
            "description": "About 300 words, English to French.",
            "kind": "manual",
            "params": {"words": 300},
        },
        headers=paula,
    )
    assert posted.status_code == 201, posted.get_json()
    job_id = posted.get_json()["id"]

    # Bob and Rita bid; Paula hears of each bid.
    bob_bid = api.place(bob, job_id, fee="80.00", proposed_deadline=in_days(5).isoformat())
    rita_bid = api.place(rita, job_id, fee="65.50", proposed_deadline=in_days(8).isoformat())
    assert (bob_bid.status_code, rita_bid.status_code) == (201, 201)
    one_email(mailbox, "paula@example.com", "New bid")
    wait_until(
        lambda: (
            len([m for m in mailbox.sent_to("paula@example.com") if "New bid" in m["Subject"]]) == 2
        )
    )
    notice = body_of(one_email(mailbox, "paula@example.com", "New bid"))
    assert "Translate our landing page" in notice

    # The job is still pending (the queue never ran it) and Paula compares the profiles.
    assert client.get(f"/api/jobs/{job_id}/", headers=paula).get_json()["status"] == "pending"
    bids = api.list_for_job(paula, job_id, sort="fee").get_json()
    assert [b["bidder"]["display_name"] for b in bids] == ["Rita Rival", "Bob Bidder"]
    assert bids[1]["bidder"]["rating"] == {"average": None, "count": 0}

    # Paula accepts Bob: he has the job, Rita hears she was not selected.
    assert api.accept(paula, job_id, bob_bid.get_json()["id"]).status_code == 200
    won = one_email(mailbox, "bob@example.com", "was accepted")
    assert "80.00 USD" in body_of(won)
    one_email(mailbox, "rita@example.com", "not selected")
    assigned = client.get("/api/jobs/assigned/", headers=bob).get_json()
    assert [(j["id"], j["status"], j["due_date"]) for j in assigned] == [
        (job_id, "in_progress", in_days(5).isoformat())
    ]

    # Bob delivers; Paula is emailed and reads the delivery.
    delivered = client.post(
        f"/api/jobs/{job_id}/deliver/",
        json={"output": {"text": "Bienvenue sur notre site"}, "note": "Proofread twice."},
        headers=bob,
    )
    assert delivered.status_code == 200, delivered.get_json()
    assert delivered.get_json()["status"] == "completed"
    done = one_email(mailbox, "paula@example.com", "was delivered")
    assert "Proofread twice." in body_of(done)
    result = client.get(f"/api/jobs/{job_id}/result/", headers=paula).get_json()
    assert result["output"] == {"text": "Bienvenue sur notre site"}
    assert result["note"] == "Proofread twice."

    # Both review each other, once.
    assert (
        client.post(
            f"/api/jobs/{job_id}/reviews/", json={"rating": 5, "comment": "Great"}, headers=paula
        ).status_code
        == 201
    )
    assert (
        client.post(f"/api/jobs/{job_id}/reviews/", json={"rating": 4}, headers=bob).status_code
        == 201
    )
    bob_id = bob_bid.get_json()["bidder"]["id"]
    profile = client.get(f"/api/users/{bob_id}/", headers=rita).get_json()
    assert profile["rating"] == {"average": 5.0, "count": 1}
    assert profile["completed_jobs"] == 1
    assert "email" not in profile

    # The deadline notices were cancelled with the delivery: nobody is reminded later.
    dashboard = client.get("/api/dashboard/", headers=bob).get_json()
    assert dashboard["assigned"]["completed"] == 1


def test_a_job_given_back_is_queued_again_and_the_owner_told(live_client, start_worker, mailbox):
    start_worker()
    client = live_client
    api = BidsApi(client)
    paula = sign_up(client, mailbox, "paula2@example.com", "Paula", [])
    bob = sign_up(client, mailbox, "bob2@example.com", "Bob", [])
    posted = client.post(
        "/api/jobs/", json={"name": "Echo later", "params": {"hello": "world"}}, headers=paula
    )
    job_id = posted.get_json()["id"]
    # No scheduled_time: run now, a worker takes it at once.
    wait_until(
        lambda: (
            client.get(f"/api/jobs/{job_id}/", headers=paula).get_json()["status"] == "completed"
        )
    )

    # A job with a time, so that there is something to award before the queue runs it.
    timed = client.post(
        "/api/jobs/",
        json={"name": "Echo in an hour", "scheduled_time": "2099-01-01T00:00:00+00:00"},
        headers=paula,
    ).get_json()
    bid = api.place(bob, timed["id"], proposed_deadline=in_days(3).isoformat()).get_json()
    assert api.accept(paula, timed["id"], bid["id"]).status_code == 200
    one_email(mailbox, "bob2@example.com", "was accepted")

    given_back = client.post(f"/api/jobs/{timed['id']}/release/", headers=bob)
    assert given_back.status_code == 200
    assert given_back.get_json()["status"] == "pending"
    message = one_email(mailbox, "paula2@example.com", "given back")
    assert "open for bids again" in body_of(message)
    # Reschedule it to run now: the worker runs it, once.
    moved = client.patch(f"/api/jobs/{timed['id']}/", json={"scheduled_time": None}, headers=paula)
    assert moved.status_code == 200
    wait_until(
        lambda: (
            client.get(f"/api/jobs/{timed['id']}/", headers=paula).get_json()["status"]
            == "completed"
        )
    )
    final = client.get(f"/api/jobs/{timed['id']}/", headers=paula).get_json()
    assert final["attempts"] == 1


def test_the_worker_sends_the_deadline_notices_when_they_come_due(
    live_app, live_client, start_worker, mailbox, make_live_user
):
    """The scheduled deferrals, brought forward (their time moved to now, and the due date
    to the past for the overdue notice) so the real worker runs them through real SMTP."""
    paula = make_live_user(email="owner@example.com", display_name="Paula")
    bob = make_live_user(email="doer@example.com", display_name="Bob")
    owner, doer = live_headers(live_app, paula), live_headers(live_app, bob)
    api = BidsApi(live_client)
    job_id = live_client.post(
        "/api/jobs/", json={"name": "Late work", "kind": "manual"}, headers=owner
    ).get_json()["id"]
    bid = api.place(doer, job_id, proposed_deadline=in_days(4).isoformat()).get_json()
    assert api.accept(owner, job_id, bid["id"]).status_code == 200
    start_worker()

    with live_app.app_context():
        db.session.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now()"
                " WHERE task_name = 'send_due_reminder' AND status = 'todo'"
            )
        )
        db.session.commit()
    reminder = one_email(mailbox, "doer@example.com", "Reminder")
    assert f'"Late work" is due {in_days(4).isoformat()}' in reminder["Subject"]

    past = in_days(-3).isoformat()
    with live_app.app_context():
        db.session.execute(text("UPDATE jobs SET due_date = :past"), {"past": past})
        db.session.execute(
            text(
                "UPDATE procrastinate_jobs SET scheduled_at = now(),"
                " args = jsonb_set(args, '{due_date}', to_jsonb(CAST(:past AS text)))"
                " WHERE task_name = 'send_overdue_notice' AND status = 'todo'"
            ),
            {"past": past},
        )
        db.session.commit()
    overdue = one_email(mailbox, "owner@example.com", "is overdue")
    assert f"(user #{bob.id}) has not delivered" in body_of(overdue)
