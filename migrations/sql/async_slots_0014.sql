-- Slots for non-blocking kinds (revision 0014_async_slots): the batched worker of the
-- `jobs` queue holds many attempts of kinds that run on its event loop, and at most
-- WORKER_CONCURRENCY of kinds that block a thread (docs/performance.md). An entry of a
-- non-blocking kind is marked `async` in its args when it is queued
-- (jobboard.jobs.service.entry_marks); an entry without the mark is taken as blocking.
--
-- jobboard_fetch_owned_jobs (batched_queue_0013.sql) gains p_blocking_limit: of the at
-- most p_limit entries it takes, at most p_blocking_limit are blocking (NULL: no such
-- bound, as Procrastinate's single fetch calls it). Blocking entries past that bound are
-- passed over and stay queued, as long entries past the long-job slots are; with no
-- blocking slot free, they are not even read, so that a user's places go to the entries
-- that can start. Everything else is 0013's function unchanged.

DROP FUNCTION jobboard_fetch_jobs(bigint, integer);
DROP FUNCTION jobboard_fetch_owned_jobs(character varying[], bigint, integer);

CREATE FUNCTION jobboard_fetch_owned_jobs(
    target_queue_names character varying[],
    p_worker_id bigint,
    p_limit integer,
    p_blocking_limit integer DEFAULT NULL
)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    -- A batch is a few entries: without this the planner expects 1,000 and joins them to
    -- the jobs by scanning every job (the batched start, jobboard/jobs/transitions.py).
    ROWS 10
AS $$
DECLARE
    taken bigint[] := '{}';
    chosen bigint[];
    candidate record;
    passed_id bigint;
    running bigint;
    room integer;
    -- Only the first lock of a fetch is waited for, and only while it has taken nothing:
    -- a fetch that holds users' locks never waits for another's (two batches waiting for
    -- each other's users would deadlock).
    waited boolean := false;
    ready record;
    owners refcursor;
    long_slots integer;
    long_free integer;
    short_only boolean := false;
    blocking_free integer := p_blocking_limit;
BEGIN
    -- Users' entries (the jobs queue only). The user whose earliest due entry has waited
    -- longest, among those running fewer than their plan's max_running_jobs, goes first,
    -- and takes as many of the free places as their limit leaves them; then the next
    -- user. A user's own entries start in their priority order. The user's row is locked
    -- until this fetch commits and the count is taken again under the lock, so two workers
    -- never both take a user's last place. Busy users are skipped, never waited for, but
    -- for the first lock of a fetch that holds none (its holders are short: another fetch,
    -- or a transaction queueing or cancelling that user's job).

    -- The long-job rule: a worker holding as many long entries as its long-job slots
    -- fetches short entries only (long_job_slots_0009.sql states it whole).
    long_slots := nullif(current_setting('jobboard.long_job_slots', true), '')::integer;
    IF long_slots IS NOT NULL AND p_worker_id IS NOT NULL THEN
        SELECT long_slots - count(*) INTO long_free FROM procrastinate_jobs AS jobs
         WHERE jobs.worker_id = p_worker_id AND jobs.status = 'doing' AND jobs.args ? 'long';
        short_only := long_free <= 0;
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
        EXIT WHEN cardinality(taken) >= p_limit;
        FETCH owners INTO ready;
        EXIT WHEN NOT FOUND;
        SELECT count(*) INTO running FROM procrastinate_jobs AS jobs
         WHERE jobs.status = 'doing' AND jobs.args ? 'owner_id'
           AND (jobs.args->>'owner_id')::bigint = ready.owner_id;
        CONTINUE WHEN running >= ready.max_running;
        IF waited OR cardinality(taken) > 0 THEN
            PERFORM 1 FROM queue_owners WHERE owner_id = ready.owner_id FOR UPDATE SKIP LOCKED;
        ELSE
            PERFORM 1 FROM queue_owners WHERE owner_id = ready.owner_id FOR UPDATE;
            waited := true;
        END IF;
        CONTINUE WHEN NOT FOUND;
        SELECT count(*) INTO running FROM procrastinate_jobs AS jobs
         WHERE jobs.status = 'doing' AND jobs.args ? 'owner_id'
           AND (jobs.args->>'owner_id')::bigint = ready.owner_id;
        room := least(ready.max_running - running, p_limit - cardinality(taken));
        CONTINUE WHEN room <= 0;
        -- Each query below comes twice, with and without `NOT (args ? 'long')`, written
        -- out: only then does each use its partial index (jobboard_queue_short_*_idx for
        -- short entries), in PL/pgSQL's generic plans too. Long entries past the worker's
        -- free long slots are passed over (they stay queued).
        IF short_only THEN
            SELECT array_agg(id) INTO chosen FROM (
                SELECT locked.id, locked.blocking,
                       count(*) FILTER (WHERE locked.blocking)
                           OVER (ORDER BY locked.priority DESC, locked.id ASC) AS blockings
                    FROM (
                        SELECT jobs.id, jobs.priority, NOT (jobs.args ? 'async') AS blocking
                            FROM procrastinate_jobs AS jobs
                            WHERE jobs.status = 'todo'
                                AND jobs.args ? 'owner_id'
                                AND NOT (jobs.args ? 'long')
                                AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                                AND (target_queue_names IS NULL OR jobs.queue_name = ANY( target_queue_names ))
                                AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
                                AND (blocking_free IS NULL OR blocking_free > 0 OR jobs.args ? 'async')
                                AND (jobs.lock IS NULL OR NOT EXISTS (
                                    SELECT 1 FROM procrastinate_jobs AS other_jobs
                                     WHERE other_jobs.lock = jobs.lock AND other_jobs.status = 'doing'))
                            ORDER BY jobs.priority DESC, jobs.id ASC LIMIT room
                            FOR UPDATE OF jobs SKIP LOCKED
                    ) AS locked
            ) AS ranked
            WHERE blocking_free IS NULL OR NOT ranked.blocking OR ranked.blockings <= blocking_free;
        ELSE
            SELECT array_agg(id) INTO chosen FROM (
                SELECT locked.id, locked.long, locked.blocking,
                       count(*) FILTER (WHERE locked.long)
                           OVER (ORDER BY locked.priority DESC, locked.id ASC) AS longs,
                       count(*) FILTER (WHERE locked.blocking)
                           OVER (ORDER BY locked.priority DESC, locked.id ASC) AS blockings
                    FROM (
                        SELECT jobs.id, jobs.priority, jobs.args ? 'long' AS long,
                               NOT (jobs.args ? 'async') AS blocking
                            FROM procrastinate_jobs AS jobs
                            WHERE jobs.status = 'todo'
                                AND jobs.args ? 'owner_id'
                                AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                                AND (target_queue_names IS NULL OR jobs.queue_name = ANY( target_queue_names ))
                                AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
                                AND (blocking_free IS NULL OR blocking_free > 0 OR jobs.args ? 'async')
                                AND (jobs.lock IS NULL OR NOT EXISTS (
                                    SELECT 1 FROM procrastinate_jobs AS other_jobs
                                     WHERE other_jobs.lock = jobs.lock AND other_jobs.status = 'doing'))
                            ORDER BY jobs.priority DESC, jobs.id ASC LIMIT room
                            FOR UPDATE OF jobs SKIP LOCKED
                    ) AS locked
            ) AS ranked
            WHERE (long_free IS NULL OR NOT ranked.long OR ranked.longs <= long_free)
              AND (blocking_free IS NULL OR NOT ranked.blocking OR ranked.blockings <= blocking_free);
        END IF;
        CONTINUE WHEN chosen IS NULL;
        IF blocking_free IS NOT NULL THEN
            SELECT blocking_free - count(*) INTO blocking_free FROM procrastinate_jobs AS jobs
             WHERE jobs.id = ANY(chosen) AND NOT (jobs.args ? 'async');
        END IF;
        IF long_free IS NOT NULL THEN
            SELECT long_free - count(*) INTO long_free FROM procrastinate_jobs AS jobs
             WHERE jobs.id = ANY(chosen) AND jobs.args ? 'long';
            short_only := long_free <= 0;
        END IF;
        RETURN QUERY UPDATE procrastinate_jobs
            SET status = 'doing', worker_id = p_worker_id
            WHERE id = ANY(chosen)
            RETURNING *;
        taken := taken || chosen;
        -- Each start uses one of the user's earliest turns. When priority chose a job that
        -- came due later, the job it passed takes over the chosen one's (later, already
        -- due) time: a user's jobs take the turns their due times give them, and priority
        -- only decides which of them fills each turn. With the long slots full, the turns
        -- and the jobs passed are the user's short ones. Two bounded index probes
        -- (jobboard_queue_owned_due_idx, or jobboard_queue_short_due_idx), not one
        -- `scheduled_at IS NULL OR scheduled_at < candidate_at` filter, which the index
        -- cannot bound (revision 0006).
        FOR candidate IN
            SELECT jobs.id, jobs.scheduled_at FROM procrastinate_jobs AS jobs
             WHERE jobs.id = ANY(chosen) AND jobs.scheduled_at IS NOT NULL
             ORDER BY jobs.priority DESC, jobs.id ASC
        LOOP
            passed_id := NULL;
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
                            AND jobs.scheduled_at < candidate.scheduled_at
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
                            AND jobs.scheduled_at < candidate.scheduled_at
                        ORDER BY jobs.scheduled_at LIMIT 1
                        FOR UPDATE OF jobs SKIP LOCKED;
                END IF;
            END IF;
            IF passed_id IS NOT NULL THEN
                UPDATE procrastinate_jobs SET scheduled_at = candidate.scheduled_at
                 WHERE id = passed_id;
            END IF;
        END LOOP;
    END LOOP;
    CLOSE owners;
END;
$$;


CREATE FUNCTION jobboard_fetch_jobs(p_worker_id bigint, p_limit integer, p_blocking_limit integer)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
    ROWS 10
AS $$
BEGIN
    -- A paused jobs queue (queue_pauses, revision 0012_operations) gives no entry; asked
    -- before the fetch, which takes the entries it returns.
    IF EXISTS (SELECT 1 FROM queue_pauses WHERE queue_name = 'jobs') THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM jobboard_fetch_owned_jobs(
        ARRAY['jobs']::character varying[], p_worker_id, p_limit, p_blocking_limit);
END;
$$;
