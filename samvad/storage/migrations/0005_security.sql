-- Per-key cap on open conversations, and closing a conversation (it stops counting as open).
ALTER TABLE api_keys ADD COLUMN max_open_sessions integer;
ALTER TABLE api_keys ADD COLUMN sessions_per_minute integer;
ALTER TABLE sessions ADD COLUMN closed_at timestamptz;
CREATE INDEX sessions_open_by_key ON sessions (api_key_id, updated_at) WHERE closed_at IS NULL;
