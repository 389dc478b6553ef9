"""Bid schemas: what a bidder sends, what owners and bidders read back."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validates_schema
from marshmallow.validate import Length, OneOf

from jobboard.bids.currencies import DEFAULT_CURRENCY, ISO_4217_CURRENCY_CODES
from jobboard.bids.sorting import DEFAULT_SORT, SORT_KEYS
from jobboard.dates import earliest_date_in_use
from jobboard.models import BidStatus
from jobboard.reviews.schemas import PublicProfileOut

CENT = Decimal("0.01")
MAX_FEE = Decimal("999999999.99")
MAX_COMMENT_LENGTH = 2000

BID_STATUS_CHOICES = tuple(status.value for status in BidStatus)


class Money(fields.Decimal):
    """A positive amount with at most two decimal places, accepted as a JSON string or
    number and always written as a string with two places ("80.00").

    Marshmallow's `places` would silently round "80.005"; here extra precision is an
    error, because rounding somebody's price is not ours to do."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "too_large": f"Must be at most {MAX_FEE}.",
        "too_precise": "Use at most two decimal places.",
        "not_positive": "Must be greater than 0.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(places=2, as_string=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if value is True or value is False or not isinstance(value, str | int | float):
            raise self.make_error("invalid", input=value)
        try:
            exact = Decimal(str(value).strip())
        except InvalidOperation as error:
            raise self.make_error("invalid", input=value) from error
        if not exact.is_finite():
            raise self.make_error("special")
        # Checked by exponent before any arithmetic: abs() or quantize() of 1E+999999999
        # would overflow the decimal context.
        if exact.adjusted() > MAX_FEE.adjusted() or exact.copy_abs() > MAX_FEE:
            raise self.make_error("too_large")
        if exact <= 0:
            raise self.make_error("not_positive")
        if exact != exact.quantize(CENT):
            raise self.make_error("too_precise")
        return super()._deserialize(value, attr, data, **kwargs)


class CurrencyCode(fields.String):
    """An ISO 4217 code of a currency in circulation; case-insensitive in, upper-case out."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "unknown": "Not an ISO 4217 code of a currency in circulation."
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        code = super()._deserialize(value, attr, data, **kwargs).strip().upper()
        if code not in ISO_4217_CURRENCY_CODES:
            raise self.make_error("unknown")
        return code


def not_in_the_past(value: date) -> None:
    if value < earliest_date_in_use():
        raise ValidationError("The deadline is in the past.")


def comment_field(**kwargs: Any) -> fields.String:
    return fields.String(
        allow_none=True,
        validate=Length(max=MAX_COMMENT_LENGTH),
        metadata={
            "description": f"A note to the job's owner, up to {MAX_COMMENT_LENGTH} characters."
        },
        **kwargs,
    )


def deadline_field(**kwargs: Any) -> fields.Date:
    return fields.Date(
        validate=not_in_the_past,
        metadata={
            "description": "YYYY-MM-DD, not in the past. The past starts when the date has "
            "ended everywhere on Earth (in UTC-12), so a bidder in any time zone may propose "
            "their own today."
        },
        **kwargs,
    )


def fee_field(**kwargs: Any) -> Money:
    return Money(
        metadata={
            "description": f"Greater than 0, at most two decimal places, at most {MAX_FEE}. "
            'A string ("80.00") or a JSON number in; always a string with two places out.',
            "example": "80.00",
        },
        **kwargs,
    )


def currency_field(**kwargs: Any) -> CurrencyCode:
    return CurrencyCode(
        metadata={
            "description": "ISO 4217 code of a currency in circulation, any case; stored "
            "upper-case. Fees are compared as given, never converted.",
            "example": "USD",
        },
        **kwargs,
    )


class BidIn(Schema):
    comment = comment_field(load_default=None)
    proposed_deadline = deadline_field(required=True)
    fee = fee_field(required=True)
    currency = currency_field(load_default=DEFAULT_CURRENCY)


class BidUpdateIn(Schema):
    """Every field optional; at least one must be given."""

    comment = comment_field()
    proposed_deadline = deadline_field()
    fee = fee_field()
    currency = currency_field()

    @validates_schema
    def require_a_change(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError(
                "Give at least one of: comment, proposed_deadline, fee, currency."
            )


class BidJobOut(Schema):
    id = fields.Integer()
    name = fields.String()
    status = fields.String()


class BidOut(Schema):
    """Dumps a `bids.service.ShownBid`: the bid with its bidder's public profile."""

    id = fields.Integer()
    job_id = fields.Integer()
    bidder = fields.Nested(
        PublicProfileOut,
        attribute="bidder_profile",
        metadata={"description": "The bidder's public profile (GET /api/users/<id>/)."},
    )
    comment = fields.String(allow_none=True)
    proposed_deadline = fields.Date()
    fee = Money(metadata={"example": "80.00"})
    currency = fields.String(metadata={"example": "USD"})
    status = fields.String(metadata={"enum": list(BID_STATUS_CHOICES)})
    created_at = fields.AwareDateTime(format="iso")
    updated_at = fields.AwareDateTime(format="iso")


class MyBidOut(BidOut):
    job = fields.Nested(BidJobOut)


class BidQueryArgs(Schema):
    statuses = fields.List(
        fields.String(validate=OneOf(BID_STATUS_CHOICES)),
        data_key="status",
        metadata={"description": "Repeatable: only bids in these statuses."},
    )
    sort = fields.String(
        load_default=DEFAULT_SORT,
        validate=OneOf(SORT_KEYS),
        metadata={
            "description": "`fee`, `proposed_deadline` or `created_at`, `-` prefix for "
            "descending; default `-created_at`. `fee` groups bids by currency first "
            "(fees in different currencies are not converted)."
        },
    )


class JobBidQueryArgs(BidQueryArgs):
    currency = CurrencyCode(metadata={"description": "Only bids priced in this currency."})
