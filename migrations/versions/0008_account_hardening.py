"""account hardening: an account may have no password

Revision ID: 0008_account_hardening
Revises: 0007_fetch_by_queue
Create Date: 2026-12-04

`flask users verify` marks an address verified without a code; the password of such an
account was chosen by whoever registered the address, whom nobody checked, so the command
clears it (NULL) and the owner of the mailbox sets one through password reset. No
password matches NULL. The downgrade puts an unusable hash ("!", which no password
matches either) where the column is NULL, and makes it NOT NULL again.

Refresh-token families need no schema: a family's revocation is a row of
`revoked_tokens` keyed `family:<id>`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_account_hardening"
down_revision = "0007_fetch_by_queue"
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("users", "password_hash", existing_type=sa.String(length=255), nullable=True)


def downgrade():
    op.execute("UPDATE users SET password_hash = '!' WHERE password_hash IS NULL")
    op.alter_column("users", "password_hash", existing_type=sa.String(length=255), nullable=False)
