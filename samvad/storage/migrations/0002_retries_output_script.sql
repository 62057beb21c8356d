-- Retried attempts per provider call; the session's output script (Sarvam translate).
ALTER TABLE provider_calls ADD COLUMN retries integer NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN output_script text;
