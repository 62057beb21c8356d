-- A caller's message in a `language: auto` conversation: how sure the detection was (the ASR's
-- language probability for speech, the script share for typed text); NULL when the language was
-- given rather than detected.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS language_confidence double precision;
