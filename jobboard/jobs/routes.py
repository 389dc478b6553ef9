"""Jobs endpoints. Every call needs a verified user (401 without a token, 403 unverified)."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask.views import MethodView

from jobboard import conditional
from jobboard.auth.tokens import VerifiedUserView, caller, counts_against_quotas
from jobboard.conditional import IfMatch, IfMatchHeaders
from jobboard.jobs import policy, service, transitions
from jobboard.jobs.schemas import (
    DeliveryIn,
    IdempotencyHeaders,
    JobAttemptOut,
    JobBatchIn,
    JobIn,
    JobOpenOut,
    JobOut,
    JobQueryArgs,
    JobResultOut,
    JobUpdateIn,
    KindOut,
)
from jobboard.view_helpers import (
    RETRY_AFTER,
    Blueprint,
    SelectPage,
    documented_error,
    received_at,
    verified_user_doc,
)

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/api",
    description=(
        "Jobs run by the queue at their scheduled time. Status: pending -> in_progress -> "
        "completed | failed, pending -> cancelled. A failed attempt with attempts left goes "
        "back to pending with `last_error` and is retried with exponential backoff "
        "(JOB_RETRY_BASE_SECONDS, doubling; see docs/configuration.md). "
        "A job handed to a person (an accepted bid) goes pending -> in_progress on award, "
        "-> completed on delivery, back to pending on release; the queue never runs it, "
        "nor a `manual` job. Somebody else's job answers 404."
    ),
)

error = partial(documented_error, blp)
authenticated = verified_user_doc(blp)


@blp.route("/jobs/")
class Jobs(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.arguments(JobQueryArgs, location="query")
    @blp.response(200, JobOut(many=True))
    @blp.paginate(SelectPage)
    @error(422, "Unknown filter value or sort key")
    def get(self, filters: dict[str, Any]):
        """List your own jobs"""
        return service.owned_jobs_query(caller(), filters)

    @counts_against_quotas
    @authenticated
    @blp.arguments(JobIn)
    @blp.arguments(IdempotencyHeaders, location="headers")
    @blp.response(201, JobOut)
    @error(
        422,
        "Invalid field, past scheduled_time, unknown kind, bad params, or params larger "
        "than your plan's max_params_bytes (as compact UTF-8 JSON)",
    )
    @error(
        429,
        "Over a quota of your plan (GET /api/me/plan/), named in the message: max_open_jobs "
        "(pending + in progress; Retry-After is a suggested wait, see docs/api.md) or jobs_per_day "
        "(Retry-After: seconds to the next UTC day).",
        headers=RETRY_AFTER,
    )
    def post(self, data: dict[str, Any], headers: dict[str, Any]):
        """Create a job, queued for its scheduled time"""
        job, created = service.create_job(
            caller(), data, headers.get("idempotency_key"), received_at()
        )
        return job, 201, ({} if created else {"Idempotent-Replayed": "true"})


@blp.route("/jobs/batch/")
class JobBatch(VerifiedUserView):
    @counts_against_quotas
    @authenticated
    @blp.arguments(JobBatchIn)
    @blp.arguments(IdempotencyHeaders, location="headers")
    @blp.response(201, JobOut(many=True))
    @error(
        422,
        "Not 1 to 100 jobs, or a job that POST /api/jobs/ would refuse: the errors name it "
        "by its index (`errors.json.jobs.<i>.<field>`); nothing is created",
    )
    @error(
        429,
        "The whole batch would pass a quota of your plan (max_open_jobs or jobs_per_day, "
        "named in the message); nothing is created",
        headers=RETRY_AFTER,
    )
    def post(self, data: dict[str, Any], headers: dict[str, Any]):
        """Create up to 100 jobs in one transaction, queued for their scheduled times"""
        jobs, created = service.create_jobs(
            caller(), data["jobs"], headers.get("idempotency_key"), received_at()
        )
        return jobs, 201, ({} if created else {"Idempotent-Replayed": "true"})


@blp.route("/jobs/assigned/")
class AssignedJobs(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.arguments(JobQueryArgs, location="query")
    @blp.response(200, JobOut(many=True))
    @blp.paginate(SelectPage)
    @error(422, "Unknown filter value or sort key")
    def get(self, filters: dict[str, Any]):
        """List the jobs assigned to you (your bid was accepted)"""
        return service.assigned_jobs_query(caller(), filters)


@blp.route("/jobs/open/")
class OpenJobs(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.arguments(JobQueryArgs, location="query")
    @blp.response(200, JobOpenOut(many=True))
    @blp.paginate(SelectPage)
    @error(422, "Unknown filter value or sort key")
    def get(self, filters: dict[str, Any]):
        """List other people's jobs open for bids (public fields only)"""
        return service.open_jobs_query(caller(), filters)


@blp.route("/jobs/<int:job_id>/")
class JobById(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, JobOut)
    @error(404, policy.JOB_NOT_YOURS)
    def get(self, job_id: int):
        """Get a job (owner, assignee or admin)"""
        return service.get_visible_job(caller(), job_id)

    @authenticated
    @blp.arguments(JobUpdateIn)
    @blp.arguments(IfMatchHeaders, location="headers")
    @blp.response(200, JobOut)
    @error(404, policy.JOB_NOT_YOURS)
    @error(409, "The job is not pending, or it is assigned")
    @error(412, conditional.STALE)
    @error(422, "Invalid field, past scheduled_time, params that do not fit the kind")
    @error(
        429,
        "Run now (`scheduled_time: null`) counts like a create: refused while your other "
        "open jobs are at your plan's max_open_jobs",
        headers=RETRY_AFTER,
    )
    def patch(self, changes: dict[str, Any], headers: dict[str, Any], job_id: int):
        """Edit or reschedule your pending, unassigned job; its queue entry moves with it"""
        if_match = IfMatch.of(headers, JobOut)
        return transitions.reschedule(caller(), job_id, changes, if_match=if_match)

    @authenticated
    @blp.arguments(IfMatchHeaders, location="headers")
    @blp.response(200, JobOut)
    @error(403, policy.NOT_THE_OWNER)
    @error(404, policy.JOB_NOT_YOURS)
    @error(409, "The job has started or finished")
    @error(412, conditional.STALE)
    def delete(self, headers: dict[str, Any], job_id: int):
        """Cancel a pending job and its queue entry"""
        if_match = IfMatch.of(headers, JobOut)
        return transitions.cancel_job(caller(), job_id, if_match=if_match)


@blp.route("/jobs/<int:job_id>/result/")
class JobResultView(VerifiedUserView):
    @authenticated
    @blp.response(200, JobResultOut)
    @error(404, policy.JOB_NOT_YOURS)
    @error(409, "The job is not completed; the message says its status")
    def get(self, job_id: int):
        """Get the result of a completed job"""
        return service.get_result(caller(), job_id)


@blp.route("/jobs/<int:job_id>/attempts/")
class JobAttempts(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, JobAttemptOut(many=True))
    @blp.paginate(SelectPage)
    @error(404, policy.JOB_NOT_YOURS)
    def get(self, job_id: int):
        """List a job's attempts by the queue, oldest first (owner, assignee or admin)"""
        return service.visible_attempts_query(caller(), job_id)


@blp.route("/jobs/<int:job_id>/retry/")
class JobRetry(VerifiedUserView):
    @authenticated
    @blp.response(202, JobOut)
    @error(403, policy.NOT_THE_OWNER)
    @error(404, policy.JOB_NOT_YOURS)
    @error(409, "The job is not failed")
    @error(
        429,
        "A retry counts like a create: refused at your plan's max_open_jobs or jobs_per_day "
        "(a retry is one of the day's jobs), named in the message",
        headers=RETRY_AFTER,
    )
    def post(self, job_id: int):
        """Retry a failed job now, with a fresh round of max_attempts"""
        return transitions.retry_failed_job(caller(), job_id)


@blp.route("/jobs/<int:job_id>/deliver/")
class JobDelivery(VerifiedUserView):
    @authenticated
    @blp.arguments(DeliveryIn)
    @blp.response(200, JobOut)
    @error(404, "No such job, or you are not its assignee")
    @error(409, "The job is not in progress")
    @error(422, "output not a JSON object, too large, or holding text PostgreSQL cannot store")
    def post(self, delivery: dict[str, Any], job_id: int):
        """Deliver the job assigned to you: it is completed, the owner emailed"""
        return transitions.deliver(caller(), job_id, delivery["output"], delivery["note"])


@blp.route("/jobs/<int:job_id>/release/")
class JobRelease(VerifiedUserView):
    @authenticated
    @blp.response(200, JobOut)
    @error(404, "No such job, or you are neither its owner nor its assignee")
    @error(409, "The job is not in progress with an assignee")
    @error(
        429,
        "The job goes back to the queue like a new one: refused while the owner's other "
        "open jobs are at the owner's plan's max_open_jobs",
        headers=RETRY_AFTER,
    )
    def post(self, job_id: int):
        """Give the job back (assignee) or take it away (owner): pending and open again"""
        return transitions.release(caller(), job_id)


@blp.route("/kinds/")
class Kinds(MethodView):
    @blp.etag
    @blp.response(200, KindOut(many=True))
    def get(self) -> list[dict[str, Any]]:
        """List the job kinds, each with the JSON Schema of its params (no auth)"""
        return service.kinds_catalogue()
