"""The two reads the web app's pages build on: the job kinds with the JSON Schema of their
params (the post form is generated from it), and a job's public fields for bidders."""

from __future__ import annotations

from tests.support.auth import bearer
from tests.support.factories import BidFactory, JobFactory


def test_kinds_list_every_kind_with_a_params_schema_from_its_own_schema(client):
    response = client.get("/api/kinds/")

    assert response.status_code == 200
    assert "ETag" in response.headers
    kinds = {entry["kind"]: entry for entry in response.get_json()}
    assert {"echo", "sleep", "wordcount", "checksum", "flaky", "manual"} <= set(kinds)
    sleep = kinds["sleep"]["params_schema"]
    assert sleep["required"] == ["seconds"]
    assert sleep["properties"]["seconds"]["maximum"] == 300
    checksum = kinds["checksum"]["params_schema"]["properties"]["algorithm"]
    assert checksum["enum"] == ["sha256", "sha1", "md5"]
    assert checksum["default"] == "sha256"
    assert kinds["manual"]["runs_in_queue"] is False
    assert kinds["manual"]["time_limit"] is None
    assert (
        "properties" not in kinds["echo"]["params_schema"]
        or not kinds["echo"]["params_schema"]["properties"]
    )
    etag = response.headers["ETag"]
    assert client.get("/api/kinds/", headers={"If-None-Match": etag}).status_code == 304


def test_public_job_for_bidders_and_404_for_strangers(client, make_user):
    owner, bidder, stranger = make_user(), make_user(), make_user()
    open_job = JobFactory(owner=owner, kind="manual", params={"brief": "secret brief"})
    taken = JobFactory(owner=owner, kind="manual")
    BidFactory(job=taken, bidder=bidder, accepted=True)

    seen = client.get(f"/api/jobs/{open_job.id}/public/", headers=bearer(stranger))
    assert seen.status_code == 200
    assert seen.get_json()["owner_id"] == owner.id
    assert "params" not in seen.get_json()
    assert client.get(f"/api/jobs/{taken.id}/public/", headers=bearer(bidder)).status_code == 200
    assert client.get(f"/api/jobs/{taken.id}/public/", headers=bearer(stranger)).status_code == 404
    assert client.get("/api/jobs/2147483647/public/", headers=bearer(stranger)).status_code == 404
