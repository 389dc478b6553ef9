"""Jobs endpoints. Every call needs a verified user (401 without a token, 403 unverified)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from flask.views import MethodView
from flask_smorest import Blueprint
from flask_smorest.error_handler import ErrorSchema
from flask_smorest.pagination import PaginationParameters

from jobboard.auth.tokens import caller, verified_required
from jobboard.jobs import service
from jobboard.jobs.schemas import (
    IdempotencyHeaders,
    JobIn,
    JobOpenOut,
    JobOut,
    JobQueryArgs,
    JobResultOut,
)
from jobboard.models import Job

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/api",
    description=(
        "Jobs run by the queue at their scheduled time. Status: pending -> in_progress -> "
        "completed | failed, pending -> cancelled. A failed attempt with attempts left goes "
        "back to pending with `last_error` and is retried after 2 s, 4 s, 8 s, ... "
        "Somebody else's job answers 404."
    ),
)

PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def _page(query: Any, pagination_parameters: PaginationParameters) -> list[Job]:
    items, total = service.page_of(
        query, pagination_parameters.page, pagination_parameters.page_size
    )
    pagination_parameters.item_count = total
    return items


def error(status_code: int, description: str) -> Any:
    """Document an error answer in the flask-smorest error body."""
    return blp.alt_response(status_code, schema=ErrorSchema, description=description)


def authenticated(view: Any) -> Any:
    """OpenAPI: bearer token of a verified user (the check itself is `JobsView.decorators`)."""
    view = error(401, "Missing, invalid, expired or revoked access token")(view)
    view = error(403, "Email address not verified")(view)
    return blp.doc(security=[{"bearerAuth": []}])(view)


class JobsView(MethodView):
    # Authentication runs before flask-smorest parses the arguments: no 422 for strangers.
    decorators: ClassVar[list[Callable[..., Any]]] = [verified_required]


@blp.route("/jobs/")
class Jobs(JobsView):
    @authenticated
    @blp.arguments(JobQueryArgs, location="query")
    @blp.response(200, JobOut(many=True))
    @blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
    @error(422, "Unknown filter value or sort key")
    def get(self, filters: dict[str, Any], pagination_parameters: PaginationParameters):
        """List your own jobs"""
        return _page(service.owned_jobs_query(caller(), filters), pagination_parameters)

    @authenticated
    @blp.arguments(JobIn)
    @blp.arguments(IdempotencyHeaders, location="headers")
    @blp.response(201, JobOut)
    @error(422, "Invalid field, past scheduled_time, unknown kind, bad params")
    def post(self, data: dict[str, Any], headers: dict[str, Any]):
        """Create a job, queued for its scheduled time"""
        job, created = service.create_job(caller(), data, headers.get("idempotency_key"))
        return job, 201, ({} if created else {"Idempotent-Replayed": "true"})


@blp.route("/jobs/assigned/")
class AssignedJobs(JobsView):
    @authenticated
    @blp.arguments(JobQueryArgs, location="query")
    @blp.response(200, JobOut(many=True))
    @blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
    @error(422, "Unknown filter value or sort key")
    def get(self, filters: dict[str, Any], pagination_parameters: PaginationParameters):
        """List the jobs assigned to you (your bid was accepted)"""
        return _page(service.assigned_jobs_query(caller(), filters), pagination_parameters)


@blp.route("/jobs/open/")
class OpenJobs(JobsView):
    @authenticated
    @blp.arguments(JobQueryArgs, location="query")
    @blp.response(200, JobOpenOut(many=True))
    @blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
    @error(422, "Unknown filter value or sort key")
    def get(self, filters: dict[str, Any], pagination_parameters: PaginationParameters):
        """List other people's jobs open for bids (public fields only)"""
        return _page(service.open_jobs_query(caller(), filters), pagination_parameters)


@blp.route("/jobs/<int:job_id>/")
class JobById(JobsView):
    @authenticated
    @blp.response(200, JobOut)
    @error(404, "No such job, or not yours")
    def get(self, job_id: int):
        """Get a job (owner, assignee or admin)"""
        return service.get_visible_job(caller(), job_id)

    @authenticated
    @blp.response(200, JobOut)
    @error(403, "You are the assignee, not the owner")
    @error(404, "No such job, or not yours")
    @error(409, "The job has started or finished")
    def delete(self, job_id: int):
        """Cancel a pending job and its queue entry"""
        return service.cancel_job(caller(), job_id)


@blp.route("/jobs/<int:job_id>/result/")
class JobResultView(JobsView):
    @authenticated
    @blp.response(200, JobResultOut)
    @error(404, "No such job, or not yours")
    @error(409, "The job is not completed; the message says its status")
    def get(self, job_id: int):
        """Get the result of a completed job"""
        return service.get_result(caller(), job_id)


@blp.route("/jobs/<int:job_id>/retry/")
class JobRetry(JobsView):
    @authenticated
    @blp.response(202, JobOut)
    @error(403, "You are the assignee, not the owner")
    @error(404, "No such job, or not yours")
    @error(409, "The job is not failed")
    def post(self, job_id: int):
        """Retry a failed job now, with a fresh round of max_attempts"""
        return service.retry_failed_job(caller(), job_id)
