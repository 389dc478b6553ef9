"""Dashboard endpoints: the JSON numbers, the HTML page, and Swagger UI's assets."""

from __future__ import annotations

from flask import Blueprint as PageBlueprint
from flask import render_template, send_from_directory
from flask.typing import ResponseReturnValue
from swagger_ui_bundle import swagger_ui_path

from jobboard.auth.tokens import VerifiedUserView, caller
from jobboard.dashboard import service
from jobboard.dashboard.schemas import DashboardOut
from jobboard.view_helpers import Blueprint, verified_user_doc

blp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/api",
    description=(
        "The caller's jobs, assigned jobs and bids counted by status; admins also see the "
        "queue's health. The same numbers, with a chart, are on the web page /dashboard/."
    ),
)
pages = PageBlueprint("dashboard_pages", __name__)

# Swagger UI is served from the swagger-ui-bundle package, so /api/docs needs no CDN.
SWAGGER_UI_ASSETS = str(swagger_ui_path)
ASSET_MAX_AGE_SECONDS = 24 * 3600


@blp.route("/dashboard/")
class Dashboard(VerifiedUserView):
    @verified_user_doc(blp)
    @blp.response(200, DashboardOut)
    def get(self):
        """Your job, assignment and bid counts by status (and queue health for admins)."""
        return service.dashboard_for(caller())


@pages.get("/dashboard/")
def dashboard_page() -> ResponseReturnValue:
    """The dashboard web page; it signs in and reads the API from the browser."""
    return render_template("dashboard/index.html")


@pages.get("/api/docs/assets/<path:filename>")
def swagger_ui_asset(filename: str) -> ResponseReturnValue:
    return send_from_directory(SWAGGER_UI_ASSETS, filename, max_age=ASSET_MAX_AGE_SECONDS)
