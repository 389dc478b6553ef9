"""GET /api/jobs/, /api/jobs/assigned/ and /api/jobs/open/: every filter, sort key, the
pagination header, and 422 for unknown values."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest

from jobboard.models import JobStatus, now_utc
from tests.support.jobs import JOB_FIELDS, create_job

LIST_ROUTES = ["/api/jobs/", "/api/jobs/assigned/", "/api/jobs/open/"]


def ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [job["id"] for job in response.get_json()]


@pytest.fixture
def jobs(verified_user):
    """Four jobs of `verified_user` with distinct names, times, kinds and statuses."""
    base = now_utc().replace(microsecond=0)
    specs = [
        ("Bravo report", "monthly numbers", "report", JobStatus.PENDING, 3, 40),
        ("alpha sum", "checksum of 100% of the file", "checksum", JobStatus.COMPLETED, 1, 30),
        ("Charlie", None, "echo", JobStatus.FAILED, 4, 20),
        ("delta_wc", "Count the WORDS", "wordcount", JobStatus.CANCELLED, 2, 10),
    ]
    made = {}
    for name, description, kind, status, hours_ahead, minutes_ago in specs:
        params = {"text": "x"} if kind in ("checksum", "wordcount") else {}
        job = create_job(
            verified_user,
            name=name,
            description=description,
            kind=kind,
            params=params,
            scheduled_time=base + timedelta(hours=hours_ahead),
            status=status,
            created_at=base - timedelta(minutes=minutes_ago),
        )
        made[name] = job.id
    made["base"] = base
    return made


def query(path: str, **params) -> str:
    return f"{path}?{urlencode(params, doseq=True)}"


def test_list_returns_only_own_jobs_newest_first(
    client, verified_user, other_user, auth_headers, jobs
):
    create_job(other_user)

    response = client.get("/api/jobs/", headers=auth_headers(verified_user))

    assert ids(response) == [
        jobs["delta_wc"],
        jobs["Charlie"],
        jobs["alpha sum"],
        jobs["Bravo report"],
    ]
    assert set(response.get_json()[0]) == JOB_FIELDS
    assert json.loads(response.headers["X-Pagination"])["total"] == 4


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "pending"}, ["Bravo report"]),
        ({"status": ["completed", "failed"]}, ["Charlie", "alpha sum"]),
        ({"kind": "checksum"}, ["alpha sum"]),
        ({"kind": "sleep"}, []),
        ({"q": "REPORT"}, ["Bravo report"]),
        ({"q": "words"}, ["delta_wc"]),
        ({"q": "100%"}, ["alpha sum"]),
        ({"q": "_"}, ["delta_wc"]),
        ({"q": "%"}, ["alpha sum"]),
        ({"q": "nothing like it"}, []),
    ],
)
def test_list_filters(client, verified_user, auth_headers, jobs, params, expected):
    response = client.get(query("/api/jobs/", **params), headers=auth_headers(verified_user))
    assert ids(response) == [jobs[name] for name in expected]


def test_time_range_filters_are_half_open(client, verified_user, auth_headers, jobs):
    base = jobs["base"]
    headers = auth_headers(verified_user)

    def names(**params):
        found = ids(client.get(query("/api/jobs/", **params), headers=headers))
        by_id = {value: key for key, value in jobs.items() if key != "base"}
        return sorted(by_id[job_id] for job_id in found)

    at = lambda delta: (base + delta).isoformat()  # noqa: E731
    assert names(scheduled_after=at(timedelta(hours=2))) == ["Bravo report", "Charlie", "delta_wc"]
    assert names(scheduled_before=at(timedelta(hours=2))) == ["alpha sum"]
    assert names(
        scheduled_after=at(timedelta(hours=2)), scheduled_before=at(timedelta(hours=4))
    ) == ["Bravo report", "delta_wc"]
    assert names(created_after=at(-timedelta(minutes=20))) == ["Charlie", "delta_wc"]
    assert names(created_before=at(-timedelta(minutes=20))) == ["Bravo report", "alpha sum"]
    assert names(
        created_after=at(-timedelta(minutes=30)), created_before=at(-timedelta(minutes=10))
    ) == ["Charlie", "alpha sum"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("created_at", ["Bravo report", "alpha sum", "Charlie", "delta_wc"]),
        ("-created_at", ["delta_wc", "Charlie", "alpha sum", "Bravo report"]),
        ("scheduled_time", ["alpha sum", "delta_wc", "Bravo report", "Charlie"]),
        ("-scheduled_time", ["Charlie", "Bravo report", "delta_wc", "alpha sum"]),
        ("status", ["delta_wc", "alpha sum", "Charlie", "Bravo report"]),
        ("-status", ["Bravo report", "Charlie", "alpha sum", "delta_wc"]),
        ("name", ["alpha sum", "Bravo report", "Charlie", "delta_wc"]),
        ("-name", ["delta_wc", "Charlie", "Bravo report", "alpha sum"]),
    ],
)
def test_list_sort_keys(client, verified_user, auth_headers, jobs, sort, expected):
    response = client.get(query("/api/jobs/", sort=sort), headers=auth_headers(verified_user))
    assert ids(response) == [jobs[name] for name in expected]


def test_pagination(client, verified_user, auth_headers, jobs):
    headers = auth_headers(verified_user)
    first = client.get(query("/api/jobs/", page=1, page_size=3), headers=headers)
    second = client.get(query("/api/jobs/", page=2, page_size=3), headers=headers)

    assert len(ids(first)) == 3 and len(ids(second)) == 1
    assert set(ids(first)).isdisjoint(ids(second))
    pagination = json.loads(first.headers["X-Pagination"])
    assert pagination["total"] == 4
    assert pagination["total_pages"] == 2
    assert pagination["next_page"] == 2


def test_page_sizes_follow_the_apps_configuration(client, app, verified_user, auth_headers, jobs):
    """PAGINATION_PAGE_SIZE and MAX_PAGE_SIZE are read from app.config per request: an
    override takes effect without re-importing anything."""
    headers = auth_headers(verified_user)
    app.config["PAGINATION_PAGE_SIZE"], app.config["MAX_PAGE_SIZE"] = 3, 3
    try:
        default_page = client.get("/api/jobs/", headers=headers)
        over_the_max = client.get(query("/api/jobs/", page_size=4), headers=headers)
        bids_over_the_max = client.get(query("/api/bids/", page_size=4), headers=headers)
    finally:
        app.config["PAGINATION_PAGE_SIZE"], app.config["MAX_PAGE_SIZE"] = 20, 100
    assert len(ids(default_page)) == 3
    assert json.loads(default_page.headers["X-Pagination"])["total_pages"] == 2
    assert over_the_max.status_code == 422
    assert "page_size" in over_the_max.get_json()["errors"]["query"]
    assert bids_over_the_max.status_code == 422


def test_documented_page_sizes_are_the_apps(smtp_server):
    from jobboard import create_app
    from tests.support.database import make_config

    configured = make_config("postgresql://nobody@127.0.0.1:1/none", smtp_server.port)
    configured.PAGINATION_PAGE_SIZE, configured.MAX_PAGE_SIZE = 7, 30
    spec = create_app(configured).test_client().get("/api/openapi.json").get_json()
    (page_size,) = [
        p for p in spec["paths"]["/api/jobs/"]["get"]["parameters"] if p.get("name") == "page_size"
    ]
    assert (page_size["schema"]["default"], page_size["schema"]["maximum"]) == (7, 30)


@pytest.mark.parametrize("path", LIST_ROUTES)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": ["pending", "sleeping"]}, "status"),
        ({"kind": "teleport"}, "kind"),
        ({"sort": "priority"}, "sort"),
        ({"sort": "--name"}, "sort"),
        ({"scheduled_after": "2030-01-01T00:00:00"}, "scheduled_after"),
        ({"scheduled_before": "soon"}, "scheduled_before"),
        ({"created_after": "2030-01-01"}, "created_after"),
        ({"created_before": "2030-01-01T00:00:00"}, "created_before"),
        ({"q": ""}, "q"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_lists_refuse_unknown_filter_values_with_422(
    client, verified_user, auth_headers, path, params, field
):
    response = client.get(query(path, **params), headers=auth_headers(verified_user))

    assert response.status_code == 422
    assert field in response.get_json()["errors"]["query"]


@pytest.mark.parametrize("path", LIST_ROUTES)
@pytest.mark.parametrize("params", [{"page_size": 101}, {"page": 0}, {"page": "x"}])
def test_lists_refuse_bad_pagination_with_422(client, verified_user, auth_headers, path, params):
    response = client.get(query(path, **params), headers=auth_headers(verified_user))
    assert response.status_code == 422


# --- assigned and open -----------------------------------------------------------------------


def test_assigned_lists_the_jobs_assigned_to_the_caller(
    client, verified_user, other_user, make_user, auth_headers
):
    mine = create_job(other_user, name="for me", assignee_id=verified_user.id)
    done = create_job(
        other_user, name="done", assignee_id=verified_user.id, status=JobStatus.COMPLETED
    )
    create_job(other_user, name="somebody else's", assignee_id=make_user().id)
    create_job(verified_user, name="my own")

    headers = auth_headers(verified_user)
    assert ids(client.get("/api/jobs/assigned/", headers=headers)) == [done.id, mine.id]
    filtered = client.get(query("/api/jobs/assigned/", status="pending"), headers=headers)
    assert ids(filtered) == [mine.id]
    assert set(client.get("/api/jobs/assigned/", headers=headers).get_json()[0]) == JOB_FIELDS


def test_open_lists_other_peoples_biddable_jobs_with_public_fields_only(
    client, verified_user, other_user, auth_headers
):
    pending = create_job(other_user, name="pending one", params={"secret": 1})
    running = create_job(other_user, name="running one", status=JobStatus.IN_PROGRESS)
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        create_job(other_user, name=f"{status} one", status=status)
    create_job(other_user, name="assigned one", assignee_id=verified_user.id)
    create_job(verified_user, name="my own open one")

    response = client.get("/api/jobs/open/", headers=auth_headers(verified_user))

    assert ids(response) == [running.id, pending.id]
    for job in response.get_json():
        assert "params" not in job
        assert "last_error" not in job
        assert set(job) == JOB_FIELDS - {"params", "last_error", "due_date"}


def test_open_takes_the_same_filters(client, verified_user, other_user, auth_headers):
    create_job(other_user, name="translate a letter", kind="echo")
    wanted = create_job(other_user, name="count words", kind="wordcount", params={"text": "a"})
    headers = auth_headers(verified_user)

    by_kind = client.get(query("/api/jobs/open/", kind="wordcount"), headers=headers)
    by_text = client.get(query("/api/jobs/open/", q="COUNT"), headers=headers)
    by_sort = client.get(query("/api/jobs/open/", sort="name"), headers=headers)

    assert ids(by_kind) == ids(by_text) == [wanted.id]
    assert ids(by_sort)[0] == wanted.id
