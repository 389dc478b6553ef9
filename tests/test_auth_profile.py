"""GET/PATCH /api/me/ and POST /api/me/password/."""

from __future__ import annotations

from datetime import datetime

import pytest

from jobboard.extensions import db
from jobboard.models import User
from tests.support.auth import DEFAULT_PASSWORD


def login(client, email: str, password: str):
    return client.post("/api/login/", json={"email": email, "password": password})


# --- GET /api/me/ ----------------------------------------------------------------------------


def test_me_returns_the_callers_profile(client, make_user, auth_headers):
    user = make_user(display_name="Ada", bio="Engines.", skills=["math", "poetry"])

    response = client.get("/api/me/", headers=auth_headers(user))

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == user.id
    assert body["email"] == user.email
    assert body["is_email_verified"] is True
    assert body["is_admin"] is False
    assert body["display_name"] == "Ada"
    assert body["bio"] == "Engines."
    assert body["skills"] == ["math", "poetry"]
    assert "password" not in body and "password_hash" not in body
    assert datetime.fromisoformat(body["created_at"]).utcoffset() is not None


def test_me_of_a_fresh_user_has_empty_profile_fields(client, verified_user, auth_headers):
    body = client.get("/api/me/", headers=auth_headers(verified_user)).get_json()

    assert body["display_name"] is None and body["bio"] is None and body["skills"] == []


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Token abc"}]
)
def test_me_needs_a_valid_access_token(client, headers):
    response = client.get("/api/me/", headers=headers)

    assert response.status_code == 401
    assert response.is_json and response.get_json()["code"] == 401


def test_me_of_a_deleted_user_is_401(client, make_user, auth_headers):
    user = make_user()
    headers = auth_headers(user)
    db.session.delete(user)
    db.session.commit()

    assert client.get("/api/me/", headers=headers).status_code == 401


# --- PATCH /api/me/ ----------------------------------------------------------------------------


def patch_me(client, headers, payload):
    return client.patch("/api/me/", headers=headers, json=payload)


def test_patch_changes_only_the_given_fields(client, make_user, auth_headers):
    user = make_user(display_name="Old", bio="Old bio", skills=["a"])

    response = patch_me(client, auth_headers(user), {"display_name": "  New Name  "})

    assert response.status_code == 200
    body = response.get_json()
    assert body["display_name"] == "New Name"
    assert body["bio"] == "Old bio" and body["skills"] == ["a"]
    db.session.refresh(user)
    assert user.display_name == "New Name"


def test_patch_sets_all_profile_fields(client, verified_user, auth_headers):
    response = patch_me(
        client,
        auth_headers(verified_user),
        {"display_name": "Grace", "bio": "Compilers.\nNavy.", "skills": ["COBOL", " debugging "]},
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["display_name"] == "Grace"
    assert body["bio"] == "Compilers.\nNavy."
    assert body["skills"] == ["COBOL", "debugging"]
    assert client.get("/api/me/", headers=auth_headers(verified_user)).get_json() == body


def test_patch_keeps_a_repeated_skill_once(client, verified_user, auth_headers):
    response = patch_me(
        client, auth_headers(verified_user), {"skills": ["Python", "sql", "python", "SQL"]}
    )

    assert response.get_json()["skills"] == ["Python", "sql"]


def test_patch_with_null_clears_display_name_and_bio(client, make_user, auth_headers):
    user = make_user(display_name="Someone", bio="Something")

    body = patch_me(client, auth_headers(user), {"display_name": None, "bio": None}).get_json()

    assert body["display_name"] is None and body["bio"] is None


def test_patch_with_an_empty_list_clears_skills(client, make_user, auth_headers):
    user = make_user(skills=["x"])

    assert patch_me(client, auth_headers(user), {"skills": []}).get_json()["skills"] == []


def test_patch_with_an_empty_body_changes_nothing(client, make_user, auth_headers):
    user = make_user(display_name="Same")

    response = patch_me(client, auth_headers(user), {})

    assert response.status_code == 200
    assert response.get_json()["display_name"] == "Same"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"display_name": 5}, "display_name"),
        ({"bio": "x" * 2001}, "bio"),
        ({"bio": ["not", "text"]}, "bio"),
        ({"skills": "python"}, "skills"),
        ({"skills": None}, "skills"),
        ({"skills": [1, 2]}, "skills"),
        ({"skills": [""]}, "skills"),
        ({"skills": ["x" * 51]}, "skills"),
        ({"skills": [f"skill{i}" for i in range(21)]}, "skills"),
        ({"skills": [["nested"]]}, "skills"),
        ({"email": "new@example.com"}, "email"),
        ({"is_admin": True}, "is_admin"),
        ({"is_email_verified": True}, "is_email_verified"),
    ],
)
def test_patch_refuses_invalid_fields_with_422(client, make_user, auth_headers, payload, field):
    user = make_user(display_name="Kept", skills=["kept"])

    response = patch_me(client, auth_headers(user), payload)

    assert response.status_code == 422
    assert field in response.get_json()["errors"]["json"]
    db.session.refresh(user)
    assert user.display_name == "Kept" and user.skills == ["kept"] and user.is_admin is False


def test_patch_accepts_exactly_the_limits(client, verified_user, auth_headers):
    payload = {
        "display_name": "x" * 100,
        "bio": "b" * 2000,
        "skills": ["s" * 50] + [f"skill{i}" for i in range(19)],
    }

    response = patch_me(client, auth_headers(verified_user), payload)

    assert response.status_code == 200
    assert len(response.get_json()["skills"]) == 20


@pytest.mark.parametrize("payload", [[], "text", 3])
def test_patch_refuses_a_body_that_is_not_an_object(client, verified_user, auth_headers, payload):
    assert patch_me(client, auth_headers(verified_user), payload).status_code == 422


def test_patch_refuses_malformed_json_with_400(client, verified_user, auth_headers):
    response = client.patch(
        "/api/me/",
        headers=auth_headers(verified_user),
        data="{not json",
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.get_json()["errors"] == {"json": ["Invalid JSON body."]}


def test_patch_needs_a_token(client):
    assert client.patch("/api/me/", json={"bio": "x"}).status_code == 401


# --- POST /api/me/password/ ------------------------------------------------------------------


def change_password(client, headers, old: str, new: str):
    return client.post(
        "/api/me/password/", headers=headers, json={"old_password": old, "new_password": new}
    )


def test_password_change_makes_the_new_password_work_and_the_old_one_not(
    client, verified_user, auth_headers
):
    response = change_password(
        client, auth_headers(verified_user), DEFAULT_PASSWORD, "a brand new secret"
    )

    assert response.status_code == 204
    assert response.data == b""
    assert login(client, verified_user.email, "a brand new secret").status_code == 200
    assert login(client, verified_user.email, DEFAULT_PASSWORD).status_code == 401


def test_password_change_with_a_wrong_old_password_is_400(client, verified_user, auth_headers):
    response = change_password(
        client, auth_headers(verified_user), "not my password", "a brand new secret"
    )

    assert response.status_code == 400
    assert response.get_json()["message"] == "The current password is wrong."
    assert login(client, verified_user.email, DEFAULT_PASSWORD).status_code == 200


@pytest.mark.parametrize(
    ("new_password", "reason"),
    [
        ("short", "at least 8 characters"),
        ("12345678901", "digits only"),
        ("{email}", "same as the email"),
        ("{EMAIL}", "same as the email"),
    ],
)
def test_password_change_to_a_weak_password_is_422(
    client, verified_user, auth_headers, new_password, reason
):
    new_password = new_password.format(email=verified_user.email, EMAIL=verified_user.email.upper())

    response = change_password(client, auth_headers(verified_user), DEFAULT_PASSWORD, new_password)

    assert response.status_code == 422
    (message,) = response.get_json()["errors"]["json"]["new_password"]
    assert reason in message
    assert login(client, verified_user.email, DEFAULT_PASSWORD).status_code == 200


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"old_password", "new_password"}),
        ({"old_password": DEFAULT_PASSWORD}, {"new_password"}),
        ({"old_password": DEFAULT_PASSWORD, "new_password": 123456789}, {"new_password"}),
        ({"old_password": None, "new_password": "a brand new secret"}, {"old_password"}),
        ({"old_password": "x", "new_password": "y" * 257}, {"new_password"}),
    ],
)
def test_password_change_refuses_malformed_input_with_422(
    client, verified_user, auth_headers, payload, fields
):
    response = client.post("/api/me/password/", headers=auth_headers(verified_user), json=payload)

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == fields


def test_password_change_refuses_malformed_json_with_400(client, verified_user, auth_headers):
    response = client.post(
        "/api/me/password/",
        headers=auth_headers(verified_user),
        data="{not json",
        content_type="application/json",
    )

    assert response.status_code == 400


def test_password_change_needs_a_token(client):
    response = client.post(
        "/api/me/password/", json={"old_password": "x" * 8, "new_password": "y" * 9}
    )

    assert response.status_code == 401


def test_password_change_stores_a_hash(client, verified_user, auth_headers):
    change_password(client, auth_headers(verified_user), DEFAULT_PASSWORD, "a brand new secret")

    stored = db.session.get(User, verified_user.id).password_hash
    assert "a brand new secret" not in stored
