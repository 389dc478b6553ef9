"""Realistic demo data: `flask demo seed` fills a database with users, jobs of every kind
and status, results and bids, fast enough for 100,000 jobs (COPY in chunks)."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from faker import Faker
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, func, insert, select, text

from jobboard.auth.passwords import hash_password
from jobboard.extensions import db
from jobboard.jobs.service import schedule_job
from jobboard.models import OPEN_JOB_STATUSES, BidStatus, Job, JobStatus, User, now_utc

logger = logging.getLogger(__name__)

DEMO_EMAIL_PATTERN = "demo-{}@example.com"
DEMO_EMAIL_LIKE = "demo-%@example.com"
DEMO_PASSWORD = "demo-password"
SEED_CHUNK_SIZE = 2000

# Names, companies and job titles come from Faker (seeded with the run's seed); a pool of
# client companies is drawn once per run, so the per-job work stays a random.choice.
CLIENT_POOL_SIZE = 12
SKILLS = (
    "python", "sql", "postgresql", "flask", "data-cleaning", "etl", "devops", "docker",
    "copywriting", "translation", "design", "seo", "statistics", "excel", "javascript",
    "react", "testing", "security", "technical-writing", "machine-learning", "scraping",
)  # fmt: skip
DOCUMENTS = (
    "Q3 board minutes", "customer survey answers", "release notes v2.4", "privacy policy",
    "onboarding guide", "support ticket export", "product FAQ", "press release draft",
)  # fmt: skip
FILES = (
    "invoices-2026-10.csv", "backup-db.tar.gz", "photos-event.zip", "contracts.pdf",
    "firmware-1.8.3.bin", "catalogue.xlsx", "logs-web-01.gz", "dataset-v3.parquet",
)  # fmt: skip
SENTENCES = (
    "The quarterly numbers came in above the forecast for the third time in a row.",
    "Customers asked for faster exports and a clearer invoice layout.",
    "Shipping delays in the north region were caused by a warehouse migration.",
    "The team agreed to retire the legacy API by the end of the year.",
    "Support tickets dropped by a fifth after the new help center launched.",
    "We still need a volunteer to review the accessibility audit.",
    "Payments now settle within two business days in every supported currency.",
    "The data team will publish a cleaned dataset every Monday morning.",
)
ERRORS = (
    "TimeoutError: upstream service did not answer within 30 s",
    "ConnectionError: connection reset by peer",
    "ValueError: input contained an invalid UTF-8 sequence",
    "PermissionError: storage bucket refused the write",
    "RuntimeError: quota exceeded for this month",
)
BID_COMMENTS = (
    "I have done very similar work for two clients this year; happy to share references.",
    "Can start today and deliver well before the deadline.",
    "Fixed price, includes one round of changes.",
    "I would automate this so it keeps running after delivery.",
    "Experienced with this exact stack; questions welcome.",
    None,
)
CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "CAD")
HASH_ALGORITHMS = ("sha256", "sha256", "sha1", "md5")

# Share of each status among seeded jobs: mostly history, some queued for real.
STATUS_WEIGHTS = {
    JobStatus.COMPLETED: 70,
    JobStatus.FAILED: 8,
    JobStatus.CANCELLED: 10,
    JobStatus.PENDING: 10,
    JobStatus.IN_PROGRESS: 2,
}
KINDS = ("echo", "sleep", "wordcount", "checksum", "flaky", "report")
# `report` emails its owner, so only finished demo jobs are reports: nothing queued by the
# seeder sends mail to the demo addresses.
QUEUED_KINDS = ("echo", "sleep", "wordcount", "checksum", "flaky")
PURE_KINDS = ("echo", "wordcount", "checksum")
# The first jobs of a run show every status and every kind at least once.
SHOWCASE = (
    (JobStatus.COMPLETED, "report"),
    (JobStatus.FAILED, "flaky"),
    (JobStatus.CANCELLED, "echo"),
    (JobStatus.PENDING, "sleep"),
    (JobStatus.IN_PROGRESS, "wordcount"),
    (JobStatus.COMPLETED, "checksum"),
)


@dataclass
class SeedResult:
    """What a run of `seed` did."""

    users_created: int
    users_reused: int
    jobs_existing: int
    # "jobs", one count per status, "bids", "queued" (queue entries made)
    totals: Counter[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "users_created": self.users_created,
            "users_reused": self.users_reused,
            "jobs_existing": self.jobs_existing,
            "jobs_created": self.totals["jobs"],
            "jobs_created_by_status": {s.value: self.totals[s.value] for s in JobStatus},
            "bids_created": self.totals["bids"],
            "queue_entries_created": self.totals["queued"],
        }

    def summary(self) -> str:
        return (
            f"seeded {self.totals['jobs']} job(s) ("
            + ", ".join(f"{s.value} {self.totals[s.value]}" for s in JobStatus)
            + f"), {self.totals['bids']} bid(s), {self.totals['queued']} queue entr(y/ies)"
        )


def seed(
    user_count: int,
    job_count: int,
    password: str,
    random_seed: int | None = None,
    progress: Callable[[int], AbstractContextManager[Any]] | None = None,
    note: Callable[[str], None] = logger.info,
) -> SeedResult:
    """Create demo users demo-1..N@example.com and top their jobs up to `job_count`.

    Jobs cover every kind and status with plausible names, params, timestamps and results,
    and get bids in every status. Pending jobs are queued for real (the worker runs them at
    their scheduled time); in-progress ones are queued as interrupted attempts, so the
    worker finishes them. Running it again reuses the users and adds only missing jobs.
    `progress(total)` makes a context whose `update(n)` is told of each chunk inserted;
    `note` is told what is about to be done.
    """
    rng = random.Random(random_seed)
    fake = Faker("en_US")
    fake.seed_instance(rng.getrandbits(64))
    now = now_utc()
    emails, created_users = _ensure_demo_users(rng, fake, user_count, password, now)
    existing_jobs = db.session.scalar(
        select(func.count())
        .select_from(Job)
        .join(User, Job.owner_id == User.id)
        .where(User.email.like(DEMO_EMAIL_LIKE))
    )
    missing = max(0, job_count - existing_jobs)
    note(
        f"demo users: {created_users} created, {len(emails) - created_users} reused;"
        f" demo jobs: {existing_jobs} exist, {missing} to create"
    )

    totals: Counter[str] = Counter()
    clients = tuple(fake.unique.company() for _ in range(CLIENT_POOL_SIZE))
    factory = DemoJobFactory(rng, emails, now, clients)
    with _quiet("procrastinate"), (progress or _no_progress)(missing) as bar:
        for size in _chunks(missing, SEED_CHUNK_SIZE):
            factory.now = now_utc()
            totals.update(_insert_demo_chunk(factory, size))
            db.session.commit()
            bar.update(size)
    if missing:
        _refresh_statistics(
            ("jobs", "job_results", "bids", "procrastinate_jobs", "procrastinate_events")
        )
    return SeedResult(created_users, len(emails) - created_users, existing_jobs, totals)


@contextmanager
def _no_progress(_total: int) -> Iterator[Any]:
    class Silent:
        def update(self, n_steps: int) -> None:
            pass

    yield Silent()


def _refresh_statistics(tables: Sequence[str]) -> None:
    """VACUUM (ANALYZE) after a bulk load: planner statistics, and a visibility map that
    makes the dashboard's per-user counts index-only scans now rather than after
    autovacuum comes round."""
    engine = db.engine
    if isinstance(engine, Engine):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in tables:
                connection.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        return
    # The session is bound to a caller's open transaction (as in the tests), where VACUUM
    # cannot run; statistics alone will do.
    for table in tables:
        db.session.execute(text(f"ANALYZE {table}"))
    db.session.commit()


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a chatty logger's INFO lines (one per deferred job) for a while."""
    chatty = logging.getLogger(logger_name)
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        yield
    finally:
        chatty.setLevel(level)


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def _ensure_demo_users(
    rng: random.Random, fake: Faker, count: int, password: str, now: datetime
) -> tuple[dict[int, str], int]:
    """Demo users demo-1..count by id (created when missing, with a profile) and how many
    were new."""
    emails = [DEMO_EMAIL_PATTERN.format(n) for n in range(1, count + 1)]
    found = db.session.execute(
        select(func.lower(User.email), User.id).where(func.lower(User.email).in_(emails))
    )
    existing = {email: user_id for email, user_id in found}
    missing = [email for email in emails if email not in existing]
    if missing:
        # One hash for all: hashing is deliberately slow, and these are throwaway accounts.
        password_hash = hash_password(password)
        rows = [_demo_profile(rng, fake, email, password_hash, now) for email in missing]
        created = db.session.execute(insert(User).returning(User.email, User.id), rows)
        existing.update({email: user_id for email, user_id in created})
        db.session.commit()
    return {existing[email]: email for email in emails}, len(missing)


def _demo_profile(
    rng: random.Random, fake: Faker, email: str, password_hash: str, now: datetime
) -> dict[str, Any]:
    joined = now - timedelta(days=rng.uniform(60, 400))
    return {
        "email": email,
        "password_hash": password_hash,
        "is_email_verified": True,
        "email_verified_at": joined + timedelta(minutes=rng.uniform(1, 30)),
        "display_name": f"{fake.first_name()} {fake.last_name()}",
        "bio": f"{fake.job()} in {fake.city()}." if rng.random() < 0.85 else None,
        "skills": rng.sample(SKILLS, rng.randint(2, 5)),
        "created_at": joined,
        "updated_at": joined,
    }


@dataclass
class DemoBid:
    bidder_id: int
    status: BidStatus


@dataclass
class DemoJob:
    row: dict[str, Any]
    output: Any = None
    duration_ms: int | None = None
    bids: list[DemoBid] = field(default_factory=list)


JSONB_COLUMNS = {"params", "output"}


def _insert_demo_chunk(factory: DemoJobFactory, size: int) -> Counter[str]:
    """Insert `size` jobs with their results and bids in bulk; queue the unfinished ones."""
    planned = [factory.job() for _ in range(size)]
    # Ids drawn from the sequence up front let one COPY load the jobs, their results and
    # their bids, an order of magnitude faster than multi-row INSERTs.
    job_ids = db.session.scalars(
        text("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, :n)"),
        {"n": size},
    ).all()
    results, bids = [], []
    for job_id, job in zip(job_ids, planned, strict=True):
        row = job.row
        row["id"] = job_id
        if row["status"] in (JobStatus.COMPLETED, JobStatus.FAILED):
            results.append(
                {
                    "job_id": job_id,
                    "output": job.output,
                    "error_message": row["last_error"] if row["status"] == "failed" else None,
                    "completed_at": row["finished_at"],
                    "duration_ms": job.duration_ms,
                }
            )
        bids.extend(factory.bid_rows(job_id, job))
    _copy_rows("jobs", [job.row for job in planned])
    _copy_rows("job_results", results)
    _copy_rows("bids", bids)

    unfinished_ids = [job.row["id"] for job in planned if job.row["status"] in OPEN_JOB_STATUSES]
    unfinished = db.session.scalars(select(Job).where(Job.id.in_(unfinished_ids))).all()
    for job in unfinished:
        # An in-progress demo job has no worker; queued now, the worker treats it as an
        # interrupted attempt and runs it again, as after a crash.
        schedule_job(job, job.scheduled_time if job.status == JobStatus.PENDING else None)
    db.session.flush()
    for job in unfinished:  # keeps the session small over a long run
        db.session.expunge(job)

    counts: Counter[str] = Counter(job.row["status"] for job in planned)
    counts.update(jobs=size, bids=len(bids), queued=len(unfinished_ids))
    return counts


def _copy_rows(table: str, rows: list[dict[str, Any]]) -> None:
    """COPY dict rows (all with the same keys) into `table` on the session's transaction."""
    if not rows:
        return
    columns = list(rows[0])
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    connection = db.session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                [
                    Jsonb(row[column])
                    if column in JSONB_COLUMNS and row[column] is not None
                    else row[column]
                    for column in columns
                ]
            )


class DemoJobFactory:
    """Plausible jobs: names and params per kind, timestamps consistent with the status,
    outputs computed the way the processors would, and bids that fit the job's state."""

    def __init__(
        self,
        rng: random.Random,
        emails: Mapping[int, str],
        now: datetime,
        clients: Sequence[str],
    ) -> None:
        self.rng = rng
        self.clients = clients
        self.emails = emails
        self.user_ids = list(emails)
        self.now = now
        self.statuses = list(STATUS_WEIGHTS)
        self.weights = list(STATUS_WEIGHTS.values())
        self.showcase = list(SHOWCASE)

    def job(self) -> DemoJob:
        rng = self.rng
        if self.showcase:
            status, kind = self.showcase.pop(0)
        else:
            status = rng.choices(self.statuses, self.weights)[0]
            unfinished = status in OPEN_JOB_STATUSES
            kind = rng.choice(QUEUED_KINDS if unfinished else KINDS)
        name, description, params = self._content(kind)
        max_attempts = rng.choice((1, 2, 3, 3, 3, 3, 5))
        if kind == "flaky":
            # Failed flaky jobs failed every attempt; the others succeed within their attempts.
            fail_times = (
                rng.randint(max_attempts, 10)
                if status == JobStatus.FAILED
                else rng.randint(0, max_attempts - 1)
            )
            params = {"fail_times": fail_times}
            name = (
                f"Retry drill: {fail_times} planned failure{'s' if fail_times > 1 else ''}"
                if fail_times
                else "Retry drill: no planned failure"
            )
        owner_id = rng.choice(self.user_ids)
        row: dict[str, Any] = {
            "owner_id": owner_id,
            "assignee_id": None,
            "name": name,
            "description": description,
            "kind": kind,
            "params": params,
            "status": status.value,
            "priority": rng.choice((0, 0, 0, 0, 1, 5, 10)),
            "max_attempts": max_attempts,
            "attempts": 0,
            "started_at": None,
            "finished_at": None,
            "last_error": None,
        }
        job = DemoJob(row=row)
        getattr(self, f"_timeline_{status.value}")(job)
        row["updated_at"] = max(
            t for t in (row["created_at"], row["started_at"], row["finished_at"]) if t
        )
        job.bids = self._bids(owner_id, status)
        accepted = [bid for bid in job.bids if bid.status == BidStatus.ACCEPTED]
        if accepted:
            row["assignee_id"] = accepted[0].bidder_id
        return job

    # Names, descriptions and params by kind.
    def _content(self, kind: str) -> tuple[str, str | None, dict[str, Any]]:
        rng = self.rng
        client = rng.choice(self.clients)
        if kind == "echo":
            return (
                f"Ping {client} webhook",
                f"Send a test payload to {client}'s endpoint and keep the answer.",
                {"message": f"hello from jobboard to {client}", "ticket": rng.randint(1000, 9999)},
            )
        if kind == "sleep":
            seconds = rng.choice((1, 2, 3, 5, 8, 13))
            return (
                f"Nightly backup simulation for {client}",
                "Stands in for a long-running export; takes a few seconds.",
                {"seconds": seconds},
            )
        if kind == "wordcount":
            document = rng.choice(DOCUMENTS)
            text_ = " ".join(rng.sample(SENTENCES, rng.randint(2, 5)))
            return f"Word count of {document}", f"Statistics for the {document}.", {"text": text_}
        if kind == "checksum":
            file = rng.choice(FILES)
            algorithm = rng.choice(HASH_ALGORITHMS)
            return (
                f"Verify {file} ({algorithm})",
                f"Integrity check of {file} before it is archived.",
                {"text": f"{file}:{rng.getrandbits(64):016x}", "algorithm": algorithm},
            )
        if kind == "flaky":
            return "Retry drill", "Fails on purpose to exercise retries.", {"fail_times": 0}
        return (
            f"Weekly status report for {client}",
            "Emails the owner a summary of their jobs by status.",
            {},
        )

    def _output(self, job: DemoJob) -> Any:
        row = job.row
        params = row["params"]
        kind = row["kind"]
        if kind == "sleep":
            return {"slept": params["seconds"]}
        if kind in PURE_KINDS:
            from workers.processors import JobRun, get_processor

            # What the real processor returns for these params (they have no side effects).
            attempt = JobRun(
                job_id=0,
                owner_id=row["owner_id"],
                kind=kind,
                attempt=row["attempts"],
                max_attempts=row["max_attempts"],
            )
            return get_processor(kind).run(params, attempt)
        if kind == "flaky":
            return {"attempts": row["attempts"]}
        counts = {status.value: self.rng.randint(0, 40) for status in JobStatus}
        return {"emailed": self.emails[row["owner_id"]], "counts": counts}

    def _duration_ms(self, kind: str, params: dict[str, Any]) -> int:
        if kind == "sleep":
            return params["seconds"] * 1000 + self.rng.randint(1, 40)
        return self.rng.randint(2, 400)

    def _finished_timeline(self, job: DemoJob, attempts: int) -> None:
        rng, row = self.rng, job.row
        created = self.now - timedelta(days=rng.uniform(0.05, 60))
        row["created_at"] = created
        row["scheduled_time"] = created + timedelta(minutes=rng.uniform(1, 45))
        duration = self._duration_ms(row["kind"], row["params"])
        # Retries waited 2 s, 4 s, ... before each further attempt.
        backoff = sum(2 ** (n - 1) * 2 for n in range(1, attempts))
        started = row["scheduled_time"] + timedelta(seconds=rng.uniform(0.01, 0.6) + backoff)
        row["started_at"] = started
        row["finished_at"] = started + timedelta(milliseconds=duration)
        row["attempts"] = attempts
        job.duration_ms = duration

    def _timeline_completed(self, job: DemoJob) -> None:
        row = job.row
        attempts = row["params"]["fail_times"] + 1 if row["kind"] == "flaky" else 1
        if row["kind"] != "flaky" and row["max_attempts"] > 1 and self.rng.random() < 0.05:
            attempts = 2
            row["last_error"] = self.rng.choice(ERRORS)
        self._finished_timeline(job, attempts)
        job.output = self._output(job)

    def _timeline_failed(self, job: DemoJob) -> None:
        row = job.row
        self._finished_timeline(job, row["max_attempts"])
        if row["kind"] == "flaky":
            attempt, planned = row["max_attempts"], row["params"]["fail_times"]
            row["last_error"] = f"FlakyFailure: planned failure of attempt {attempt} of {planned}"
        else:
            row["last_error"] = self.rng.choice(ERRORS)

    def _timeline_cancelled(self, job: DemoJob) -> None:
        rng, row = self.rng, job.row
        created = self.now - timedelta(days=rng.uniform(0.05, 60))
        row["created_at"] = created
        row["scheduled_time"] = created + timedelta(hours=rng.uniform(1, 72))
        row["finished_at"] = created + timedelta(minutes=rng.uniform(1, 55))

    def _timeline_pending(self, job: DemoJob) -> None:
        rng, row = self.rng, job.row
        row["created_at"] = self.now - timedelta(hours=rng.uniform(0, 72))
        row["scheduled_time"] = self.now + timedelta(minutes=rng.uniform(1, 3 * 24 * 60))
        if row["max_attempts"] > 1 and rng.random() < 0.1:
            # Waiting for a retry after a failed attempt.
            row["attempts"] = 1
            row["last_error"] = rng.choice(ERRORS)

    def _timeline_in_progress(self, job: DemoJob) -> None:
        rng, row = self.rng, job.row
        row["created_at"] = self.now - timedelta(hours=rng.uniform(0.2, 48))
        row["scheduled_time"] = self.now - timedelta(seconds=rng.uniform(5, 600))
        row["started_at"] = row["scheduled_time"] + timedelta(seconds=rng.uniform(0.01, 0.5))
        row["attempts"] = 1
        # The worker counts the seeded attempt as interrupted; leave room for one more.
        row["max_attempts"] = max(2, row["max_attempts"])

    # Bids, consistent with what the job went through.
    def _bids(self, owner_id: int, status: JobStatus) -> list[DemoBid]:
        rng = self.rng
        if rng.random() > 0.35:
            return []
        others = [user_id for user_id in self.user_ids if user_id != owner_id]
        bidders = rng.sample(others, min(len(others), rng.randint(1, 4)))
        if status == JobStatus.CANCELLED:
            return [
                DemoBid(b, rng.choice((BidStatus.REJECTED, BidStatus.WITHDRAWN))) for b in bidders
            ]
        # Only completed jobs were handed to a person (awarded, then delivered): an assigned
        # job is never pending or failed, and the demo's in-progress jobs are the queue's.
        assign_chance = 0.7 if status == JobStatus.COMPLETED else 0.0
        if rng.random() < assign_chance:
            winner, *losers = bidders
            return [DemoBid(winner, BidStatus.ACCEPTED)] + [
                DemoBid(
                    b, rng.choice((BidStatus.REJECTED, BidStatus.REJECTED, BidStatus.WITHDRAWN))
                )
                for b in losers
            ]
        if status in OPEN_JOB_STATUSES:
            return [
                DemoBid(b, rng.choice((BidStatus.PENDING, BidStatus.PENDING, BidStatus.WITHDRAWN)))
                for b in bidders
            ]
        # A finished job nobody was given: the bids were withdrawn or went nowhere.
        return [DemoBid(b, rng.choice((BidStatus.REJECTED, BidStatus.WITHDRAWN))) for b in bidders]

    def bid_rows(self, job_id: int, job: DemoJob) -> list[dict[str, Any]]:
        rng, row = self.rng, job.row
        rows = []
        for bid in job.bids:
            created = min(self.now, row["created_at"] + timedelta(hours=rng.uniform(0.1, 30)))
            decided = min(self.now, created + timedelta(hours=rng.uniform(0.1, 24)))
            rows.append(
                {
                    "job_id": job_id,
                    "bidder_id": bid.bidder_id,
                    "comment": rng.choice(BID_COMMENTS),
                    "proposed_deadline": _deadline(created.date(), rng),
                    "fee": Decimal(rng.randint(1500, 90000)) / 100,
                    "currency": rng.choice(CURRENCIES),
                    "status": bid.status.value,
                    "created_at": created,
                    "updated_at": created if bid.status == BidStatus.PENDING else decided,
                }
            )
        return rows


def _deadline(bid_day: date, rng: random.Random) -> date:
    return bid_day + timedelta(days=rng.randint(1, 30))
