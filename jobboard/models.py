"""Typed SQLAlchemy 2 models. Models never commit; services own the transactions."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jobboard.extensions import db


def now_utc() -> datetime:
    return datetime.now(UTC)


def zero_filled(statuses: type[enum.StrEnum], rows: Iterable[Any]) -> dict[str, int]:
    """`(status, count)` rows as a dict with every status of `statuses`, zeros included."""
    counts = dict.fromkeys((status.value for status in statuses), 0)
    counts.update({status: count for status, count in rows})
    return counts


def _values_check(column: str, enum_cls: type[enum.StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum_cls)
    return f"{column} IN ({values})"


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, onupdate=now_utc, server_default=func.now()
    )


FREE_PLAN = "free"


class Plan(db.Model):
    """A subscription plan and its limits; jobboard/quotas.py applies them."""

    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint(
            "max_running_jobs >= 1 AND max_open_jobs >= 1 AND jobs_per_day >= 1"
            " AND max_params_bytes >= 2 AND bids_per_day >= 0",
            name="limits_positive",
        ),
    )

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    max_running_jobs: Mapped[int] = mapped_column(Integer)
    max_open_jobs: Mapped[int] = mapped_column(Integer)
    jobs_per_day: Mapped[int] = mapped_column(Integer)
    max_params_bytes: Mapped[int] = mapped_column(Integer)
    bids_per_day: Mapped[int] = mapped_column(Integer)
    max_webhook_endpoints: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )


class User(TimestampMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
        Index(
            "ix_users_unverified_created",
            "created_at",
            postgresql_where=text("NOT is_email_verified"),
        ),
        Index(
            "ix_users_plan_ends_at",
            "plan_ends_at",
            postgresql_where=text("plan_ends_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    # None: no password works until one is set through password reset (jobboard/auth).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_email_verified: Mapped[bool] = mapped_column(default=False, server_default="false")
    is_admin: Mapped[bool] = mapped_column(default=False, server_default="false")
    display_name: Mapped[str | None] = mapped_column(String(100))
    bio: Mapped[str | None] = mapped_column(Text)
    skills: Mapped[list[str]] = mapped_column(ARRAY(String(50)), default=list, server_default="{}")
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Tokens carry the generation they were issued under; bumping it (password change or
    # reset, logout from everywhere) revokes every token issued before.
    token_generation: Mapped[int] = mapped_column(default=0, server_default="0")
    plan_name: Mapped[str] = mapped_column(
        String(50), ForeignKey("plans.name"), default=FREE_PLAN, server_default=FREE_PLAN
    )
    # End of a subscription to a plan other than free; None on free (it never ends).
    plan_ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    plan_reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class OtpPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


class EmailOtp(db.Model):
    """A one-time code, stored as a hash. `consumed_at` is set when it is used, replaced
    by a newer code, or burnt by too many wrong tries; at most one unconsumed code exists
    per user and purpose."""

    __tablename__ = "email_otps"
    __table_args__ = (
        Index(
            "uq_email_otps_live",
            "user_id",
            "purpose",
            unique=True,
            postgresql_where=text("consumed_at IS NULL"),
        ),
        Index("ix_email_otps_expires_at", "expires_at"),
        CheckConstraint(_values_check("purpose", OtpPurpose), name="purpose_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(30))
    code_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    failed_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship()


class RevokedToken(db.Model):
    """A revoked JWT, kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_type: Mapped[str] = mapped_column(String(10))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    revoked_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RateLimitHits(db.Model):
    """The recent events counted by one rate limit for one subject (jobboard/ratelimit.py):
    their times, oldest first, within the limit's sliding window."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    hits: Mapped[list[datetime]] = mapped_column(ARRAY(DateTime(timezone=True)))
    # When the newest hit leaves the window: the row counts nothing after it.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job is open until it is finished or cancelled: it counts against `max_open_jobs`, and
# it takes bids while nobody is assigned (jobboard.jobs.policy).
OPEN_JOB_STATUSES = (JobStatus.PENDING, JobStatus.IN_PROGRESS)


class Job(TimestampMixin, db.Model):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_values_check("status", JobStatus), name="status_known"),
        CheckConstraint("max_attempts BETWEEN 1 AND 10", name="max_attempts_range"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_owner_status", "owner_id", "status"),
        Index("ix_jobs_owner_scheduled", "owner_id", "scheduled_time"),
        Index("ix_jobs_assignee_status", "assignee_id", "status"),
        Index("ix_jobs_open_created", "created_at", postgresql_where=text("assignee_id IS NULL")),
        # Open jobs counted exactly by GET /metrics, however many finished ones there are.
        Index(
            "ix_jobs_open_status",
            "status",
            postgresql_where=text("status IN ('pending', 'in_progress')"),
        ),
        # Every user's jobs in one status (the operations console, its bulk actions).
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_created_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(50), default="echo")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    scheduled_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(
        String(20), default=JobStatus.PENDING, server_default=JobStatus.PENDING.value
    )
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(default=3, server_default="3")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # The Procrastinate job (procrastinate_jobs.id) that will run the next attempt.
    queue_job_id: Mapped[int | None] = mapped_column(BigInteger)
    # A job handed to a person: the accepted bid's proposed_deadline, and the queue entries
    # of the reminder before it and the overdue notice after it (cancelled on delivery or
    # release). See jobboard.jobs.transitions.
    due_date: Mapped[date | None] = mapped_column(Date)
    reminder_queue_job_id: Mapped[int | None] = mapped_column(BigInteger)
    overdue_queue_job_id: Mapped[int | None] = mapped_column(BigInteger)

    owner: Mapped[User] = relationship(foreign_keys=[owner_id])
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id])
    result: Mapped[JobResult | None] = relationship(
        back_populates="job", uselist=False, cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status}>"


class JobResult(db.Model):
    __tablename__ = "job_results"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    output: Mapped[Any | None] = mapped_column(JSONB)
    error_message: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    # The assignee's note with a delivery; None for a processor's result.
    note: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="result")


class AttemptOutcome(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    LOST = "lost"  # its worker died; the stalled-job check gave it up


class JobAttempt(db.Model):
    """One attempt of a job the queue runs, written by the transitions that change the job
    (jobboard/jobs/transitions.py). `number` is the job's `attempts` when it began: a
    failed job retried by hand counts from 1 again, so a history is ordered by `id`."""

    __tablename__ = "job_attempts"
    __table_args__ = (
        CheckConstraint(_values_check("outcome", AttemptOutcome), name="outcome_known"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("duration_ms >= 0", name="duration_non_negative"),
        Index("ix_job_attempts_job_id", "job_id", "id"),
        Index(
            "ix_job_attempts_finished_at",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(
        Text, default=AttemptOutcome.RUNNING, server_default=AttemptOutcome.RUNNING.value
    )
    error: Mapped[str | None] = mapped_column(Text)
    # host:pid of the worker process that ran it.
    worker: Mapped[str | None] = mapped_column(Text)
    # The job's kind, and when the attempt was due (its queue entry's scheduled time, or
    # when the entry was queued): lateness is started_at - due_at.
    kind: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobRetry(db.Model):
    """A failed job sent back to the queue by `retry_failed_job`: it counts against the
    owner's `jobs_per_day` as a new job does (jobboard/quotas.py)."""

    __tablename__ = "job_retries"
    __table_args__ = (Index("ix_job_retries_owner_retried", "owner_id", "retried_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    retried_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )


class IdempotencyKey(db.Model):
    """Remembers which job a client's `Idempotency-Key` created, per user."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    # A batch (POST /api/jobs/batch/): every job it created, in the request's order;
    # `job_id` is the first of them. NULL for a single job.
    job_ids: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )


class BidStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Bid(TimestampMixin, db.Model):
    __tablename__ = "bids"
    __table_args__ = (
        CheckConstraint(_values_check("status", BidStatus), name="status_known"),
        CheckConstraint("fee > 0", name="fee_positive"),
        # A user has at most one live bid per job; withdrawn/rejected ones stay as history.
        Index(
            "uq_bids_live_per_bidder",
            "job_id",
            "bidder_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'accepted')"),
        ),
        # Exactly one bid can win a job, whatever races the service loses.
        Index(
            "uq_bids_one_accepted_per_job",
            "job_id",
            unique=True,
            postgresql_where=text("status = 'accepted'"),
        ),
        Index("ix_bids_bidder_status", "bidder_id", "status"),
        Index("ix_bids_bidder_created", "bidder_id", "created_at"),
        Index("ix_bids_job_status", "job_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    bidder_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    comment: Mapped[str | None] = mapped_column(Text)
    proposed_deadline: Mapped[date] = mapped_column(Date)
    fee: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), default="USD", server_default="USD")
    status: Mapped[str] = mapped_column(
        String(20), default=BidStatus.PENDING, server_default=BidStatus.PENDING.value
    )

    job: Mapped[Job] = relationship()
    bidder: Mapped[User] = relationship()


class Review(db.Model):
    """A party's review of the other party of a completed job: once per reviewer and job."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        CheckConstraint("reviewer_id <> reviewee_id", name="not_self"),
        Index("uq_reviews_job_reviewer", "job_id", "reviewer_id", unique=True),
        Index("ix_reviews_reviewee", "reviewee_id", "rating"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reviewee_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )


class Event(db.Model):
    """Something a user should hear of, written in the transaction of the change (the
    outbox; jobboard/events). Written by `jobboard.events.outbox.write_events` only."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The writing transaction's id (pg_current_xact_id): the feed's order is (txid, id).
    txid: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Only for webhook.test: that endpoint alone hears of it, and the feed never shows it.
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookEndpoint(TimestampMixin, db.Model):
    """A user's webhook receiver (jobboard/webhooks). Secrets are stored sealed."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    # None: every type.
    types: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true")
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(db.Model):
    """One event for one endpoint, with its attempts."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(
        Text, default=DeliveryStatus.PENDING, server_default=DeliveryStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    round_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    event: Mapped[Event] = relationship()
    attempt_rows: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", viewonly=True
    )


class WebhookAttempt(db.Model):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)


class QueuePause(db.Model):
    """A paused queue: no worker fetches its waiting entries (the fetch in
    migrations/sql/operations_0012.sql reads this table); running ones finish."""

    __tablename__ = "queue_pauses"

    queue_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )
    paused_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AdminAction(db.Model):
    """One change an admin made through the operations API, kept: who (the email stays
    when the account goes), what (`action` and its `target`: a queue, ids or a filter),
    when, and for bulk actions how many jobs it matched, changed and skipped."""

    __tablename__ = "admin_actions"
    __table_args__ = (Index("ix_admin_actions_created", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    admin_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    admin_email: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[dict[str, Any]] = mapped_column(JSONB)
    matched: Mapped[int | None] = mapped_column(Integer)
    changed: Mapped[int | None] = mapped_column(Integer)
    skipped: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now_utc, server_default=func.now()
    )
