"""Safe webhook targets: the URL rules when a URL is saved (422) and the address rules again
on every connection of a delivery. Every refusal here is checked without sending anything:
the addresses are input only, resolved (when they are names) from /etc/hosts or read as
numbers, and the only listener is a receiver on 127.0.0.1 that must see no connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest
from sqlalchemy import text

from jobboard.extensions import db
from jobboard.webhooks.client import EndpointConnections
from jobboard.webhooks.targets import RefusedTarget, check_url, forbidden
from tests.support import webhooks as wh
from tests.support.auth import bearer
from tests.support.polling import wait_until
from tests.support.receivers import Receiver

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space
    "0.0.0.0",
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "[::1]",
    "[::]",
    "[fe80::1]",
    "[fc00::1]",
    "[ff02::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:10.0.0.1]",
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
    "[2001:db8::1]",  # documentation
]
# Other spellings of 127.0.0.1 that the system's resolver reads as numbers.
LOOPBACK_SPELLINGS = ["2130706433", "0x7f000001", "0x7f.1", "127.1", "017700000001"]


def loopback_names() -> list[str]:
    """localhost, and the names /etc/hosts maps to a 127.x address (this machine's)."""
    names = ["localhost", "LOCALHOST"]
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#")[0].split()
        if fields and fields[0].startswith("127."):
            names += [name for name in fields[1:] if name.lower() != "localhost"]
    return names


@pytest.mark.parametrize("host", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(host):
    with pytest.raises(RefusedTarget, match="not a public address"):
        check_url(f"https://{host}/hooks", allow_private=False)


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_a_loopback_address_is_refused(host):
    with pytest.raises(RefusedTarget, match=r"127\.0\.0\.1"):
        check_url(f"https://{host}/hooks", allow_private=False)


def test_a_name_that_resolves_to_loopback_is_refused():
    names = loopback_names()
    assert any(name.lower() != "localhost" for name in names) or names
    for name in names:
        resolved = {info[4][0] for info in socket.getaddrinfo(name, 443)}
        assert all(ipaddress.ip_address(a).is_loopback for a in resolved), (name, resolved)
        with pytest.raises(RefusedTarget, match="not a public address"):
            check_url(f"https://{name}/hooks", allow_private=False)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://8.8.8.8/hooks", "must use https"),
        ("ftp://8.8.8.8/hooks", "must use https"),
        ("https://user:secret@8.8.8.8/hooks", "credentials"),
        ("https://user@8.8.8.8/hooks", "credentials"),
        ("https://0177.0.0.1/hooks", "Not a valid URL"),
        ("https:///hooks", "no host"),
        ("not a url", "must use https"),
        ("https://8.8.8.8/" + "a" * 2000, "longer than 2000"),
    ],
)
def test_the_url_form_is_checked(url, reason):
    with pytest.raises(RefusedTarget, match=reason):
        check_url(url, allow_private=False)


def test_a_public_address_is_accepted_without_any_connection():
    # Input only: a literal address is not resolved, and nothing connects to it.
    assert check_url("https://8.8.8.8/hooks", allow_private=False)
    assert check_url("https://[2606:4700:4700::1111]:8443/x?y=1", allow_private=False)


def test_private_urls_are_allowed_when_the_setting_says_so():
    assert check_url("http://127.0.0.1:8080/hooks", allow_private=True)
    assert check_url("https://localhost/hooks", allow_private=True)
    with pytest.raises(RefusedTarget, match="credentials"):
        check_url("http://a:b@127.0.0.1/", allow_private=True)


def test_embedded_addresses():
    assert forbidden(ipaddress.ip_address("::ffff:192.168.0.1"))
    assert not forbidden(ipaddress.ip_address("8.8.8.8"))
    assert not forbidden(ipaddress.ip_address("2606:4700:4700::1111"))


@pytest.fixture
def receiver():
    listener = Receiver()
    yield listener
    listener.stop()


def test_the_connection_refuses_a_loopback_address_before_connecting(receiver):
    def connect(host: str, allow_private: bool) -> None:
        async def run() -> None:
            connections = EndpointConnections(ssl.create_default_context(), allow_private, 30)
            connection = await connections._connect(("http", host, receiver.port))
            connection.abort()

        asyncio.run(run())

    for host in ("127.0.0.1", "localhost", "2130706433", "::ffff:127.0.0.1"):
        with pytest.raises(RefusedTarget, match="not a public address"):
            connect(host, allow_private=False)
    assert receiver.connections == 0

    # Allowed, it does connect (so the refusal above is the rule, not a dead port).
    connect("127.0.0.1", allow_private=True)
    wait_until(lambda: receiver.connections == 1, timeout=5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_saved_url_that_became_private_fails_its_attempt_without_a_request(
    live_app, live_client, make_live_user, receiver, host
):
    """DNS can change between the save and the delivery: the stored URL (written here as
    if the host had resolved elsewhere when saved) is refused at the connection."""
    user = make_live_user()
    with live_app.app_context():
        headers = bearer(user)
    endpoint = wh.create_endpoint(live_client, headers, receiver.url)
    with live_app.app_context():
        db.session.execute(
            text("UPDATE webhook_endpoints SET url = :url"),
            {"url": f"https://{host}:{receiver.port}/hooks"},
        )
        db.session.commit()
    wh.emit(live_app, user.id)
    wh.run_endpoint(
        live_app.config["DATABASE_URL_FOR_WORKER"], endpoint["id"], wh.settings(allow_private=False)
    )
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert attempt["response_status"] is None
    assert "not a public address" in attempt["error"]
    assert receiver.connections == 0


def test_an_http_url_is_refused_at_the_attempt_without_private_urls(
    live_app, live_client, make_live_user, receiver
):
    user = make_live_user()
    with live_app.app_context():
        headers = bearer(user)
    endpoint = wh.create_endpoint(live_client, headers, receiver.url)
    wh.emit(live_app, user.id)
    wh.run_endpoint(
        live_app.config["DATABASE_URL_FOR_WORKER"], endpoint["id"], wh.settings(allow_private=False)
    )
    (attempt,) = wh.attempts(live_app, endpoint["id"])
    assert "must use https" in attempt["error"]
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/h",
        "https://[::1]/h",
        "https://2130706433/h",
        "https://localhost/h",
        "http://8.8.8.8/h",
        "https://u:p@8.8.8.8/h",
        "https://10.1.2.3/h",
    ],
)
def test_the_api_refuses_them_with_422(app, client, verified_user, auth_headers, monkeypatch, url):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_URLS", False)
    response = client.post("/api/webhooks/", json={"url": url}, headers=auth_headers(verified_user))
    assert response.status_code == 422, response.get_json()
    assert "url" in response.get_json()["errors"]["json"]
