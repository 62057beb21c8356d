-- Per-key limits, stored with the key (NULL: the service defaults).
ALTER TABLE api_keys ADD COLUMN requests_per_minute integer;
ALTER TABLE api_keys ADD COLUMN max_voice_sessions integer;
