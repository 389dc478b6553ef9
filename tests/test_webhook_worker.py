"""Webhooks through the real worker process (`python -m workers`): delivered end to end on
their own queue and slots, over https to a receiver with a local CA, again with the same
webhook-id after the worker is SIGKILLed mid-delivery, and on time for a healthy endpoint
while 1,000 events pile up for a dead one."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import trustme
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from config import Config
from devtools.processes import free_port
from jobboard.events.outbox import EventRow, write_events
from jobboard.extensions import db
from tests.support import receivers
from tests.support import webhooks as wh
from tests.support.auth import bearer
from tests.support.polling import wait_until
from tests.support.receivers import Answer, Receiver
from workers.__main__ import worker_set
from workers.app import QUEUE_WEBHOOKS


@pytest.fixture
def receiver_factory():
    started: list[Receiver] = []

    def start(behaviour=None, tls=None) -> Receiver:
        receiver = Receiver(behaviour, tls)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def user_with_headers(live_app, make_live_user):
    user = make_live_user()
    with live_app.app_context():
        user.headers = bearer(user)
    return user


def statuses(live_app, endpoint_id: int) -> list[str]:
    return [row["status"] for row in wh.deliveries(live_app, endpoint_id)]


def test_the_webhooks_queue_has_its_own_worker_and_slots():
    workers = {options["name"]: options for options in worker_set(Config)}
    assert workers["webhooks"]["queues"] == [QUEUE_WEBHOOKS]
    assert workers["webhooks"]["concurrency"] == Config.WEBHOOK_WORKER_CONCURRENCY == 8
    others = [options for name, options in workers.items() if name != "webhooks"]
    assert all(QUEUE_WEBHOOKS not in options["queues"] for options in others)


def test_delivered_by_the_worker_while_every_job_slot_is_busy(
    live_app, live_client, make_live_user, receiver_factory, start_worker
):
    start_worker(WORKER_CONCURRENCY="1")
    user = user_with_headers(live_app, make_live_user)
    busy = live_client.post(
        "/api/jobs/",
        json={"name": "busy", "kind": "sleep", "params": {"seconds": 30}},
        headers=user.headers,
    )
    assert busy.status_code == 201
    wait_until(
        lambda: (
            live_client.get(f"/api/jobs/{busy.get_json()['id']}/", headers=user.headers).get_json()[
                "status"
            ]
            == "in_progress"
        )
    )
    receiver = receiver_factory()
    endpoint = wh.create_endpoint(live_client, user.headers, receiver.url)
    sent = live_client.post(f"/api/webhooks/{endpoint['id']}/test/", headers=user.headers)
    started = time.monotonic()
    (request,) = receiver.wait_for(1, timeout=10)
    assert time.monotonic() - started < 5
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["id"] == sent.get_json()["event_id"]
    assert payload["type"] == "webhook.test"
    wait_until(lambda: statuses(live_app, endpoint["id"]) == ["succeeded"])


def test_https_with_a_certificate_of_a_ca_the_worker_is_told_to_trust(
    live_app, live_client, make_live_user, receiver_factory, start_worker, tmp_path
):
    authority = trustme.CA()
    server_context = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    receiver = receiver_factory(tls=server_context)
    assert receiver.url.startswith("https://")
    user = user_with_headers(live_app, make_live_user)
    endpoint = wh.create_endpoint(live_client, user.headers, receiver.url)

    # Without the CA, the certificate is refused: no request gets through.
    wh.emit(live_app, user.id)
    wh.run_endpoint(live_app.config["DATABASE_URL_FOR_WORKER"], endpoint["id"])
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert "CERTIFICATE_VERIFY_FAILED" in attempt["error"] and receiver.received == []

    start_worker(WEBHOOK_CA_BUNDLE=str(bundle))
    live_client.post(
        f"/api/webhooks/{endpoint['id']}/deliveries/"
        f"{wh.deliveries(live_app, endpoint['id'])[0]['id']}/resend/",
        headers=user.headers,
    )
    (request,) = receiver.wait_for(1)
    Webhook(endpoint["secret"]).verify(request.body, request.headers)
    wait_until(lambda: statuses(live_app, endpoint["id"]) == ["succeeded"])


def test_a_worker_killed_mid_delivery_delivers_later_with_the_same_webhook_id(
    live_app, live_client, make_live_user, receiver_factory, start_worker
):
    first_seen = threading.Event()

    def hang_once(request, receiver, connection):
        if not first_seen.is_set():
            first_seen.set()
            receiver.stopping.wait(30)
            return None
        return Answer(204, {}, b"")

    receiver = receiver_factory(hang_once)
    user = user_with_headers(live_app, make_live_user)
    endpoint = wh.create_endpoint(live_client, user.headers, receiver.url)
    worker = start_worker(WEBHOOK_TIMEOUT_SECONDS="20")
    wh.emit(live_app, user.id)
    assert first_seen.wait(15)
    worker.kill()  # SIGKILL, mid-request
    assert statuses(live_app, endpoint["id"]) == ["pending"]
    killed_at = time.monotonic()
    start_worker(WEBHOOK_TIMEOUT_SECONDS="3")
    # The lease of the killed run (timeout 20 s + 5 s) must pass first.
    requests = receiver.wait_for(2, timeout=60)
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    wait_until(lambda: statuses(live_app, endpoint["id"]) == ["succeeded"], timeout=20)
    assert time.monotonic() - killed_at < 60


def test_a_dead_endpoint_with_1000_events_never_delays_another_users_endpoint(
    live_app, live_client, make_live_user, receiver_factory, start_worker, capsys
):
    start_worker(WEBHOOK_TIMEOUT_SECONDS="15")
    dead_user = user_with_headers(live_app, make_live_user)
    hanging_user = user_with_headers(live_app, make_live_user)
    healthy_user = user_with_headers(live_app, make_live_user)
    closed_port = free_port()  # nothing listens: every attempt is refused at once
    dead = wh.create_endpoint(
        live_client, dead_user.headers, f"http://127.0.0.1:{closed_port}/hooks"
    )
    hanging = receiver_factory(receivers.hang)
    wh.create_endpoint(live_client, hanging_user.headers, hanging.url)
    healthy = receiver_factory()
    wh.create_endpoint(live_client, healthy_user.headers, healthy.url)

    with live_app.app_context():
        for user in (dead_user, hanging_user):
            write_events([EventRow("job.failed", user.id, {"job": {"id": n}}) for n in range(1000)])
            db.session.commit()

    lags = []
    for n in range(20):
        with live_app.app_context():
            write_events([EventRow("job.failed", healthy_user.id, {"job": {"id": n}})])
            db.session.commit()
        committed = time.time()
        request = healthy.wait_for(n + 1, timeout=10)[n]
        lags.append(request.at - committed)
        time.sleep(0.1)
    with live_app.app_context():
        failed_attempts = db.session.execute(
            text(
                "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d"
                " ON d.id = a.delivery_id WHERE d.endpoint_id = :id"
            ),
            {"id": dead["id"]},
        ).scalar()
    assert max(lags) < 2.0, lags
    assert failed_attempts > 0
    with capsys.disabled():
        print(
            f"\n[webhooks] healthy endpoint lag beside 1,000 refused + 1,000 hanging events: "
            f"median {statistics.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
            f"over {len(lags)} events; the dead endpoint failed {failed_attempts} attempts "
            "meanwhile (shared machine)"
        )
