-- Device-scoped API keys: a key may be limited to some devices of its tenant; NULL keeps the
-- key's reach to every device. Row-level security on api_keys is unchanged.
ALTER TABLE api_keys ADD COLUMN device_ids text[]
    CONSTRAINT api_keys_device_ids_not_empty
    CHECK (device_ids IS NULL OR cardinality(device_ids) > 0);

-- Keys are looked up before the tenant is known; the lookup returns the new column too.
CREATE OR REPLACE FUNCTION sr_api_key_by_digest(p_digest text) RETURNS SETOF api_keys
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT * FROM api_keys WHERE digest = p_digest $$;

REVOKE ALL ON FUNCTION sr_api_key_by_digest(text) FROM PUBLIC;
