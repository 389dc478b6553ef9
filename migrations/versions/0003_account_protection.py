"""account protection: password reset codes, token generations, rate limits

Revision ID: 0003_account_protection
Revises: 0002_accounts_jobs_bids
Create Date: 2026-11-28 07:00:00.000000

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0003_account_protection"
down_revision = "0002_accounts_jobs_bids"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "users",
        sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False),
    )
    op.drop_constraint(op.f("ck_email_otps_purpose_known"), "email_otps", type_="check")
    op.create_check_constraint(
        op.f("ck_email_otps_purpose_known"),
        "email_otps",
        "purpose IN ('verify_email', 'reset_password')",
    )
    op.create_table(
        "rate_limit_hits",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("hits", postgresql.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_hits")),
    )
    op.create_index("ix_rate_limit_hits_expires_at", "rate_limit_hits", ["expires_at"])
    # The periodic deletion of accounts left unverified looks them up by age.
    op.create_index(
        "ix_users_unverified_created",
        "users",
        ["created_at"],
        postgresql_where=sa.text("NOT is_email_verified"),
    )


def downgrade():
    op.drop_index("ix_users_unverified_created", table_name="users")
    op.drop_index("ix_rate_limit_hits_expires_at", table_name="rate_limit_hits")
    op.drop_table("rate_limit_hits")
    op.execute("DELETE FROM email_otps WHERE purpose = 'reset_password'")
    op.drop_constraint(op.f("ck_email_otps_purpose_known"), "email_otps", type_="check")
    op.create_check_constraint(
        op.f("ck_email_otps_purpose_known"), "email_otps", "purpose IN ('verify_email')"
    )
    op.drop_column("users", "token_generation")
