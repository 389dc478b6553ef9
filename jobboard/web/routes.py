"""The web app's pages. Each is a Jinja shell with one ES module (jobboard/static/web/)
that asks the JSON API, with the browser's session cookies, for everything it shows and
does: no rule lives here or in page script. The job page asks the job policy first, so
somebody else's job answers a real 404 page."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_jwt_extended import verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError

from jobboard.auth.tokens import caller
from jobboard.extensions import db
from jobboard.jobs import policy
from jobboard.models import Job, User
from jobboard.request_rules import MAX_ID

pages = Blueprint("web", __name__)

# Page path -> (template, title). Each template names its own module.
SIMPLE_PAGES = {
    "/": ("landing", "jobboard"),
    "/signin/": ("signin", "Sign in"),
    "/signup/": ("signup", "Sign up"),
    "/verify/": ("verify", "Verify your email address"),
    "/forgot/": ("forgot", "Forgot your password"),
    "/reset/": ("reset", "Set a new password"),
    "/jobs/": ("jobs", "My jobs"),
    "/market/": ("market", "Open market"),
    "/assigned/": ("assigned", "Assigned to me"),
    "/bids/": ("bids", "My bids"),
    "/account/": ("account", "Account, plan and usage"),
    "/notifications/": ("notifications", "Notifications"),
}


def _page(template: str, title: str, status: int = 200, **context: object) -> ResponseReturnValue:
    return render_template(f"web/{template}.html", title=title, **context), status


def _simple_view(template: str, title: str):  # type: ignore[no-untyped-def]
    def view() -> ResponseReturnValue:
        return _page(template, title)

    view.__name__ = f"{template}_page"
    view.__doc__ = f"The {title} page."
    return view


for _path, (_template, _title) in SIMPLE_PAGES.items():
    pages.add_url_rule(_path, view_func=_simple_view(_template, _title))


def signed_in_user() -> User | None:
    """The user of the request's session cookie, when it holds a valid access token; None
    otherwise (no cookie, expired, revoked): the page's script then renews the session
    through the API, or sends the person to sign in."""
    try:
        verify_jwt_in_request(optional=True, locations=["cookies"])
    except (JWTExtendedException, PyJWTError):
        return None
    try:
        return caller()
    except (RuntimeError, AttributeError):
        return None


def not_found() -> ResponseReturnValue:
    return _page("not_found", "Not found", 404)


@pages.get("/jobs/<int:job_id>/")
def job_page(job_id: int) -> ResponseReturnValue:
    """A job's page: what its owner, its assignee or a bidder may see and do."""
    if job_id > MAX_ID:
        return not_found()
    user = signed_in_user()
    if user is not None:
        job = db.session.get(Job, job_id)
        if job is None or not policy.can_see_any_part(user, job):
            return not_found()
    return _page("job", "Job", job_id=job_id)


@pages.get("/users/<int:user_id>/")
def profile_page(user_id: int) -> ResponseReturnValue:
    """A user's public profile."""
    if user_id > MAX_ID:
        return not_found()
    return _page("profile", "Profile", user_id=user_id)
