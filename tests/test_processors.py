"""The processors registry, the built-in kinds and the `jobboard.processors` entry points."""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from marshmallow import ValidationError

from tests.support.plugins import installed, write_plugin
from workers import processors
from workers.processors import (
    AttemptInterrupted,
    FlakyFailure,
    JobRun,
    get_processor,
    kinds,
    load_entry_points,
    processor,
    unregister,
)


def run(kind: str, params: dict, attempt: int = 1, **run_fields):
    entry = get_processor(kind)
    assert entry is not None
    job_run = JobRun(job_id=1, owner_id=1, kind=kind, attempt=attempt, max_attempts=3, **run_fields)
    return entry.run(entry.load_params(params), job_run)


def test_the_six_builtins_are_registered():
    assert {"echo", "sleep", "wordcount", "checksum", "flaky", "report"} <= set(kinds())


def test_echo_returns_its_params_unchanged():
    params = {"nested": {"list": [1, "two", None]}, "flag": True}
    assert run("echo", params) == params


def test_sleep_sleeps_and_says_how_long():
    assert run("sleep", {"seconds": 0}) == {"slept": 0}
    assert run("sleep", {"seconds": 0.05}) == {"slept": 0.05}


def test_sleep_stops_when_the_worker_asks_it_to():
    with pytest.raises(AttemptInterrupted):
        run("sleep", {"seconds": 300}, should_abort=lambda: True)


def test_wordcount():
    text = "The cat and the hat.\nThe END, the end!\ndon't stop"
    output = run("wordcount", {"text": text})

    assert output["words"] == 11
    assert output["lines"] == 3
    assert output["characters"] == len(text)
    assert output["top_words"][:3] == [["the", 4], ["end", 2], ["cat", 1]]
    assert ["don't", 1] in output["top_words"]
    assert len(output["top_words"]) == 7


def test_wordcount_keeps_ten_top_words_at_most():
    text = " ".join(f"w{i}" for i in range(30))
    assert len(run("wordcount", {"text": text})["top_words"]) == 10


def test_wordcount_of_empty_text():
    assert run("wordcount", {"text": ""}) == {
        "words": 0,
        "lines": 0,
        "characters": 0,
        "top_words": [],
    }


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5"])
def test_checksum(algorithm):
    output = run("checksum", {"text": "héllo", "algorithm": algorithm})
    expected = hashlib.new(algorithm, "héllo".encode()).hexdigest()
    assert output == {"algorithm": algorithm, "hexdigest": expected}


def test_checksum_defaults_to_sha256():
    assert run("checksum", {"text": "abc"})["hexdigest"] == hashlib.sha256(b"abc").hexdigest()


def test_flaky_fails_its_first_attempts_then_succeeds():
    for attempt in (1, 2):
        with pytest.raises(FlakyFailure, match=f"attempt {attempt} of 2"):
            run("flaky", {"fail_times": 2}, attempt=attempt)
    assert run("flaky", {"fail_times": 2}, attempt=3) == {"attempts": 3}
    assert run("flaky", {"fail_times": 0}) == {"attempts": 1}


def test_flaky_fails_once_by_default():
    assert get_processor("flaky").load_params({}) == {"fail_times": 1}


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("sleep", {}),
        ("sleep", {"seconds": 300.5}),
        ("sleep", {"seconds": True}),
        ("sleep", {"seconds": "NaN"}),
        ("wordcount", {}),
        ("wordcount", {"text": ["a"]}),
        ("checksum", {"text": "a", "algorithm": "sha512"}),
        ("flaky", {"fail_times": -1}),
        ("flaky", {"fail_times": 1.5}),
        ("report", {"anything": 1}),
        ("echo", [1]),
    ],
)
def test_params_schemas_refuse_bad_params(kind, params):
    with pytest.raises(ValidationError):
        get_processor(kind).load_params(params)


def test_decorator_registers_a_kind_with_its_schema():
    from marshmallow import Schema, fields

    class ShoutParams(Schema):
        word = fields.String(required=True)

    @processor("shout", schema=ShoutParams)
    def shout(params, run):
        """Upper-cases a word."""
        return params["word"].upper()

    try:
        entry = get_processor("shout")
        assert entry.function is shout
        assert entry.description == "Upper-cases a word."
        assert run("shout", {"word": "hey"}) == "HEY"
        with pytest.raises(ValidationError):
            entry.load_params({})
    finally:
        unregister("shout")
    assert get_processor("shout") is None


# --- the jobboard.processors entry-point group ---------------------------------------------


PLUGIN_SOURCE = """\
from marshmallow import Schema, fields
from workers.processors import processor

class ReverseParams(Schema):
    text = fields.String(required=True)

@processor("reverse-{suffix}", schema=ReverseParams)
def reverse(params, run):
    return params["text"][::-1]

def length(params, run):
    return len(params)
"""


@pytest.fixture
def plugin_distribution(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An installed distribution whose entry_points.txt declares two kinds, one decorated
    and one plain function."""
    plugin = write_plugin(
        tmp_path, PLUGIN_SOURCE, {"reverse-{suffix}": "reverse", "length-{suffix}": "length"}
    )
    with installed(plugin):
        decorated, plain = plugin.kinds
        yield decorated, plain


def test_entry_points_add_kinds(plugin_distribution):
    decorated, plain = plugin_distribution

    added = load_entry_points(force=True)

    assert {decorated, plain} <= set(added)
    assert {decorated, plain} <= set(kinds())
    assert run(decorated, {"text": "abc"}) == "cba"
    with pytest.raises(ValidationError):
        get_processor(decorated).load_params({})
    # A plain function takes any JSON object.
    assert run(plain, {"a": 1, "b": 2}) == 2


def test_entry_point_kinds_are_accepted_by_the_api(
    plugin_distribution, client, verified_user, auth_headers
):
    from tests.support.jobs import payload

    decorated, _ = plugin_distribution
    load_entry_points(force=True)

    good = client.post(
        "/api/jobs/",
        json=payload(kind=decorated, params={"text": "abc"}),
        headers=auth_headers(verified_user),
    )
    bad = client.post(
        "/api/jobs/",
        json=payload(kind=decorated, params={}),
        headers=auth_headers(verified_user),
    )

    assert good.status_code == 201
    assert bad.status_code == 422
    assert "text" in bad.get_json()["errors"]["json"]["params"]


def test_a_broken_entry_point_is_skipped(tmp_path, caplog):
    suffix = uuid.uuid4().hex[:8]
    dist_info = tmp_path / f"broken_{suffix}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: broken-{suffix}\n")
    (dist_info / "entry_points.txt").write_text(
        f"[jobboard.processors]\nbroken-{suffix} = no_such_module_{suffix}:nothing\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        added = load_entry_points(force=True)
    finally:
        sys.path.remove(str(tmp_path))
    assert f"broken-{suffix}" not in added
    assert f"broken-{suffix}" not in processors.kinds()
    assert "cannot load processor entry point" in caplog.text


def test_the_report_kind_comes_from_the_projects_entry_point():
    """`report` needs the application's services, so it is not a built-in of the leaf
    registry: jobboard's pyproject.toml declares it in the group plugins use."""
    from importlib.metadata import entry_points

    from workers.processors import ENTRY_POINT_GROUP

    (declared,) = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == "report"]
    assert declared.value == "jobboard.jobs.report:report"
    assert get_processor("report").function is declared.load()
