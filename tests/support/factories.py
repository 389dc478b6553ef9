"""One factory_boy factory per model, a trait per status. Rows are committed through the
app's session (savepoints under the `app` fixture, real commits under `live_app`).

    UserFactory(verified=False)            JobFactory(owner=user, completed=True)
    JobFactory(owner=user.id, status=s)    BidFactory(job=job, bidder=user, accepted=True)
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import factory
from factory.alchemy import SQLAlchemyModelFactory

from jobboard.auth.passwords import hash_password
from jobboard.extensions import db
from jobboard.models import (
    Bid,
    BidStatus,
    EmailOtp,
    Job,
    JobStatus,
    OtpPurpose,
    Plan,
    Review,
    User,
    now_utc,
)
from tests.support.auth import DEFAULT_PASSWORD

FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED)


def _id_of(value: object) -> int:
    return value if isinstance(value, int) else value.id  # type: ignore[attr-defined]


class _Factory(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class PlanFactory(_Factory):
    class Meta:
        model = Plan

    name = factory.Sequence(lambda n: f"plan-{n}")
    max_running_jobs = 2
    max_open_jobs = 100
    jobs_per_day = 1000
    max_params_bytes = 65536
    bids_per_day = 50


class UserFactory(_Factory):
    """A user with DEFAULT_PASSWORD, verified unless `verified=False`."""

    class Meta:
        model = User

    class Params:
        verified = True
        admin = False
        password = DEFAULT_PASSWORD
        unverified = factory.Trait(verified=False)

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password_hash = factory.LazyAttribute(lambda o: hash_password(o.password))
    is_email_verified = factory.SelfAttribute("verified")
    is_admin = factory.SelfAttribute("admin")


class JobFactory(_Factory):
    """A job row in `status` (no queue entry); finished ones have run one attempt.
    `owner` is a User or a user id."""

    class Meta:
        model = Job

    class Params:
        owner = factory.SubFactory(UserFactory)
        pending = factory.Trait(status=JobStatus.PENDING)
        in_progress = factory.Trait(status=JobStatus.IN_PROGRESS)
        completed = factory.Trait(status=JobStatus.COMPLETED)
        failed = factory.Trait(status=JobStatus.FAILED)
        cancelled = factory.Trait(status=JobStatus.CANCELLED)

    owner_id = factory.LazyAttribute(lambda o: _id_of(o.owner))
    status = JobStatus.PENDING
    name = factory.LazyAttribute(lambda o: f"{o.status} job")
    description = "About 300 words, English to French."
    kind = "echo"
    params = factory.LazyFunction(lambda: {"n": 1})
    scheduled_time = factory.LazyFunction(lambda: now_utc() + timedelta(hours=1))
    attempts = factory.LazyAttribute(lambda o: 1 if o.status in FINISHED else 0)
    started_at = factory.LazyAttribute(lambda o: now_utc() if o.status in FINISHED else None)
    finished_at = factory.LazyAttribute(lambda o: now_utc() if o.status in FINISHED else None)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        kwargs["status"] = str(kwargs["status"])
        return super()._create(model_class, *args, **kwargs)


class BidFactory(_Factory):
    """A bid on `job` by `bidder` (a User or id); an accepted one assigns the job."""

    class Meta:
        model = Bid

    class Params:
        job = factory.SubFactory(JobFactory)
        bidder = factory.SubFactory(UserFactory)
        pending = factory.Trait(status=BidStatus.PENDING)
        accepted = factory.Trait(status=BidStatus.ACCEPTED)
        rejected = factory.Trait(status=BidStatus.REJECTED)
        withdrawn = factory.Trait(status=BidStatus.WITHDRAWN)

    job_id = factory.LazyAttribute(lambda o: o.job.id)
    bidder_id = factory.LazyAttribute(lambda o: _id_of(o.bidder))
    status = BidStatus.PENDING
    proposed_deadline = factory.LazyFunction(lambda: date.today() + timedelta(days=7))
    fee = Decimal("80.00")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        kwargs["status"] = str(kwargs["status"])
        return super()._create(model_class, *args, **kwargs)

    @factory.post_generation
    def assign(bid: Bid, create: bool, extracted, **kwargs) -> None:
        if create and bid.status == BidStatus.ACCEPTED:
            db.session.get(Job, bid.job_id).assignee_id = bid.bidder_id
            db.session.commit()


class EmailOtpFactory(_Factory):
    """A verification code (hash only) expiring in `expires_in`; `consumed=True` uses it."""

    class Meta:
        model = EmailOtp

    class Params:
        user = factory.SubFactory(UserFactory)
        expires_in = timedelta(minutes=10)
        consumed = False
        now = factory.LazyFunction(now_utc)
        expired = factory.Trait(expires_in=timedelta(minutes=-1))

    user_id = factory.LazyAttribute(lambda o: _id_of(o.user))
    purpose = OtpPurpose.VERIFY_EMAIL.value
    code_hash = "x" * 64
    expires_at = factory.LazyAttribute(lambda o: o.now + o.expires_in)
    consumed_at = factory.LazyAttribute(lambda o: o.now if o.consumed else None)


class ReviewFactory(_Factory):
    class Meta:
        model = Review

    class Params:
        job = factory.SubFactory(JobFactory, completed=True)
        reviewer = factory.SubFactory(UserFactory)
        reviewee = factory.SubFactory(UserFactory)

    job_id = factory.LazyAttribute(lambda o: _id_of(o.job))
    reviewer_id = factory.LazyAttribute(lambda o: _id_of(o.reviewer))
    reviewee_id = factory.LazyAttribute(lambda o: _id_of(o.reviewee))
    rating = 5
    comment = "Delivered on time."
