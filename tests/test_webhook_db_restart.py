"""PostgreSQL restarted while webhook deliveries are due: nothing is lost. A PRIVATE
PostgreSQL (as tests/test_db_restart.py), a real worker, a receiver that answers slowly
so that deliveries are in flight and due when the server stops; after it starts again,
every event reaches the receiver and every delivery ends succeeded."""

from __future__ import annotations

import time

from sqlalchemy import text

from jobboard.events.outbox import EventRow, write_events
from jobboard.extensions import db
from tests.support import webhooks as wh
from tests.support.auth import bearer
from tests.support.factories import UserFactory
from tests.support.polling import wait_until
from tests.support.receivers import Answer, Receiver
from tests.support.worker import WorkerProcess

EVENTS = 30


def test_deliveries_due_across_a_database_restart_all_arrive(
    private_server,
    private_app,
    smtp_server,
):
    app = private_app

    def slow(request, receiver, connection):
        time.sleep(0.3)
        return Answer(204, {}, b"")

    receiver = Receiver(slow)
    worker = WorkerProcess(
        app.config["DATABASE_URL_FOR_WORKER"], smtp_server.port, WEBHOOK_TIMEOUT_SECONDS="3"
    )
    try:
        with app.app_context():
            user = UserFactory()
            headers = bearer(user)
        client = app.test_client()
        endpoint = wh.create_endpoint(client, headers, receiver.url)
        with app.app_context():
            write_events(
                [EventRow("job.failed", user.id, {"job": {"id": n}}) for n in range(EVENTS)]
            )
            db.session.commit()
        receiver.wait_for(2, timeout=20)
        private_server.stop()
        time.sleep(2)  # the outage; the receiver keeps answering what reaches it
        assert worker.running()
        private_server.start()

        def delivered() -> bool:
            with app.app_context():
                try:
                    pending = db.session.execute(
                        text(
                            "SELECT count(*) FROM webhook_deliveries"
                            " WHERE endpoint_id = :id AND status <> 'succeeded'"
                        ),
                        {"id": endpoint["id"]},
                    ).scalar()
                except Exception:
                    db.session.rollback()
                    return False
                finally:
                    db.session.rollback()
            return pending == 0

        wait_until(delivered, timeout=90, interval=0.5)
        ids = {request.headers["webhook-id"] for request in receiver.received}
        assert len(ids) == EVENTS
        assert worker.running()
    finally:
        worker.stop()
        receiver.stop()
