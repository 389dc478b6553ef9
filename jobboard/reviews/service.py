"""Reviews and public profiles.

After a job is completed, its owner reviews its assignee and the assignee the owner, once
each (a unique index backs the rule when two requests race). A public profile is what any
verified user may know about another: never the email address.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from jobboard.errors import Conflict, NotFound
from jobboard.events.outbox import tell
from jobboard.extensions import db
from jobboard.jobs import policy
from jobboard.locking import locked
from jobboard.models import Job, JobStatus, Review, User

ONE_REVIEW_INDEX = "uq_reviews_job_reviewer"


def create_review(reviewer: User, job_id: int, rating: int, comment: str | None) -> Review:
    """The caller reviews the other party of completed job `job_id`. 404 unless the caller
    is a party; 409 unless the job is completed, or when already reviewed."""
    # FOR SHARE: a review never meets a half-done release or delivery of the job.
    job = locked(Job, job_id, shared=True)
    if job is None or not policy.is_party(reviewer, job):
        raise NotFound(f"Job {job_id} not found.")
    if job.status != JobStatus.COMPLETED:
        raise Conflict(f"Job {job.id} is {job.status}; only a completed job can be reviewed.")
    reviewee_id = policy.other_party_id(reviewer, job)
    if reviewee_id is None:
        raise Conflict(f"Job {job.id} was run by the queue, not by a person: nobody to review.")
    review = Review(
        job_id=job.id,
        reviewer_id=reviewer.id,
        reviewee_id=reviewee_id,
        rating=rating,
        comment=comment,
    )
    db.session.add(review)
    try:
        db.session.flush()
    except IntegrityError as error:
        db.session.rollback()
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if constraint == ONE_REVIEW_INDEX:
            raise Conflict(f"You have already reviewed job {job_id}.") from error
        raise
    tell("review.received", job=job, review=review)
    db.session.commit()
    return review


def public_profile(user_id: int) -> dict[str, Any]:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} not found.")
    return public_profiles([user])[user.id]


def public_profiles(users: Iterable[User]) -> dict[int, dict[str, Any]]:
    """The public profiles of `users` by id, their ratings and completed jobs counted in one
    query for all of them (bid lists embed a profile per bid)."""
    by_id = {user.id: user for user in users}
    if not by_id:
        return {}
    rating_average = (
        select(func.avg(Review.rating)).where(Review.reviewee_id == User.id).scalar_subquery()
    )
    rating_count = (
        select(func.count()).select_from(Review).where(Review.reviewee_id == User.id)
    ).scalar_subquery()
    completed = (
        select(func.count())
        .select_from(Job)
        .where(Job.assignee_id == User.id, Job.status == JobStatus.COMPLETED)
    ).scalar_subquery()
    rows = db.session.execute(
        select(User.id, rating_average, rating_count, completed).where(User.id.in_(list(by_id)))
    )
    profiles = {}
    for user_id, average, count, completed_jobs in rows:
        user = by_id[user_id]
        profiles[user_id] = {
            "id": user.id,
            "display_name": user.display_name,
            "bio": user.bio,
            "skills": list(user.skills or []),
            "rating": {
                "average": None if average is None else round(float(average), 2),
                "count": count,
            },
            "completed_jobs": completed_jobs,
        }
    return profiles
