"""Reading requests run in autocommit: no BEGIN and ROLLBACK round trips around their
SELECTs.

A GET, HEAD or OPTIONS request only reads (every change is a POST, PATCH or DELETE), and
each of its SELECTs sees committed data by itself; the ones that must agree with each
other (a page and its total) are one statement (`view_helpers.SelectPage`). The switch happens
when a request checks a connection out of the pool, so a request that never touches the
database (the OpenAPI document, static files) never connects; a connection checked out
outside a request (the worker, the CLI, the tests' rolled-back outer transaction) keeps
transactions. A read that needs a transaction all the same (a `SET LOCAL`, which
PostgreSQL ignores outside one) asks for it with `one_transaction()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask, has_request_context, request
from sqlalchemy import event, exc

from jobboard.extensions import db

READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def register_autocommit_reads(app: Flask) -> None:
    with app.app_context():
        engine = db.engine
    event.listen(engine, "checkout", _autocommit_for_reading_requests)


def _autocommit_for_reading_requests(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    reading = has_request_context() and request.method in READING_METHODS
    try:
        if dbapi_connection.autocommit != reading:
            dbapi_connection.autocommit = reading
    except psycopg.Error as error:  # closed with the database: the pool connects afresh
        raise exc.DisconnectionError(str(error)) from error


@contextmanager
def one_transaction() -> Iterator[None]:
    """Run the enclosed statements in one transaction, also in a reading request, where
    each statement is otherwise a transaction of its own. Outside autocommit the caller's
    transaction already is one, and this changes nothing."""
    connection = db.session.connection().connection.driver_connection
    if not connection.autocommit:
        yield
        return
    with connection.transaction():
        yield
