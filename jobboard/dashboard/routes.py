"""Dashboard endpoints."""

from __future__ import annotations

from flask import Blueprint as PageBlueprint
from flask_smorest import Blueprint

blp = Blueprint("dashboard", __name__, url_prefix="/api", description="dashboard")
pages = PageBlueprint("dashboard_pages", __name__)
