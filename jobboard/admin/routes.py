"""The operations API under /api/admin/ (admins only: 401 without a token, 403 for
anybody else), and the console page /admin/ that reads it."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Blueprint as PageBlueprint
from flask import render_template
from flask.typing import ResponseReturnValue

from jobboard.admin import service
from jobboard.admin.schemas import (
    AdminJobDetailOut,
    AdminJobOut,
    AdminJobQueryArgs,
    AuditOut,
    BulkActionIn,
    BulkResultOut,
    FailureOut,
    QueueOut,
    WorkerOut,
)
from jobboard.auth.tokens import AdminView, caller
from jobboard.view_helpers import (
    Blueprint,
    CappedCountPage,
    SelectPage,
    documented_error,
    verified_user_doc,
)

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/api/admin",
    description=(
        "The operations console's API, for admins: the queues' health and pauses, every "
        "user's jobs and bulk actions on them, failures grouped by kind and error, live "
        "workers and the audit log of admins' actions. The console is the page /admin/."
    ),
)
pages = PageBlueprint("admin_pages", __name__)

error = partial(documented_error, blp)
admins_only = verified_user_doc(blp, forbidden="Not an admin.")


@blp.route("/queues/")
class Queues(AdminView):
    @admins_only
    @blp.etag
    @blp.response(200, QueueOut(many=True))
    def get(self):
        """Every queue: waiting, running, failed, oldest waiting, paused, and the last
        hour's throughput per minute and lateness and duration percentiles"""
        return service.queues()


@blp.route("/queues/<string:name>/pause/")
class QueuePause(AdminView):
    @admins_only
    @blp.response(200, QueueOut)
    @error(404, "No such queue")
    def post(self, name: str):
        """Pause a queue: no worker starts its waiting entries; running ones finish"""
        return service.pause_queue(caller(), name)


@blp.route("/queues/<string:name>/resume/")
class QueueResume(AdminView):
    @admins_only
    @blp.response(200, QueueOut)
    @error(404, "No such queue")
    def post(self, name: str):
        """Resume a paused queue"""
        return service.resume_queue(caller(), name)


@blp.route("/jobs/")
class AdminJobs(AdminView):
    @admins_only
    @blp.etag
    @blp.arguments(AdminJobQueryArgs, location="query")
    @blp.response(200, AdminJobOut(many=True))
    @blp.paginate(CappedCountPage)
    @error(422, "Unknown filter value or sort key")
    def get(self, filters: dict[str, Any]):
        """Every user's jobs: the job list's filters, plus `owner` and `error`. The total in
        X-Pagination is exact up to 100,000; 100,001 means more than 100,000"""
        return service.jobs_query(filters)


@blp.route("/jobs/<int:job_id>/")
class AdminJobById(AdminView):
    @admins_only
    @blp.etag
    @blp.response(200, AdminJobDetailOut)
    @error(404, "No such job")
    def get(self, job_id: int):
        """Any user's job, with its result and its attempts"""
        return service.job_detail(job_id)


@blp.route("/jobs/actions/")
class AdminJobActions(AdminView):
    @admins_only
    @blp.arguments(BulkActionIn)
    @blp.response(200, BulkResultOut)
    @error(422, "Unknown action, no target, an empty filter without all, or over 10,000 ids")
    def post(self, data: dict[str, Any]):
        """Retry, cancel or run now jobs by ids or by filter, each through the same
        transition as its owner's call; a job that cannot take it is skipped"""
        return service.bulk_action(
            caller(), data["action"], ids=data.get("ids"), filters=data.get("filter", {})
        )


@blp.route("/failures/")
class Failures(AdminView):
    @admins_only
    @blp.etag
    @blp.response(200, FailureOut(many=True))
    @blp.paginate(SelectPage)
    def get(self):
        """Failed jobs grouped by kind and the first line of their error; retry a group
        with the actions call and a filter of its status, kind and error"""
        return service.failures_query()


@blp.route("/workers/")
class Workers(AdminView):
    @admins_only
    @blp.etag
    @blp.response(200, WorkerOut(many=True))
    def get(self):
        """Live workers: their start, last heartbeat and the entries they run"""
        return service.live_workers()


@blp.route("/audit/")
class Audit(AdminView):
    @admins_only
    @blp.etag
    @blp.response(200, AuditOut(many=True))
    @blp.paginate(SelectPage)
    def get(self):
        """Every action of an admin through this API, newest first"""
        return service.audit_query()


@pages.get("/admin/")
def console_page() -> ResponseReturnValue:
    """The operations console; it signs in and reads /api/admin/ from the browser."""
    return render_template("admin/index.html")
