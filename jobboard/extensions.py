"""Extension instances only; `create_app` binds them to an application."""

from __future__ import annotations

from apispec import BasePlugin
from flask_jwt_extended import JWTManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_smorest import Api
from flask_smorest.pagination import PaginationMetadataSchema
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


SQL_ONLY_TABLES = ("queue_owners", "worker_starts")


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Keep Procrastinate's own tables out of autogenerate; its schema has its own revisions.
    `queue_owners` is the fair fetch's bookkeeping, written in SQL (revision 0004), and
    `worker_starts` a trigger's record of Procrastinate's workers (revision 0012)."""
    if type_ == "table" and name is not None:
        return not (name.startswith("procrastinate_") or name in SQL_ONLY_TABLES)
    return True


class JobboardApi(Api):
    """flask-smorest's Api, whose error bodies always carry a `message`."""

    def _register_pagination_header(self) -> None:
        # flask-smorest declares X-Pagination with a bare object `schema`, which OpenAPI
        # reads as the "simple" style (`total,3,...`); the header is JSON, so say so.
        self.spec.components.header(
            "PAGINATION",
            {
                "description": "Pagination metadata, as a JSON object.",
                "content": {"application/json": {"schema": PaginationMetadataSchema}},
            },
            lazy=True,
        )

    def handle_http_exception(self, error):
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = _summarise(payload.get("errors")) or error.description
        valid_methods = getattr(error, "valid_methods", None)
        if code == 405 and valid_methods:  # what werkzeug's own 405 page would say
            headers = {**(headers or {}), "Allow": ", ".join(valid_methods)}
        return payload, code, headers


def _summarise(errors: object) -> str | None:
    """A one-line message for a webargs error body: the fields in error, or its messages."""
    if not isinstance(errors, dict):
        return None
    fields, messages = [], []
    for location, detail in errors.items():
        if isinstance(detail, dict):
            fields.extend(f"{location}.{field}" for field in detail)
        elif isinstance(detail, list):
            messages.extend(str(message) for message in detail)
    if fields:
        return "Invalid input: " + ", ".join(fields)
    return " ".join(messages) or None


class OperationIds(BasePlugin):
    """Every operation gets an operationId, for generated clients: the one a view sets
    with `@blp.doc(operationId=...)`, else its method and view class (`getJobById`)."""

    def operation_helper(self, path=None, operations=None, **kwargs):  # type: ignore[no-untyped-def]
        rule = kwargs.get("rule")
        if rule is None or not operations:
            return
        view_name = rule.endpoint.rsplit(".", 1)[-1]
        for method, operation in operations.items():
            operation.setdefault("operationId", f"{method.lower()}{view_name}")


db = SQLAlchemy(model_class=Base)
migrate = Migrate(include_name=include_name, compare_type=True)
# What the OpenAPI document says of the whole API, besides what each blueprint and view says.
OPENAPI_DOCUMENT = {
    "info": {
        "description": (
            "Register with an email, prove it with a one-time code, post jobs that a "
            "Postgres-native queue runs at their scheduled time, and bid on each other's "
            "jobs. All timestamps are ISO 8601 with a UTC offset; naive timestamps are "
            "refused with 422. Money is a decimal string with two places. Every error is "
            "a JSON body with `code`, `status` and `message` (and `errors` by field for "
            "bad input). The rules behind the answers are described in the project's "
            "docs/api.md and docs/security.md."
        )
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "cookieAuth": {
                "type": "apiKey",
                "in": "cookie",
                "name": "access_token_cookie",
                "description": "The web app's session (POST /api/session/); changes also "
                "need the csrf_access_token cookie's value in X-CSRF-TOKEN.",
            },
        }
    },
}

api = JobboardApi(spec_kwargs={**OPENAPI_DOCUMENT, "extra_plugins": [OperationIds()]})
jwt = JWTManager()
mail = Mail()
