-- The fair fetch of fair_fetch_0006.sql with the entries of nobody looked up queue by queue
-- (revision 0007_fetch_by_queue). Same signature and result.
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
    FOR ready IN
        SELECT o.owner_id, o.max_running FROM queue_owners AS o
         WHERE o.next_at <= now()
         ORDER BY o.next_at, o.owner_id
    LOOP
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
        IF candidate_id IS NOT NULL THEN
            -- This start uses the user's earliest turn. When priority chose a job that came
            -- due later, the job it passed takes over the chosen one's (later, already due)
            -- time: a user's jobs take the turns their due times give them, and priority
            -- only decides which of them fills each turn.
            IF candidate_at IS NOT NULL THEN
                passed_id := NULL;
                -- Two bounded index probes (jobboard_queue_owned_due_idx), not one
                -- `scheduled_at IS NULL OR scheduled_at < candidate_at` filter, which the
                -- index cannot bound: that one walked every waiting entry of the user
                -- scheduled at or after candidate_at, on every fetch (revision 0006).
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
                IF passed_id IS NOT NULL THEN
                    UPDATE procrastinate_jobs SET scheduled_at = candidate_at WHERE id = passed_id;
                END IF;
            END IF;
            UPDATE procrastinate_jobs
                SET status = 'doing', worker_id = p_worker_id
                WHERE id = candidate_id
                RETURNING * INTO found_jobs;
            RETURN found_jobs;
        END IF;
    END LOOP;
    RETURN found_jobs;
END;
$$;
