"""Review and public profile schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

MAX_REVIEW_COMMENT = 2000


class ReviewIn(Schema):
    rating = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    comment = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_REVIEW_COMMENT),
    )


class ReviewOut(Schema):
    id = fields.Integer()
    job_id = fields.Integer()
    reviewer_id = fields.Integer()
    reviewee_id = fields.Integer()
    rating = fields.Integer()
    comment = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(format="iso")


class RatingOut(Schema):
    average = fields.Float(
        allow_none=True,
        metadata={"description": "Mean of the ratings received, two decimals; null with none."},
    )
    count = fields.Integer(metadata={"description": "Reviews received."})


class PublicProfileOut(Schema):
    """What any verified user may know about another: never the email address."""

    id = fields.Integer()
    display_name = fields.String(allow_none=True)
    bio = fields.String(allow_none=True)
    skills = fields.List(fields.String())
    rating = fields.Nested(RatingOut)
    completed_jobs = fields.Integer(
        metadata={"description": "Jobs this user delivered as assignee (completed)."}
    )
