"""Periodic cleanup of expired/consumed OTPs and of revocations of expired tokens."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from jobboard.auth.service import purge_expired_otps, purge_expired_revoked_tokens
from jobboard.extensions import db
from jobboard.models import EmailOtp, RateLimitHits, RevokedToken, User, now_utc
from tests.support.factories import EmailOtpFactory
from tests.support.polling import wait_until
from workers.app import QUEUE_MAINTENANCE, task_app
from workers.maintenance import PURGE_TASK, purge_expired_auth_records


def add_code(user: User, *, expires_in: timedelta, consumed: bool = False) -> int:
    created = now_utc() - timedelta(minutes=1)
    return EmailOtpFactory(
        user=user, expires_in=expires_in, consumed=consumed, created_at=created, code_hash="0" * 64
    ).id


def add_revocation(jti: str, *, expires_in: timedelta) -> None:
    db.session.add(RevokedToken(jti=jti, token_type="access", expires_at=now_utc() + expires_in))
    db.session.commit()


def remaining_codes() -> set[int]:
    return set(db.session.scalars(select(EmailOtp.id)))


def remaining_revocations() -> set[str]:
    return set(db.session.scalars(select(RevokedToken.jti)))


def test_purge_deletes_expired_and_consumed_codes_and_keeps_live_ones(app, make_user):
    live = add_code(make_user(verified=False), expires_in=timedelta(minutes=9))
    expired = add_code(make_user(verified=False), expires_in=timedelta(seconds=-1))
    used = add_code(make_user(), expires_in=timedelta(minutes=5), consumed=True)
    replaced_owner = make_user(verified=False)
    replaced = add_code(replaced_owner, expires_in=timedelta(minutes=5), consumed=True)
    replacement = add_code(replaced_owner, expires_in=timedelta(minutes=10))

    deleted = purge_expired_otps(now_utc())

    assert deleted == 3
    assert remaining_codes() == {live, replacement}
    assert {expired, used, replaced}.isdisjoint(remaining_codes())


def test_purge_of_codes_goes_by_the_given_time(app, make_user):
    code = add_code(make_user(verified=False), expires_in=timedelta(minutes=5))

    assert purge_expired_otps(now_utc()) == 0
    assert purge_expired_otps(now_utc() + timedelta(minutes=6)) == 1
    assert code not in remaining_codes()


def test_purge_deletes_only_revocations_of_expired_tokens(app):
    add_revocation("expired-jti", expires_in=timedelta(seconds=-1))
    add_revocation("live-jti", expires_in=timedelta(minutes=15))

    assert purge_expired_revoked_tokens(now_utc()) == 1
    assert remaining_revocations() == {"live-jti"}


def add_rate_limit_counter(key: str, *, expires_in: timedelta) -> None:
    now = now_utc()
    db.session.add(RateLimitHits(key=key, hits=[now], expires_at=now + expires_in))
    db.session.commit()


def remaining_rate_limit_counters() -> set[str]:
    return set(db.session.scalars(select(RateLimitHits.key)))


def test_the_periodic_task_purges_codes_revocations_and_counters_as_of_its_tick(app, make_user):
    add_code(make_user(verified=False), expires_in=timedelta(seconds=-1))
    add_code(make_user(verified=False), expires_in=timedelta(minutes=5))
    add_revocation("old", expires_in=timedelta(seconds=-1))
    add_rate_limit_counter("login-failures-ip:10.0.0.1", expires_in=timedelta(seconds=-1))
    add_rate_limit_counter("login-failures-ip:10.0.0.2", expires_in=timedelta(minutes=10))

    result = purge_expired_auth_records(timestamp=int(now_utc().timestamp()) + 1)

    assert result == {"otps": 1, "revoked_tokens": 1, "rate_limits": 1}
    assert len(remaining_codes()) == 1 and remaining_revocations() == set()
    assert remaining_rate_limit_counters() == {"login-failures-ip:10.0.0.2"}
    # Safe to re-run.
    assert purge_expired_auth_records(timestamp=int(now_utc().timestamp()) + 1) == {
        "otps": 0,
        "revoked_tokens": 0,
        "rate_limits": 0,
    }


def test_the_purge_is_a_periodic_task_every_ten_minutes_on_the_maintenance_queue():
    task_app.perform_import_paths()
    (periodic,) = [
        p for p in task_app.periodic_registry.periodic_tasks.values() if p.task.name == PURGE_TASK
    ]
    assert periodic.cron == "*/10 * * * *"
    assert periodic.task.queue == QUEUE_MAINTENANCE
    assert periodic.task.queueing_lock == PURGE_TASK


def test_a_real_worker_runs_the_purge(live_app, start_worker, make_live_user):
    """The worker defers the latest tick on startup (Procrastinate catches up on ticks of
    the last 10 minutes), so the purge runs at once on a freshly started worker."""
    make_live_user(email="purge.me@example.com", verified=False)
    with live_app.app_context():
        user = db.session.scalars(select(User).where(User.email == "purge.me@example.com")).one()
        add_code(user, expires_in=timedelta(days=-1))
        add_revocation("long-expired", expires_in=timedelta(days=-1))
        add_revocation("still-valid", expires_in=timedelta(days=1))
        db.session.remove()

    start_worker()

    def purged() -> bool:
        with live_app.app_context():
            try:
                return db.session.scalar(
                    select(func.count()).select_from(EmailOtp)
                ) == 0 and remaining_revocations() == {"still-valid"}
            finally:
                db.session.remove()

    wait_until(purged)
