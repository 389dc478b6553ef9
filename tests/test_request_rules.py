"""The HTTP edge, case by case: bad input is a 4xx (never a 500), size limits, trailing slashes,
JSON 404/405, no Host reflection, security headers. The routes under test are read from
the application's URL map and OpenAPI document, so a new route is covered by adding it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask

from jobboard.extensions import api, db
from jobboard.models import WebhookEndpoint
from jobboard.request_rules import MAX_JSON_DEPTH
from tests.support.auth import bearer
from tests.support.bids import bid_payload
from tests.support.factories import JobFactory
from tests.support.jobs import payload

BIG_IDS = ["2147483648", "9223372036854775808", "99999999999999999999999999"]
HTML_SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def assert_error_body(response, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == code
    assert body["message"]
    return body


def id_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, rule) for every route with an id in its path."""
    found = []
    for rule in app.url_map.iter_rules():
        if "<int:" in rule.rule:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((method, rule.rule))
    return found


def list_paths(app: Flask) -> list[str]:
    """Paths of every paginated GET in the OpenAPI document."""
    with app.test_request_context():
        spec = api.spec.to_dict()
    return [
        path
        for path, operations in spec["paths"].items()
        if any(p.get("name") == "page" for p in operations.get("get", {}).get("parameters", []))
    ]


def fill(rule: str, value: str) -> str:
    return re.sub(r"<int:\w+>", value, rule)


# --- path ids outside the column's range -------------------------------------------


def test_every_route_with_an_id_answers_404_for_ids_out_of_range(app, client, verified_user):
    routes = id_routes(app)
    assert len(routes) >= 8  # jobs, results, retries, bids, accept...
    headers = bearer(verified_user)
    for method, rule in routes:
        for big in BIG_IDS:
            response = client.open(fill(rule, big), method=method, headers=headers, json={})
            assert_error_body(response, 404)


def test_the_largest_id_the_column_holds_is_an_ordinary_404(client, verified_user):
    response = client.get("/api/jobs/2147483647/", headers=bearer(verified_user))
    assert_error_body(response, 404)


# --- pages past the end -------------------------------------------------------------


@pytest.mark.parametrize("page", ["2", "99999999", "99999999999999999", "9" * 40])
def test_every_list_answers_an_empty_page_past_its_end(app, client, admin_user, page):
    # An admin: the operations API's lists are admins' only.
    verified_user = admin_user
    job = JobFactory(owner=verified_user)
    endpoint = WebhookEndpoint(user_id=verified_user.id, url="http://127.0.0.1:9/", secret="x")
    db.session.add(endpoint)
    db.session.commit()
    paths = list_paths(app)
    assert len(paths) >= 5
    for path in paths:
        url = fill(path.replace("{job_id}", "<int:job_id>"), str(job.id))
        url = url.replace("{endpoint_id}", str(endpoint.id))
        response = client.get(url, query_string={"page": page}, headers=bearer(verified_user))
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:300])
        assert response.get_json() == []


# --- U+0000 and unpaired surrogates -------------------------------------------------

BAD_STRINGS = ["nul\x00byte", "lone \ud800 surrogate", "trailing \udfff"]


def raw_json(document: Any) -> bytes:
    """JSON with \\u escapes for everything non-ASCII, lone surrogates included."""
    return json.dumps(document, ensure_ascii=True).encode()


@pytest.mark.parametrize("bad", BAD_STRINGS)
@pytest.mark.parametrize(
    "where",
    ["name", "description", "params_value", "params_key", "nested_params_key"],
)
def test_bad_strings_in_a_job_body_are_422(client, verified_user, bad, where):
    body = payload()
    if where in ("name", "description"):
        body[where] = bad
    elif where == "params_value":
        body["params"] = {"text": bad}
    elif where == "params_key":
        body["params"] = {bad: 1}
    else:
        body["params"] = {"a": [{"b": {bad: "x"}}]}
    response = client.post(
        "/api/jobs/",
        data=raw_json(body),
        content_type="application/json",
        headers=bearer(verified_user),
    )
    assert_error_body(response, 422)


@pytest.mark.parametrize("bad", BAD_STRINGS)
def test_bad_strings_on_unauthenticated_routes_are_422(client, bad):
    for path in ("/api/login/", "/api/register/"):
        body = {"email": f"a{bad}@example.com", "password": bad}
        response = client.post(path, data=raw_json(body), content_type="application/json")
        assert_error_body(response, 422)


@pytest.mark.parametrize("bad", ["nul\x00byte", "%00", "x\x00"])
def test_nul_in_a_query_string_is_422(app, client, admin_user, bad):
    headers = bearer(admin_user)  # the operations API's lists are admins' only
    for path in list_paths(app):
        if "{" in path:
            continue
        response = client.get(path, query_string={"q": bad, "sort": "name"}, headers=headers)
        if bad == "%00":  # the literal text "%00" after decoding is harmless
            assert response.status_code in (200, 422)
        else:
            assert_error_body(response, 422)
    response = client.get("/api/jobs/?q=a%00b", headers=headers)
    assert_error_body(response, 422)


def test_a_bad_string_in_a_bid_is_422(client, verified_user, other_user):
    job = JobFactory(owner=other_user)
    response = client.post(
        f"/api/jobs/{job.id}/bids/",
        data=raw_json(bid_payload(comment="\ud800")),
        content_type="application/json",
        headers=bearer(verified_user),
    )
    assert_error_body(response, 422)


def test_invalid_utf8_is_a_4xx(client):
    response = client.post(
        "/api/login/", data=b'{"email": "\xff\xfe"}', content_type="application/json"
    )
    assert response.status_code in (400, 422)
    assert response.get_json()["code"] == response.status_code


# --- nesting ------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 5_000, 100_000])
def test_deep_json_is_422_even_unauthenticated(client, depth):
    for path in ("/api/login/", "/api/register/", "/api/verify-email/"):
        response = client.post(path, data=nested(depth), content_type="application/json")
        assert_error_body(response, 422)


def test_deep_json_inside_params_is_422_and_32_levels_are_fine(client, verified_user):
    headers = bearer(verified_user)

    def params_of_depth(levels: int) -> dict[str, Any]:
        # The body is level 1, params level 2, its innermost object level `levels`.
        inner: Any = "leaf"
        for _ in range(levels - 1):
            inner = {"k": inner}
        return inner

    ok = client.post(
        "/api/jobs/", json=payload(params=params_of_depth(MAX_JSON_DEPTH)), headers=headers
    )
    assert ok.status_code == 201, ok.get_json()
    too_deep = client.post(
        "/api/jobs/", json=payload(params=params_of_depth(MAX_JSON_DEPTH + 1)), headers=headers
    )
    assert_error_body(too_deep, 422)


# --- numbers and dates the columns cannot hold --------------------------------------


@pytest.mark.parametrize(
    "fee", ["1E+999999999", "1E+999999", "-1E+999999999", "1E-999999999", "NaN", "Infinity"]
)
def test_fees_the_column_cannot_hold_are_422(client, verified_user, other_user, fee):
    job = JobFactory(owner=other_user)
    response = client.post(
        f"/api/jobs/{job.id}/bids/",
        json=bid_payload(fee=fee),
        headers=bearer(verified_user),
    )
    assert_error_body(response, 422)


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"NaN", b"Infinity", b"9" * 5000])
def test_json_numbers_python_cannot_hold_are_422(client, verified_user, other_user, number):
    job = JobFactory(owner=other_user)
    body = b'{"fee": ' + number + b', "proposed_deadline": "2999-01-01"}'
    response = client.post(
        f"/api/jobs/{job.id}/bids/",
        data=body,
        content_type="application/json",
        headers=bearer(verified_user),
    )
    assert_error_body(response, 422)
    big = b'{"priority": ' + number + b', "name": "x", "scheduled_time": "2999-01-01T00:00Z"}'
    response = client.post(
        "/api/jobs/", data=big, content_type="application/json", headers=bearer(verified_user)
    )
    assert_error_body(response, 422)


@pytest.mark.parametrize(
    "moment",
    ["9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59.999999-00:01", "0001-01-01T00:00:00+14:00"],
)
def test_timestamps_outside_utc_range_are_422(client, verified_user, moment):
    headers = bearer(verified_user)
    response = client.post("/api/jobs/", json=payload(scheduled_time=moment), headers=headers)
    assert_error_body(response, 422)
    for name in ("scheduled_after", "scheduled_before", "created_after", "created_before"):
        response = client.get("/api/jobs/", query_string={name: moment}, headers=headers)
        assert_error_body(response, 422)


def test_far_future_in_range_is_accepted(client, verified_user):
    response = client.post(
        "/api/jobs/",
        json=payload(scheduled_time="9999-12-31T09:59:59-14:00"),
        headers=bearer(verified_user),
    )
    assert response.status_code == 201, response.get_json()


# --- size limits ----------------------------------------------------------------------


def test_a_body_over_max_content_length_is_413_before_authentication(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit == 1024 * 1024
    for path in ("/api/login/", "/api/jobs/", "/api/jobs/1/bids/"):
        response = client.post(path, data=b"x" * (limit + 1), content_type="application/json")
        body = assert_error_body(response, 413)
        assert str(limit) in body["message"]


def test_a_body_at_the_limit_is_read(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    document = json.dumps({"email": "a@example.com", "password": "p" * 10})
    body = document.encode() + b" " * (limit - len(document))
    assert len(body) == limit
    response = client.post("/api/login/", data=body, content_type="application/json")
    assert response.status_code == 401


# --- trailing slashes, JSON 404/405, Host -------------------------------------------


def test_every_path_answers_with_and_without_its_trailing_slash(app, client, verified_user):
    headers = bearer(verified_user)
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.endswith("/") or rule.rule == "/" or "<path:" in rule.rule:
            continue
        url = fill(rule.rule, "1")
        if "GET" in rule.methods:
            with_slash = client.get(url, headers=headers)
            without = client.get(url.rstrip("/"), headers=headers)
            assert without.status_code == with_slash.status_code != 308, url
            assert without.status_code < 300 or without.mimetype == "application/json", url
            assert "Location" not in without.headers
            checked += 1
    assert checked >= 10


def test_post_without_trailing_slash_is_not_redirected(client, verified_user):
    response = client.post("/api/jobs", json=payload(), headers=bearer(verified_user))
    assert response.status_code == 201
    response = client.post("/api/login", json={"email": "x@example.com", "password": "whatever1"})
    assert response.status_code == 401


def test_unknown_paths_and_methods_are_json_under_api(client):
    for path in ("/api/nothing/", "/api//jobs/", "/api/jobs/abc/", "/nothing"):
        response = client.get(path, headers={"Host": "evil.example"})
        assert_error_body(response, 404)
        assert "evil.example" not in response.get_data(as_text=True)
    response = client.put("/api/jobs/")
    body = assert_error_body(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert body["status"] == "Method Not Allowed"


def test_no_response_reflects_the_host_header(app, client, verified_user):
    host = "attacker.example"
    for path in ("/api/jobs", "/api/jobs/", "/api//jobs", "/dashboard", "/api/docs", "/health"):
        response = client.get(path, headers={"Host": host, **bearer(verified_user)})
        assert response.status_code != 308
        assert host not in response.get_data(as_text=True)
        assert all(host not in value for value in response.headers.values())


# --- security headers ---------------------------------------------------------------


def test_every_response_carries_nosniff(client, verified_user):
    for path in ("/api/jobs/", "/api/openapi.json", "/health", "/nothing", "/dashboard/"):
        response = client.get(path, headers=bearer(verified_user))
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


@pytest.mark.parametrize("path", ["/dashboard/", "/api/docs", "/api/docs/"])
def test_html_pages_carry_a_strict_policy_and_no_inline_script(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    for name, value in HTML_SECURITY_HEADERS.items():
        assert response.headers[name] == value
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    html = response.get_data(as_text=True)
    # Every <script> has a src and no body; no inline event handler attribute.
    for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
        assert "src=" in attributes and not body.strip(), attributes
    assert not re.search(r"\son[a-z]+\s*=", html)


def test_json_responses_are_not_given_the_html_policy(client):
    response = client.get("/api/openapi.json")
    assert "X-Frame-Options" not in response.headers


# --- the OpenAPI document says what is sent ------------------------------------------


def test_the_document_declares_x_pagination_as_json_and_the_known_kinds(client, verified_user):
    spec = client.get("/api/openapi.json").get_json()
    header = spec["components"]["headers"]["PAGINATION"]
    assert "schema" not in header
    assert header["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PaginationMetadata"
    }
    sent = client.get("/api/jobs/", headers=bearer(verified_user)).headers["X-Pagination"]
    declared = spec["components"]["schemas"]["PaginationMetadata"]["properties"]
    assert set(json.loads(sent)) <= set(declared)
    kinds = spec["components"]["schemas"]["JobIn"]["properties"]["kind"]["enum"]
    assert {"echo", "sleep", "wordcount", "checksum", "flaky", "report"} <= set(kinds)
