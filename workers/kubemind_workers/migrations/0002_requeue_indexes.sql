-- The relay's periodic look for unfinished jobs idle too long (their message may be lost), and
-- the outbox rows of one job.
CREATE INDEX kubemind_jobs_unfinished ON kubemind_jobs (updated_at) WHERE state IN ('queued', 'running');
CREATE INDEX kubemind_outbox_job ON kubemind_outbox (job_id);
