-- Operations (revision 0012_operations): paused queues in the fetch, the start of each
-- worker, and the indexes the operations console reads from (docs/operations.md).

-- A worker's start: Procrastinate's own table keeps only its last heartbeat. A row per
-- registered worker, written by a trigger as Procrastinate registers it, gone with it.
CREATE TABLE worker_starts (
    worker_id bigint PRIMARY KEY REFERENCES procrastinate_workers (id) ON DELETE CASCADE,
    started_at timestamp with time zone NOT NULL DEFAULT now()
);

CREATE FUNCTION jobboard_worker_started() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO worker_starts (worker_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobboard_worker_started AFTER INSERT ON procrastinate_workers
    FOR EACH ROW EXECUTE FUNCTION jobboard_worker_started();

INSERT INTO worker_starts (worker_id, started_at)
    SELECT id, last_heartbeat FROM procrastinate_workers ON CONFLICT DO NOTHING;

-- Each queue's waiting and running entries, counted from an index (not the whole table,
-- which keeps finished entries for QUEUE_RETENTION_HOURS), and its oldest waiting one.
CREATE INDEX jobboard_queue_open_idx ON procrastinate_jobs (queue_name, status, scheduled_at, id)
    WHERE status IN ('todo', 'doing');
-- Each queue's failed entries.
CREATE INDEX jobboard_queue_failed_idx ON procrastinate_jobs (queue_name)
    WHERE status = 'failed';
-- The entries that started and finished in the last hours (throughput, lateness and
-- duration): two ranges of one index, joined by hash, not a probe per entry.
CREATE INDEX jobboard_events_timed_idx ON procrastinate_events (type, at)
    WHERE type IN ('started', 'succeeded', 'failed', 'aborted');

-- The fetch with paused queues. The fetch in force until now (long_job_slots_0009.sql) is
-- kept under a name of its own; Procrastinate's entry point takes the paused queues out
-- of the queues a worker asks for and hands it the rest. A paused queue's running entries
-- finish; none of its waiting entries starts until it is resumed. The pause is a row, so it
-- holds across restarts of workers and of the database.
ALTER FUNCTION procrastinate_fetch_job_v2(character varying[], bigint)
    RENAME TO jobboard_fetch_job_unpaused;

CREATE FUNCTION procrastinate_fetch_job_v2(
    target_queue_names character varying[],
    p_worker_id bigint
)
    RETURNS procrastinate_jobs
    LANGUAGE plpgsql
AS $$
DECLARE
    nothing procrastinate_jobs;
    open_queues character varying[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM queue_pauses) THEN
        RETURN jobboard_fetch_job_unpaused(target_queue_names, p_worker_id);
    END IF;
    -- Every queue (NULL, Procrastinate's CLI default; our workers name theirs): the queues
    -- that have a waiting entry.
    open_queues := ARRAY(
        SELECT asked.queue_name
          FROM unnest(COALESCE(target_queue_names, ARRAY(
                   SELECT DISTINCT waiting.queue_name FROM procrastinate_jobs AS waiting
                    WHERE waiting.status = 'todo'
               ))) AS asked(queue_name)
         WHERE NOT EXISTS (
             SELECT 1 FROM queue_pauses AS paused WHERE paused.queue_name = asked.queue_name
         )
    );
    IF cardinality(open_queues) = 0 THEN
        RETURN nothing;
    END IF;
    RETURN jobboard_fetch_job_unpaused(open_queues, p_worker_id);
END;
$$;
