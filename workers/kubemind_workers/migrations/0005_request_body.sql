-- A job's request as the bytes of its v2 REST body, the binary-tensor extension's form when
-- request_json_length is set (a JSON header of that many bytes, then the tensors' data). An
-- uploaded image's pixels written as a jsonb array of 150,528 numbers, and read back, cost the
-- writer and the worker tens of milliseconds each; bytea is stored as sent. EXTERNAL: out of
-- line and not compressed (pixels hardly compress; compressing them costs CPU on every write).
-- Rows written before this migration keep their jsonb `request`.
ALTER TABLE kubemind_jobs ADD COLUMN request_body bytea, ADD COLUMN request_json_length integer;
ALTER TABLE kubemind_jobs ALTER COLUMN request_body SET STORAGE EXTERNAL;
ALTER TABLE kubemind_jobs ALTER COLUMN request DROP NOT NULL;
ALTER TABLE kubemind_jobs ADD CONSTRAINT kubemind_jobs_has_request CHECK (request IS NOT NULL OR request_body IS NOT NULL);
