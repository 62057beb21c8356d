-- Knowledge bases are deny-by-default: a key with no list (NULL) may use only the default one,
-- `*` in its list every one served. Keys made before this release could use every knowledge
-- base with NULL: they keep exactly that access, now stated ('*'), and `samvad run` names them
-- at every start so an operator narrows them (samvad keys create --kb ..., then revoke the old).
UPDATE api_keys SET knowledge_bases = ARRAY['*'] WHERE knowledge_bases IS NULL;
