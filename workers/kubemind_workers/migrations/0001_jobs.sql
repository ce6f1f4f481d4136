-- Jobs, their attempts (fencing tokens), the outbox the relay publishes, and webhook attempts.
-- Postgres is the truth for all of it; Redis only caches job status.

CREATE TABLE kubemind_jobs (
    id               uuid PRIMARY KEY,
    model            text        NOT NULL,
    model_version    text        NOT NULL,
    idempotency_key  text        UNIQUE,
    request          jsonb       NOT NULL,
    callback_url     text        NOT NULL,
    state            text        NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    -- Raised by every claim; a result is stored only by the attempt holding the current token.
    fencing_token    bigint      NOT NULL DEFAULT 0,
    result           jsonb,
    result_token     bigint,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    delivery_state   text        NOT NULL DEFAULT 'waiting'
                     CHECK (delivery_state IN ('waiting', 'pending', 'delivered', 'failed')),
    delivery_attempts integer    NOT NULL DEFAULT 0,
    next_delivery_at timestamptz,
    delivery_error   text
);

CREATE INDEX kubemind_jobs_pending_delivery ON kubemind_jobs (next_delivery_at)
    WHERE delivery_state = 'pending';

CREATE TABLE kubemind_job_attempts (
    job_id      uuid        NOT NULL REFERENCES kubemind_jobs (id) ON DELETE CASCADE,
    token       bigint      NOT NULL,
    worker      text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- stored | stale (a newer attempt held the token) | error | dead_lettered; NULL while running
    outcome     text,
    error       text,
    PRIMARY KEY (job_id, token)
);

CREATE TABLE kubemind_outbox (
    id           bigserial PRIMARY KEY,
    job_id       uuid        NOT NULL REFERENCES kubemind_jobs (id) ON DELETE CASCADE,
    topic        text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX kubemind_outbox_unpublished ON kubemind_outbox (id) WHERE published_at IS NULL;

CREATE TABLE kubemind_webhook_attempts (
    job_id      uuid        NOT NULL REFERENCES kubemind_jobs (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    webhook_id  text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    PRIMARY KEY (job_id, attempt)
);
