-- Long-job slots (revision 0009_long_job_slots). A worker gives long jobs at most
-- LONG_JOB_SLOTS of its slots, so that a short job of anyone finds a slot on time however
-- many long jobs of however many users wait (docs/architecture.md, "Time limits and long jobs").
--
-- The rule, as the fetch applies it:
--   * An entry is LONG when its args carry the key "long" (jobboard puts it there when it
--     queues an attempt of a kind whose time limit is over 10 s; workers/processors.py).
--   * A worker's long-job slots are the setting jobboard.long_job_slots on the connection
--     the fetch runs on (`python -m workers` sets LONG_JOB_SLOTS on each of its pool's
--     connections: Procrastinate calls this function with its own two arguments only).
--   * A worker whose `doing` long entries (worker_id = p_worker_id) number as many as its
--     long-job slots fetches short entries only. Each worker (each process of
--     WORKER_PROCESSES, each machine) counts its own, so each keeps its other slots for
--     short jobs. A worker's fetches are serial (Procrastinate takes a slot, fetches once,
--     repeats), so its count cannot be overtaken by a fetch of its own.
--   * Without the setting, or without a worker id, there is no long-job limit.
--   * With the long slots full, users take turns by their earliest due SHORT entry
--     (queue_owners.next_short_at), and a user's own priority order and turn-taking apply
--     among their short entries: everything the fair fetch does, over short entries only.
-- Everything else is the fair fetch of fair_fetch_0007.sql, unchanged.

ALTER TABLE queue_owners ADD COLUMN next_short_at timestamp with time zone;
CREATE INDEX queue_owners_next_short_at_idx ON queue_owners (next_short_at, owner_id)
    WHERE next_short_at IS NOT NULL;

-- The two owned-entry indexes of fair_queue_0004.sql, for short entries only: with the long
-- slots full, a user's long backlog is never walked to find their short entries.
CREATE INDEX jobboard_queue_short_todo_idx ON procrastinate_jobs
    (((args->>'owner_id')::bigint), priority DESC, id)
    WHERE status = 'todo' AND args ? 'owner_id' AND NOT (args ? 'long');
CREATE INDEX jobboard_queue_short_due_idx ON procrastinate_jobs
    (((args->>'owner_id')::bigint), scheduled_at NULLS FIRST)
    WHERE status = 'todo' AND args ? 'owner_id' AND NOT (args ? 'long');

-- fair_queue_0004.sql's bookkeeping, keeping next_short_at beside next_at.
CREATE OR REPLACE FUNCTION jobboard_refresh_queue_owner(p_owner bigint) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO queue_owners (owner_id) VALUES (p_owner) ON CONFLICT (owner_id) DO NOTHING;
    -- Serialise the updates of one owner: the UPDATE below is a new statement, so it sees
    -- every change committed by whoever held the lock before us.
    PERFORM 1 FROM queue_owners WHERE owner_id = p_owner FOR UPDATE;
    UPDATE queue_owners SET
        max_running = COALESCE(
            (SELECT p.max_running_jobs FROM users u JOIN plans p ON p.name = u.plan_name
              WHERE u.id = p_owner),
            (SELECT p.max_running_jobs FROM plans p WHERE p.name = 'free'),
            1
        ),
        next_at = (
            SELECT COALESCE(j.scheduled_at, '-infinity'::timestamptz) FROM procrastinate_jobs j
             WHERE j.status = 'todo' AND j.args ? 'owner_id'
               AND (j.args->>'owner_id')::bigint = p_owner
             ORDER BY j.scheduled_at NULLS FIRST LIMIT 1
        ),
        next_short_at = (
            SELECT COALESCE(j.scheduled_at, '-infinity'::timestamptz) FROM procrastinate_jobs j
             WHERE j.status = 'todo' AND j.args ? 'owner_id' AND NOT (j.args ? 'long')
               AND (j.args->>'owner_id')::bigint = p_owner
             ORDER BY j.scheduled_at NULLS FIRST LIMIT 1
        )
     WHERE owner_id = p_owner;
END;
$$;

-- Entries waiting when this revision is applied.
UPDATE queue_owners AS o SET next_short_at = (
    SELECT COALESCE(j.scheduled_at, '-infinity'::timestamptz) FROM procrastinate_jobs j
     WHERE j.status = 'todo' AND j.args ? 'owner_id' AND NOT (j.args ? 'long')
       AND (j.args->>'owner_id')::bigint = o.owner_id
     ORDER BY j.scheduled_at NULLS FIRST LIMIT 1
);

-- The fair fetch with the long-job rule. Same signature and result as Procrastinate 3.10's.
CREATE OR REPLACE FUNCTION procrastinate_fetch_job_v2(
    target_queue_names character varying[],
    p_worker_id bigint
)
    RETURNS procrastinate_jobs
    LANGUAGE plpgsql
AS $$
DECLARE
    found_jobs procrastinate_jobs;
    candidate_id bigint;
    candidate_at timestamp with time zone;
    passed_id bigint;
    running bigint;
    waited boolean := false;
    ready record;
    owners refcursor;
    long_slots integer;
    short_only boolean := false;
BEGIN
    -- 1. Entries of nobody (mail, maintenance): Procrastinate's own rule, looked up queue
    -- by queue (revision 0007_fetch_by_queue). Each queue's best entry is the first of
    -- jobboard_queue_unowned_todo_idx (queue_name, priority DESC, id) that passes the rule;
    -- the best of those starts. One query over every target queue had to filter
    -- `queue_name = ANY(...)` and `NOT (args ? 'owner_id')`: the planner walked
    -- Procrastinate's index of every waiting entry, users' included, and with 50,000 of
    -- them queued each fetch took 49 ms to find that no entry of nobody was waiting. A
    -- fetch for every queue (NULL, Procrastinate's CLI default; our workers always name
    -- theirs) looks in each queue that has a waiting entry of nobody. Each queue's candidate
    -- stays locked until this fetch commits (its own short transaction); other workers skip
    -- it meanwhile, as they skip the one that starts.
    WITH candidate AS (
        SELECT jobs.*
            FROM unnest(COALESCE(target_queue_names, ARRAY(
                    SELECT DISTINCT waiting.queue_name FROM procrastinate_jobs AS waiting
                     WHERE waiting.status = 'todo' AND NOT (waiting.args ? 'owner_id')
                 ))) AS target(queue_name),
                LATERAL (
                    SELECT queued.*
                        FROM procrastinate_jobs AS queued
                        WHERE
                            NOT EXISTS (
                                SELECT 1
                                    FROM procrastinate_jobs AS other_jobs
                                    WHERE
                                        queued.lock IS NOT NULL
                                        AND other_jobs.lock = queued.lock
                                        AND (
                                            other_jobs.status = 'doing'
                                            OR
                                            (
                                                other_jobs.status = 'todo'
                                                AND (
                                                    other_jobs.priority > queued.priority
                                                    OR (
                                                    other_jobs.priority = queued.priority
                                                    AND other_jobs.id < queued.id
                                                    )
                                                )
                                            )
                                        )
                            )
                            AND queued.status = 'todo'
                            AND NOT (queued.args ? 'owner_id')
                            AND queued.queue_name = target.queue_name
                            AND (queued.scheduled_at IS NULL OR queued.scheduled_at <= now())
                        ORDER BY queued.priority DESC, queued.id ASC LIMIT 1
                        FOR UPDATE OF queued SKIP LOCKED
                ) AS jobs
            ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
    )
    UPDATE procrastinate_jobs
        SET status = 'doing', worker_id = p_worker_id
        FROM candidate
        WHERE procrastinate_jobs.id = candidate.id
        RETURNING procrastinate_jobs.* INTO found_jobs;
    IF found_jobs.id IS NOT NULL THEN
        RETURN found_jobs;
    END IF;

    -- 2. Users' entries (the jobs queue only). The user whose earliest due entry has
    -- waited longest, among those running fewer than their plan's max_running_jobs, goes
    -- first; their own highest-priority due entry starts. The user's row is locked until
    -- this fetch commits and the count is taken again under the lock, so two workers never
    -- both take a user's last place. Only the first lock is waited for (its holders are
    -- short: another fetch, or a transaction queueing or cancelling that user's job); the
    -- others are skipped when busy, so a fetch never waits while holding a lock.
    IF target_queue_names IS NOT NULL AND NOT ('jobs' = ANY(target_queue_names)) THEN
        RETURN found_jobs;
    END IF;

    -- The long-job rule: a worker holding as many long entries as its long-job slots
    -- fetches short entries only (see the top of this file).
    long_slots := nullif(current_setting('jobboard.long_job_slots', true), '')::integer;
    IF long_slots IS NOT NULL AND p_worker_id IS NOT NULL THEN
        SELECT count(*) >= long_slots INTO short_only FROM procrastinate_jobs AS jobs
         WHERE jobs.worker_id = p_worker_id AND jobs.status = 'doing' AND jobs.args ? 'long';
    END IF;

    IF short_only THEN
        OPEN owners FOR
            SELECT o.owner_id, o.max_running FROM queue_owners AS o
             WHERE o.next_short_at <= now()
             ORDER BY o.next_short_at, o.owner_id;
    ELSE
        OPEN owners FOR
            SELECT o.owner_id, o.max_running FROM queue_owners AS o
             WHERE o.next_at <= now()
             ORDER BY o.next_at, o.owner_id;
    END IF;
    LOOP
        FETCH owners INTO ready;
        EXIT WHEN NOT FOUND;
        SELECT count(*) INTO running FROM procrastinate_jobs AS jobs
         WHERE jobs.status = 'doing' AND jobs.args ? 'owner_id'
           AND (jobs.args->>'owner_id')::bigint = ready.owner_id;
        CONTINUE WHEN running >= ready.max_running;
        IF waited THEN
            PERFORM 1 FROM queue_owners WHERE owner_id = ready.owner_id FOR UPDATE SKIP LOCKED;
        ELSE
            PERFORM 1 FROM queue_owners WHERE owner_id = ready.owner_id FOR UPDATE;
            waited := true;
        END IF;
        CONTINUE WHEN NOT FOUND;
        SELECT count(*) INTO running FROM procrastinate_jobs AS jobs
         WHERE jobs.status = 'doing' AND jobs.args ? 'owner_id'
           AND (jobs.args->>'owner_id')::bigint = ready.owner_id;
        CONTINUE WHEN running >= ready.max_running;
        candidate_id := NULL;
        -- Each query below comes twice, with and without `NOT (args ? 'long')`, written
        -- out: only then does each use its partial index (jobboard_queue_short_*_idx for
        -- short entries), in PL/pgSQL's generic plans too.
        IF short_only THEN
            SELECT jobs.id, jobs.scheduled_at INTO candidate_id, candidate_at
                FROM procrastinate_jobs AS jobs
                WHERE jobs.status = 'todo'
                    AND jobs.args ? 'owner_id'
                    AND NOT (jobs.args ? 'long')
                    AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                    AND (target_queue_names IS NULL OR jobs.queue_name = ANY( target_queue_names ))
                    AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
                    AND (jobs.lock IS NULL OR NOT EXISTS (
                        SELECT 1 FROM procrastinate_jobs AS other_jobs
                         WHERE other_jobs.lock = jobs.lock AND other_jobs.status = 'doing'))
                ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
                FOR UPDATE OF jobs SKIP LOCKED;
        ELSE
            SELECT jobs.id, jobs.scheduled_at INTO candidate_id, candidate_at
                FROM procrastinate_jobs AS jobs
                WHERE jobs.status = 'todo'
                    AND jobs.args ? 'owner_id'
                    AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                    AND (target_queue_names IS NULL OR jobs.queue_name = ANY( target_queue_names ))
                    AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
                    AND (jobs.lock IS NULL OR NOT EXISTS (
                        SELECT 1 FROM procrastinate_jobs AS other_jobs
                         WHERE other_jobs.lock = jobs.lock AND other_jobs.status = 'doing'))
                ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
                FOR UPDATE OF jobs SKIP LOCKED;
        END IF;
        IF candidate_id IS NOT NULL THEN
            -- This start uses the user's earliest turn. When priority chose a job that came
            -- due later, the job it passed takes over the chosen one's (later, already due)
            -- time: a user's jobs take the turns their due times give them, and priority
            -- only decides which of them fills each turn. With the long slots full, the
            -- turn and the job passed are the user's short ones.
            IF candidate_at IS NOT NULL THEN
                passed_id := NULL;
                -- Two bounded index probes (jobboard_queue_owned_due_idx, or
                -- jobboard_queue_short_due_idx), not one `scheduled_at IS NULL OR
                -- scheduled_at < candidate_at` filter, which the index cannot bound: that
                -- one walked every waiting entry of the user scheduled at or after
                -- candidate_at, on every fetch (revision 0006).
                IF short_only THEN
                    SELECT jobs.id INTO passed_id
                        FROM procrastinate_jobs AS jobs
                        WHERE jobs.status = 'todo'
                            AND jobs.args ? 'owner_id'
                            AND NOT (jobs.args ? 'long')
                            AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                            AND jobs.scheduled_at IS NULL
                        LIMIT 1
                        FOR UPDATE OF jobs SKIP LOCKED;
                    IF passed_id IS NULL THEN
                        SELECT jobs.id INTO passed_id
                            FROM procrastinate_jobs AS jobs
                            WHERE jobs.status = 'todo'
                                AND jobs.args ? 'owner_id'
                                AND NOT (jobs.args ? 'long')
                                AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                                AND jobs.scheduled_at < candidate_at
                            ORDER BY jobs.scheduled_at LIMIT 1
                            FOR UPDATE OF jobs SKIP LOCKED;
                    END IF;
                ELSE
                    SELECT jobs.id INTO passed_id
                        FROM procrastinate_jobs AS jobs
                        WHERE jobs.status = 'todo'
                            AND jobs.args ? 'owner_id'
                            AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                            AND jobs.scheduled_at IS NULL
                        LIMIT 1
                        FOR UPDATE OF jobs SKIP LOCKED;
                    IF passed_id IS NULL THEN
                        SELECT jobs.id INTO passed_id
                            FROM procrastinate_jobs AS jobs
                            WHERE jobs.status = 'todo'
                                AND jobs.args ? 'owner_id'
                                AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                                AND jobs.scheduled_at < candidate_at
                            ORDER BY jobs.scheduled_at LIMIT 1
                            FOR UPDATE OF jobs SKIP LOCKED;
                    END IF;
                END IF;
                IF passed_id IS NOT NULL THEN
                    UPDATE procrastinate_jobs SET scheduled_at = candidate_at WHERE id = passed_id;
                END IF;
            END IF;
            UPDATE procrastinate_jobs
                SET status = 'doing', worker_id = p_worker_id
                WHERE id = candidate_id
                RETURNING * INTO found_jobs;
            CLOSE owners;
            RETURN found_jobs;
        END IF;
    END LOOP;
    CLOSE owners;
    RETURN found_jobs;
END;
$$;
