-- Phone numbers routed to an API key, with what their calls are answered in, and the phone
-- calls themselves (telephony providers' media streams: samvad/telephony/).
CREATE TABLE phone_routes (
    id          bigserial PRIMARY KEY,
    api_key_id  bigint NOT NULL REFERENCES api_keys(id),
    number      text NOT NULL UNIQUE,   -- the called number, E.164 (+9180...)
    language    text NOT NULL,
    mode        text,
    voice       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_routes_key ON phone_routes (api_key_id);

CREATE TABLE phone_calls (
    session_id  uuid PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    api_key_id  bigint NOT NULL,
    carrier     text NOT NULL,          -- twilio | exotel | plivo
    call_id     text NOT NULL,          -- the carrier's call id (CallSid, call_sid, callId)
    stream_id   text NOT NULL,
    caller      text,                   -- redacted: country code and last four digits only
    called      text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    end_reason  text
);
CREATE INDEX phone_calls_key ON phone_calls (api_key_id, started_at);
