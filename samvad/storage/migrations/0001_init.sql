-- Sessions, messages, provider calls (cost), API keys.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    api_key_id    bigint,
    language      text NOT NULL,
    mode          text NOT NULL DEFAULT 'formal',
    voice         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id               bigserial PRIMARY KEY,
    session_id       uuid NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn_id          text NOT NULL,
    role             text NOT NULL CHECK (role IN ('user', 'assistant')),
    content          text NOT NULL,
    language         text NOT NULL,
    status           text NOT NULL CHECK (status IN ('complete', 'interrupted', 'failed')),
    guardrail_flags  jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- one user and one assistant message per turn: a retried write cannot duplicate
    UNIQUE (session_id, turn_id, role)
);
CREATE INDEX messages_session_idx ON messages (session_id, id);

CREATE TABLE provider_calls (
    id             bigserial PRIMARY KEY,
    session_id     uuid NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    turn_id        text NOT NULL,
    stage          text NOT NULL,
    provider       text NOT NULL,
    model          text NOT NULL,
    audio_seconds  double precision NOT NULL DEFAULT 0,
    characters     integer NOT NULL DEFAULT 0,
    input_tokens   integer NOT NULL DEFAULT 0,
    output_tokens  integer NOT NULL DEFAULT 0,
    cached_tokens  integer NOT NULL DEFAULT 0,
    cost           numeric(14, 6) NOT NULL DEFAULT 0,
    currency       text NOT NULL,
    ttfb_ms        double precision,
    latency_ms     double precision NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('ok', 'error', 'cancelled')),
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_calls_session_idx ON provider_calls (session_id);

CREATE TABLE api_keys (
    id                     bigserial PRIMARY KEY,
    name                   text NOT NULL,
    prefix                 text NOT NULL,         -- first characters, to recognise a key in listings
    key_hash               text NOT NULL UNIQUE,  -- HMAC-SHA256 of the key with the deployment secret
    created_at             timestamptz NOT NULL DEFAULT now(),
    revoked_at             timestamptz
);
