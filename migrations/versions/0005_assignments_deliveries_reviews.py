"""people do the jobs they win: due dates, delivery notes, reviews

Revision ID: 0005_assignments_reviews
Revises: 0004_plans_fair_queue
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_assignments_reviews"
down_revision = "0004_plans_fair_queue"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("reminder_queue_job_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("overdue_queue_job_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("reviewee_id", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_reviews_rating_range")),
        sa.CheckConstraint("reviewer_id <> reviewee_id", name=op.f("ck_reviews_not_self")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_reviews_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["users.id"],
            name=op.f("fk_reviews_reviewer_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reviewee_id"],
            ["users.id"],
            name=op.f("fk_reviews_reviewee_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index("uq_reviews_job_reviewer", ["job_id", "reviewer_id"], unique=True)
        batch_op.create_index("ix_reviews_reviewee", ["reviewee_id", "rating"], unique=False)


def downgrade():
    op.drop_table("reviews")
    with op.batch_alter_table("job_results", schema=None) as batch_op:
        batch_op.drop_column("note")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("overdue_queue_job_id")
        batch_op.drop_column("reminder_queue_job_id")
        batch_op.drop_column("due_date")
