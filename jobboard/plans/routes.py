"""The caller's plan and usage. Plans are changed by admins through `flask plans`."""

from __future__ import annotations

from functools import partial

from jobboard.auth.tokens import VerifiedUserView, caller
from jobboard.plans import service
from jobboard.plans.schemas import PlanStatusOut
from jobboard.view_helpers import Blueprint, documented_error, verified_user_doc

blp = Blueprint(
    "plans",
    __name__,
    url_prefix="/api",
    description=(
        "Every user has a plan (free unless subscribed) whose limits the API and the queue "
        "enforce; see docs/api.md, 'Plans and quotas'."
    ),
)

error = partial(documented_error, blp)
authenticated = verified_user_doc(blp)


@blp.route("/me/plan/")
class MyPlan(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, PlanStatusOut)
    def get(self) -> service.PlanStatus:
        """Your plan's limits, your live usage and when your subscription ends"""
        return service.plan_status(caller())
