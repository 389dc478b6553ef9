"""docs/webhooks.md's verification snippet, run as written against a real delivery."""

from __future__ import annotations

import re

from config import PROJECT_ROOT
from tests.support import webhooks as wh
from tests.support.auth import bearer
from tests.support.receivers import Receiver


def snippet() -> str:
    text = (PROJECT_ROOT / "docs" / "webhooks.md").read_text()
    section = text.split("## Verifying them", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python snippet under 'Verifying them'"
    return match.group(1)


def test_the_receiving_snippet_verifies_deduplicates_and_refuses(
    live_app, live_client, make_live_user, monkeypatch, capsys
):
    user = make_live_user()
    with live_app.app_context():
        headers = bearer(user)
    receiver = Receiver()
    try:
        endpoint = wh.create_endpoint(live_client, headers, receiver.url)
        wh.emit(live_app, user.id)
        wh.run_endpoint(live_app.config["DATABASE_URL_FOR_WORKER"], endpoint["id"])
        (delivery,) = receiver.wait_for(1)
    finally:
        receiver.stop()

    monkeypatch.setenv("JOBBOARD_WEBHOOK_SECRET", endpoint["secret"])
    namespace: dict = {"__name__": "receiver"}
    exec(compile(snippet(), "docs/webhooks.md", "exec"), namespace)
    client = namespace["app"].test_client()

    def post(body: bytes, headers: dict[str, str]) -> int:
        return client.post("/hooks/jobboard", data=body, headers=headers).status_code

    assert post(delivery.body, delivery.headers) == 204
    assert "job.failed" in capsys.readouterr().out
    assert post(delivery.body, delivery.headers) == 200  # the same webhook-id again
    assert post(delivery.body.replace(b"job", b"jab"), delivery.headers) == 400
    assert post(delivery.body, {**delivery.headers, "webhook-timestamp": "1000"}) == 400
