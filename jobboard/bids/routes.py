"""Bids endpoints."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("bids", __name__, url_prefix="/api", description="bids")
