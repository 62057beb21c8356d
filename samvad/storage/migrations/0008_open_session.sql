-- A session opened under its key's cap in one round trip (it took five: begin, lock, count,
-- insert, commit). In a volatile PL/pgSQL function each statement takes a fresh snapshot under
-- READ COMMITTED, so the count runs after the per-key lock and sees every session committed
-- before it: concurrent opens of one key still cannot overshoot the cap.
CREATE OR REPLACE FUNCTION samvad_open_session(
    p_id uuid, p_language text, p_mode text, p_voice text, p_key bigint, p_script text,
    p_max_open integer, p_open_s double precision
) RETURNS SETOF sessions LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    open_now integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('samvad.open_sessions'), p_key::int);
    -- Counted only up to the cap: the check costs the same however many sessions a key holds.
    SELECT count(*) INTO open_now FROM (
        SELECT 1 FROM sessions WHERE api_key_id = p_key AND closed_at IS NULL
            AND updated_at > now() - make_interval(secs => p_open_s) LIMIT p_max_open) open;
    IF open_now >= p_max_open THEN
        RAISE EXCEPTION 'samvad_too_many_sessions' USING DETAIL = open_now::text;
    END IF;
    RETURN QUERY INSERT INTO sessions (id, language, mode, voice, api_key_id, output_script)
        VALUES (p_id, p_language, p_mode, p_voice, p_key, p_script) RETURNING *;
END $$;
