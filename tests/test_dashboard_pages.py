"""The pages served without a browser's help: Swagger UI at /api/docs and the dashboard
page, both working offline (every asset comes from this app)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import jobboard

ASSET_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
# Any absolute URL in a page or script; the SVG namespace is a name, never fetched.
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s"'`)]*""")
NOT_FETCHED = {"http://www.w3.org/2000/svg"}


def asset_urls(html: str) -> list[str]:
    return [url for url in ASSET_REFERENCE.findall(html) if not url.startswith("data:")]


# --- Swagger UI ---------------------------------------------------------------------------------


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    # Started by a static script (no inline script under the page's policy).
    assert "swagger-ui-init.js" in response.text
    assert '"/api/openapi.json"' in response.text
    init = client.get("/static/swagger-ui-init.js")
    assert init.status_code == 200 and "SwaggerUIBundle" in init.text
    init.close()


def test_swagger_ui_references_only_local_assets_that_answer(client):
    html = client.get("/api/docs").text
    urls = asset_urls(html)
    assert {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-init.js"} <= {
        url.rsplit("/", 1)[-1] for url in urls
    }
    for url in urls:
        assert url.startswith(("/api/docs/assets/", "/static/")), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert len(response.data) > (10_000 if "/api/docs/" in url else 100), url
        response.close()
    assert not ABSOLUTE_URL.findall(html)


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [("swagger-ui.css", "text/css"), ("swagger-ui-bundle.js", "text/javascript")],
)
def test_swagger_assets_have_types_and_cache_headers(client, name, mimetype):
    response = client.get(f"/api/docs/assets/{name}")
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert "max-age=86400" in response.headers["Cache-Control"]
    response.close()


def test_swagger_ui_needs_no_validator_service(client):
    assert '"validatorUrl": null' in client.get("/api/docs").text


@pytest.mark.parametrize(
    "path",
    [
        "/api/docs/assets/no-such-file.js",
        "/api/docs/assets/../__init__.py",
        "/api/docs/assets/%2e%2e/__init__.py",
        "/api/docs/assets/../../../../etc/passwd",
    ],
)
def test_swagger_assets_outside_the_bundle_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json  # an /api path never answers with an HTML error page


# --- the dashboard page ------------------------------------------------------------------------


def test_dashboard_page_is_html_with_the_sign_in_form(client):
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.text
    for element_id in ("signin-form", "signin-email", "signin-password", "jobs-chart", "queue"):
        assert f'id="{element_id}"' in html
    # No token or user data is rendered server-side: the page is the same for everybody.
    assert client.get("/dashboard/").text == html


def test_dashboard_page_needs_no_login_to_load(client):
    assert client.get("/dashboard/").status_code == 200


def test_dashboard_without_trailing_slash_is_the_same_page(client):
    response = client.get("/dashboard")
    assert response.status_code == 200  # no redirect (docs/security.md)
    assert "Location" not in response.headers
    assert response.text == client.get("/dashboard/").text


def test_dashboard_assets_are_local_and_answer(client):
    html = client.get("/dashboard/").text
    urls = asset_urls(html)
    assert any(url.endswith("dashboard.js") for url in urls)
    assert any(url.endswith("dashboard.css") for url in urls)
    for url in urls:
        assert url.startswith("/"), url
        response = client.get(url)
        assert response.status_code in (200, 308), url
        response.close()
    assert not set(ABSOLUTE_URL.findall(html)) - NOT_FETCHED


@pytest.mark.parametrize("name", ["dashboard.js", "dashboard.css"])
def test_dashboard_static_files_load_nothing_from_elsewhere(client, name):
    response = client.get(f"/static/dashboard/{name}")
    assert response.status_code == 200
    text = response.text
    response.close()
    assert not set(ABSOLUTE_URL.findall(text)) - NOT_FETCHED
    assert "@import" not in text
    assert "url(http" not in text


def test_page_assets_ship_with_the_package():
    """Templates and static files live inside the package (pyproject's package-data)."""
    package = Path(jobboard.__file__).parent
    for relative in (
        "templates/dashboard/index.html",
        "static/dashboard/dashboard.js",
        "static/dashboard/dashboard.css",
    ):
        assert (package / relative).is_file(), relative


def test_dashboard_script_never_injects_html():
    """Job names are user input: the script builds the page with text nodes only."""
    script = (Path(jobboard.__file__).parent / "static/dashboard/dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
