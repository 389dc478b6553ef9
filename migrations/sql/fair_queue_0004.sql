-- Fair use of the queue: a user's jobs start only while fewer than their plan's
-- max_running_jobs of them are running, in the user's own priority order; users take turns
-- by how long their oldest due job has waited. See docs/architecture.md, "The fair queue".
--
-- A queue entry belongs to a user when its args carry "owner_id" (process_job entries).
-- queue_owners keeps, per user with waiting entries, the time the earliest of them is due
-- and the plan's limit. Triggers keep it current whenever an entry enters or leaves
-- `todo` (never when a running entry finishes, so finishing jobs never contend with the
-- fetch); the fetch reads it in due order instead of scanning anybody's backlog.

CREATE TABLE queue_owners (
    owner_id bigint PRIMARY KEY,
    max_running integer NOT NULL DEFAULT 1,
    next_at timestamp with time zone
);
CREATE INDEX queue_owners_next_at_idx ON queue_owners (next_at, owner_id)
    WHERE next_at IS NOT NULL;

CREATE INDEX jobboard_queue_owned_todo_idx ON procrastinate_jobs
    (((args->>'owner_id')::bigint), priority DESC, id)
    WHERE status = 'todo' AND args ? 'owner_id';
CREATE INDEX jobboard_queue_owned_due_idx ON procrastinate_jobs
    (((args->>'owner_id')::bigint), scheduled_at NULLS FIRST)
    WHERE status = 'todo' AND args ? 'owner_id';
CREATE INDEX jobboard_queue_owned_doing_idx ON procrastinate_jobs
    (((args->>'owner_id')::bigint))
    WHERE status = 'doing' AND args ? 'owner_id';
CREATE INDEX jobboard_queue_unowned_todo_idx ON procrastinate_jobs (queue_name, priority DESC, id)
    WHERE status = 'todo' AND NOT (args ? 'owner_id');

CREATE FUNCTION jobboard_refresh_queue_owner(p_owner bigint) RETURNS void
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
        )
     WHERE owner_id = p_owner;
END;
$$;

CREATE FUNCTION jobboard_queue_owner_changed() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM jobboard_refresh_queue_owner((OLD.args->>'owner_id')::bigint);
        RETURN OLD;
    END IF;
    PERFORM jobboard_refresh_queue_owner((NEW.args->>'owner_id')::bigint);
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobboard_queue_owner_inserted
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW WHEN (NEW.args ? 'owner_id' AND NEW.status = 'todo')
    EXECUTE FUNCTION jobboard_queue_owner_changed();
CREATE TRIGGER jobboard_queue_owner_updated
    AFTER UPDATE OF status, scheduled_at ON procrastinate_jobs
    FOR EACH ROW WHEN (NEW.args ? 'owner_id' AND (OLD.status = 'todo' OR NEW.status = 'todo')
        AND (OLD.status IS DISTINCT FROM NEW.status
             OR OLD.scheduled_at IS DISTINCT FROM NEW.scheduled_at))
    EXECUTE FUNCTION jobboard_queue_owner_changed();
CREATE TRIGGER jobboard_queue_owner_deleted
    AFTER DELETE ON procrastinate_jobs
    FOR EACH ROW WHEN (OLD.args ? 'owner_id' AND OLD.status = 'todo')
    EXECUTE FUNCTION jobboard_queue_owner_changed();

-- Procrastinate's fetch, with the fairness rule for entries that belong to a user.
-- Same signature and result as release 3.10's, so its worker calls it unchanged.
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
    -- 1. Entries of nobody (mail, maintenance): Procrastinate's own rule.
    WITH candidate AS (
        SELECT jobs.*
            FROM procrastinate_jobs AS jobs
            WHERE
                NOT EXISTS (
                    SELECT 1
                        FROM procrastinate_jobs AS other_jobs
                        WHERE
                            jobs.lock IS NOT NULL
                            AND other_jobs.lock = jobs.lock
                            AND (
                                other_jobs.status = 'doing'
                                OR
                                (
                                    other_jobs.status = 'todo'
                                    AND (
                                        other_jobs.priority > jobs.priority
                                        OR (
                                        other_jobs.priority = jobs.priority
                                        AND other_jobs.id < jobs.id
                                        )
                                    )
                                )
                            )
                )
                AND jobs.status = 'todo'
                AND NOT (jobs.args ? 'owner_id')
                AND (target_queue_names IS NULL OR jobs.queue_name = ANY( target_queue_names ))
                AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
            ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
            FOR UPDATE OF jobs SKIP LOCKED
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
                SELECT jobs.id INTO passed_id
                    FROM procrastinate_jobs AS jobs
                    WHERE jobs.status = 'todo'
                        AND jobs.args ? 'owner_id'
                        AND (jobs.args->>'owner_id')::bigint = ready.owner_id
                        AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at < candidate_at)
                    ORDER BY jobs.scheduled_at NULLS FIRST LIMIT 1
                    FOR UPDATE OF jobs SKIP LOCKED;
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

-- Entries queued before this revision: tell the queue whose they are.
UPDATE procrastinate_jobs AS q
   SET args = q.args || jsonb_build_object('owner_id', j.owner_id)
  FROM jobs AS j
 WHERE q.task_name = 'process_job' AND q.status IN ('todo', 'doing')
   AND NOT (q.args ? 'owner_id') AND (q.args->>'job_id')::bigint = j.id;
SELECT jobboard_refresh_queue_owner(owner_id)
  FROM (SELECT DISTINCT (args->>'owner_id')::bigint AS owner_id FROM procrastinate_jobs
         WHERE args ? 'owner_id' AND status = 'todo') AS owners;
