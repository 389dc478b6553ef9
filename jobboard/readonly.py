"""Reading requests run in autocommit: no BEGIN and ROLLBACK round trips around their
SELECTs.

A GET, HEAD or OPTIONS request only reads (SPEC: every change is a POST, PATCH or
DELETE), and each of its SELECTs sees committed data by itself; the ones that must agree
with each other (a page and its total) are one statement (`views.SelectPage`). A request
whose session is bound to a connection already inside a transaction (the tests' rolled-
back outer transaction) is left as it is.
"""

from __future__ import annotations

from flask import Flask, request
from sqlalchemy import Engine

from jobboard.extensions import db

READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def register_read_only_requests(app: Flask) -> None:
    @app.before_request
    def reads_in_autocommit() -> None:
        if request.method not in READING_METHODS or request.endpoint in (None, "static"):
            return
        if isinstance(db.session.get_bind(), Engine):
            db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
