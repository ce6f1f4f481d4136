-- A job's status version: raised by every change of its row, in the same transaction, so the
-- Redis status cache can refuse a write older than what it holds (an older state never shows
-- again once a newer one was cached). Row locks order the updates of one job, so the versions
-- of one job follow its commits exactly.
ALTER TABLE kubemind_jobs ADD COLUMN status_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION kubemind_jobs_bump_status_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.status_version := OLD.status_version + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER kubemind_jobs_status_version BEFORE UPDATE ON kubemind_jobs
    FOR EACH ROW EXECUTE FUNCTION kubemind_jobs_bump_status_version();
