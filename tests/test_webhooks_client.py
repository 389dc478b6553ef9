"""A client generated from /api/openapi.json by openapi-python-client calls the webhook
endpoints of the live app (served on 127.0.0.1): the document is good enough for
generated clients, typed models included."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.support.auth import bearer

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture
def served(live_app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, live_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def generated(live_client, tmp_path, monkeypatch):
    document = tmp_path / "openapi.json"
    document.write_bytes(live_client.get("/api/openapi.json").data)
    config = tmp_path / "config.yaml"
    config.write_text("post_hooks: []\npackage_name_override: jobboard_client\n")
    result = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "jobboard_client"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("jobboard_client")
    for name in [name for name in sys.modules if name.startswith("jobboard_client")]:
        del sys.modules[name]


def test_a_generated_client_manages_webhooks(live_app, make_live_user, served, generated):
    from jobboard_client import AuthenticatedClient, Client
    from jobboard_client.api.events import list_event_types
    from jobboard_client.api.webhooks import (
        create_webhook_endpoint,
        delete_webhook_endpoint,
        get_webhook_delivery,
        get_webhook_endpoint,
        list_webhook_deliveries,
        list_webhook_endpoints,
        recover_webhook_deliveries,
        resend_webhook_delivery,
        rotate_webhook_secret,
        test_webhook_endpoint,
        update_webhook_endpoint,
    )
    from jobboard_client.models import (
        RecoverIn,
        WebhookEndpointCreatedOut,
        WebhookEndpointIn,
        WebhookEndpointPatchIn,
    )

    user = make_live_user()
    with live_app.app_context():
        token = bearer(user)["Authorization"].split(" ", 1)[1]
    client = AuthenticatedClient(base_url=served, token=token)

    types = list_event_types.sync(client=Client(base_url=served))
    assert "job.completed" in [str(item.type_) for item in types]

    created = create_webhook_endpoint.sync(
        client=client, body=WebhookEndpointIn(url="http://127.0.0.1:9/hooks")
    )
    assert isinstance(created, WebhookEndpointCreatedOut)
    assert created.secret.startswith("whsec_")
    refused = create_webhook_endpoint.sync_detailed(
        client=client, body=WebhookEndpointIn(url="http://127.0.0.1:9/second")
    )
    assert refused.status_code == 429  # free plan: one endpoint

    listed = list_webhook_endpoints.sync(client=client)
    assert [endpoint.id for endpoint in listed] == [created.id]
    changed = update_webhook_endpoint.sync(
        endpoint_id=created.id, client=client, body=WebhookEndpointPatchIn(description="ci")
    )
    assert changed.description == "ci"
    assert get_webhook_endpoint.sync(endpoint_id=created.id, client=client).description == "ci"
    assert rotate_webhook_secret.sync(endpoint_id=created.id, client=client).secret != (
        created.secret
    )
    sent = test_webhook_endpoint.sync(endpoint_id=created.id, client=client)
    (delivery,) = list_webhook_deliveries.sync(endpoint_id=created.id, client=client)
    assert (delivery.event_id, str(delivery.status)) == (sent.event_id, "pending")
    detail = get_webhook_delivery.sync(
        endpoint_id=created.id, delivery_id=delivery.id, client=client
    )
    assert detail.attempt_history == []
    assert (
        resend_webhook_delivery.sync(
            endpoint_id=created.id, delivery_id=delivery.id, client=client
        ).id
        == delivery.id
    )
    recovered = recover_webhook_deliveries.sync(
        endpoint_id=created.id,
        client=client,
        body=RecoverIn(since=datetime.now(UTC) - timedelta(hours=1)),
    )
    assert recovered.resent == 0  # the one delivery is pending, not failed
    gone = delete_webhook_endpoint.sync_detailed(endpoint_id=created.id, client=client)
    assert gone.status_code == 204
    missing = get_webhook_endpoint.sync_detailed(endpoint_id=created.id, client=client)
    assert missing.status_code == 404
