-- The trace context of the request that submitted the job (W3C traceparent/tracestate): the
-- worker's and the webhook sender's spans continue that trace.
ALTER TABLE kubemind_jobs ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}'::jsonb;
