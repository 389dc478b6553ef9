"""Conditional requests: ETags and If-Match.

Reading: single resources and lists answer with an `ETag` and honour `If-None-Match`
(304) through flask-smorest's `@blp.etag`, which hashes the dumped answer. Changing: a
`PATCH`/`DELETE` with `If-Match` is refused with 412, and nothing changes, when the tag
is not the resource's current one; without `If-Match` it behaves as it always did.
(flask-smorest's own `check_etag` would make `If-Match` mandatory: 428.)

The check must not race the change, so the service makes it, under the row lock it takes
for the change: the route hands it an `IfMatch` (the header, and how the resource is
tagged, which only the route knows: the schema its GET dumps with), and the service calls
`if_match.require_current(resource)` once it has locked the row and decided the caller
may see it, before it changes anything. This module knows no blueprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_smorest.etag import EtagMixin
from marshmallow import EXCLUDE, Schema, fields
from werkzeug.datastructures import ETags
from werkzeug.http import parse_etags

from jobboard.errors import DomainError

STALE = (
    "The resource changed since you read it (If-Match does not match its ETag); read it "
    "again and retry."
)


class PreconditionFailed(DomainError):
    status_code = 412


class IfMatchHeaders(Schema):
    class Meta:
        unknown = EXCLUDE

    if_match = fields.String(
        data_key="If-Match",
        load_default=None,
        metadata={
            "description": "The ETag you read (GET). If the resource has changed since, "
            "412 and nothing changes. Without it the change is made whatever the state."
        },
    )


def etag_of(resource: Any, schema: type[Schema]) -> str:
    """The ETag a GET of `resource`, dumped with `schema`, answers with."""
    return EtagMixin._generate_etag(schema().dump(resource))


@dataclass(frozen=True)
class IfMatch:
    """A request's `If-Match` (None: the header was not sent) and the schema that its
    resource's GET dumps with, which the tag is computed from."""

    tags: ETags | None
    schema: type[Schema]

    @classmethod
    def of(cls, headers: Mapping[str, Any], schema: type[Schema]) -> IfMatch:
        """From headers loaded with `IfMatchHeaders`."""
        value = headers.get("if_match")
        return cls(None if value is None else parse_etags(value), schema)

    def require_current(self, resource: Any) -> None:
        """412 unless the header is absent, `*`, or holds `resource`'s current ETag. Call
        it under the row lock of the change, before changing anything."""
        if self.tags is None or self.tags.star_tag:
            return
        if not self.tags.contains(etag_of(resource, self.schema)):
            raise PreconditionFailed(STALE)


def require_current(if_match: IfMatch | None, resource: Any) -> None:
    """`if_match.require_current(resource)`; nothing without an `IfMatch` (callers that
    are not requests: the CLI, the tests)."""
    if if_match is not None:
        if_match.require_current(resource)
