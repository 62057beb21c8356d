-- The retention janitor (repository.expire_sessions) finds conversations idle past the
-- retention by their last activity, a batch at a time, without scanning the table.
CREATE INDEX IF NOT EXISTS sessions_updated_idx ON sessions (updated_at);
