"""The periodic deletion of accounts left unverified (UNVERIFIED_ACCOUNT_DAYS)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from jobboard.auth.service import delete_unverified_accounts
from jobboard.extensions import db
from jobboard.models import EmailOtp, Job, User, now_utc
from tests.support.auth import register
from tests.support.polling import wait_until
from workers.app import QUEUE_MAINTENANCE, task_app
from workers.maintenance import UNVERIFIED_TASK, delete_stale_unverified_accounts


def registered_ago(make_user, days: float, verified: bool = False) -> User:
    return make_user(verified=verified, created_at=now_utc() - timedelta(days=days))


def remaining_emails() -> set[str]:
    return set(db.session.scalars(select(User.email)))


def test_accounts_unverified_for_seven_days_are_deleted_with_their_codes(client, make_user):
    register(client, "stale@example.com")
    db.session.execute(
        User.__table__.update()
        .where(User.email == "stale@example.com")
        .values(created_at=now_utc() - timedelta(days=7, seconds=1))
    )
    db.session.commit()
    young = registered_ago(make_user, 6.9)
    old_but_verified = registered_ago(make_user, 30, verified=True)

    assert delete_unverified_accounts(now_utc()) == 1

    assert remaining_emails() == {young.email, old_but_verified.email}
    assert db.session.scalar(select(func.count()).select_from(EmailOtp)) == 0


def test_an_unverified_account_with_jobs_is_kept(app, make_user):
    """Unverified users cannot post jobs; one that has some (made by an operator, say) is
    not deleted with them."""
    odd = registered_ago(make_user, 10)
    db.session.add(Job(owner_id=odd.id, name="kept", scheduled_time=now_utc()))
    db.session.commit()

    assert delete_unverified_accounts(now_utc()) == 0
    assert odd.email in remaining_emails()


def test_the_age_is_configurable(app, make_user):
    email = registered_ago(make_user, 2).email
    app.config["UNVERIFIED_ACCOUNT_DAYS"] = 1
    try:
        assert delete_unverified_accounts(now_utc()) == 1
    finally:
        app.config["UNVERIFIED_ACCOUNT_DAYS"] = 7
    assert email not in remaining_emails()


def test_the_deletion_is_a_periodic_task_every_ten_minutes_on_the_maintenance_queue():
    task_app.perform_import_paths()
    (periodic,) = [
        p
        for p in task_app.periodic_registry.periodic_tasks.values()
        if p.task.name == UNVERIFIED_TASK
    ]
    assert periodic.cron == "*/10 * * * *"
    assert periodic.task.queue == QUEUE_MAINTENANCE
    assert periodic.task.queueing_lock == UNVERIFIED_TASK


def test_the_task_deletes_as_of_its_tick_and_is_safe_to_rerun(app, make_user):
    registered_ago(make_user, 8)
    tick = int(now_utc().timestamp())

    assert delete_stale_unverified_accounts(timestamp=tick) == 1
    assert delete_stale_unverified_accounts(timestamp=tick) == 0


def test_a_real_worker_runs_the_deletion(live_app, start_worker, make_live_user):
    """Procrastinate defers the latest tick (of the last 10 minutes) when a worker starts."""
    make_live_user(
        email="gone@example.com", verified=False, created_at=now_utc() - timedelta(days=8)
    )
    make_live_user(email="stays@example.com", verified=False)

    start_worker()

    def deleted() -> bool:
        with live_app.app_context():
            try:
                return remaining_emails() == {"stays@example.com"}
            finally:
                db.session.remove()

    wait_until(deleted, timeout=30)
