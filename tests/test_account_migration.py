"""Revision 0008_account_hardening: an account may have no password, and the downgrade
leaves such an account with a hash no password matches."""

from __future__ import annotations

from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from jobboard.auth.passwords import password_matches
from jobboard.extensions import db
from tests.support.factories import UserFactory


def password_column_nullable() -> bool:
    return db.session.execute(
        text(
            "SELECT is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_name = 'users' AND column_name = 'password_hash'"
        )
    ).scalar_one()


def test_the_downgrade_gives_passwordless_accounts_an_unusable_hash(live_app: Flask):
    with live_app.app_context():
        cleared_id = UserFactory(email="cleared@example.com").id
        db.session.execute(
            text("UPDATE users SET password_hash = NULL WHERE id = :id"), {"id": cleared_id}
        )
        db.session.commit()
        assert password_column_nullable()

        downgrade(revision="0007_fetch_by_queue")
        db.session.remove()
        assert not password_column_nullable()
        stored = db.session.execute(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": cleared_id}
        ).scalar_one()
        assert stored == "!"
        assert not password_matches(stored, "!")
        db.session.remove()

        upgrade()
        db.session.remove()
        assert password_column_nullable()
        db.session.remove()
