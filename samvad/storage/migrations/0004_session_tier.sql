-- The session tier: conversations hosted many per process (virtual actors).
-- One live owner per conversation: `owner` names the session host holding it, `epoch` grows at
-- every activation and fences every write (a write carrying an old epoch changes nothing).
ALTER TABLE sessions ADD COLUMN owner text;
ALTER TABLE sessions ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
-- Another host asked for this conversation (routing moved): the owner releases it when idle.
ALTER TABLE sessions ADD COLUMN handoff boolean NOT NULL DEFAULT false;
CREATE INDEX sessions_owner_idx ON sessions (owner) WHERE owner IS NOT NULL;
CREATE INDEX sessions_api_key_idx ON sessions (api_key_id);

-- Session hosts and their leases: a host whose lease lapsed owns nothing any more.
CREATE TABLE session_hosts (
    id           text PRIMARY KEY,
    lease_until  timestamptz NOT NULL
);

-- Idempotency-Key of POST /turn and POST /sessions: the same key returns the same result.
CREATE TABLE idempotency_keys (
    api_key_id    bigint NOT NULL,
    key           text NOT NULL,
    route         text NOT NULL,
    request_hash  text NOT NULL,
    session_id    uuid,
    turn_id       text,
    response      text,          -- the JSON answer, written in the turn's own transaction
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_keys_turn_idx ON idempotency_keys (session_id, turn_id);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
