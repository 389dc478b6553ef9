"""Property-based fuzzing of every operation in /api/openapi.json with schemathesis: the
WSGI app on a committed database, a verified user's token, schemathesis' default checks
(no server error, status code / content type / headers / body conforming to the
document, negative data rejected, authentication enforced, ...).

Bounded for the suite by FUZZ_MAX_EXAMPLES examples per operation (default below);
`python -m tests.fuzz --requests 10000` runs the same test for longer and prints the
figures (see docs/development.md, "The fuzzer").
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import schemathesis
from flask import Flask
from flask_jwt_extended import create_access_token
from hypothesis import HealthCheck, settings

from jobboard import create_app
from jobboard.extensions import db
from jobboard.models import JobStatus, User
from tests.support.database import RUN_ID, make_config
from tests.support.factories import BidFactory, JobFactory, UserFactory

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))


@dataclass
class FuzzStats:
    """What the fuzzer sent and got back, for tests/fuzz.py's summary."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[tuple[str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)


STATS = FuzzStats()


@dataclass
class FuzzTarget:
    app: Flask
    user_id: int

    def token(self) -> str:
        with self.app.app_context():
            return create_access_token(identity=str(self.user_id), expires_delta=timedelta(hours=6))


def seed_neighbourhood(user: User) -> None:
    """Low ids that exist, so that generated ids reach more than 404: another user's open
    jobs with the fuzzer's bids on them, the fuzzer's own jobs with others' bids, jobs in
    every status."""
    other = UserFactory(email="neighbour@example.com", display_name="Neighbour")
    for status in JobStatus:
        theirs = JobFactory(owner=other.id, status=status)
        mine = JobFactory(owner=user.id, status=status)
        if status == JobStatus.PENDING:
            BidFactory(job=theirs, bidder=user.id)
            BidFactory(job=mine, bidder=other.id)


_target: list[FuzzTarget] = []  # the module fixture's, for the auth provider


@pytest.fixture(scope="module")
def fuzz_target(database_server, template_database, smtp_server) -> Iterator[FuzzTarget]:
    """The app on its own committed database (the fuzzer's writes are real), with one
    verified user."""
    name = f"{RUN_ID}_fuzz"
    url = database_server.create(name, template=template_database)
    app = create_app(make_config(url, smtp_server.port))
    with app.app_context():
        user = UserFactory(email="fuzzer@example.com", display_name="Fuzzer")
        seed_neighbourhood(user)
        target = FuzzTarget(app=app, user_id=user.id)
    _target.append(target)
    yield target
    _target.clear()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    database_server.drop(name)


# The document is read from an app that never connects (collection needs no database);
# each call goes to the fixture's app on the real database.
_document_app = create_app(make_config("postgresql://nobody@127.0.0.1:9/none", 25))
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", _document_app)


FRESH_TOKEN = "fuzz-user-token"


@schema.auth(refresh_interval=None)
class VerifiedUserToken:
    """The verified user's token, applied by schemathesis itself so that its
    authentication checks can leave it out or spoil it. Cases are partly generated while
    collecting, before any fixture: those carry a marker that the test swaps for a fresh
    token. Every call gets a new token (the fuzzer calls logout, which revokes the one it
    sent)."""

    def get(self, case, ctx) -> str:
        return _target[0].token() if _target else FRESH_TOKEN

    def set(self, case, data: str, ctx) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    database=None,
)
def test_every_operation_conforms_and_never_fails(case, fuzz_target: FuzzTarget):
    label = f"{case.method.upper()} {case.path}"
    if (case.headers or {}).get("Authorization") == f"Bearer {FRESH_TOKEN}":
        case.headers["Authorization"] = f"Bearer {fuzz_target.token()}"
    try:
        response = case.call_and_validate(app=fuzz_target.app)
    finally:
        STATS.requests += 1
        STATS.by_operation[label] += 1
    STATS.statuses[response.status_code] += 1
    STATS.by_outcome[label, response.status_code] += 1
    if response.status_code >= 500:
        STATS.server_errors.append(f"{label}: {response.status_code}")
