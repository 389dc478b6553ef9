"""The auth endpoints as the OpenAPI document describes them."""

from __future__ import annotations

import pytest


@pytest.fixture
def spec(client) -> dict:
    return client.get("/api/openapi.json").get_json()


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/api/register/", "post", {"201", "409", "422", "429"}),
        ("/api/verify-email/", "post", {"200", "400", "401", "422", "429"}),
        ("/api/resend-otp/", "post", {"202", "422", "429"}),
        ("/api/login/", "post", {"200", "401", "403", "422", "429"}),
        ("/api/token/refresh/", "post", {"200", "401"}),
        ("/api/logout/", "post", {"204", "401", "422"}),
        ("/api/me/", "get", {"200", "401"}),
        ("/api/me/", "patch", {"200", "401", "422"}),
        ("/api/me/password/", "post", {"204", "400", "401", "422"}),
        ("/api/password/forgot/", "post", {"202", "422", "429"}),
        ("/api/password/reset/", "post", {"204", "400", "422", "429"}),
        ("/api/logout/all/", "post", {"204", "401"}),
    ],
)
def test_every_auth_endpoint_documents_its_answers(spec, path, method, statuses):
    operation = spec["paths"][path][method]

    assert statuses <= set(operation["responses"])
    assert operation["summary"]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/token/refresh/", "post"),
        ("/api/logout/", "post"),
        ("/api/me/", "get"),
        ("/api/me/", "patch"),
        ("/api/me/password/", "post"),
        ("/api/logout/all/", "post"),
    ],
)
def test_protected_endpoints_declare_bearer_auth(spec, path, method):
    assert spec["paths"][path][method]["security"] == [{"bearerAuth": []}]


def test_the_documented_decisions_are_in_the_document(spec):
    verify = spec["paths"]["/api/verify-email/"]["post"]["responses"]
    assert "already verified email address gets the same answer" in verify["400"]["description"]
    assert "POST /api/password/forgot/" in verify["401"]["description"]
    assert "failed login" in verify["401"]["description"]
    verify_body = spec["components"]["schemas"]["VerifyEmailIn"]
    assert set(verify_body["required"]) == {"email", "otp", "password"}
    refresh = spec["paths"]["/api/token/refresh/"]["post"]["responses"]["401"]["description"]
    assert "revokes every token descended from the same login" in refresh
    login = spec["paths"]["/api/login/"]["post"]["responses"]
    assert "same answer" in login["401"]["description"]
    resend = spec["paths"]["/api/resend-otp/"]["post"]
    assert "Retry-After" in resend["responses"]["429"]["headers"]
    assert "same 202" in resend["description"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/register/",
        "/api/verify-email/",
        "/api/resend-otp/",
        "/api/login/",
        "/api/password/forgot/",
        "/api/password/reset/",
    ],
)
def test_every_limited_call_documents_its_429_with_retry_after(spec, path):
    refused = spec["paths"][path]["post"]["responses"]["429"]

    assert "Retry-After" in refused["headers"]
    assert "README" in refused["description"] or "cooldown" in refused["description"]


def test_the_takeover_rules_are_in_the_document(spec):
    register = spec["paths"]["/api/register/"]["post"]["responses"]["409"]["description"]
    assert "POST /api/password/forgot/" in register
    forgot = spec["paths"]["/api/password/forgot/"]["post"]["description"]
    assert "same 202" in forgot
    reset = spec["paths"]["/api/password/reset/"]["post"]["description"]
    assert "verified" in reset and "revoked" in reset
