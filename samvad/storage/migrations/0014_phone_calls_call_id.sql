-- A carrier call's stream is opened once: a stream that presents a call id already recorded is
-- refused (a replayed webhook's token, however long after), looked up by this index.
CREATE INDEX IF NOT EXISTS phone_calls_call_idx ON phone_calls (carrier, call_id);
