-- The knowledge base a session answers from (rag.knowledge_bases; NULL: the default one), the
-- one a routed number's calls answer from, and the ones a key may use (NULL: every one served;
-- else its sessions answer from these only, the first by default).
ALTER TABLE sessions ADD COLUMN knowledge_base text;
ALTER TABLE phone_routes ADD COLUMN knowledge_base text;
ALTER TABLE api_keys ADD COLUMN knowledge_bases text[];

-- samvad_open_session (0008) with the knowledge base. The old signature stays for replicas of
-- the previous release while a rolling upgrade runs.
CREATE OR REPLACE FUNCTION samvad_open_session(
    p_id uuid, p_language text, p_mode text, p_voice text, p_key bigint, p_script text,
    p_max_open integer, p_open_s double precision, p_kb text
) RETURNS SETOF sessions LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    open_now integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('samvad.open_sessions'), p_key::int);
    SELECT count(*) INTO open_now FROM (
        SELECT 1 FROM sessions WHERE api_key_id = p_key AND closed_at IS NULL
            AND updated_at > now() - make_interval(secs => p_open_s) LIMIT p_max_open) open;
    IF open_now >= p_max_open THEN
        RAISE EXCEPTION 'samvad_too_many_sessions' USING DETAIL = open_now::text;
    END IF;
    RETURN QUERY INSERT INTO sessions (id, language, mode, voice, api_key_id, output_script, knowledge_base)
        VALUES (p_id, p_language, p_mode, p_voice, p_key, p_script, p_kb) RETURNING *;
END $$;
