"""The catalogue of event types is the one table of who hears of what: the public list,
the OpenAPI schemas, docs/events.md and the email channel all come from it."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, fields

from config import PROJECT_ROOT
from jobboard.events.catalogue import CATALOGUE, TYPES, markdown_table
from jobboard.events.openapi import pascal
from jobboard.events.payloads import schema_of

# The table of the product's contract, type by type, with the recipient it names.
CONTRACT = {
    "job.completed": "owner",
    "job.retrying": "owner",
    "job.failed": "owner",
    "job.cancelled": "owner",
    "bid.placed": "job owner",
    "bid.withdrawn": "job owner",
    "bid.accepted": "bidder",
    "bid.rejected": "bidder",
    "job.released": "the other party",
    "job.due_soon": "assignee",
    "job.overdue": "owner",
    "review.received": "the reviewed party",
    "plan.ending": "user",
    "plan.ended": "user",
    "webhook.disabled": "endpoint owner",
}
EMAILED = {
    "bid.placed",
    "bid.accepted",
    "bid.rejected",
    "job.completed",
    "job.released",
    "job.due_soon",
    "job.overdue",
    "plan.ending",
    "plan.ended",
    "webhook.disabled",
}


def test_every_type_of_the_contract_is_in_the_catalogue_with_its_recipient():
    assert {name: CATALOGUE[name].recipient for name in CONTRACT} == CONTRACT
    assert set(CATALOGUE) == {*CONTRACT, "webhook.test"}
    assert not CATALOGUE["webhook.test"].in_feed


def test_events_of_the_batched_path_never_send_email():
    """Processor completions, retries and failures are written by the queue in batches,
    with no email: adding an email channel to them needs that path wired first."""
    assert CATALOGUE["job.retrying"].email is None
    assert CATALOGUE["job.failed"].email is None
    completed = CATALOGUE["job.completed"]
    assert not completed.wants_email({"by": "processor"})
    assert completed.wants_email({"by": "assignee"})


def test_the_email_channel_is_where_emails_are_sent_today_plus_webhook_disabled():
    assert {spec.name for spec in TYPES if spec.email} == EMAILED
    for spec in TYPES:
        assert spec.channels[-1] == ("email" if spec.email else "webhooks")
        if spec.email:
            for suffix in ("txt", "html"):
                template = PROJECT_ROOT / "jobboard" / "templates" / "email"
                assert (template / f"{spec.email}.{suffix}").is_file()


def check_shape(value: Any, schema: Schema, where: str) -> None:
    """Every key of `value` is a field of `schema`, recursively through nested schemas."""
    assert isinstance(value, dict), where
    unknown = set(value) - {field.data_key or name for name, field in schema.fields.items()}
    assert not unknown, (where, unknown)
    for name, field in schema.fields.items():
        inner = value.get(field.data_key or name)
        if isinstance(field, fields.Nested) and inner is not None:
            check_shape(inner, field.schema, f"{where}.{name}")


def test_each_example_has_its_payloads_shape():
    for spec in TYPES:
        check_shape(spec.example, schema_of(spec)(), spec.name)
        assert spec.to and spec.description


def test_the_public_list_needs_no_auth_and_is_the_catalogue(client):
    response = client.get("/api/events/types/")
    assert response.status_code == 200 and response.headers["ETag"]
    listed = response.get_json()
    assert [item["type"] for item in listed] == [spec.name for spec in TYPES]
    for item, spec in zip(listed, TYPES, strict=True):
        assert item["recipient"] == spec.recipient
        assert item["channels"] == spec.channels
        assert item["example"]["type"] == spec.name
        assert item["example"]["data"] == spec.example
    again = client.get("/api/events/types/", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_docs_events_md_shows_the_catalogue():
    text = (PROJECT_ROOT / "docs" / "events.md").read_text()
    assert markdown_table() in text


def test_openapi_has_a_schema_per_event_and_the_webhook_requests(client):
    document = client.get("/api/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    for spec in TYPES:
        envelope = schemas[f"{pascal(spec.name)}Event"]
        assert envelope["properties"]["type"]["enum"] == [spec.name]
        assert envelope["properties"]["data"]["$ref"].endswith(f"{pascal(spec.name)}EventData")
        request = document["x-webhooks"][spec.name]["post"]
        assert {p["name"] for p in request["parameters"]} == {
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
    assert set(schemas["EventOut"]["properties"]["type"]["enum"]) == set(CATALOGUE)


def test_every_operation_has_a_unique_operation_id_and_kind_is_an_enum(client):
    document = client.get("/api/openapi.json").get_json()
    ids = [
        operation.get("operationId")
        for path in document["paths"].values()
        for method, operation in path.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert all(ids) and len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", operation_id) for operation_id in ids)
    schemas = document["components"]["schemas"]
    for name in ("JobIn", "JobOut", "JobOpenOut"):
        assert "echo" in schemas[name]["properties"]["kind"]["enum"], name
