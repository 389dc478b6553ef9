"""Reviews and public profiles endpoints."""

from __future__ import annotations

from functools import partial
from typing import Any

from jobboard.auth.tokens import VerifiedUserView, caller
from jobboard.reviews import service
from jobboard.reviews.schemas import PublicProfileOut, ReviewIn, ReviewOut
from jobboard.view_helpers import Blueprint, documented_error, verified_user_doc

blp = Blueprint(
    "reviews",
    __name__,
    url_prefix="/api",
    description=(
        "After a job done by a person is completed, its owner reviews the assignee and the "
        "assignee the owner, once each. Public profiles carry the rating received and the "
        "jobs completed as assignee, never the email address."
    ),
)

error = partial(documented_error, blp)
authenticated = verified_user_doc(blp)


@blp.route("/jobs/<int:job_id>/reviews/")
class JobReviews(VerifiedUserView):
    @authenticated
    @blp.arguments(ReviewIn)
    @blp.response(201, ReviewOut)
    @error(404, "No such job, or you are not a party to it")
    @error(409, "The job is not completed, or you have already reviewed it")
    @error(422, "rating not an integer 1-5, or a bad comment")
    def post(self, review: dict[str, Any], job_id: int):
        """Review the other party of a completed job (once)"""
        return service.create_review(caller(), job_id, review["rating"], review["comment"])


@blp.route("/users/<int:user_id>/")
class UserProfile(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, PublicProfileOut)
    @error(404, "No such user")
    def get(self, user_id: int):
        """A user's public profile, with their rating and completed jobs"""
        return service.public_profile(user_id)
